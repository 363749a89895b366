//! Every event kind survives write → read; records carry the documented members and hashes.

use std::collections::BTreeMap;

use perfusio_audit::canonical::{canonical_sha256, canonical_string, sha256_hex};
use perfusio_audit::event::*;
use perfusio_audit::{
    Actor, AuditWriter, Entry, Event, EventKind, GENESIS, WriterOptions, read_records,
    read_verified,
};
use serde_json::json;

fn one_of_each() -> Vec<Event> {
    let m = |pairs: &[(&str, f64)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), *v))
            .collect::<BTreeMap<_, _>>()
    };
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
            reason: "completed".into(),
            last_day: 14.5,
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
        }),
        Event::ModelRetrained(ModelRetrained {
            observations: 12,
            fit_summary: m(&[
                ("log_marginal_likelihood", -101.25),
                ("noise_variance", 5e-324),
            ]),
            duration_s: 0.1,
        }),
        Event::Forecast(Forecast {
            from_day: 3.0,
            horizon_days: 2,
            level: 0.9,
            mean: BTreeMap::from([("Titer".into(), vec![123456789.0, 0.30000000000000004])]),
            lower: BTreeMap::from([("Titer".into(), vec![1.0, -0.0])]),
            upper: BTreeMap::from([("Titer".into(), vec![1e16, 1.7976931348623157e308])]),
        }),
        Event::Decision(Decision {
            controls: m(&[("perfusion_rate", 1.25), ("temperature", 36.5)]),
            acquisition: "log_ei".into(),
            acquisition_value: -3.5,
            predicted_objective: 29.75,
        }),
        Event::SetpointWritten(SetpointWritten {
            connector: "opcua".into(),
            setpoints: m(&[("bleed_rate", 0.15)]),
        }),
        Event::SetpointWithheld(SetpointWithheld {
            setpoints: m(&[("agitation", 850.0)]),
            reason: "write gate closed".into(),
        }),
        Event::Alarm(Alarm {
            severity: Severity::Critical,
            species: Some("Amm".into()),
            value: Some(12.5),
            threshold: Some(10.0),
            predicted_day: None,
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
    ];
    // The list must cover every kind exactly once.
    let kinds: Vec<EventKind> = events.iter().map(Event::kind).collect();
    assert_eq!(kinds, EventKind::ALL.to_vec());
    events
}

#[test]
fn every_event_kind_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let events = one_of_each();
    let (mut w, _) = AuditWriter::open(&path, WriterOptions::new("run-rt", "R1")).unwrap();
    for (i, e) in events.iter().enumerate() {
        let actor = if i % 2 == 0 {
            Actor::System
        } else {
            Actor::operator("bob").unwrap()
        };
        w.append(
            Entry::new(i as f64 * 0.5, e.clone())
                .by(actor)
                .reactor(format!("R{i}")),
        )
        .unwrap();
    }
    drop(w);
    let (report, records) = read_verified(&path).unwrap();
    assert_eq!(report.records, events.len() as u64);
    assert_eq!(records.len(), events.len());
    let mut prev = GENESIS.to_string();
    for (i, (r, e)) in records.iter().zip(&events).enumerate() {
        assert_eq!(&r.event().unwrap(), e, "record {}", i + 1);
        assert_eq!(r.kind, e.kind().as_str());
        assert_eq!(r.seq, i as u64 + 1);
        assert_eq!(r.reactor_id, format!("R{i}"));
        assert_eq!(r.run_id, "run-rt");
        assert!((r.day - i as f64 * 0.5).abs() < 1e-12);
        assert_eq!(
            r.actor,
            if i % 2 == 0 {
                Actor::System
            } else {
                Actor::Operator("bob".into())
            }
        );
        // state_sha256 defaults to the hash of the canonical payload.
        assert_eq!(
            r.state_sha256,
            sha256_hex(canonical_string(&r.payload).as_bytes())
        );
        assert_eq!(r.prev, prev);
        assert_eq!(r.hash, r.compute_hash());
        // The fast line writer and the generic canonical form agree byte for byte.
        let line = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .nth(i)
            .unwrap()
            .to_string();
        assert_eq!(r.to_line(), line);
        assert!(r.timestamp().is_ok());
        prev.clone_from(&r.hash);
    }
    // The untyped iterator reads the same records.
    let again: Vec<_> = read_records(&path).unwrap().map(Result::unwrap).collect();
    assert_eq!(again, records);
}

