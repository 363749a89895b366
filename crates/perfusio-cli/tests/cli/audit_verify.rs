//! `perfusio audit verify`: output and exit codes on valid, tampered and truncated logs.

use crate::perfusio;
use std::path::Path;

use perfusio_audit::{AuditWriter, FsyncPolicy, WriterOptions, demo};

/// Write a demo log of `n` records and return its head hash.
fn demo_log(path: &Path, n: usize) -> String {
    let opts = WriterOptions::new("cli-test", "R1").fsync(FsyncPolicy::Never);
    let (mut w, _) = AuditWriter::open(path, opts).unwrap();
    for e in demo::simulated_run(n, 5) {
        w.append(e).unwrap();
    }
    w.close().unwrap().hash
}

#[test]
fn valid_log_exits_zero_with_head() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let head = demo_log(&path, 50);
    let p = path.to_str().unwrap();
    let (code, out, err) = perfusio(&["audit", "verify", p]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.trim(), format!("OK 50 records, head hash {head}"));
    let (code, out, _) = perfusio(&["audit", "verify", p, "--expect-head", &head]);
    assert_eq!(code, 0);
    assert!(out.contains("matches the expected head"), "{out}");
}

#[test]
fn tampered_log_exits_one_naming_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    demo_log(&path, 30);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
    lines.remove(4);
    std::fs::write(&path, lines.concat()).unwrap();
    let (code, out, _) = perfusio(&["audit", "verify", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("FAILED "), "{out}");
    assert!(out.contains("record 5 (line 5): deleted"), "{out}");
}

#[test]
fn truncated_log_warns_and_expect_head_proves_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let head = demo_log(&path, 30);
    let text = std::fs::read_to_string(&path).unwrap();
    let kept: String = text.split_inclusive('\n').take(20).collect();
    std::fs::write(&path, kept).unwrap();
    let p = path.to_str().unwrap();
    let (code, out, _) = perfusio(&["audit", "verify", p]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("OK 20 records"), "{out}");
    assert!(out.contains("may have been cut off"), "{out}");
    let (code, out, _) = perfusio(&["audit", "verify", p, "--expect-head", &head]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("record 21 (line 21): head mismatch"), "{out}");
}

#[test]
fn missing_file_and_bad_usage() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.jsonl");
    let (code, _, err) = perfusio(&["audit", "verify", missing.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("nope.jsonl"), "{err}");
    let (code, _, err) = perfusio(&["audit", "verify"]);
    assert_eq!(code, 2, "{err}");
}
