//! The daily loop on the virtual reactor.

use std::time::Instant;

use perfusio_audit::event::{Decision, Forecast, RunFinished, RunStarted};
use perfusio_twin::prelude::*;

use crate::common::{kinds, quick_config, records, virtual_reactor};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_record_per_step_applied_controls_and_a_verifiable_log() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let cfg = RunConfig {
        allow_write: true,
        ..quick_config(7, 11)
    };
    let t0 = Instant::now();
    let report = DigitalTwin::builder(virtual_reactor(3), DEFAULT_AMBR250_DESIGN_SPACE, cfg)
        .audit_path(&audit)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    eprintln!("{report}\n7 days in {:?}", t0.elapsed());
    assert!(report.completed, "{}", report.reason);
    assert_eq!(report.days.len(), 8); // days 0..=7, the last read only
    assert_eq!(
        (report.decisions(), report.written(), report.withheld()),
        (7, 7, 0)
    );
    assert_eq!(report.retrains(), 2); // days 3 and 6
    let recs = records(&audit);
    let k = kinds(&recs);
    assert_eq!(k.first(), Some(&"run_started"));
    assert_eq!(k.last(), Some(&"run_finished"));
    assert_eq!(k.iter().filter(|x| **x == "sample_read").count(), 8);
    assert_eq!(k.iter().filter(|x| **x == "forecast").count(), 7);
    assert_eq!(k.iter().filter(|x| **x == "decision").count(), 7);
    assert_eq!(k.iter().filter(|x| **x == "setpoint_written").count(), 7);
    assert_eq!(k.iter().filter(|x| **x == "model_retrained").count(), 2);
    let started: RunStarted = recs[0].payload_as().unwrap();
    assert_eq!(started.seed, Some(11));
    assert!(started.settings.contains_key("model_sha256"));
    let fin: RunFinished = recs.last().unwrap().payload_as().unwrap();
    assert!(fin.completed && fin.last_day == 7);
    // forecast records: bands at +1, +3, +7 (horizon 7), hashes
    let f: Forecast = recs
        .iter()
        .find(|r| r.kind == "forecast")
        .unwrap()
        .payload_as()
        .unwrap();
    assert_eq!(f.days_ahead, [1, 3, 7]);
    assert_eq!(f.paths, 32);
    assert_eq!(f.bands.len(), 9);
    // each decision is written as decided, and the day's applied controls are confirmed
    for d in report.days.iter().take(7) {
        let dec: &Decision = d.decision.as_ref().unwrap();
        let w = d.written.as_ref().unwrap();
        assert!(w.receipt.is_fully_confirmed());
        let applied = d.applied.unwrap();
        for c in Control::ALL {
            assert!((applied[c.index()] - dec.controls[c.name()]).abs() < 1e-12);
        }
    }
    // each decision's objective covers its horizon (3 days), cut at the run's last day (7)
    let horizons: Vec<Option<u32>> = report
        .days
        .iter()
        .take(7)
        .map(|d| d.decision.as_ref().unwrap().horizon_days)
        .collect();
    assert_eq!(horizons, [3, 3, 3, 3, 3, 2, 1].map(Some));
    // one-day-ahead accuracy, recomputed from the log's JSON: each decision's expected next
    // sample against the next day's sample (every decision was written as it stands)
    let accuracy = report.accuracy();
    for s in [Species::VCD, Species::Titer] {
        let mut pairs = Vec::new();
        for dec in recs.iter().filter(|r| r.kind == "decision") {
            let next = recs
                .iter()
                .find(|r| r.kind == "sample_read" && (r.day - (dec.day + 1.0)).abs() < 1e-9);
            let y = next.and_then(|r| r.payload["values"][s.name()].as_f64());
            let b = &dec.payload["next_sample"][s.name()];
            if let (Some(y), Some(q05), Some(q50), Some(q95)) = (
                y,
                b["q05"][0].as_f64(),
                b["q50"][0].as_f64(),
                b["q95"][0].as_f64(),
            ) {
                pairs.push((q05, q50, q95, y));
            }
        }
        assert!(pairs.len() >= 5, "{s}: {} pairs", pairs.len());
        let n = pairs.len() as f64;
        let mean = pairs.iter().map(|p| p.3).sum::<f64>() / n;
        let rmse = (pairs.iter().map(|p| (p.1 - p.3).powi(2)).sum::<f64>() / n).sqrt();
        let inside = pairs.iter().filter(|p| p.0 <= p.3 && p.3 <= p.2).count() as f64;
        let a = accuracy.iter().find(|a| a.species == s.name()).unwrap();
        assert_eq!(a.n, pairs.len());
        assert!(
            (a.rrmse - rmse / mean).abs() < 1e-12,
            "{a:?} vs {}",
            rmse / mean
        );
        assert!((a.coverage90 - inside / n).abs() < 1e-12);
        assert!(a.rrmse > 0.0 && a.rrmse.is_finite());
    }
    assert!(
        report
            .to_string()
            .contains("one day ahead (expected next sample")
    );
}
