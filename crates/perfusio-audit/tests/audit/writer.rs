//! Writer behaviour: resume, torn-tail recovery, refusal of corrupt logs, input checks, fsync
//! policies.

use std::num::NonZeroU32;
use std::time::Duration;

use perfusio_audit::canonical::sha256_hex;
use perfusio_audit::event::{Custom, LogRecovered, RunResumed, SampleRead};
use perfusio_audit::{
    AuditError, AuditWriter, Entry, Event, FsyncPolicy, TamperKind, VerifyOptions, WriterOptions,
    read_verified, verify_file,
};
use serde_json::json;

use crate::common::{join, lines, write_demo};

fn note(i: u64) -> Entry {
    Entry::new(
        1,
        Event::Custom(Custom {
            name: "note".into(),
            data: json!({ "i": i }),
        }),
    )
}

#[test]
fn reopening_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (path, receipts) = write_demo(dir.path(), "a.jsonl", 25, 20);
    let (mut w, report) = AuditWriter::open(&path, WriterOptions::new("run-20", "R1")).unwrap();
    assert_eq!(report.records_found, 25);
    assert_eq!(report.head, receipts[24].hash);
    assert!(report.torn_tail.is_none());
    assert_eq!(w.seq(), 25);
    let r = w
        .append(Entry::new(
            7,
            RunResumed {
                records_found: 25,
                reason: "process restart".into(),
            },
        ))
        .unwrap();
    assert_eq!(r.seq, 26);
    drop(w);
    let (rep, recs) = read_verified(&path).unwrap();
    assert_eq!(rep.records, 26);
    assert_eq!(recs[25].prev, receipts[24].hash);
    // Bytes written before the reopen are unchanged.
    let before = join(&lines(&path)[..25]);
    let original: Vec<u8> = std::fs::read(&path).unwrap()[..before.len()].to_vec();
    assert_eq!(before, original);
}

#[test]
fn torn_tail_is_quarantined_reported_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let (path, receipts) = write_demo(dir.path(), "audit.jsonl", 20, 21);
    let complete = std::fs::read(&path).unwrap();
    // Simulate a crash in the middle of writing record 21.
    let partial = br#"{"actor":"system","day":9.0,"hash":"ab12"#.to_vec();
    let mut torn = complete.clone();
    torn.extend_from_slice(&partial);
    std::fs::write(&path, &torn).unwrap();
    let err = verify_file(&path, &VerifyOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("torn tail"), "{err}");

    let (mut w, report) = AuditWriter::open(&path, WriterOptions::new("run-21", "R1")).unwrap();
    assert_eq!(report.records_found, 20);
    let quarantine = match report.torn_tail {
        Some(AuditError::TornTail {
            quarantine,
            bytes,
            last_valid_seq,
            sha256,
            ..
        }) => {
            assert_eq!(bytes, partial.len() as u64);
            assert_eq!(last_valid_seq, 20);
            assert_eq!(sha256, sha256_hex(&partial));
            quarantine
        }
        other => panic!("expected a torn-tail report, got {other:?}"),
    };
    assert_eq!(quarantine, dir.path().join("audit.jsonl.torn-21"));
    assert_eq!(std::fs::read(&quarantine).unwrap(), partial);
    w.append(note(1)).unwrap();
    drop(w);

    let (rep, recs) = read_verified(&path).unwrap();
    assert_eq!(rep.records, 22);
    // Every complete record is kept byte for byte.
    assert_eq!(
        &std::fs::read(&path).unwrap()[..complete.len()],
        complete.as_slice()
    );
    assert_eq!(recs[19].hash, receipts[19].hash);
    assert_eq!(
        recs[20].event().unwrap(),
        Event::LogRecovered(LogRecovered {
            quarantine_file: "audit.jsonl.torn-21".into(),
            bytes: partial.len() as u64,
            sha256: sha256_hex(&partial),
            last_valid_seq: 20,
        })
    );
    assert_eq!(recs[20].prev, receipts[19].hash);

    // A second crash at the same place does not overwrite the first quarantine file.
    let mut again = std::fs::read(&path).unwrap();
    let before = again.len();
    again.extend_from_slice(b"{\"x");
    std::fs::write(&path, &again).unwrap();
    let (_, report) = AuditWriter::open(&path, WriterOptions::new("run-21", "R1")).unwrap();
    assert!(matches!(
        report.torn_tail,
        Some(AuditError::TornTail {
            last_valid_seq: 22,
            ..
        })
    ));
    assert_eq!(
        std::fs::read(dir.path().join("audit.jsonl.torn-23")).unwrap(),
        b"{\"x"
    );
    assert_eq!(std::fs::read(&quarantine).unwrap(), partial);
    assert_eq!(
        verify_file(&path, &VerifyOptions::default())
            .unwrap()
            .records,
        23
    );
    assert!(std::fs::read(&path).unwrap().len() > before);
}

