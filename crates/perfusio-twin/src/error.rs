//! [`TwinError`]: everything that can stop a twin, with the layer it came from.

use std::path::PathBuf;

use perfusio_audit::AuditError;
use perfusio_bed::BedError;
use perfusio_connectors::files::FileError;
use perfusio_core::{ConnectorError, CoreError};
use perfusio_hybrid::HybridError;
use perfusio_mechanistic::MechError;
use thiserror::Error;

/// Result of the twin's operations.
pub type Result<T, E = TwinError> = std::result::Result<T, E>;

/// An error that stops a twin (or keeps one from starting). Problems of a single day (a
/// sample that could not be read, a write that failed, a rejected value) do not stop the
/// run: they are recorded in the audit log and the loop goes on.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TwinError {
    /// Invalid domain values (run configuration, design space, setpoints).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// A connector failure that concerns the whole run (e.g. the first connection).
    #[error("connector: {0}")]
    Connector(#[from] ConnectorError),
    /// A culture file that cannot be read at all.
    #[error(transparent)]
    File(#[from] FileError),
    /// The audit log could not be opened, written or read.
    #[error("audit log: {0}")]
    Audit(#[from] AuditError),
    /// The hybrid model failed (configuration, model file, a fit or a forecast).
    #[error("hybrid model: {0}")]
    Model(#[from] HybridError),
    /// The design policy failed (configuration, objective, a decision).
    #[error("design policy: {0}")]
    Policy(#[from] BedError),
    /// The plant model or a plant file.
    #[error("plant: {0}")]
    Plant(#[from] MechError),
    /// A setting of the twin is invalid; the message says what to change.
    #[error("invalid setting `{name}`: {reason}")]
    Config {
        /// The setting.
        name: &'static str,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A new run would append to a log that already holds one.
    #[error(
        "{} already holds {records} audit records of run `{run_id}`; resume that run \
         (DigitalTwin::resume, `perfusio run --resume`) or give another audit path",
        path.display()
    )]
    AuditExists {
        /// The log.
        path: PathBuf,
        /// Its records.
        records: u64,
        /// The run it belongs to.
        run_id: String,
    },
    /// The log cannot be resumed from, and why.
    #[error("cannot resume from {}: {reason}", path.display())]
    Resume {
        /// The log.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Writing a chart or another output file failed.
    #[error("{context}: {message}")]
    Output {
        /// What was being written.
        context: String,
        /// Why it failed.
        message: String,
    },
    /// A campaign's configuration, directory or an operator's request is invalid.
    #[error(transparent)]
    Campaign(Box<crate::campaign::CampaignError>),
    /// A background computation (fit, forecast, decision) panicked or was aborted.
    #[error("background task failed: {0}")]
    Task(String),
}

impl TwinError {
    pub(crate) fn config(name: &'static str, reason: impl Into<String>) -> Self {
        Self::Config {
            name,
            reason: reason.into(),
        }
    }
}

impl From<tokio::task::JoinError> for TwinError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::Task(e.to_string())
    }
}
