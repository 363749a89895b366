//! The writer refuses inconsistent payloads with a message that names the problem, and writes
//! nothing for them.

use perfusio_audit::event::*;
use perfusio_audit::{AuditError, AuditWriter, Entry, Event, WriterOptions};
use perfusio_core::Acquisition;

use crate::common::{forecast, hash_of, map, one_of_each};

/// Append `event` to a fresh log; return the error message and check that nothing was written.
fn refused(event: impl Into<Event>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let (mut w, _) = AuditWriter::open(&path, WriterOptions::new("r", "R1")).unwrap();
    let err = w.append(Entry::new(3, event)).unwrap_err();
    assert!(matches!(err, AuditError::InvalidPayload { .. }), "{err}");
    assert_eq!(w.seq(), 0);
    drop(w);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    err.to_string()
}

#[test]
fn fixtures_pass_their_checks() {
    for e in one_of_each() {
        e.check().unwrap();
    }
}

#[test]
fn malformed_forecasts_are_refused() {
    let mut f = forecast();
    f.bands.get_mut("Titer").unwrap().q50.pop();
    assert_eq!(
        refused(f),
        "invalid `forecast` payload: bands.Titer.q50 has 1 values but days_ahead has 2"
    );

    let mut f = forecast();
    f.bands.get_mut("Glc").unwrap().q90[1] = 0.5;
    let msg = refused(f);
    assert!(
        msg.starts_with("invalid `forecast` payload: bands.Glc at 28 days ahead: quantiles ["),
        "{msg}"
    );
    assert!(
        msg.ends_with("are not in the order q05 ≤ q10 ≤ q50 ≤ q90 ≤ q95"),
        "{msg}"
    );

    let mut f = forecast();
    f.days_ahead = vec![1, 29];
    assert_eq!(
        refused(f),
        "invalid `forecast` payload: days_ahead [1, 29] must be strictly increasing and inside 1..=28"
    );

    let mut f = forecast();
    f.days_ahead = vec![3, 3];
    assert!(refused(f).contains("strictly increasing"));

    let mut f = forecast();
    f.model_sha256 = hash_of("m").to_uppercase();
    assert!(refused(f).starts_with(
        "invalid `forecast` payload: model_sha256 must be a SHA-256 as 64 lowercase hex digits"
    ));

    let mut f = forecast();
    f.paths = 0;
    assert_eq!(
        refused(f),
        "invalid `forecast` payload: a monte_carlo forecast needs at least one path"
    );
    // ... which is fine for moment matching.
    let mut f = forecast();
    f.paths = 0;
    f.method = ForecastMethod::MomentMatching;
    assert!(Event::from(f).check().is_ok());
}

fn decision() -> Decision {
    Decision {
        controls: map(&[("bleed_rate", 0.2)]),
        acquisition: Acquisition::LogEI,
        acquisition_value: -1.0,
        objective: "final-titer".into(),
        recommended: ObjectiveEstimate {
            mean: 500.0,
            sd: 20.0,
        },
        hold: ObjectiveEstimate {
            mean: 480.0,
            sd: 18.0,
        },
        probability_feasible: 1.0,
        reason: "hold".into(),
        elapsed_s: 0.0,
        horizon_days: None,
        objectives: Vec::new(),
        next_sample: Default::default(),
    }
}

