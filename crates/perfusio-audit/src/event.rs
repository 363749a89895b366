//! Typed audit events: one enum variant per event kind, each with a payload struct.
//!
//! Species and control values are keyed by their canonical names (`"Xv"`, `"Glc"`,
//! `"perfusion_rate"`, …) in `BTreeMap`s, so every payload is self-describing JSON that can be read
//! without this crate. Payloads hold no credentials by construction: connectors are described by
//! name and address only, and free-form settings are expected to be serialised through redacting
//! wrappers (see the crate docs).
//!
//! The enum is `#[non_exhaustive]`; new kinds can be added without breaking readers, and
//! [`Event::Custom`] carries application-specific events in the meantime.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::core_conv::setpoint_map;

/// One audited event. Serialised adjacently tagged: `{"kind": "...", "payload": {...}}`, which is
/// exactly how the two members appear in a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    content = "payload",
    rename_all = "snake_case",
    deny_unknown_fields
)]
#[non_exhaustive]
pub enum Event {
    /// A run started.
    RunStarted(RunStarted),
    /// A run was resumed (e.g. after a restart of the controlling process).
    RunResumed(RunResumed),
    /// A run finished; its record's hash is the head to keep elsewhere.
    RunFinished(RunFinished),
    /// A sample was read from the reactor or a data store.
    SampleRead(SampleRead),
    /// A sample value was rejected and not used.
    SampleRejected(SampleRejected),
    /// The model was retrained.
    ModelRetrained(ModelRetrained),
    /// A forecast was made.
    Forecast(Forecast),
    /// The design policy recommended controls.
    Decision(Decision),
    /// Setpoints were written to the reactor.
    SetpointWritten(SetpointWritten),
    /// Setpoints were recommended but not written because the write gate was closed.
    SetpointWithheld(SetpointWithheld),
    /// An alarm was raised.
    Alarm(Alarm),
    /// A connector operation failed.
    ConnectorError(ConnectorError),
    /// The log itself was recovered after a crash: an incomplete final line was quarantined.
    LogRecovered(LogRecovered),
    /// An application-specific event.
    Custom(Custom),
}

impl Event {
    /// The `kind` string written in the record (`"run_started"`, `"sample_read"`, …).
    pub fn kind(&self) -> EventKind {
        match self {
            Self::RunStarted(_) => EventKind::RunStarted,
            Self::RunResumed(_) => EventKind::RunResumed,
            Self::RunFinished(_) => EventKind::RunFinished,
            Self::SampleRead(_) => EventKind::SampleRead,
            Self::SampleRejected(_) => EventKind::SampleRejected,
            Self::ModelRetrained(_) => EventKind::ModelRetrained,
            Self::Forecast(_) => EventKind::Forecast,
            Self::Decision(_) => EventKind::Decision,
            Self::SetpointWritten(_) => EventKind::SetpointWritten,
            Self::SetpointWithheld(_) => EventKind::SetpointWithheld,
            Self::Alarm(_) => EventKind::Alarm,
            Self::ConnectorError(_) => EventKind::ConnectorError,
            Self::LogRecovered(_) => EventKind::LogRecovered,
            Self::Custom(_) => EventKind::Custom,
        }
    }
}

/// The kind of an [`Event`], without its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// A run started.
    RunStarted,
    /// A run resumed on an existing log.
    RunResumed,
    /// A run finished.
    RunFinished,
    /// A sample was read.
    SampleRead,
    /// A measured value was rejected.
    SampleRejected,
    /// The model was retrained.
    ModelRetrained,
    /// A forecast was made.
    Forecast,
    /// The design policy recommended setpoints.
    Decision,
    /// Setpoints were written to the reactor.
    SetpointWritten,
    /// Setpoints were withheld (write gate closed).
    SetpointWithheld,
    /// An alarm was raised.
    Alarm,
    /// A connector reported an error.
    ConnectorError,
    /// A torn log tail was quarantined on reopening.
    LogRecovered,
    /// An application-defined event.
    Custom,
}

impl EventKind {
    /// Every kind, in declaration order.
    pub const ALL: [EventKind; 14] = [
        Self::RunStarted,
        Self::RunResumed,
        Self::RunFinished,
        Self::SampleRead,
        Self::SampleRejected,
        Self::ModelRetrained,
        Self::Forecast,
        Self::Decision,
        Self::SetpointWritten,
        Self::SetpointWithheld,
        Self::Alarm,
        Self::ConnectorError,
        Self::LogRecovered,
        Self::Custom,
    ];

    /// The string written in the `kind` member.
    ///
    /// ```
    /// assert_eq!(perfusio_audit::EventKind::SetpointWithheld.as_str(), "setpoint_withheld");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RunStarted => "run_started",
            Self::RunResumed => "run_resumed",
            Self::RunFinished => "run_finished",
            Self::SampleRead => "sample_read",
            Self::SampleRejected => "sample_rejected",
            Self::ModelRetrained => "model_retrained",
            Self::Forecast => "forecast",
            Self::Decision => "decision",
            Self::SetpointWritten => "setpoint_written",
            Self::SetpointWithheld => "setpoint_withheld",
            Self::Alarm => "alarm",
            Self::ConnectorError => "connector_error",
            Self::LogRecovered => "log_recovered",
            Self::Custom => "custom",
        }
    }

    /// Parse a `kind` string.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Payload of [`Event::RunStarted`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunStarted {
    /// Software name and version that produced the log, e.g. `"perfusio 0.1.0"`.
    pub software: String,
    /// Seed of the run's random-number stream, if any.
    pub seed: Option<u64>,
    /// Run settings (design space, objective, connector description, …). Must not hold
    /// credentials: serialise secrets through a redacting wrapper.
    pub settings: BTreeMap<String, Value>,
}

