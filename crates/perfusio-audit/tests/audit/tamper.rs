//! Verification of intact logs and detection of each kind of tampering at the right record.

use perfusio_audit::{
    AuditError, GENESIS, Record, TamperKind, VerifyFailure, VerifyOptions, verify_bytes,
    verify_file,
};

use crate::common::{join, lines, write_demo};

fn fail_of(bytes: &[u8]) -> VerifyFailure {
    verify_bytes(bytes, &VerifyOptions::default()).unwrap_err()
}

/// Re-serialise a line after changing it, recomputing its own hash (a careful forger).
fn forge(line: &[u8], change: impl FnOnce(&mut Record)) -> Vec<u8> {
    let mut r = Record::from_line(std::str::from_utf8(line).unwrap().trim_end()).unwrap();
    change(&mut r);
    r.hash = r.compute_hash();
    let mut out = r.to_line().into_bytes();
    out.push(b'\n');
    out
}

#[test]
fn ten_thousand_records_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (path, receipts) = write_demo(dir.path(), "big.jsonl", 10_000, 3);
    let head = receipts.last().unwrap().hash.clone();
    let report = verify_file(&path, &VerifyOptions::default()).unwrap();
    assert_eq!(report.records, 10_000);
    assert_eq!(report.head, head);
    assert!(report.finished);
    assert!(!report.possibly_truncated());
    let with_head = verify_file(
        &path,
        &VerifyOptions {
            expect_head: Some(head.to_uppercase()),
        },
    )
    .unwrap();
    assert!(with_head.head_checked);
    assert!(
        with_head
            .to_string()
            .starts_with(&format!("OK 10000 records, head hash {head}"))
    );
    // Large logs are checked on several threads: failures still land on the right record.
    let mut ls = lines(&path);
    ls.remove(6999);
    ls[8000][40] ^= 1;
    let f = fail_of(&join(&ls));
    assert_eq!(
        (f.kind, f.seq, f.line),
        (TamperKind::Deleted, 7000, 7000),
        "{f}"
    );
    let mut ls = lines(&path);
    ls[8000][40] ^= 1;
    let f = fail_of(&join(&ls));
    assert_eq!((f.seq, f.line), (8001, 8001), "{f}");
}

#[test]
fn empty_log_is_valid_with_genesis_head() {
    let r = verify_bytes(b"", &VerifyOptions::default()).unwrap();
    assert_eq!(
        (r.records, r.head.as_str(), r.finished),
        (0, GENESIS, false)
    );
}

#[test]
fn edited_record_detected_at_its_seq() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_demo(dir.path(), "a.jsonl", 50, 4);
    let mut ls = lines(&path);
    // Edit a value in record 20 without touching its hash.
    let text = String::from_utf8(ls[19].clone()).unwrap();
    let edited = text.replacen("\"day\":", "\"day\":1", 1);
    assert_ne!(edited, text);
    ls[19] = edited.into_bytes();
    let f = fail_of(&join(&ls));
    assert_eq!((f.kind, f.seq, f.line), (TamperKind::Edited, 20, 20), "{f}");

    // A careful forger recomputes record 20's own hash: record 21's prev no longer matches.
    let mut ls = lines(&path);
    ls[19] = forge(&ls[19], |r| r.reactor_id = "R9".into());
    let f = fail_of(&join(&ls));
    assert_eq!((f.kind, f.seq), (TamperKind::Edited, 21), "{f}");
    assert!(f.detail.contains("record 20"), "{f}");
}