#[test]
fn malformed_decisions_and_retrains_are_refused() {
    assert!(Event::from(decision()).check().is_ok());
    let mut d = decision();
    d.probability_feasible = 1.5;
    assert_eq!(
        refused(d),
        "invalid `decision` payload: probability_feasible 1.5 must be a probability in [0, 1]"
    );
    let mut d = decision();
    d.horizon_days = Some(0);
    assert_eq!(
        refused(d),
        "invalid `decision` payload: horizon_days is 0; a decision looks at least one day ahead"
    );
    let mut d = decision();
    d.hold.sd = -0.5;
    assert_eq!(
        refused(d),
        "invalid `decision` payload: hold.sd is -0.5; it must be ≥ 0"
    );

    // a multi-objective decision: every objective's estimates are checked, and a decision
    // with one objective writes no `objectives` key, one without a horizon no `horizon_days`
    // (old logs read as before)
    let v = serde_json::to_value(decision()).unwrap();
    for key in ["objectives", "horizon_days"] {
        assert!(v.get(key).is_none(), "{key}");
    }
    let mut d = decision();
    d.acquisition = Acquisition::QNEHVI;
    d.objectives = vec![
        NamedObjectiveEstimates {
            name: "harvest".into(),
            recommended: d.recommended,
            hold: d.hold,
        },
        NamedObjectiveEstimates {
            name: "final-titer".into(),
            recommended: ObjectiveEstimate {
                mean: 410.0,
                sd: 12.0,
            },
            hold: ObjectiveEstimate {
                mean: 380.0,
                sd: -1.0,
            },
        },
    ];
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(v["objectives"][1]["recommended"]["mean"], 410.0);
    assert_eq!(serde_json::from_value::<Decision>(v).unwrap(), d);
    assert_eq!(
        refused(d),
        "invalid `decision` payload: final-titer: hold.sd is -1; it must be ≥ 0"
    );

    // the expected next sample: one ordered set of quantiles per species, written only
    // when present, and read back as written
    let mut d = decision();
    d.next_sample.insert(
        "Glc".into(),
        SpeciesBands {
            mean: vec![4.0],
            q05: vec![3.0],
            q10: vec![3.25],
            q50: vec![4.0],
            q90: vec![4.75],
            q95: vec![5.0],
        },
    );
    assert!(Event::from(d.clone()).check().is_ok());
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(v["next_sample"]["Glc"]["q50"][0], 4.0);
    assert_eq!(serde_json::from_value::<Decision>(v).unwrap(), d);
    let mut bad = d.clone();
    bad.next_sample.get_mut("Glc").unwrap().q95[0] = 3.0;
    assert_eq!(
        refused(bad),
        "invalid `decision` payload: next_sample.Glc at 1 days ahead: quantiles \
         [3.0, 3.25, 4.0, 4.75, 3.0] are not in the order q05 ≤ q10 ≤ q50 ≤ q90 ≤ q95"
    );
    let mut bad = d;
    bad.next_sample.get_mut("Glc").unwrap().q10.push(3.5);
    assert_eq!(
        refused(bad),
        "invalid `decision` payload: next_sample.Glc.q10 has 2 values but days_ahead has 1"
    );

    let mut retrained = match one_of_each().remove(5) {
        Event::ModelRetrained(m) => m,
        other => panic!("fixture order changed: {other:?}"),
    };
    retrained.model_sha256 = "gp-7".into();
    assert_eq!(
        refused(retrained),
        "invalid `model_retrained` payload: model_sha256 must be a SHA-256 as 64 lowercase hex \
         digits, found \"gp-7\""
    );
}

#[test]
fn acquisition_round_trips_by_canonical_name() {
    for a in Acquisition::ALL {
        let mut d = decision();
        d.acquisition = a;
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(
            v["acquisition"],
            serde_json::Value::String(a.name().to_string())
        );
        assert_eq!(serde_json::from_value::<Decision>(v).unwrap(), d);
    }
}

#[test]
fn non_finite_numbers_are_named_before_the_consistency_check() {
    let mut f = forecast();
    f.bands.get_mut("Glc").unwrap().q50[0] = f64::NAN;
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) =
        AuditWriter::open(dir.path().join("a.jsonl"), WriterOptions::new("r", "R1")).unwrap();
    let err = w.append(Entry::new(1, f)).unwrap_err();
    assert!(
        matches!(&err, AuditError::NonFinite { path, .. } if path == "payload.bands.Glc.q50.[0]"),
        "{err}"
    );
}

#[test]
fn long_demo_runs_pass_every_check() {
    // The benches append 10 000 demo records; every one must be accepted.
    let entries = perfusio_audit::demo::simulated_run(12_000, 2026);
    assert_eq!(entries.len(), 12_000);
    let last_day = entries.last().unwrap().day;
    assert!(last_day > 1000, "{last_day}");
    for e in &entries {
        e.event.check().unwrap();
    }
}
