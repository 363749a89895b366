//! The crate's error type.

use std::path::PathBuf;

use crate::verify::VerifyFailure;

/// Result alias used throughout `perfusio-audit`.
pub type Result<T> = std::result::Result<T, AuditError>;

/// Everything that can go wrong while writing, reading, verifying or exporting an audit log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// An operating-system I/O call failed.
    #[error("I/O error while {action} `{path}`: {source}")]
    Io {
        /// What the library was doing (e.g. "appending to").
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A payload or state contained NaN or an infinity; audit records hold only finite numbers.
    #[error(
        "non-finite number {value} at `{path}`: audit records hold only finite numbers; \
         record a missing value as null (Option::None) or raise an alarm instead"
    )]
    NonFinite {
        /// Path of the offending field inside the serialised value (e.g. `values.Glc`).
        path: String,
        /// The offending value.
        value: f64,
    },
    /// A payload or state could not be turned into JSON (e.g. a map with non-string keys).
    #[error("cannot serialise the value to JSON: {0}; use string map keys and plain data types")]
    Serialize(String),
    /// The existing log fails verification, so it is refused for appending.
    #[error(
        "refusing to append to `{path}`: {failure}; keep this file as evidence and start a new log"
    )]
    Corrupt {
        /// The log file.
        path: PathBuf,
        /// The first bad record and why.
        failure: VerifyFailure,
    },
    /// A log failed verification.
    #[error("log `{path}` fails verification at {failure}")]
    Verification {
        /// The log file.
        path: PathBuf,
        /// The first bad record and why.
        failure: VerifyFailure,
    },
    /// The final line of the log was incomplete (a crash mid-write). It was copied to `quarantine`
    /// and removed from the log; the chain continues from record `last_valid_seq`.
    #[error(
        "torn final line in `{path}` ({bytes} bytes after record {last_valid_seq}) copied to \
         `{quarantine}` and removed from the log; inspect the quarantine file"
    )]
    TornTail {
        /// The log file.
        path: PathBuf,
        /// Where the partial bytes were saved.
        quarantine: PathBuf,
        /// Number of partial bytes.
        bytes: u64,
        /// Sequence number of the last complete record (0 for none).
        last_valid_seq: u64,
        /// SHA-256 (hex) of the quarantined bytes.
        sha256: String,
    },
    /// The existing log belongs to a different run.
    #[error(
        "log `{path}` belongs to run `{found}`, not `{expected}`: open it with run id `{found}` \
         or use a new file for the new run"
    )]
    RunMismatch {
        /// The log file.
        path: PathBuf,
        /// Run id found in the log.
        found: String,
        /// Run id requested.
        expected: String,
    },
    /// A record could not be read or decoded.
    #[error("record {seq}: {detail}")]
    Record {
        /// Sequence number (or line number when the record has none).
        seq: u64,
        /// What was wrong.
        detail: String,
    },
    /// A record is of another kind than the payload type asked for.
    #[error(
        "record {seq} is a `{found}` record, not `{expected}`: check `Record::kind` before \
         decoding, or use `Record::event`"
    )]
    KindMismatch {
        /// Sequence number of the record.
        seq: u64,
        /// Kind found in the record.
        found: String,
        /// Kind of the payload type asked for.
        expected: &'static str,
    },
    /// A payload fails its consistency check (see `EventPayload::check`); nothing was written.
    #[error("invalid `{kind}` payload: {detail}")]
    InvalidPayload {
        /// Event kind of the payload.
        kind: &'static str,
        /// What is wrong and how to fix it.
        detail: String,
    },
    /// The event kind is not known to this version of the library.
    #[error("unknown event kind `{0}`: upgrade perfusio-audit or read the raw payload")]
    UnknownKind(String),
    /// A configuration value is invalid.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// An earlier write failed, so the writer no longer knows what is on disk.
    #[error(
        "the audit writer stopped after an earlier failure ({0}); reopen the log, which verifies \
         and recovers it"
    )]
    WriterFailed(String),
    /// The background writer has shut down.
    #[error("the audit writer has shut down; create a new handle with AuditHandle::spawn")]
    WriterClosed,
    /// CSV export failed.
    #[error("CSV export failed: {0}")]
    Csv(#[from] csv::Error),
    /// Parquet export failed.
    #[cfg(feature = "polars")]
    #[error("Parquet export failed: {0}")]
    Polars(#[from] polars::error::PolarsError),
}

impl AuditError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
