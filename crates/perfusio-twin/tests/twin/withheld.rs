//! Writing off (the library default): nothing reaches the connector, every recommendation
//! is audited as withheld with its reason; only applied controls are learned from.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use perfusio_audit::event::{Decision, SetpointWithheld};
use perfusio_core::WriteStatus;
use perfusio_twin::prelude::*;

use crate::common::{Probe, kinds, quick_config, records, virtual_reactor};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writing_off_sends_nothing_and_audits_every_recommendation_as_withheld() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let cfg = quick_config(5, 21);
    assert!(!cfg.allow_write, "the library default is writing off");
    let probe = Arc::new(Probe::new(virtual_reactor(21)));
    let report = DigitalTwin::builder_shared(probe.clone(), DEFAULT_AMBR250_DESIGN_SPACE, cfg)
        .audit_path(&audit)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(
        probe.writes.load(Ordering::SeqCst),
        0,
        "a write reached the connector"
    );
    assert_eq!(
        (report.decisions(), report.written(), report.withheld()),
        (5, 0, 5)
    );
    // no recommendation reached the plant: nothing to score one day ahead
    assert!(report.accuracy().is_empty());
    assert!(report.to_string().contains("one day ahead: no pairs"));
    let recs = records(&audit);
    let k = kinds(&recs);
    assert_eq!(k.iter().filter(|x| **x == "setpoint_written").count(), 0);
    let decisions: Vec<Decision> = recs
        .iter()
        .filter(|r| r.kind == "decision")
        .map(|r| r.payload_as().unwrap())
        .collect();
    let withheld: Vec<(f64, SetpointWithheld)> = recs
        .iter()
        .filter(|r| r.kind == "setpoint_withheld")
        .map(|r| (r.day, r.payload_as().unwrap()))
        .collect();
    assert_eq!(withheld.len(), 5);
    for (i, ((day, w), d)) in withheld.iter().zip(&decisions).enumerate() {
        assert!(
            (day - i as f64).abs() < 1e-12,
            "withheld record of day {day} at {i}"
        );
        assert!(
            w.reason.contains("allow_write = false"),
            "reason: {}",
            w.reason
        );
        // the withheld record carries the recommendation it did not send
        assert_eq!(w.setpoints, d.controls);
    }
    // nothing was applied but the setpoints in force at the start
    for d in &report.days[..5] {
        assert_eq!(d.applied, Some(Control::defaults()), "day {}", d.day);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_controls_the_connector_confirmed_are_learned_as_applied() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let cfg = RunConfig {
        allow_write: true,
        ..quick_config(4, 22)
    };
    let mut probe = Probe::new(virtual_reactor(22));
    probe.reject = Some(Control::PerfusionRate);
    let probe = Arc::new(probe);
    let report = DigitalTwin::builder_shared(probe.clone(), DEFAULT_AMBR250_DESIGN_SPACE, cfg)
        .audit_path(&audit)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(probe.writes.load(Ordering::SeqCst), 4);
    let initial = Control::defaults();
    let mut moved = 0;
    for d in &report.days[..4] {
        let dec = d.decision.as_ref().unwrap();
        let w = d.written.as_ref().unwrap();
        let perf = w.receipt.control(Control::PerfusionRate).unwrap();
        assert!(matches!(perf.status, WriteStatus::Rejected { .. }));
        let applied = d.applied.unwrap();
        // the refused control stays as it was in force; the confirmed ones take the decision
        assert!(
            (applied[Control::PerfusionRate.index()] - initial[Control::PerfusionRate.index()])
                .abs()
                < 1e-12
        );
        for c in Control::ALL {
            if c == Control::PerfusionRate {
                continue;
            }
            assert!((applied[c.index()] - dec.controls[c.name()]).abs() < 1e-9);
        }
        let decided = dec.controls[Control::PerfusionRate.name()];
        if (decided - initial[Control::PerfusionRate.index()]).abs() > 1e-9 {
            moved += 1;
        }
    }
    assert!(
        moved > 0,
        "the policy never moved the perfusion rate, so the test shows nothing"
    );
}