#[test]
fn deleted_record_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_demo(dir.path(), "a.jsonl", 40, 5);
    let mut ls = lines(&path);
    ls.remove(11); // record 12
    let f = fail_of(&join(&ls));
    assert_eq!((f.kind, f.seq), (TamperKind::Deleted, 12), "{f}");
    // Deleting the first record.
    let mut ls = lines(&path);
    ls.remove(0);
    let f = fail_of(&join(&ls));
    assert_eq!((f.kind, f.seq), (TamperKind::Deleted, 1), "{f}");
    // Deleting three records.
    let mut ls = lines(&path);
    ls.drain(29..32);
    let f = fail_of(&join(&ls));
    assert_eq!((f.kind, f.seq), (TamperKind::Deleted, 30), "{f}");
    assert!(f.detail.contains("30 to 32"), "{f}");
}

#[test]
fn inserted_record_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_demo(dir.path(), "a.jsonl", 40, 6);
    let (other, _) = write_demo(dir.path(), "b.jsonl", 40, 7);
    // A record from another log, renumbered to fit, inserted before record 15.
    let mut ls = lines(&path);
    let alien = forge(&lines(&other)[14], |_| {});
    ls.insert(14, alien);
    let f = fail_of(&join(&ls));
    assert_eq!(
        (f.kind, f.seq, f.line),
        (TamperKind::Inserted, 15, 15),
        "{f}"
    );
    // A forged record that links correctly to record 14 and claims seq 15: the real record 15
    // then appears as a second, different record 15.
    let mut ls = lines(&path);
    let head14 = Record::from_line(std::str::from_utf8(&ls[13]).unwrap().trim_end())
        .unwrap()
        .hash;
    let forged = forge(&ls[14], |r| {
        r.prev.clone_from(&head14);
        r.actor = perfusio_audit::Actor::Operator("mallory".into());
    });
    ls.insert(14, forged);
    let f = fail_of(&join(&ls));
    assert_eq!(
        (f.kind, f.seq, f.line),
        (TamperKind::Inserted, 15, 16),
        "{f}"
    );
}

#[test]
fn duplicated_record_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_demo(dir.path(), "a.jsonl", 30, 8);
    let mut ls = lines(&path);
    let copy = ls[9].clone(); // record 10
    ls.insert(10, copy);
    let f = fail_of(&join(&ls));
    assert_eq!(
        (f.kind, f.seq, f.line),
        (TamperKind::Duplicated, 10, 11),
        "{f}"
    );
    // A duplicate of an older record further down.
    let mut ls = lines(&path);
    let copy = ls[2].clone();
    ls.insert(20, copy);
    let f = fail_of(&join(&ls));
    assert_eq!(
        (f.kind, f.seq, f.line),
        (TamperKind::Duplicated, 3, 21),
        "{f}"
    );
}

#[test]
fn reordered_records_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_demo(dir.path(), "a.jsonl", 30, 9);
    let mut ls = lines(&path);
    ls.swap(16, 17); // records 17 and 18
    let f = fail_of(&join(&ls));
    assert_eq!(
        (f.kind, f.seq, f.line),
        (TamperKind::Reordered, 17, 17),
        "{f}"
    );
    assert!(f.detail.contains("line 18"), "{f}");
}

#[test]
fn malformed_lines_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_demo(dir.path(), "a.jsonl", 20, 10);
    type Change = Box<dyn Fn(&[u8]) -> Vec<u8>>;
    let cases: Vec<(usize, Change)> = vec![
        (4, Box::new(|_| b"not json\n".to_vec())),
        (5, Box::new(|_| b"\n".to_vec())),
        // Valid JSON, same content, but with whitespace: not canonical.
        (
            6,
            Box::new(|l| {
                let v: serde_json::Value = serde_json::from_slice(l).unwrap();
                let mut s = serde_json::to_string_pretty(&v).unwrap().replace('\n', " ");
                s.push('\n');
                s.into_bytes()
            }),
        ),
        // A member removed (and the hash recomputed cannot help: the schema is fixed).
        (
            7,
            Box::new(|l| {
                let mut v: serde_json::Value = serde_json::from_slice(l).unwrap();
                v.as_object_mut().unwrap().remove("actor");
                let mut s = perfusio_audit::canonical::canonical_string(&v);
                s.push('\n');
                s.into_bytes()
            }),
        ),
        // Windows line ending.
        (
            8,
            Box::new(|l| {
                let mut x = l[..l.len() - 1].to_vec();
                x.extend_from_slice(b"\r\n");
                x
            }),
        ),
    ];
    for (idx, change) in cases {
        let mut ls = lines(&path);
        ls[idx] = change(&ls[idx]);
        let f = fail_of(&join(&ls));
        assert_eq!(
            (f.kind, f.seq, f.line),
            (TamperKind::Malformed, idx as u64 + 1, idx as u64 + 1),
            "{f}"
        );
    }
}

