//! `docs/audit-format.md` stays true: its example log verifies, the Rust writer produces it byte
//! for byte (it was produced independently, with Python's json and hashlib), and its hash
//! preimage example hashes to the stated hash.

use std::collections::BTreeMap;
use std::path::Path;

use perfusio_audit::canonical::sha256_hex;
use perfusio_audit::event::{RunStarted, SampleRead, SetpointWithheld};
use perfusio_audit::{
    Actor, AuditWriter, Entry, Record, VerifyOptions, WriterOptions, parse_timestamp, verify_bytes,
};
use serde_json::json;

fn block(doc: &str, fence: &str) -> String {
    let start = doc.find(&format!("```{fence}\n")).unwrap() + fence.len() + 4;
    let len = doc[start..].find("```").unwrap();
    doc[start..start + len].to_string()
}

fn doc() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/audit-format.md"),
    )
    .unwrap()
}

#[test]
fn example_log_verifies_and_matches_the_rust_writer() {
    let doc = doc();
    let example = block(&doc, "jsonl");
    let report = verify_bytes(example.as_bytes(), &VerifyOptions::default()).unwrap();
    assert_eq!(report.records, 3);
    assert_eq!(
        report.head,
        "36a6c52e5d2272bfe9fd172cfd14e55bc43776aa8f8f8f363f50110d82caa7d6"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let (mut w, _) = AuditWriter::open(&path, WriterOptions::new("run-7", "R1")).unwrap();
    let ts = |s: &str| parse_timestamp(s).unwrap();
    w.append(
        Entry::new(
            0.0,
            RunStarted {
                software: "perfusio 0.1.0".into(),
                seed: Some(42),
                settings: BTreeMap::from([("retrain_every".into(), json!(1))]),
            },
        )
        .at(ts("2026-11-02T08:00:00.000250Z")),
    )
    .unwrap();
    let values = BTreeMap::from([
        ("Glc".into(), Some(4.25)),
        ("Lac".into(), None),
        ("VCD".into(), Some(1.5e-5)),
    ]);
    w.append(
        Entry::new(
            1.0,
            SampleRead {
                source: "virtual-R1".into(),
                values,
            },
        )
        .at(ts("2026-11-03T08:00:05.120000Z")),
    )
    .unwrap();
    let setpoints = BTreeMap::from([("perfusion_rate".into(), 1.0), ("temperature".into(), 36.5)]);
    w.append(
        Entry::new(
            1.0,
            SetpointWithheld {
                setpoints,
                reason: "write gate closed".into(),
            },
        )
        .by(Actor::operator("alice").unwrap())
        .at(ts("2026-11-03T08:01:00.000000Z")),
    )
    .unwrap();
    drop(w);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), example);
}

#[test]
fn preimage_example_hashes_to_record_two() {
    let doc = doc();
    let example = block(&doc, "jsonl");
    let preimage = block(&doc, "text");
    let rec2 = Record::from_line(example.lines().nth(1).unwrap()).unwrap();
    assert_eq!(sha256_hex(preimage.trim_end().as_bytes()), rec2.hash);
}
