//! # perfusio-audit: a tamper-evident audit trail
//!
//! A self-driving experiment changes a living culture without a person at the controls, so every
//! reading, model update, decision and setpoint is recorded in `audit.jsonl`: one JSON object per
//! line, each carrying the SHA-256 of the previous line's record. Editing, deleting, inserting,
//! duplicating or reordering records breaks the chain, and anyone can check it — with
//! [`verify_file`], with `perfusio audit verify FILE`, or with the 40-line Python script in
//! `docs/verify_audit.py`, following the format in `docs/audit-format.md`.
//!
//! ## Why this design
//!
//! * **Canonical JSON, not a binary format.** Records stay readable with `jq`, and the
//!   [`canonical`] rules (sorted keys, no whitespace, Python-`repr` numbers) are small enough to
//!   re-implement elsewhere. Each line *is* its canonical form, so verification needs no
//!   re-encoding guesswork and every single-byte change is detected.
//! * **Append-only with recovery.** [`AuditWriter`] opens the file only for appending and writes
//!   each record with one `write`; fsync follows a [`FsyncPolicy`] (every record by default).
//!   Reopening verifies the log and continues the chain; a line torn by a crash is quarantined
//!   and recorded, never silently dropped.
//! * **One writer, many tasks.** [`AuditHandle`] is a cheap clone that feeds a single writer
//!   thread, so concurrent tasks never interleave lines (see the [`handle`] module for why a
//!   thread rather than a task).
//! * **Typed payloads, kinds declared once.** Every kind has a payload struct in [`event`]; the
//!   [`Event`] and [`EventKind`] enums and everything that enumerates the kinds are generated
//!   from one list there, and [`Record::payload_as`] reads the records of one kind back as its
//!   type. The culture day is `perfusio-core`'s `u32`; [`Entry::new`] converts it to the
//!   record's float `day` member, the only conversion.
//! * **A chain cannot prove its own end.** Keep the head hash printed at the end of a run
//!   elsewhere and pass it as [`VerifyOptions::expect_head`] to prove nothing was cut off.
//!
//! ## Secrets
//!
//! Payload types hold names, numbers and messages only. Free-form [`event::RunStarted::settings`]
//! must be built from types whose `Serialize` redacts secrets (such as a `Secret` wrapper that
//! serialises as a placeholder); a test checks that a password never reaches the file.
//!
//! ## Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `polars` | no | `export_parquet_file` (Parquet export through polars; heavy to compile) |
//! | `demo` | no | `demo::simulated_run`: a reproducible run with every event kind (a fixture for examples, tests and benches; not a stable API) |
//!
//! ## Example
//!
//! ```
//! # fn main() -> perfusio_audit::Result<()> {
//! use std::collections::BTreeMap;
//! use perfusio_audit::{AuditWriter, Entry, WriterOptions, verify_file, VerifyOptions, TamperKind, AuditError};
//! use perfusio_audit::event::SampleRead;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("audit.jsonl");
//! let (mut w, _) = AuditWriter::open(&path, WriterOptions::new("run-7", "R1"))?;
//! for day in 0..3 {
//!     let values = BTreeMap::from([("Glc".to_string(), Some(5.0 - f64::from(day))), ("Lac".to_string(), None)]);
//!     w.append(Entry::new(day, SampleRead { source: "virtual".into(), values }))?;
//! }
//! drop(w);
//! let report = verify_file(&path, &VerifyOptions::default())?;
//! assert_eq!(report.records, 3);
//! assert!(report.possibly_truncated()); // no run_finished record
//!
//! // Change one digit of day 1's glucose: verification names record 2.
//! let text = std::fs::read_to_string(&path).unwrap().replacen("\"Glc\":4.0", "\"Glc\":4.5", 1);
//! std::fs::write(&path, text).unwrap();
//! match verify_file(&path, &VerifyOptions::default()) {
//!     Err(AuditError::Verification { failure, .. }) => {
//!         assert_eq!((failure.seq, failure.kind), (2, TamperKind::Edited));
//!     }
//!     other => panic!("tampering not detected: {other:?}"),
//! }
//! # Ok(()) }
//! ```
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::print_stdout,
        clippy::print_stderr
    )
)]
#![deny(clippy::float_cmp)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod canonical;
mod core_conv;
#[cfg(feature = "demo")]
#[cfg_attr(docsrs, doc(cfg(feature = "demo")))]
pub mod demo;
mod error;
pub mod event;
pub mod handle;
mod reader;
mod record;
mod strict;
mod verify;
mod writer;

pub use error::{AuditError, Result};
pub use event::{Event, EventKind, EventPayload};
pub use handle::AuditHandle;
#[cfg(feature = "polars")]
pub use reader::export_parquet_file;
pub use reader::{
    EXPORT_COLUMNS, Records, export_csv, export_csv_file, read_records, read_verified,
};
pub use record::{Actor, FORMAT_VERSION, GENESIS, Record, format_timestamp, parse_timestamp};
pub use verify::{
    TamperKind, VerifyFailure, VerifyOptions, VerifyReport, verify_bytes, verify_file,
};
pub use writer::{AuditWriter, Entry, FsyncPolicy, OpenReport, Receipt, WriterOptions};
