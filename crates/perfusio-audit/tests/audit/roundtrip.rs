//! Every event kind survives write → read; records carry the documented members and hashes.

use perfusio_audit::canonical::{canonical_sha256, canonical_string, sha256_hex};
use perfusio_audit::event::*;
use perfusio_audit::{
    Actor, AuditError, AuditWriter, Entry, Event, EventKind, EventPayload, GENESIS, Record,
    WriterOptions, read_records, read_verified,
};
use serde_json::json;

use crate::common::{hash_of, one_of_each};

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
            Entry::new(u32::try_from(i).unwrap() * 2, e.clone())
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
        assert_eq!(r.culture_day().unwrap(), u32::try_from(i).unwrap() * 2);
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
        4,
        RunResumed {
            records_found: 0,
            reason: "restart".into(),
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
    use perfusio_core::{DesignSpace, Sample, Setpoints, Species, WriteReceipt};
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
    let written = SetpointWritten::new("virtual", WriteReceipt::all_confirmed(&sp));
    assert!((written.confirmed()["agitation"] - 850.0).abs() < 1e-12);
    let withheld = SetpointWithheld::new(&sp, "write gate closed");
    assert_eq!(withheld.setpoints, written.confirmed());
    assert_eq!(withheld.setpoints, setpoint_map(&sp));
    // All of them are loggable (finite, serialisable).
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) =
        AuditWriter::open(dir.path().join("a.jsonl"), WriterOptions::new("r", "R1")).unwrap();
    for e in [
        Event::SampleRead(read),
        Event::SampleRejected(rejected[0].clone()),
        Event::SetpointWritten(written),
    ] {
        w.append(Entry::new(3, e)).unwrap();
    }
    assert_eq!(w.seq(), 3);
}

/// Decode a record as its payload type and compare with the event written.
fn typed<P: EventPayload + PartialEq + std::fmt::Debug>(
    r: &Record,
    e: &Event,
    wrap: fn(P) -> Event,
) {
    let p: P = r.payload_as().unwrap();
    assert_eq!(&wrap(p), e, "record {}", r.seq);
}

