//! Crash-safe resume: a run interrupted at a day boundary (cancellation) or in the middle
//! of a day (the log cut after the forecast, a torn last line: what `kill -9` leaves) and
//! then resumed ends with exactly the setpoints and plant state of an uninterrupted run, a
//! log whose chain verifies, and every day done once.

use std::io::Write;
use std::sync::Arc;

use perfusio_core::{ControlArray, CultureDay, SpeciesArray};
use perfusio_twin::prelude::*;
use perfusio_twin::{DayRecord, RunReport};

use crate::common::{kinds, quick_config, records, virtual_reactor};

const DAYS: u32 = 7;
const SEED: u64 = 31;

fn cfg() -> RunConfig {
    RunConfig {
        allow_write: true,
        ..quick_config(DAYS, SEED)
    }
}

/// Cancels the run once day `at` is complete.
#[derive(Debug)]
struct CancelAfter {
    at: CultureDay,
    token: CancelToken,
}

impl Observer for CancelAfter {
    fn day_completed(&self, day: &DayRecord) {
        if day.day == self.at {
            self.token.cancel();
        }
    }
}

type Outcome = (Vec<(CultureDay, ControlArray<f64>)>, Vec<SpeciesArray<f64>>);

async fn run(
    audit: &std::path::Path,
    resume: bool,
    cancel_after: Option<CultureDay>,
) -> (RunReport, Outcome) {
    let plant = Arc::new(virtual_reactor(SEED));
    let mut b = DigitalTwin::builder_shared(plant.clone(), DEFAULT_AMBR250_DESIGN_SPACE, cfg())
        .audit_path(audit)
        .resume(resume);
    if let Some(at) = cancel_after {
        let token = CancelToken::new();
        b = b
            .cancel_token(token.clone())
            .observer(CancelAfter { at, token });
    }
    let report = b.build().unwrap().run().await.unwrap();
    let states = plant.snapshot().unwrap().clean_history().to_vec();
    let applied = report.applied();
    (report, (applied, states))
}

/// Every complete day has one terminal record, and the days are 0..DAYS in order.
fn one_terminal_record_per_day(audit: &std::path::Path) {
    let recs = records(audit);
    let terminal: Vec<f64> = recs
        .iter()
        .filter(|r| r.kind == "setpoint_written" || r.kind == "setpoint_withheld")
        .map(|r| r.day)
        .collect();
    let expect: Vec<f64> = (0..DAYS).map(f64::from).collect();
    assert_eq!(terminal, expect);
    let k = kinds(&recs);
    assert_eq!(k.iter().filter(|x| **x == "run_started").count(), 1);
    assert_eq!(k.iter().filter(|x| **x == "run_resumed").count(), 1);
    assert_eq!(k.last(), Some(&"run_finished"));
}

fn assert_same(a: &Outcome, b: &Outcome) {
    assert_eq!(a.0.len(), DAYS as usize);
    assert_eq!(a.0, b.0, "applied setpoints differ");
    assert_eq!(a.1.len(), b.1.len());
    for (day, (x, y)) in a.1.iter().zip(&b.1).enumerate() {
        for k in 0..x.len() {
            assert!(
                x[k].to_bits() == y[k].to_bits(),
                "plant state of day {day} differs: {x:?} vs {y:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cancelled_and_resumed_ends_like_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let (_, reference) = run(&dir.path().join("a.jsonl"), false, None).await;
    let audit = dir.path().join("b.jsonl");
    let (first, _) = run(&audit, false, Some(2)).await;
    assert!(!first.completed);
    assert_eq!((first.reason.as_str(), first.last_day), ("cancelled", 2));
    let (second, resumed) = run(&audit, true, None).await;
    assert!(second.completed, "{}", second.reason);
    assert_eq!(second.resumed_at, Some(3));
    // the report covers the whole run from day 0
    assert_eq!(second.days.first().map(|d| d.day), Some(0));
    assert_eq!(second.days.len(), DAYS as usize + 1);
    assert_same(&reference, &resumed);
    one_terminal_record_per_day(&audit);
    let recs = records(&audit);
    let reads: Vec<f64> = recs
        .iter()
        .filter(|r| r.kind == "sample_read")
        .map(|r| r.day)
        .collect();
    assert_eq!(reads, (0..=DAYS).map(f64::from).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_in_the_middle_of_a_day_resumes_to_the_same_end() {
    let dir = tempfile::tempdir().unwrap();
    let (_, reference) = run(&dir.path().join("a.jsonl"), false, None).await;
    // the log of a process killed on day 3 after its forecast, in the middle of a write
    let full = dir.path().join("full.jsonl");
    run(&full, false, None).await;
    let text = std::fs::read_to_string(&full).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let cut = lines
        .iter()
        .position(|l| l.contains("\"kind\":\"forecast\"") && l.contains("\"day\":3.0,"))
        .expect("a forecast record of day 3");
    let audit = dir.path().join("b.jsonl");
    let mut f = std::fs::File::create(&audit).unwrap();
    for l in &lines[..=cut] {
        writeln!(f, "{l}").unwrap();
    }
    let torn = lines[cut + 1];
    f.write_all(&torn.as_bytes()[..torn.len() / 2]).unwrap();
    drop(f);

    let (report, resumed) = run(&audit, true, None).await;
    assert!(report.completed, "{}", report.reason);
    assert_eq!(report.resumed_at, Some(3));
    assert_same(&reference, &resumed);
    one_terminal_record_per_day(&audit);
    // the torn line was quarantined and recorded, the chain continues over it
    let recs = records(&audit);
    let k = kinds(&recs);
    assert!(k.contains(&"log_recovered"), "{k:?}");
}
