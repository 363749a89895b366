//! The virtual-reactor connector against direct use of `perfusio-mechanistic`.

use perfusio_connectors::virtual_reactor::{Plant, VirtualReactorConnector, virtual_plants};
use perfusio_core::{
    Connector, ConnectorError, Control, ControlArray, CultureDay,
    DEFAULT_AMBR250_DESIGN_SPACE as DS, Origin, Sample, Setpoints, Species, WriteStatus,
    read_validated,
};
use perfusio_mechanistic::{VirtualReactor, VirtualReactorConfig};

/// The validated sample of `day`, read through the trait.
async fn read(c: &impl Connector, day: CultureDay) -> Sample {
    read_validated(c, day, &DS).await.unwrap().sample
}

/// What the mechanistic reactor driven directly reports for `day`, validated the same way.
fn direct_sample(r: &VirtualReactor, day: CultureDay) -> Sample {
    r.sample(day).unwrap().validate(&DS).sample
}

fn config(seed: u64) -> VirtualReactorConfig {
    VirtualReactorConfig {
        seed,
        ..VirtualReactorConfig::default()
    }
}

#[tokio::test]
async fn read_sample_advances_exactly_to_the_requested_day() {
    let vr = VirtualReactorConnector::new(config(11)).unwrap();
    assert_eq!(vr.day(), 0);
    let s4 = read(&vr, 4).await;
    assert_eq!((s4.day, vr.day()), (4, 4));
    // an earlier day does not move the reactor, and a day reads the same twice
    let s2 = read(&vr, 2).await;
    assert_eq!(vr.day(), 4);
    assert_eq!(read(&vr, 2).await, s2);
    assert_eq!(s4.reactor_id.as_deref(), Some("R01"));

    // independent computation: the mechanistic reactor driven directly
    let mut direct = VirtualReactor::new(config(11)).unwrap();
    direct.advance_to(4).unwrap();
    assert_eq!(direct_sample(&direct, 4), s4);
    assert_eq!(direct_sample(&direct, 2), s2);
    // every value carries the reactor as its origin
    let raw = vr.read_raw(4).await.unwrap();
    assert!(!raw.is_empty());
    assert!(raw.entries().iter().all(|e| e.origin
        == Origin::Source {
            name: "virtual reactor R01".into()
        }));
}

#[tokio::test]
async fn setpoints_act_from_their_day_on_and_never_rewrite_the_past() {
    let a = VirtualReactorConnector::new(config(5)).unwrap();
    let b = VirtualReactorConnector::new(config(5)).unwrap();
    for d in 0..=3 {
        assert_eq!(
            read_validated(&a, d, &DS).await.unwrap(),
            read_validated(&b, d, &DS).await.unwrap()
        );
    }
    // b: more perfusion and medium glucose from day 5 on (the write first simulates
    // days 3 -> 5 under the old setpoints)
    let sp = Setpoints::defaults(5)
        .with(Control::PerfusionRate, 2.0)
        .with(Control::GlucoseSetpoint, 8.0);
    let r = b.write_setpoints(&sp).await.unwrap();
    assert!(r.is_fully_confirmed());
    assert_eq!(b.day(), 5);
    for c in &r.controls {
        assert!((c.readback.unwrap() - c.requested).abs() < 1e-12);
    }
    read(&a, 8).await;
    read(&b, 8).await;
    let (ha, hb) = (a.snapshot().unwrap(), b.snapshot().unwrap());
    let (ha, hb) = (ha.clean_history(), hb.clean_history());
    assert_eq!(ha.len(), 9);
    for d in 0..=5 {
        for s in Species::ALL {
            let (x, y) = (ha[d][s.index()], hb[d][s.index()]);
            assert!(
                (x - y).abs() <= 1e-12 * x.abs().max(1.0),
                "day {d} {s}: {x} vs {y}"
            );
        }
    }
    // more substrate supply grows more cells from day 6 on (docs/plant-model.md: VCD rises
    // with perfusion and medium glucose)
    let vcd = Species::VCD.index();
    assert!(
        hb[8][vcd] > ha[8][vcd] * 1.05,
        "{} vs {}",
        hb[8][vcd],
        ha[8][vcd]
    );
    // the sample of day 6 reports the new rate, day 4 the old one
    let s6 = read(&b, 6).await;
    assert_eq!(s6.control(Control::PerfusionRate), Some(2.0));
    assert_eq!(read(&b, 4).await.control(Control::PerfusionRate), Some(1.0));

    // the past stays
    let e = b
        .write_setpoints(&Setpoints::defaults(3))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("would rewrite the past: the reactor is at day 8"),
        "{e}"
    );
    // hard limits are refused without advancing the reactor
    let bad = Setpoints::defaults(12).with(Control::Agitation, 1100.0);
    let e = b.write_setpoints(&bad).await.unwrap_err();
    assert!(
        matches!(e, ConnectorError::Rejected(ref v) if v[0].control == Control::Agitation),
        "{e}"
    );
    assert_eq!(b.day(), 8);
}

