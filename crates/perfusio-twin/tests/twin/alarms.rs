//! Alarms from forecast quantiles: raised once when the condition appears, cleared when it
//! goes, never repeated while it lasts.

use perfusio_audit::event::{Alarm, AlarmState};
use perfusio_twin::prelude::*;

use crate::common::{quick_config, records, virtual_reactor};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_is_raised_once_and_cleared_once() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let titer = Variable::Species(Species::Titer);
    // the titer starts at 0 and passes 100 mg/L around day 2–3 and 200 around day 4: the
    // first rule holds on the first days and then goes; the second appears and stays
    let rules = vec![
        AlarmRule::below(titer, 100.0)
            .within_days(1)
            .with_probability(0.5)
            .warning(),
        AlarmRule::above(titer, 200.0)
            .within_days(2)
            .with_probability(0.5)
            .critical(),
    ];
    DigitalTwin::builder(
        virtual_reactor(5),
        DEFAULT_AMBR250_DESIGN_SPACE,
        quick_config(7, 5),
    )
    .audit_path(&audit)
    .alarm_rules(rules)
    .build()
    .unwrap()
    .run()
    .await
    .unwrap();
    let alarms: Vec<(f64, Alarm)> = records(&audit)
        .iter()
        .filter(|r| r.kind == "alarm")
        .map(|r| (r.day, r.payload_as().unwrap()))
        .collect();
    let of = |limit: f64| -> Vec<(f64, AlarmState)> {
        alarms
            .iter()
            .filter(|(_, a)| a.threshold.is_some_and(|t| (t - limit).abs() < 1e-12))
            .map(|(d, a)| (*d, a.state))
            .collect()
    };
    let low = of(100.0);
    assert_eq!(low.len(), 2, "{low:?}");
    assert_eq!(low[0], (0.0, AlarmState::Raised));
    assert_eq!(low[1].1, AlarmState::Cleared);
    assert!(low[1].0 >= 1.0 && low[1].0 <= 4.0, "{low:?}");
    let high = of(200.0);
    assert_eq!(high.len(), 1, "raised once and not repeated: {high:?}");
    assert_eq!(high[0].1, AlarmState::Raised);
    assert!(high[0].0 >= 1.0 && high[0].0 <= 5.0, "{high:?}");
    for (_, a) in &alarms {
        assert_eq!(a.species.as_deref(), Some("Titer"));
    }
}
