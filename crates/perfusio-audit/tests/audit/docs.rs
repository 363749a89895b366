//! `docs/audit-format.md` stays true: its example log verifies, the Rust writer produces it byte
//! for byte (it was produced independently, with Python's json and hashlib), its hash
//! preimage example hashes to the stated hash, and it documents every event kind and every
//! member of every payload.

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
            0,
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
            1,
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
            1,
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

/// The rows of the "Event kinds" table and the payload-member tables after it, by first cell.
fn kind_section(doc: &str) -> &str {
    let start = doc.find("## Event kinds").unwrap();
    let end = doc[start..].find("\n## Durability").unwrap() + start;
    &doc[start..end]
}

/// Every member name (object key) in `v` that is not a map key chosen by the data (species,
/// controls, settings, calibrated parameters, custom data).
fn member_names(v: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
    const DATA_KEYED: [&str; 7] = [
        "values",
        "controls",
        "setpoints",
        "settings",
        "bands",
        "calibrated",
        "data",
    ];
    if let serde_json::Value::Object(m) = v {
        for (k, child) in m {
            out.insert(k.clone());
            match (DATA_KEYED.contains(&k.as_str()), child) {
                // A map keyed by data: document the members of its values, not its keys.
                (true, serde_json::Value::Object(entries)) => {
                    for entry in entries.values() {
                        member_names(entry, out);
                    }
                }
                (_, serde_json::Value::Array(items)) => {
                    for item in items {
                        member_names(item, out);
                    }
                }
                _ => member_names(child, out),
            }
        }
    }
}

#[test]
fn every_kind_and_member_is_documented() {
    let doc = doc();
    let section = kind_section(&doc);
    for event in crate::common::one_of_each() {
        let kind = event.kind().as_str();
        let row = section
            .lines()
            .find(|l| l.starts_with(&format!("| `{kind}` |")))
            .unwrap_or_else(|| panic!("docs/audit-format.md has no table row for `{kind}`"));
        let payload =
            perfusio_audit::canonical::to_canonical_value(&event).unwrap()["payload"].clone();
        let mut names = std::collections::BTreeSet::new();
        member_names(&payload, &mut names);
        for name in names {
            // Top-level members are in the kind's row; nested ones in the row or the section.
            let quoted = format!("`{name}`");
            assert!(
                row.contains(&quoted) || section.contains(&quoted),
                "docs/audit-format.md does not document member `{name}` of `{kind}`"
            );
        }
        let mut top = std::collections::BTreeSet::new();
        if let serde_json::Value::Object(m) = &payload {
            top.extend(m.keys().cloned());
        }
        for name in top {
            assert!(
                row.contains(&format!("`{name}`")),
                "the `{kind}` row of docs/audit-format.md does not name its member `{name}`"
            );
        }
    }
}