#[test]
fn corrupt_log_is_refused_naming_the_first_bad_record() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_demo(dir.path(), "a.jsonl", 15, 22);
    let mut ls = lines(&path);
    ls.remove(6);
    std::fs::write(&path, join(&ls)).unwrap();
    let len_before = std::fs::metadata(&path).unwrap().len();
    match AuditWriter::open(&path, WriterOptions::new("run-22", "R1")) {
        Err(AuditError::Corrupt { failure, .. }) => {
            assert_eq!((failure.kind, failure.seq), (TamperKind::Deleted, 7));
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        len_before,
        "a refused log is not touched"
    );
}

#[test]
fn other_runs_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_demo(dir.path(), "a.jsonl", 3, 23);
    let err = AuditWriter::open(&path, WriterOptions::new("another-run", "R1")).unwrap_err();
    assert!(
        matches!(&err, AuditError::RunMismatch { found, expected, .. } if found == "run-23" && expected == "another-run")
    );
}

#[test]
fn non_finite_values_are_rejected_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let (mut w, _) = AuditWriter::open(&path, WriterOptions::new("r", "R1")).unwrap();
    let values = [("Glc".to_string(), Some(f64::NAN))].into_iter().collect();
    let err = w
        .append(Entry::new(
            1,
            SampleRead {
                source: "s".into(),
                values,
            },
        ))
        .unwrap_err();
    assert!(
        matches!(&err, AuditError::NonFinite { path, value } if path == "payload.values.Glc" && value.is_nan()),
        "{err}"
    );
    assert_eq!(w.seq(), 0);
    drop(w);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
}

#[test]
fn fsync_policies_write_valid_logs() {
    let dir = tempfile::tempdir().unwrap();
    let policies = [
        FsyncPolicy::EveryRecord,
        FsyncPolicy::EveryN(NonZeroU32::new(7).unwrap()),
        FsyncPolicy::Interval(Duration::from_millis(5)),
        FsyncPolicy::Never,
    ];
    for (k, p) in policies.into_iter().enumerate() {
        let path = dir.path().join(format!("p{k}.jsonl"));
        let (mut w, _) = AuditWriter::open(&path, WriterOptions::new("r", "R1").fsync(p)).unwrap();
        assert_eq!(w.fsync_policy(), p);
        for i in 0..30 {
            w.append(note(i)).unwrap();
        }
        let head = w.close().unwrap();
        assert_eq!(head.seq, 30);
        let rep = verify_file(
            &path,
            &VerifyOptions {
                expect_head: Some(head.hash),
            },
        )
        .unwrap();
        assert_eq!(rep.records, 30);
    }
    let err = AuditWriter::open(
        dir.path().join("z.jsonl"),
        WriterOptions::new("r", "R1").fsync(FsyncPolicy::Interval(Duration::ZERO)),
    )
    .unwrap_err();
    assert!(matches!(err, AuditError::InvalidOption(_)));
}

#[test]
fn public_types_are_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<AuditWriter>();
    check::<perfusio_audit::AuditHandle>();
    check::<AuditError>();
    check::<perfusio_audit::Record>();
    check::<Entry>();
    fn clone<T: Clone>() {}
    clone::<perfusio_audit::AuditHandle>();
    clone::<Entry>();
}