#[test]
fn every_payload_decodes_as_its_type_after_verification() {
    let dir = tempfile::tempdir().unwrap();
    let events = one_of_each();
    let path = crate::common::write_events(dir.path(), "audit.jsonl", &events);
    let (report, records) = read_verified(&path).unwrap();
    assert_eq!(report.records, 15);
    for (r, e) in records.iter().zip(&events) {
        match e.kind() {
            EventKind::RunStarted => typed(r, e, Event::RunStarted),
            EventKind::RunResumed => typed(r, e, Event::RunResumed),
            EventKind::RunFinished => typed(r, e, Event::RunFinished),
            EventKind::SampleRead => typed(r, e, Event::SampleRead),
            EventKind::SampleRejected => typed(r, e, Event::SampleRejected),
            EventKind::ModelRetrained => typed(r, e, Event::ModelRetrained),
            EventKind::Forecast => typed(r, e, Event::Forecast),
            EventKind::Decision => typed(r, e, Event::Decision),
            EventKind::SetpointWritten => typed(r, e, Event::SetpointWritten),
            EventKind::SetpointWithheld => typed(r, e, Event::SetpointWithheld),
            EventKind::Alarm => typed(r, e, Event::Alarm),
            EventKind::ConnectorError => typed(r, e, Event::ConnectorError),
            EventKind::LogRecovered => typed(r, e, Event::LogRecovered),
            EventKind::Custom => typed(r, e, Event::Custom),
            EventKind::OperatorAction => typed(r, e, Event::OperatorAction),
            other => panic!("kind {other} has no case in this test"),
        }
    }
    // Asking for the wrong type names both kinds.
    let err = records[0].payload_as::<Forecast>().unwrap_err();
    assert!(
        matches!(&err, AuditError::KindMismatch { seq: 1, found, expected: "forecast" } if found == "run_started"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "record 1 is a `run_started` record, not `forecast`: check `Record::kind` before \
         decoding, or use `Record::event`"
    );
}

#[test]
fn typed_payloads_have_the_documented_json_shape() {
    let dir = tempfile::tempdir().unwrap();
    let path = crate::common::write_events(dir.path(), "audit.jsonl", &one_of_each());
    let (_, records) = read_verified(&path).unwrap();
    let payload = |kind: &str| {
        records
            .iter()
            .find(|r| r.kind == kind)
            .map(|r| canonical_string(&r.payload))
            .unwrap()
    };
    // The acquisition is written by its canonical name, the estimates as objects.
    let decision = payload("decision");
    assert!(decision.contains(r#""acquisition":"qNEHVI""#), "{decision}");
    assert!(
        decision.contains(r#""hold":{"mean":27.0,"sd":0.0}"#),
        "{decision}"
    );
    assert!(
        decision.contains(r#""probability_feasible":0.875"#),
        "{decision}"
    );
    assert!(decision.contains(r#""horizon_days":3"#), "{decision}");
    // The receipt keeps every control's status and reason.
    let written = payload("setpoint_written");
    assert!(
        written.contains(
            r#"{"control":"agitation","readback":899.5,"reason":"read back 899.5 rpm","requested":900.0,"status":"unconfirmed"}"#
        ),
        "{written}"
    );
    assert!(
        written.contains(
            r#""readback":null,"reason":"BadUserAccessDenied","requested":2.0,"status":"rejected""#
        ),
        "{written}"
    );
    assert!(
        written.contains(r#""timestamp":"2026-11-07T08:00:01.123456789Z""#),
        "{written}"
    );
    // Bands: one value per day ahead; days are integers.
    let forecast = payload("forecast");
    assert!(forecast.contains(r#""days_ahead":[1,28]"#), "{forecast}");
    assert!(
        forecast.contains(r#""from_day":3,"horizon_days":28,"method":"monte_carlo""#),
        "{forecast}"
    );
    assert!(
        forecast.contains(r#""q95":[1.7976931348623157e+308,1.0]"#),
        "{forecast}"
    );
    let retrained = payload("model_retrained");
    assert!(
        retrained.contains(r#""calibrated":{"beta_p":{"std_error":null,"value":2.07e-09},"mu_max":{"std_error":0.0011,"value":0.0432}}"#),
        "{retrained}"
    );
    assert!(retrained.contains(&format!(r#""model_sha256":"{}""#, hash_of("model"))));
    assert!(payload("run_finished").contains(r#""last_day":14"#));
    // The record's own day member is the float form of the u32 day.
    let line = std::fs::read_to_string(&path).unwrap();
    assert!(line.lines().nth(6).unwrap().contains(r#""day":6.0,"#));
}

#[test]
fn optional_members_may_be_absent() {
    // A model_retrained payload without `calibrated`, an alarm without `state` and a rejection
    // without `origin` decode with their defaults.
    let retrained: ModelRetrained = serde_json::from_value(json!({
        "model_sha256": hash_of("m"), "rows": 9, "transitions": 1, "nlml": 3.5,
        "iterations": 10, "evaluations": 12, "converged": false, "termination": "iteration_cap",
        "warm_start": false, "duration_s": 0.5
    }))
    .unwrap();
    assert!(retrained.calibrated.is_empty());
    assert!(!retrained.converged);
    let alarm: Alarm = serde_json::from_value(json!({
        "severity": "warning", "species": "Glc", "value": 1.5, "threshold": 2.0,
        "predicted_day": 12, "message": "low glucose"
    }))
    .unwrap();
    assert_eq!(alarm.state, AlarmState::Raised);
    assert_eq!(alarm.predicted_day, Some(12));
    let rejected: SampleRejected = serde_json::from_value(json!({
        "species": "Lac", "raw": "-1", "reason": "below_bound", "detail": "d"
    }))
    .unwrap();
    assert_eq!(rejected.origin, None);
    // Unknown members are refused.
    let err = serde_json::from_value::<RunFinished>(json!({
        "completed": true, "reason": "completed", "last_day": 3, "extra": 1
    }))
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown field `extra`"), "{err}");
}