#[tokio::test]
async fn seeds_and_ensembles() {
    let x = VirtualReactorConnector::new(config(1)).unwrap();
    let y = VirtualReactorConnector::new(config(1)).unwrap();
    let z = VirtualReactorConnector::new(config(2)).unwrap();
    let (sx, sy, sz) = (read(&x, 3).await, read(&y, 3).await, read(&z, 3).await);
    assert_eq!(sx, sy);
    assert_ne!(sx.species, sz.species);

    let many = VirtualReactorConnector::ensemble(3, config(9)).unwrap();
    let ids: Vec<&str> = many.iter().map(|c| c.reactor_id()).collect();
    assert_eq!(ids, ["R01", "R02", "R03"]);
    let a = read(&many[0], 2).await;
    let b = read(&many[1], 2).await;
    assert_ne!(a.species, b.species);
    assert_eq!(b.reactor_id.as_deref(), Some("R02"));
    assert!(many[2].health().await.is_ok());
    assert_eq!(
        many[2].describe(),
        "virtual reactor R03 (perfusio-mechanistic)"
    );

    let plants = virtual_plants(4, 42).unwrap();
    assert_eq!(plants.len(), 4);
    assert_eq!(plants[3].reactor_id(), "R04");
    assert_eq!(plants[0].day(), 0);
}

/// A plant whose temperature controller is stuck: it takes every setpoint but keeps the
/// temperature it had, or, when `refuse_agitation_above` is set, refuses such agitation
/// outright (a plant limit narrower than the design space's).
#[derive(Debug)]
struct FaultyPlant {
    inner: VirtualReactor,
    stuck_temperature: bool,
    refuse_agitation_above: Option<f64>,
}

impl Plant for FaultyPlant {
    fn reactor_id(&self) -> String {
        Plant::reactor_id(&self.inner)
    }
    fn day(&self) -> CultureDay {
        Plant::day(&self.inner)
    }
    fn advance_day(&mut self) -> Result<(), ConnectorError> {
        Plant::advance_day(&mut self.inner)
    }
    fn sample(&self, day: CultureDay) -> Result<Sample, ConnectorError> {
        Plant::sample(&self.inner, day)
    }
    fn setpoints(&self) -> ControlArray<f64> {
        Plant::setpoints(&self.inner)
    }
    fn set_setpoints(&mut self, values: &ControlArray<f64>) -> Result<(), ConnectorError> {
        let a = Control::Agitation.index();
        if let Some(max) = self.refuse_agitation_above
            && values[a] > max
        {
            return Err(ConnectorError::Rejected(vec![perfusio_core::Violation {
                control: Control::Agitation,
                value: values[a],
                kind: perfusio_core::ViolationKind::AboveUpper { bound: max },
                hard: true,
            }]));
        }
        let mut v = *values;
        if self.stuck_temperature {
            let t = Control::Temperature.index();
            v[t] = Plant::setpoints(&self.inner)[t];
        }
        Plant::set_setpoints(&mut self.inner, &v)
    }
}

fn faulty(
    stuck_temperature: bool,
    refuse_agitation_above: Option<f64>,
) -> VirtualReactorConnector<FaultyPlant> {
    let inner = VirtualReactor::new(config(3)).unwrap();
    VirtualReactorConnector::from_plant(
        FaultyPlant {
            inner,
            stuck_temperature,
            refuse_agitation_above,
        },
        DS,
    )
}

