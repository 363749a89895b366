//! The virtual reactor: piecewise-constant controls, validation, determinism.

use perfusio_core::{Control, Species, ViolationKind};
use perfusio_mechanistic::{
    KineticParams, MechError, NoiseModel, PlantModel, VirtualReactor, VirtualReactorConfig,
    initial_state,
};

#[test]
fn clean_reactor_equals_the_model() {
    let mut r = VirtualReactor::new(VirtualReactorConfig {
        noise: NoiseModel::none(),
        ..VirtualReactorConfig::default()
    })
    .unwrap();
    r.advance_to(10).unwrap();
    let m = PlantModel::new(KineticParams::clone_x());
    let expected = m
        .simulate(&initial_state(), &vec![Control::defaults(); 10])
        .unwrap();
    assert_eq!(r.clean_history(), expected.as_slice());
    let s = r.sample(10).unwrap();
    assert_eq!(s.get(Species::VCD), Some(expected[10][0]));
    assert_eq!(s.reactor_id.as_deref(), Some("R01"));
    let vcv = perfusio_core::viable_cell_volume_percent(expected[10][0], expected[10][1]);
    assert_eq!(s.derived[0], Some(vcv));
}

#[test]
fn setpoint_change_leaves_the_past_unchanged() {
    let mut a = VirtualReactor::new(VirtualReactorConfig::default()).unwrap();
    let mut b = a.clone();
    a.advance_to(5).unwrap();
    b.advance_to(5).unwrap();
    let mut sp = b.setpoints();
    sp[Control::PerfusionRate.index()] = 2.0;
    sp[Control::GlucoseSetpoint.index()] = 8.0;
    b.set_setpoints(&sp).unwrap();
    a.advance_to(10).unwrap();
    b.advance_to(10).unwrap();
    for d in 0..=5u32 {
        let (x, y) = (a.clean_history()[d as usize], b.clean_history()[d as usize]);
        assert_eq!(x.map(f64::to_bits), y.map(f64::to_bits), "day {d}");
        assert_eq!(a.sample(d).unwrap().species, b.sample(d).unwrap().species);
    }
    for d in 6..=10usize {
        let (x, y) = (a.clean_history()[d], b.clean_history()[d]);
        assert!(y[Species::VCD.index()] > x[Species::VCD.index()], "day {d}");
    }
    // the applied controls are recorded per day
    assert_eq!(
        b.sample(4).unwrap().control(Control::PerfusionRate),
        Some(1.0)
    );
    assert_eq!(
        b.sample(5).unwrap().control(Control::PerfusionRate),
        Some(2.0)
    );
    assert_eq!(b.applied_controls().len(), 10);
    // advancing to an earlier day never re-simulates
    b.advance_to(3).unwrap();
    assert_eq!(b.day(), 10);
}

#[test]
fn samples_are_deterministic_per_seed_and_day() {
    let mut a = VirtualReactor::new(VirtualReactorConfig::default()).unwrap();
    a.advance_to(6).unwrap();
    let first = a.sample(4).unwrap();
    a.advance_to(12).unwrap();
    assert_eq!(
        a.sample(4).unwrap(),
        first,
        "reading later does not change a day"
    );
    let mut b = VirtualReactor::new(VirtualReactorConfig::default()).unwrap();
    b.advance_to(4).unwrap();
    assert_eq!(b.sample(4).unwrap().species, first.species);
    let mut c = VirtualReactor::new(VirtualReactorConfig {
        seed: 43,
        ..VirtualReactorConfig::default()
    })
    .unwrap();
    c.advance_to(4).unwrap();
    assert_ne!(c.sample(4).unwrap().species, first.species);
}

#[test]
fn invalid_setpoints_name_the_control() {
    let mut r = VirtualReactor::new(VirtualReactorConfig::default()).unwrap();
    let mut sp = r.setpoints();
    sp[Control::Agitation.index()] = 1200.0;
    let e = r.set_setpoints(&sp).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid setpoints: agitation = 1200 rpm is above 1050"
    );
    match e {
        MechError::InvalidSetpoints(v) => {
            assert_eq!(v.len(), 1);
            assert_eq!(v[0].control, Control::Agitation);
        }
        other => panic!("unexpected {other:?}"),
    }
    let mut sp = r.setpoints();
    sp[Control::Temperature.index()] = f64::INFINITY;
    sp[Control::PerfusionRate.index()] = 0.5;
    sp[Control::BleedRate.index()] = 0.8; // outside its design range (soft) and above perfusion (hard)
    let e = r.set_setpoints(&sp).unwrap_err();
    let MechError::InvalidSetpoints(v) = e else {
        panic!("{e}")
    };
    let kinds: Vec<_> = v.iter().map(|x| (x.control, x.kind)).collect();
    assert_eq!(
        kinds,
        [
            (Control::Temperature, ViolationKind::NonFinite),
            (
                Control::BleedRate,
                ViolationKind::BleedExceedsPerfusion {
                    perfusion_rate: 0.5
                }
            ),
        ]
    );
    // nothing was applied
    assert_eq!(
        r.setpoints().map(f64::to_bits),
        Control::defaults().map(f64::to_bits)
    );
    // soft violation (outside the design range, inside the limits) is accepted
    let mut sp = r.setpoints();
    sp[Control::Temperature.index()] = 34.0;
    r.set_setpoints(&sp).unwrap();
    assert_eq!(
        r.setpoints()[Control::Temperature.index()].to_bits(),
        34.0f64.to_bits()
    );
}

#[test]
fn ensemble_of_24_has_distinct_noise_and_equal_physics() {
    let rs = VirtualReactor::ensemble(24, VirtualReactorConfig::default()).unwrap();
    assert_eq!(rs.len(), 24);
    assert_eq!(rs[23].config().reactor_id, "R24");
    let mut rs = rs;
    for r in &mut rs {
        r.advance_to(3).unwrap();
    }
    assert!(
        rs.iter()
            .all(|r| r.clean_state().map(f64::to_bits) == rs[0].clean_state().map(f64::to_bits))
    );
    let vcd: Vec<_> = rs
        .iter()
        .map(|r| r.sample(3).unwrap().get(Species::VCD))
        .collect();
    let mut distinct: Vec<_> = vcd.iter().flatten().map(|v| v.to_bits()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(distinct.len() >= 20, "{vcd:?}");
}

#[test]
fn duration_is_bounded() {
    let mut r = VirtualReactor::new(VirtualReactorConfig::default()).unwrap();
    let e = r.advance_to(366).unwrap_err();
    assert!(e.to_string().contains("at most 365 days"), "{e}");
}
