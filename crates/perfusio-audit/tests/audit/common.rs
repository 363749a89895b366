//! Shared fixtures.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use perfusio_audit::canonical::sha256_hex;
use perfusio_audit::event::*;
use perfusio_audit::{AuditWriter, Event, EventKind, FsyncPolicy, Receipt, WriterOptions, demo};
use perfusio_core::{Acquisition, Control, ControlReceipt, WriteReceipt, WriteStatus};
use serde_json::json;

/// Write the demo run of `n` records (seed `seed`) to `dir/name` without per-record fsync.
pub(crate) fn write_demo(dir: &Path, name: &str, n: usize, seed: u64) -> (PathBuf, Vec<Receipt>) {
    let path = dir.join(name);
    let opts = WriterOptions::new(format!("run-{seed}"), "R1").fsync(FsyncPolicy::Never);
    let (mut w, report) = AuditWriter::open(&path, opts).unwrap();
    assert_eq!(report.records_found, 0);
    let receipts = demo::simulated_run(n, seed)
        .into_iter()
        .map(|e| w.append(e).unwrap())
        .collect();
    w.close().unwrap();
    (path, receipts)
}

/// The lines of a file including their newlines.
pub(crate) fn lines(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    bytes
        .split_inclusive(|b| *b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

/// Concatenate lines.
pub(crate) fn join(lines: &[Vec<u8>]) -> Vec<u8> {
    lines.concat()
}

/// Map from `(name, value)` pairs.
pub(crate) fn map(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs.iter().map(|(k, v)| ((*k).to_string(), *v)).collect()
}

/// A SHA-256 hex string that is easy to recognise.
pub(crate) fn hash_of(text: &str) -> String {
    sha256_hex(text.as_bytes())
}

/// A forecast with awkward numbers (large, tiny, negative zero, the largest double).
pub(crate) fn forecast() -> Forecast {
    Forecast {
        from_day: 3,
        horizon_days: 28,
        method: ForecastMethod::MonteCarlo,
        paths: 256,
        model_sha256: hash_of("model"),
        forecast_sha256: hash_of("forecast"),
        days_ahead: vec![1, 28],
        bands: BTreeMap::from([
            (
                "Titer".into(),
                SpeciesBands {
                    mean: vec![123456789.0, 0.30000000000000004],
                    q05: vec![-0.0, 1e-7],
                    q10: vec![0.0, 2.5e-5],
                    q50: vec![1.0, 0.25],
                    q90: vec![1e16, 1.0],
                    q95: vec![1.7976931348623157e308, 1.0],
                },
            ),
            (
                "Glc".into(),
                SpeciesBands::from_normal(&[4.5, 2.0], &[0.25, 0.75], 0.0),
            ),
        ]),
    }
}

/// A receipt with one control of each status.
pub(crate) fn receipt() -> WriteReceipt {
    WriteReceipt {
        day: 5,
        controls: vec![
            ControlReceipt {
                control: Control::PerfusionRate,
                requested: 1.25,
                readback: Some(1.25),
                status: WriteStatus::Confirmed,
            },
            ControlReceipt {
                control: Control::Agitation,
                requested: 900.0,
                readback: Some(899.5),
                status: WriteStatus::Unconfirmed {
                    reason: "read back 899.5 rpm".into(),
                },
            },
            ControlReceipt {
                control: Control::PyruvateFeed,
                requested: 2.0,
                readback: None,
                status: WriteStatus::Rejected {
                    reason: "BadUserAccessDenied".into(),
                },
            },
        ],
        timestamp: Some(time::macros::datetime!(2026-11-07 08:00:01.123456789 UTC)),
    }
}

/// One event of every kind, in the order of `EventKind::ALL`, with awkward values.
pub(crate) fn one_of_each() -> Vec<Event> {
    let events = vec![
        Event::RunStarted(RunStarted {
            software: "perfusio 0.1.0".into(),
            seed: Some(42),
            settings: BTreeMap::from([("retrain_every".into(), json!(1))]),
        }),
        Event::RunResumed(RunResumed {
            records_found: 17,
            reason: "process restart".into(),
        }),
        Event::RunFinished(RunFinished {
            completed: false,
            reason: "cancelled by operator".into(),
            last_day: 14,
        }),
        Event::SampleRead(SampleRead {
            source: "virtual".into(),
            values: BTreeMap::from([
                ("Glc".into(), Some(4.25)),
                ("Pyr".into(), None),
                ("VCD".into(), Some(1e-7)),
            ]),
        }),
        Event::SampleRejected(SampleRejected {
            species: "Via".into(),
            raw: "NaN".into(),
            reason: "non_finite".into(),
            detail: "viability was not a number".into(),
            origin: Some("data.csv line 7, column viability".into()),
        }),
        Event::ModelRetrained(ModelRetrained {
            model_sha256: hash_of("model"),
            rows: 243,
            transitions: 27,
            nlml: -101.25,
            iterations: 61,
            evaluations: 74,
            converged: true,
            termination: "gradient_tolerance".into(),
            warm_start: true,
            duration_s: 0.0125,
            calibrated: BTreeMap::from([
                (
                    "mu_max".into(),
                    CalibratedParameter {
                        value: 0.0432,
                        std_error: Some(0.0011),
                    },
                ),
                (
                    "beta_p".into(),
                    CalibratedParameter {
                        value: 2.07e-9,
                        std_error: None,
                    },
                ),
            ]),
            pathways: BTreeMap::from([("consumes_lactate".into(), false)]),
        }),
        Event::Forecast(forecast()),
        Event::Decision(Decision {
            controls: map(&[("perfusion_rate", 1.25), ("temperature", 36.5)]),
            acquisition: Acquisition::QNEHVI,
            acquisition_value: -3.5,
            objective: "harvest".into(),
            recommended: ObjectiveEstimate {
                mean: 29.75,
                sd: 1.5,
            },
            hold: ObjectiveEstimate {
                mean: 27.0,
                sd: 0.0,
            },
            probability_feasible: 0.875,
            reason: "raise perfusion: glucose forecast below 2 g/L by day 12".into(),
            elapsed_s: 0.0625,
            horizon_days: Some(3),
            objectives: Vec::new(),
            next_sample: Default::default(),
        }),
        Event::SetpointWritten(SetpointWritten::new("opcua", receipt())),
        Event::SetpointWithheld(SetpointWithheld {
            setpoints: map(&[("agitation", 850.0)]),
            reason: "write gate closed".into(),
        }),
        Event::Alarm(Alarm {
            severity: Severity::Critical,
            state: AlarmState::Cleared,
            species: Some("Amm".into()),
            value: Some(12.5),
            threshold: Some(10.0),
            predicted_day: Some(17),
            message: "ammonium \"high\"\n".into(),
        }),
        Event::ConnectorError(ConnectorError {
            connector: "opcua".into(),
            operation: "write_setpoints".into(),
            message: "BadConnectionClosed".into(),
            retryable: true,
        }),
        Event::LogRecovered(LogRecovered {
            quarantine_file: "audit.jsonl.torn-3".into(),
            bytes: 10,
            sha256: sha256_hex(b"0123456789"),
            last_valid_seq: 2,
        }),
        Event::Custom(Custom {
            name: "note".into(),
            data: json!({"text": "héllo ✓", "n": [1, 2.5, null]}),
        }),
        Event::OperatorAction(OperatorAction {
            action_id: "ana-1".into(),
            action: "edit".into(),
            requested_at: "2026-11-07T08:00:00Z".into(),
            accepted: false,
            reason: "perfusion_rate 9 is outside the design space [0.5, 2]".into(),
            values: map(&[("perfusion_rate", 9.0)]),
            before: map(&[("perfusion_rate", 1.0)]),
            after: BTreeMap::new(),
        }),
    ];
    // The list must cover every kind exactly once.
    let kinds: Vec<EventKind> = events.iter().map(Event::kind).collect();
    assert_eq!(kinds, EventKind::ALL.to_vec());
    events
}

/// Write `events` to `dir/name`, event `i` on day `i`; returns the path.
pub(crate) fn write_events(dir: &Path, name: &str, events: &[Event]) -> PathBuf {
    let path = dir.join(name);
    let (mut w, _) = AuditWriter::open(&path, WriterOptions::new("run-rt", "R1")).unwrap();
    for (i, e) in events.iter().enumerate() {
        w.append(perfusio_audit::Entry::new(
            u32::try_from(i).unwrap(),
            e.clone(),
        ))
        .unwrap();
    }
    w.close().unwrap();
    path
}
