//! The virtual-reactor connector against direct use of `perfusio-mechanistic`.

use perfusio_connectors::virtual_reactor::{VirtualReactorConnector, virtual_plants};
use perfusio_core::{Connector, ConnectorError, Control, Setpoints, Species};
use perfusio_mechanistic::{VirtualReactor, VirtualReactorConfig};

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
    let s4 = vr.read_sample(4).await.unwrap();
    assert_eq!((s4.day, vr.day()), (4, 4));
    // an earlier day does not move the reactor, and a day reads the same twice
    let s2 = vr.read_sample(2).await.unwrap();
    assert_eq!(vr.day(), 4);
    assert_eq!(vr.read_sample(2).await.unwrap(), s2);
    assert_eq!(s4.reactor_id.as_deref(), Some("R01"));

    // independent computation: the mechanistic reactor driven directly
    let mut direct = VirtualReactor::new(config(11)).unwrap();
    direct.advance_to(4).unwrap();
    assert_eq!(direct.sample(4).unwrap(), s4);
    assert_eq!(direct.sample(2).unwrap(), s2);
}

#[tokio::test]
async fn setpoints_act_from_their_day_on_and_never_rewrite_the_past() {
    let a = VirtualReactorConnector::new(config(5)).unwrap();
    let b = VirtualReactorConnector::new(config(5)).unwrap();
    for d in 0..=3 {
        assert_eq!(
            a.read_sample(d).await.unwrap(),
            b.read_sample(d).await.unwrap()
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
    a.read_sample(8).await.unwrap();
    b.read_sample(8).await.unwrap();
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
    // more substrate supply grows more cells from day 6 on (plant-model.md: VCD rises
    // with perfusion and medium glucose)
    let vcd = Species::VCD.index();
    assert!(
        hb[8][vcd] > ha[8][vcd] * 1.05,
        "{} vs {}",
        hb[8][vcd],
        ha[8][vcd]
    );
    // the sample of day 6 reports the new rate, day 4 the old one
    let s6 = b.read_sample(6).await.unwrap();
    assert_eq!(s6.control(Control::PerfusionRate), Some(2.0));
    assert_eq!(
        b.read_sample(4)
            .await
            .unwrap()
            .control(Control::PerfusionRate),
        Some(1.0)
    );

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
    let (sx, sy, sz) = (
        x.read_sample(3).await.unwrap(),
        y.read_sample(3).await.unwrap(),
        z.read_sample(3).await.unwrap(),
    );
    assert_eq!(sx, sy);
    assert_ne!(sx.species, sz.species);

    let many = VirtualReactorConnector::ensemble(3, config(9)).unwrap();
    let ids: Vec<&str> = many.iter().map(|c| c.reactor_id()).collect();
    assert_eq!(ids, ["R01", "R02", "R03"]);
    let a = many[0].read_sample(2).await.unwrap();
    let b = many[1].read_sample(2).await.unwrap();
    assert_ne!(a.species, b.species);
    assert_eq!(b.reactor_id.as_deref(), Some("R02"));
    assert!(many[2].is_alive().await);
    assert_eq!(
        many[2].describe(),
        "virtual reactor R03 (perfusio-mechanistic)"
    );

    let plants = virtual_plants(4, 42).unwrap();
    assert_eq!(plants.len(), 4);
    assert_eq!(plants[3].reactor_id(), "R04");
    assert_eq!(plants[0].day(), 0);
}