#[test]
fn explicit_state_hash_and_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let model_state = json!({"lengthscales": [0.5, 2.0], "noise": 0.01});
    let t = time::macros::datetime!(2026-11-25 10:00:00.5 UTC);
    let (mut w, _) = AuditWriter::open(&path, WriterOptions::new("r", "R1")).unwrap();
    let entry = Entry::new(
        4.0,
        ModelRetrained {
            observations: 4,
            fit_summary: BTreeMap::new(),
            duration_s: 1.5,
        },
    )
    .with_state(&model_state)
    .unwrap()
    .at(t);
    w.append(entry).unwrap();
    drop(w);
    let (_, recs) = read_verified(&path).unwrap();
    assert_eq!(
        recs[0].state_sha256,
        canonical_sha256(&model_state).unwrap()
    );
    assert_eq!(
        recs[0].state_sha256,
        sha256_hex(br#"{"lengthscales":[0.5,2.0],"noise":0.01}"#)
    );
    assert_eq!(recs[0].ts, "2026-11-25T10:00:00.500000Z");
    assert_eq!(recs[0].timestamp().unwrap(), t);
}

#[test]
fn unknown_kind_is_readable_but_not_typed() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = crate::common::write_demo(dir.path(), "a.jsonl", 3, 1);
    let first = crate::common::lines(&path).remove(0);
    let mut r =
        perfusio_audit::Record::from_line(std::str::from_utf8(&first).unwrap().trim_end()).unwrap();
    assert_eq!(r.event().unwrap().kind(), EventKind::RunStarted);
    r.kind = "from_the_future".into();
    assert!(
        matches!(r.event(), Err(perfusio_audit::AuditError::UnknownKind(k)) if k == "from_the_future")
    );
}

#[test]
fn payloads_from_core_types() {
    use perfusio_core::{DesignSpace, Sample, Setpoints, Species};
    let sample = Sample::new(3)
        .with(Species::Glc, 4.5)
        .with(Species::Lac, -0.4)
        .with(Species::VCD, f64::NAN);
    let validated = sample.validate(&DesignSpace::default());
    let rejected: Vec<SampleRejected> = validated
        .rejections
        .iter()
        .map(SampleRejected::from)
        .collect();
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    let lac = rejected.iter().find(|r| r.species == "Lac").unwrap();
    assert_eq!(
        (lac.raw.as_str(), lac.reason.as_str()),
        ("-0.4", "below_bound")
    );
    let vcd = rejected.iter().find(|r| r.species == "VCD").unwrap();
    assert_eq!(
        (vcd.raw.as_str(), vcd.reason.as_str()),
        ("NaN", "non_finite")
    );
    let read = SampleRead::from_sample(&validated.sample, "virtual");
    assert_eq!(read.values["Glc"], Some(4.5));
    assert_eq!(read.values["Lac"], None);
    let sp = Setpoints::defaults(3);
    let written = SetpointWritten::new("virtual", &sp);
    assert!((written.setpoints["agitation"] - 850.0).abs() < 1e-12);
    let withheld = SetpointWithheld::new(&sp, "write gate closed");
    assert_eq!(withheld.setpoints, written.setpoints);
    // All of them are loggable (finite, serialisable).
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) =
        AuditWriter::open(dir.path().join("a.jsonl"), WriterOptions::new("r", "R1")).unwrap();
    for e in [
        Event::SampleRead(read),
        Event::SampleRejected(rejected[0].clone()),
        Event::SetpointWritten(written),
    ] {
        w.append(Entry::new(3.0, e)).unwrap();
    }
    assert_eq!(w.seq(), 3);
}