#[tokio::test]
async fn a_setpoint_the_plant_does_not_take_is_unconfirmed_by_the_read_back() {
    let vr = faulty(true, None);
    let sp = Setpoints::defaults(2)
        .with(Control::Temperature, 36.0)
        .with(Control::PerfusionRate, 1.5);
    let r = vr.write_setpoints(&sp).await.unwrap();
    assert!(!r.is_fully_confirmed());
    let t = r.control(Control::Temperature).unwrap();
    assert_eq!(
        t.status,
        WriteStatus::Unconfirmed {
            reason: "read back 37 from virtual reactor R01".into()
        }
    );
    assert_eq!(t.readback, Some(37.0));
    for c in Control::ALL
        .into_iter()
        .filter(|c| *c != Control::Temperature)
    {
        let rc = r.control(c).unwrap();
        assert_eq!(rc.status, WriteStatus::Confirmed, "{c}");
        assert_eq!(rc.readback, Some(sp.get(c)), "{c}");
    }
    // the receipt tells the truth: day 2 runs at 37 °C and the new perfusion rate
    let s = read(&vr, 3).await;
    assert_eq!(s.control(Control::Temperature), Some(37.0));
    assert!(vr.describe().contains("custom plant"), "{}", vr.describe());
}

#[tokio::test]
async fn a_write_the_plant_refuses_is_rejected_per_control_with_the_reason() {
    let vr = faulty(false, Some(900.0));
    let sp = Setpoints::defaults(1)
        .with(Control::Agitation, 950.0)
        .with(Control::PerfusionRate, 1.2);
    let r = vr.write_setpoints(&sp).await.unwrap();
    assert_eq!(r.controls.len(), 6);
    let a = r.control(Control::Agitation).unwrap();
    assert_eq!(
        a.status,
        WriteStatus::Rejected {
            reason: "refused by virtual reactor R01: agitation = 950 rpm is above 900".into()
        }
    );
    let p = r.control(Control::PerfusionRate).unwrap();
    assert!(
        matches!(&p.status, WriteStatus::Rejected { reason } if reason.starts_with("not applied: virtual reactor R01 refused the setpoints")),
        "{:?}",
        p.status
    );
    // nothing was applied: the read-back is what the plant still holds
    assert_eq!(p.readback, Some(1.0));
    let s = read(&vr, 1).await;
    assert_eq!(s.control(Control::PerfusionRate), Some(1.0));
    assert_eq!(s.control(Control::Agitation), Some(850.0));
    // the design space's own hard limits are refused before the plant sees anything
    let e = vr
        .write_setpoints(&Setpoints::defaults(1).with(Control::Agitation, 1100.0))
        .await
        .unwrap_err();
    assert!(matches!(e, ConnectorError::Rejected(_)), "{e}");
}

#[tokio::test]
async fn restore_replays_written_setpoints_onto_a_fresh_plant() {
    // the interrupted run: two writes, then the process dies on day 7
    let first = VirtualReactorConnector::new(config(5)).unwrap();
    let writes = [
        Setpoints::defaults(2).with(Control::PerfusionRate, 1.6),
        Setpoints::defaults(5).with(Control::Temperature, 35.5),
    ];
    read(&first, 0).await;
    for w in &writes {
        read(&first, w.day).await;
        first.write_setpoints(w).await.unwrap();
    }
    let day7 = read(&first, 7).await;
    // a new process: the same configuration, the writes replayed from the audit log
    let second = VirtualReactorConnector::new(config(5)).unwrap();
    second.restore(&writes).await.unwrap();
    assert_eq!(second.day(), 5);
    assert_eq!(read(&second, 7).await, day7);
    let (a, b) = (first.snapshot().unwrap(), second.snapshot().unwrap());
    assert_eq!(a.clean_history(), b.clean_history());
    assert_eq!(a.applied_controls(), b.applied_controls());
    // days already simulated are skipped, not rewritten; a refused value is an error
    second.restore(&writes).await.unwrap();
    assert_eq!(second.day(), 7);
    let bad = [Setpoints::defaults(8).with(Control::Agitation, 5000.0)];
    assert!(second.restore(&bad).await.is_err());
}