/// Payload of [`Event::RunResumed`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunResumed {
    /// Number of records found in the log when it was reopened.
    pub records_found: u64,
    /// Why the run resumed (e.g. `"process restart"`).
    pub reason: String,
}

/// Payload of [`Event::RunFinished`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunFinished {
    /// Why the run ended (e.g. `"completed"`, `"aborted by operator"`).
    pub reason: String,
    /// Last culture day reached.
    pub last_day: f64,
}

/// Payload of [`Event::SampleRead`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleRead {
    /// Where the sample came from (connector name).
    pub source: String,
    /// Measured values by canonical species name; `None` (JSON `null`) = not measured.
    pub values: BTreeMap<String, Option<f64>>,
}

/// Payload of [`Event::SampleRejected`]: one value that was not used, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleRejected {
    /// Canonical species name (or the raw column name if it could not be mapped).
    pub species: String,
    /// The value as received, as text (it may be non-finite or unparsable, e.g. `"NaN"`).
    pub raw: String,
    /// Machine-readable reason code (e.g. `"out_of_bounds"`, `"non_finite"`, `"unknown_species"`).
    pub reason: String,
    /// Human-readable explanation.
    pub detail: String,
}

/// Payload of [`Event::ModelRetrained`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRetrained {
    /// Number of one-day transitions in the training set.
    pub observations: u64,
    /// Fit summary: named scalars such as `"log_marginal_likelihood"` or `"noise_variance"`.
    pub fit_summary: BTreeMap<String, f64>,
    /// Wall-clock duration of the fit in seconds.
    pub duration_s: f64,
}

/// Payload of [`Event::Forecast`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forecast {
    /// Culture day the forecast starts from.
    pub from_day: f64,
    /// Number of days ahead.
    pub horizon_days: u32,
    /// Central coverage of the band `[lower, upper]`, e.g. 0.9.
    pub level: f64,
    /// Forecast mean per species, one value per day ahead.
    pub mean: BTreeMap<String, Vec<f64>>,
    /// Lower band per species.
    pub lower: BTreeMap<String, Vec<f64>>,
    /// Upper band per species.
    pub upper: BTreeMap<String, Vec<f64>>,
}

/// Payload of [`Event::Decision`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// Recommended controls by canonical control name.
    pub controls: BTreeMap<String, f64>,
    /// Acquisition function name (e.g. `"log_ei"`).
    pub acquisition: String,
    /// Acquisition value at the recommendation.
    pub acquisition_value: f64,
    /// Predicted objective at the recommendation.
    pub predicted_objective: f64,
}

/// Payload of [`Event::SetpointWritten`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetpointWritten {
    /// Connector the setpoints were written to.
    pub connector: String,
    /// Setpoints by canonical control name.
    pub setpoints: BTreeMap<String, f64>,
}

/// Payload of [`Event::SetpointWithheld`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetpointWithheld {
    /// Setpoints that would have been written.
    pub setpoints: BTreeMap<String, f64>,
    /// Why they were withheld (e.g. `"write gate closed"`).
    pub reason: String,
}

/// Severity of an [`Alarm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Severity {
    /// For information.
    Info,
    /// Needs attention.
    Warning,
    /// Needs action now.
    Critical,
}

/// Payload of [`Event::Alarm`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alarm {
    /// Severity.
    pub severity: Severity,
    /// Species concerned, if any.
    pub species: Option<String>,
    /// Predicted (or observed) value that triggered the alarm.
    pub value: Option<f64>,
    /// Threshold crossed.
    pub threshold: Option<f64>,
    /// Culture day at which the crossing is predicted.
    pub predicted_day: Option<f64>,
    /// Human-readable message.
    pub message: String,
}

/// Payload of [`Event::ConnectorError`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorError {
    /// Connector name.
    pub connector: String,
    /// Operation that failed (e.g. `"read_sample"`, `"write_setpoints"`).
    pub operation: String,
    /// Error message (must not contain credentials).
    pub message: String,
    /// Whether the operation will be retried.
    pub retryable: bool,
}

/// Payload of [`Event::LogRecovered`], written by the writer itself when it reopens a log whose
/// final line was torn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogRecovered {
    /// File name of the quarantine file (next to the log).
    pub quarantine_file: String,
    /// Number of bytes quarantined.
    pub bytes: u64,
    /// SHA-256 (hex) of the quarantined bytes.
    pub sha256: String,
    /// Sequence number of the last complete record before the torn line.
    pub last_valid_seq: u64,
}

/// Payload of [`Event::Custom`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Custom {
    /// Application-defined event name.
    pub name: String,
    /// Application-defined data.
    pub data: Value,
}