#[test]
fn wrong_genesis_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_demo(dir.path(), "a.jsonl", 10, 11);
    let mut ls = lines(&path);
    ls[0] = forge(&ls[0], |r| r.prev = "1".repeat(64));
    let f = fail_of(&join(&ls));
    assert_eq!(
        (f.kind, f.seq, f.line),
        (TamperKind::WrongGenesis, 1, 1),
        "{f}"
    );
}

#[test]
fn torn_tail_and_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let (path, receipts) = write_demo(dir.path(), "a.jsonl", 30, 12);
    let bytes = std::fs::read(&path).unwrap();
    // A final line without newline.
    let f = fail_of(&bytes[..bytes.len() - 10]);
    assert_eq!((f.kind, f.seq), (TamperKind::TornTail, 30), "{f}");

    // Whole records cut off the end: the chain is intact, but the run has no run_finished
    // record, so it is reported as possibly truncated ...
    let ls = lines(&path);
    let cut = join(&ls[..25]);
    let r = verify_bytes(&cut, &VerifyOptions::default()).unwrap();
    assert_eq!(r.records, 25);
    assert!(r.possibly_truncated());
    assert!(r.to_string().contains("may have been cut off"));
    // ... and an expected head proves it.
    let full_head = receipts.last().unwrap().hash.clone();
    let f = verify_bytes(
        &cut,
        &VerifyOptions {
            expect_head: Some(full_head.clone()),
        },
    )
    .unwrap_err();
    assert_eq!((f.kind, f.seq), (TamperKind::HeadMismatch, 26), "{f}");
    // Records appended after the head was taken.
    let head20 = receipts[19].hash.clone();
    let f = verify_bytes(
        &bytes,
        &VerifyOptions {
            expect_head: Some(head20),
        },
    )
    .unwrap_err();
    assert_eq!((f.kind, f.seq), (TamperKind::HeadMismatch, 21), "{f}");
    assert!(
        verify_bytes(
            &bytes,
            &VerifyOptions {
                expect_head: Some(full_head)
            }
        )
        .unwrap()
        .head_checked
    );
}

#[test]
fn verify_file_reports_path_and_failure() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_demo(dir.path(), "a.jsonl", 10, 13);
    let mut ls = lines(&path);
    ls.remove(4);
    std::fs::write(&path, join(&ls)).unwrap();
    match verify_file(&path, &VerifyOptions::default()) {
        Err(AuditError::Verification { path: p, failure }) => {
            assert_eq!(p, path);
            assert_eq!((failure.kind, failure.seq), (TamperKind::Deleted, 5));
        }
        other => panic!("expected a verification error, got {other:?}"),
    }
    assert!(matches!(
        verify_file(dir.path().join("missing.jsonl"), &VerifyOptions::default()),
        Err(AuditError::Io { .. })
    ));
}

#[test]
fn invalid_utf8_is_malformed_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_demo(dir.path(), "a.jsonl", 12, 14);
    let mut ls = lines(&path);
    let at = ls[6].len() / 2;
    ls[6][at] = 0xff;
    let f = fail_of(&join(&ls));
    assert_eq!(
        (f.kind, f.seq, f.line),
        (TamperKind::Malformed, 7, 7),
        "{f}"
    );
    assert!(f.detail.contains("UTF-8"), "{f}");
}
