//! Typed audit events: one enum variant per event kind, each with a payload struct.
//!
//! Species and control values are keyed by their canonical names (`"VCD"`, `"Glc"`,
//! `"perfusion_rate"`, …) in `BTreeMap`s, so every payload is self-describing JSON that can be read
//! without this crate. Payloads hold no credentials by construction: connectors are described by
//! name and address only, and free-form settings are expected to be serialised through redacting
//! wrappers (see the crate docs).
//!
//! Culture days inside payloads are `u32` (the culture-day type of `perfusio-core`) and are
//! written as JSON integers; the record's own `day` member is the one float, converted once by
//! [`Entry::new`](crate::Entry::new).
//!
//! ## Adding an event kind
//!
//! Every kind is declared once, in the list given to the `event_kinds!` macro at the bottom of
//! this module: its payload type (same name as the variant), its `kind` string and, optionally,
//! the payload's consistency check. The macro generates [`Event`], [`EventKind`],
//! [`EventKind::ALL`], [`EventKind::as_str`], [`EventKind::parse`], [`Event::kind`],
//! [`Event::check`], `From<Payload> for Event` and the [`EventPayload`] impls from that one
//! list. So a new kind is a payload struct plus one line there (and a row in
//! `docs/audit-format.md`, which a test enforces).
//!
//! The enums are `#[non_exhaustive]`; new kinds can be added without breaking readers, and
//! [`Event::Custom`] carries application-specific events in the meantime.

use std::collections::BTreeMap;

use perfusio_core::{Acquisition, WriteReceipt, WriteStatus};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{AuditError, Result};

pub use crate::core_conv::setpoint_map;

/// A payload type: the data of one event kind.
///
/// Implemented (by the `event_kinds!` list) for every payload struct of this module. It lets
/// a reader ask for one kind with [`Record::payload_as`](crate::Record::payload_as).
pub trait EventPayload: Serialize + DeserializeOwned + Into<Event> {
    /// The kind this payload is recorded under.
    const KIND: EventKind;

    /// Consistency checks that the writer runs before appending (array lengths, quantile
    /// order, hash syntax, probabilities, …). The default accepts everything.
    fn check(&self) -> Result<()> {
        Ok(())
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
    /// Run settings (run configuration, design space, objective, connector description, crate
    /// versions, model hash, …). Must not hold credentials: serialise secrets through a
    /// redacting wrapper.
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
    /// `true` when the run reached its planned end; `false` when it was cancelled, aborted or
    /// ended early (e.g. the data ran out).
    pub completed: bool,
    /// Why the run ended (e.g. `"completed"`, `"cancelled by operator"`, `"data ended on day 9"`).
    pub reason: String,
    /// Last culture day reached.
    pub last_day: u32,
}

/// Payload of [`Event::SampleRead`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleRead {
    /// Where the sample came from (connector name).
    pub source: String,
    /// Measured values by canonical species name (and derived-variable name, `VCV`, `Diam`,
    /// when reported); `None` (JSON `null`) = not measured.
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
    /// Machine-readable reason code: the `code()` of `perfusio_core::RejectionReason`
    /// (`"not_a_number"`, `"bad_status"`, `"non_finite"`, `"below_bound"`, `"above_bound"`).
    pub reason: String,
    /// Human-readable explanation.
    pub detail: String,
    /// Where the value came from, e.g. `"data.csv line 7, column glucose"` or
    /// `"ns=2;s=R01/Glc"`; `None` when the connector does not say.
    #[serde(default)]
    pub origin: Option<String>,
}

/// Payload of [`Event::ModelRetrained`]: which model now makes the forecasts, and how its fit
/// went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRetrained {
    /// SHA-256 (64 lowercase hex digits) identifying the fitted model: the GP's fingerprint
    /// (hyperparameters, data, scaling, prior mean; not the wall time). The `forecast` and
    /// `decision` records that follow name the model by this hash.
    pub model_sha256: String,
    /// Rows of the GP's training set (transitions × tasks with a measured target).
    pub rows: u64,
    /// One-day transitions in the training set.
    pub transitions: u64,
    /// Negative log marginal likelihood at the fitted hyperparameters.
    pub nlml: f64,
    /// Optimiser iterations over all starts.
    pub iterations: u64,
    /// Likelihood-and-gradient evaluations over all starts.
    pub evaluations: u64,
    /// Whether the fit stopped on a convergence tolerance (not on a cap or an error).
    pub converged: bool,
    /// Why the optimiser stopped, as the GP names it in snake case (e.g.
    /// `"gradient_tolerance"`, `"cost_tolerance"`, `"iteration_cap"`).
    pub termination: String,
    /// Whether the fit started from the previous model's hyperparameters.
    pub warm_start: bool,
    /// Wall-clock duration of the fit, seconds.
    pub duration_s: f64,
    /// Kinetic parameters calibrated before the GP fit, by `KineticParams` field name (e.g.
    /// `"mu_max"`); empty when the mechanism was not calibrated.
    #[serde(default)]
    pub calibrated: BTreeMap<String, CalibratedParameter>,
    /// Pathway switches of the mechanism that its calibration tested against the data, by
    /// `KineticParams` field name, with the value in force (e.g. `"consumes_lactate":
    /// false`); empty, and absent from the record, when none was tested.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pathways: BTreeMap<String, bool>,
}

/// One calibrated kinetic parameter of a [`ModelRetrained`] record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibratedParameter {
    /// Estimate, in the parameter's own unit.
    pub value: f64,
    /// Standard error of the estimate (Gauss–Newton), if computed.
    #[serde(default)]
    pub std_error: Option<f64>,
}

/// How a [`Forecast`] propagated uncertainty over the horizon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ForecastMethod {
    /// Sampled trajectories (`paths` of them); quantiles are empirical.
    MonteCarlo,
    /// Gaussian moment matching; quantiles are those of the matched normal.
    MomentMatching,
}

/// Forecast of one species at the [`Forecast::days_ahead`]: the mean and five quantiles, one
/// value per day ahead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeciesBands {
    /// Mean.
    pub mean: Vec<f64>,
    /// 5 % quantile.
    pub q05: Vec<f64>,
    /// 10 % quantile.
    pub q10: Vec<f64>,
    /// Median.
    pub q50: Vec<f64>,
    /// 90 % quantile.
    pub q90: Vec<f64>,
    /// 95 % quantile.
    pub q95: Vec<f64>,
}

/// Standard-normal quantile at 0.95 (and minus it at 0.05).
const Z_Q95: f64 = 1.644_853_626_951_472_2;
/// Standard-normal quantile at 0.90 (and minus it at 0.10).
const Z_Q90: f64 = 1.281_551_565_544_600_4;

impl SpeciesBands {
    /// Bands of independent normal marginals with the given means and standard deviations
    /// (one per day ahead): `q = mean + z·sd` with `z = ±1.6449` (5/95 %), `±1.2816`
    /// (10/90 %) and 0 (median). `lower_bound` clips every value from below (e.g. 0 for a
    /// concentration); pass `f64::NEG_INFINITY` for none.
    ///
    /// ```
    /// let b = perfusio_audit::event::SpeciesBands::from_normal(&[10.0], &[1.0], 0.0);
    /// assert!((b.q95[0] - 11.644_853_626_951_472).abs() < 1e-12);
    /// assert!((b.q10[0] - 8.718_448_434_455_4).abs() < 1e-12);
    /// assert_eq!(b.q50, vec![10.0]);
    /// ```
    pub fn from_normal(mean: &[f64], sd: &[f64], lower_bound: f64) -> Self {
        let q = |z: f64| -> Vec<f64> {
            mean.iter()
                .zip(sd)
                .map(|(m, s)| (m + z * s).max(lower_bound))
                .collect()
        };
        Self {
            mean: mean.iter().map(|m| m.max(lower_bound)).collect(),
            q05: q(-Z_Q95),
            q10: q(-Z_Q90),
            q50: q(0.0),
            q90: q(Z_Q90),
            q95: q(Z_Q95),
        }
    }

    /// The six series in member order: mean, q05, q10, q50, q90, q95.
    fn series(&self) -> [(&'static str, &[f64]); 6] {
        [
            ("mean", &self.mean),
            ("q05", &self.q05),
            ("q10", &self.q10),
            ("q50", &self.q50),
            ("q90", &self.q90),
            ("q95", &self.q95),
        ]
    }
}

/// Payload of [`Event::Forecast`]: the forecast of every species over the horizon, summarised
/// at a few days ahead. The full forecast (every day, every path) is identified by
/// [`Forecast::forecast_sha256`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forecast {
    /// Culture day the forecast starts from (the last day with data).
    pub from_day: u32,
    /// Number of days forecast.
    pub horizon_days: u32,
    /// How uncertainty was propagated.
    pub method: ForecastMethod,
    /// Number of Monte-Carlo paths (at least 1 for [`ForecastMethod::MonteCarlo`]; 0 for moment
    /// matching).
    pub paths: u32,
    /// SHA-256 (hex) of the model that made the forecast: the `model_sha256` of the
    /// `model_retrained` record that produced it.
    pub model_sha256: String,
    /// SHA-256 (hex) of the full forecast, computed by the caller (e.g. the canonical hash of
    /// every day's mean and quantiles, or of every path).
    pub forecast_sha256: String,
    /// Days ahead at which the bands are given, strictly increasing, each in
    /// `1..=horizon_days` (e.g. `[1, 3, 7, 28]`).
    pub days_ahead: Vec<u32>,
    /// Bands by canonical species name; every series has one value per entry of `days_ahead`.
    pub bands: BTreeMap<String, SpeciesBands>,
}

impl Forecast {
    /// Checks what a well-formed forecast satisfies: `horizon_days ≥ 1`; `days_ahead`
    /// non-empty, strictly increasing and inside `1..=horizon_days`; at least one path for
    /// Monte Carlo; both hashes 64 lowercase hex digits; every series as long as `days_ahead`;
    /// and `q05 ≤ q10 ≤ q50 ≤ q90 ≤ q95` at every day.
    /// [`crate::AuditWriter::append`] runs it.
    pub fn validate(&self) -> Result<()> {
        let bad = |detail: String| Err(invalid("forecast", detail));
        if self.horizon_days == 0 {
            return bad("horizon_days must be at least 1".into());
        }
        if self.days_ahead.is_empty() {
            return bad("days_ahead is empty: give at least one day ahead, e.g. [1]".into());
        }
        if self.days_ahead.windows(2).any(|w| w[0] >= w[1])
            || self.days_ahead[0] == 0
            || self.days_ahead.iter().any(|d| *d > self.horizon_days)
        {
            return bad(format!(
                "days_ahead {:?} must be strictly increasing and inside 1..={}",
                self.days_ahead, self.horizon_days
            ));
        }
        if self.method == ForecastMethod::MonteCarlo && self.paths == 0 {
            return bad("a monte_carlo forecast needs at least one path".into());
        }
        check_sha256("forecast", "model_sha256", &self.model_sha256)?;
        check_sha256("forecast", "forecast_sha256", &self.forecast_sha256)?;
        check_bands("forecast", "bands", &self.bands, &self.days_ahead)
    }
}

/// Checks a map of [`SpeciesBands`] given at `days_ahead`: every series as long as
/// `days_ahead`, and `q05 ≤ q10 ≤ q50 ≤ q90 ≤ q95` at every day.
fn check_bands(
    kind: &'static str,
    field: &str,
    bands: &BTreeMap<String, SpeciesBands>,
    days_ahead: &[u32],
) -> Result<()> {
    let n = days_ahead.len();
    for (species, b) in bands {
        for (name, series) in b.series() {
            if series.len() != n {
                return Err(invalid(
                    kind,
                    format!(
                        "{field}.{species}.{name} has {} values but days_ahead has {n}",
                        series.len()
                    ),
                ));
            }
        }
        for (i, day) in days_ahead.iter().enumerate() {
            let q = [b.q05[i], b.q10[i], b.q50[i], b.q90[i], b.q95[i]];
            if q.windows(2).any(|w| w[0] > w[1]) {
                return Err(invalid(
                    kind,
                    format!(
                        "{field}.{species} at {day} days ahead: quantiles {q:?} are not in the \
                         order q05 ≤ q10 ≤ q50 ≤ q90 ≤ q95"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Mean and standard deviation of the objective under one course of action.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectiveEstimate {
    /// Predicted mean of the objective.
    pub mean: f64,
    /// Predicted standard deviation of the objective (≥ 0).
    pub sd: f64,
}

/// Payload of [`Event::Decision`]: what the design policy recommends, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// Recommended controls by canonical control name.
    pub controls: BTreeMap<String, f64>,
    /// Acquisition function, written by its canonical name (`"LogEI"`, `"qNEHVI"`, …).
    pub acquisition: Acquisition,
    /// Acquisition value at the recommendation.
    pub acquisition_value: f64,
    /// Objective the policy optimises (e.g. `"harvest"`, `"track:VCV=10"`, `"final-titer"`).
    pub objective: String,
    /// Objective predicted under the recommended controls.
    pub recommended: ObjectiveEstimate,
    /// Objective predicted when holding the current controls.
    pub hold: ObjectiveEstimate,
    /// Probability that the recommendation satisfies the constraints (1 when unconstrained).
    pub probability_feasible: f64,
    /// The reason in words, for the operator (e.g. `"raise perfusion: glucose forecast below
    /// 2 g/L by day 12"`).
    pub reason: String,
    /// Wall-clock time the decision took, seconds.
    pub elapsed_s: f64,
    /// Days the objective estimates (`recommended`, `hold`) cover: the decision horizon,
    /// cut at the run's last day. Absent in logs written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub horizon_days: Option<u32>,
    /// With two or three objectives (qEHVI, qNEHVI): every objective's estimates, the first
    /// being `objective`, `recommended` and `hold`. Absent with one objective.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objectives: Vec<NamedObjectiveEstimates>,
    /// The next sample as the model expects it under the recommended controls: bands of the
    /// measured value (measurement noise included) one day ahead, by canonical species
    /// name, one value per series. A report scores them against the next day's sample when
    /// the recommendation was applied as it stands. Absent in logs written before it existed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub next_sample: BTreeMap<String, SpeciesBands>,
}

/// One objective of a multi-objective [`Decision`]: its estimates under the recommendation
/// and when holding the current controls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedObjectiveEstimates {
    /// The objective's name.
    pub name: String,
    /// Predicted under the recommended controls.
    pub recommended: ObjectiveEstimate,
    /// Predicted when holding the current controls.
    pub hold: ObjectiveEstimate,
}

impl Decision {
    /// Checks that `probability_feasible` is in `[0, 1]`, that both standard deviations and
    /// `elapsed_s` are non-negative, that `horizon_days`, when given, is at least one, and
    /// that `next_sample` holds one ordered set of quantiles per species.
    /// [`crate::AuditWriter::append`] runs it.
    pub fn validate(&self) -> Result<()> {
        if self.horizon_days == Some(0) {
            return Err(invalid(
                "decision",
                "horizon_days is 0; a decision looks at least one day ahead".to_string(),
            ));
        }
        if !(0.0..=1.0).contains(&self.probability_feasible) {
            return Err(invalid(
                "decision",
                format!(
                    "probability_feasible {} must be a probability in [0, 1]",
                    self.probability_feasible
                ),
            ));
        }
        let named = self.objectives.iter().flat_map(|o| {
            [
                (format!("{}: recommended.sd", o.name), o.recommended.sd),
                (format!("{}: hold.sd", o.name), o.hold.sd),
            ]
        });
        for (name, v) in [
            ("recommended.sd".to_string(), self.recommended.sd),
            ("hold.sd".to_string(), self.hold.sd),
            ("elapsed_s".to_string(), self.elapsed_s),
        ]
        .into_iter()
        .chain(named)
        {
            if v < 0.0 {
                return Err(invalid(
                    "decision",
                    format!("{name} is {v}; it must be ≥ 0"),
                ));
            }
        }
        check_bands("decision", "next_sample", &self.next_sample, &[1])
    }
}

/// Payload of [`Event::SetpointWritten`]: setpoints sent to a connector and what it did with
/// each of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetpointWritten {
    /// Connector the setpoints were written to.
    pub connector: String,
    /// The connector's receipt: per control the requested value, the value read back and
    /// whether it was confirmed, unconfirmed or rejected.
    pub receipt: WriteReceipt,
}

impl SetpointWritten {
    /// The payload for a write through `connector` that returned `receipt`.
    pub fn new(connector: impl Into<String>, receipt: WriteReceipt) -> Self {
        Self {
            connector: connector.into(),
            receipt,
        }
    }

    /// The controls the connector confirmed, by canonical name, at the value read back (or
    /// the requested value when the connector confirmed without reading back): what is known
    /// to be applied.
    ///
    /// ```
    /// use perfusio_core::{Setpoints, WriteReceipt, WriteStatus};
    /// use perfusio_audit::event::SetpointWritten;
    /// let mut receipt = WriteReceipt::all_confirmed(&Setpoints::defaults(4));
    /// receipt.controls[0].status = WriteStatus::Rejected { reason: "locked".into() };
    /// let written = SetpointWritten::new("virtual", receipt);
    /// let applied = written.confirmed();
    /// assert_eq!(applied.len(), 5);
    /// assert!(!applied.contains_key("perfusion_rate"));
    /// ```
    pub fn confirmed(&self) -> BTreeMap<String, f64> {
        self.receipt
            .controls
            .iter()
            .filter(|c| c.status == WriteStatus::Confirmed)
            .map(|c| {
                (
                    c.control.name().to_string(),
                    c.readback.unwrap_or(c.requested),
                )
            })
            .collect()
    }
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

/// Whether an [`Alarm`] record raises or clears the alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AlarmState {
    /// The condition appeared (the default).
    #[default]
    Raised,
    /// The condition went away.
    Cleared,
}

/// Payload of [`Event::Alarm`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alarm {
    /// Severity.
    pub severity: Severity,
    /// Raised or cleared (`"raised"` when absent).
    #[serde(default)]
    pub state: AlarmState,
    /// Species concerned, if any.
    pub species: Option<String>,
    /// Predicted (or observed) value that triggered the alarm.
    pub value: Option<f64>,
    /// Threshold crossed.
    pub threshold: Option<f64>,
    /// Culture day at which the crossing is predicted.
    pub predicted_day: Option<u32>,
    /// Human-readable message.
    pub message: String,
}

/// Payload of [`Event::ConnectorError`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorError {
    /// Connector name.
    pub connector: String,
    /// Operation that failed (e.g. `"read_raw"`, `"write_setpoints"`).
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

/// Payload of [`Event::OperatorAction`]: what an operator did to one reactor, and what it
/// changed. The record's `actor` member names the operator (`operator:<name>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorAction {
    /// Id of the action (as in the campaign's `actions.jsonl`).
    pub action_id: String,
    /// What was done: `approve`, `edit`, `reject`, `deadline_hold`, `deadline_apply`,
    /// `glucose_bolus`, `extra_sample`, `media_exchange`, `setpoint_override`.
    pub action: String,
    /// When the operator did it (ISO 8601, UTC), as they recorded it.
    pub requested_at: String,
    /// Whether it took effect.
    pub accepted: bool,
    /// What it did, or why it was refused.
    pub reason: String,
    /// The values the operator gave (controls, species or amounts by name), if any.
    #[serde(default)]
    pub values: BTreeMap<String, f64>,
    /// The setpoints in force (or the state) before the action, by name.
    #[serde(default)]
    pub before: BTreeMap<String, f64>,
    /// The setpoints (or the state) after the action, by name; empty when refused.
    #[serde(default)]
    pub after: BTreeMap<String, f64>,
}

fn check_operator_action(p: &OperatorAction) -> Result<()> {
    if p.action_id.trim().is_empty() || p.action.trim().is_empty() {
        return Err(invalid(
            "operator_action",
            "action_id and action must be non-empty".into(),
        ));
    }
    if let Some((k, v)) = p
        .values
        .iter()
        .chain(&p.before)
        .chain(&p.after)
        .find(|(_, v)| !v.is_finite())
    {
        return Err(invalid(
            "operator_action",
            format!("{k} is {v}; values must be finite"),
        ));
    }
    Ok(())
}

fn invalid(kind: &'static str, detail: String) -> AuditError {
    AuditError::InvalidPayload { kind, detail }
}

/// `true` for 64 lowercase hex digits.
pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn check_sha256(kind: &'static str, member: &str, value: &str) -> Result<()> {
    if is_sha256_hex(value) {
        Ok(())
    } else {
        Err(invalid(
            kind,
            format!("{member} must be a SHA-256 as 64 lowercase hex digits, found {value:?}"),
        ))
    }
}

fn check_model_retrained(p: &ModelRetrained) -> Result<()> {
    check_sha256("model_retrained", "model_sha256", &p.model_sha256)?;
    if p.duration_s < 0.0 {
        return Err(invalid(
            "model_retrained",
            format!("duration_s is {}; it must be ≥ 0", p.duration_s),
        ));
    }
    Ok(())
}

/// Generates [`Event`], [`EventKind`] and everything that enumerates the kinds from one list
/// of `doc comment, Payload = "kind_string" [, check = path]` entries. The payload struct has
/// the variant's name.
macro_rules! event_kinds {
    ($(
        $(#[doc = $doc:literal])+
        $variant:ident = $name:literal $(, check = $check:path)?;
    )+) => {
        /// One audited event. Serialised adjacently tagged: `{"kind": "...", "payload": {...}}`,
        /// which is exactly how the two members appear in a record.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "kind", content = "payload", deny_unknown_fields)]
        #[non_exhaustive]
        pub enum Event {
            $(
                $(#[doc = $doc])+
                #[serde(rename = $name)]
                $variant($variant),
            )+
        }

        /// The kind of an [`Event`], without its payload.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[non_exhaustive]
        pub enum EventKind {
            $(
                $(#[doc = $doc])+
                #[serde(rename = $name)]
                $variant,
            )+
        }

        impl EventKind {
            /// Every kind, in declaration order.
            pub const ALL: [EventKind; [$($name),+].len()] = [$(Self::$variant),+];

            /// The string written in the `kind` member.
            ///
            /// ```
            /// use perfusio_audit::EventKind;
            /// assert_eq!(EventKind::SetpointWithheld.as_str(), "setpoint_withheld");
            /// ```
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)+
                }
            }

            /// Parse a `kind` string.
            ///
            /// ```
            /// use perfusio_audit::EventKind;
            /// assert_eq!(EventKind::parse("model_retrained"), Some(EventKind::ModelRetrained));
            /// assert_eq!(EventKind::parse("ModelRetrained"), None);
            /// ```
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($name => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }

        impl Event {
            /// The kind written in the record (`"run_started"`, `"sample_read"`, …).
            pub fn kind(&self) -> EventKind {
                match self {
                    $(Self::$variant(_) => EventKind::$variant,)+
                }
            }

            /// The payload's consistency check ([`EventPayload::check`]); the writer runs it
            /// before appending and refuses the record with [`AuditError::InvalidPayload`].
            pub fn check(&self) -> Result<()> {
                match self {
                    $(Self::$variant(p) => EventPayload::check(p),)+
                }
            }
        }

        $(
            impl From<$variant> for Event {
                fn from(p: $variant) -> Self {
                    Event::$variant(p)
                }
            }

            impl EventPayload for $variant {
                const KIND: EventKind = EventKind::$variant;
                $(
                    fn check(&self) -> Result<()> {
                        $check(self)
                    }
                )?
            }
        )+
    };
}

event_kinds! {
    /// A run started.
    RunStarted = "run_started";
    /// A run was resumed on an existing log (e.g. after a restart of the controlling process).
    RunResumed = "run_resumed";
    /// A run finished; its record's hash is the head to keep elsewhere.
    RunFinished = "run_finished";
    /// A sample was read from the reactor or a data store.
    SampleRead = "sample_read";
    /// A measured value was rejected and not used.
    SampleRejected = "sample_rejected";
    /// The model was retrained.
    ModelRetrained = "model_retrained", check = check_model_retrained;
    /// A forecast was made.
    Forecast = "forecast", check = Forecast::validate;
    /// The design policy recommended controls.
    Decision = "decision", check = Decision::validate;
    /// Setpoints were written to the reactor.
    SetpointWritten = "setpoint_written";
    /// Setpoints were recommended but not written because the write gate was closed.
    SetpointWithheld = "setpoint_withheld";
    /// An alarm was raised or cleared.
    Alarm = "alarm";
    /// A connector operation failed.
    ConnectorError = "connector_error";
    /// The log itself was recovered after a crash: an incomplete final line was quarantined.
    LogRecovered = "log_recovered";
    /// An application-specific event.
    Custom = "custom";
    /// An operator acted on a reactor (approve, edit, reject, an intervention); the record's
    /// actor is the operator.
    OperatorAction = "operator_action", check = check_operator_action;
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_strings_agree_with_serde_and_parse() {
        for k in EventKind::ALL {
            assert_eq!(
                serde_json::to_value(k).unwrap(),
                Value::String(k.as_str().to_string())
            );
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
            assert_eq!(k.to_string(), k.as_str());
        }
        assert_eq!(EventKind::ALL.len(), 15);
        assert_eq!(EventKind::ALL[0], EventKind::RunStarted);
        assert_eq!(EventKind::ALL[13], EventKind::Custom);
        assert_eq!(EventKind::parse("unknown"), None);
    }

    #[test]
    fn normal_bands_are_ordered_and_clipped() {
        let b = SpeciesBands::from_normal(&[1.0, 0.5], &[1.0, 0.0], 0.0);
        assert_eq!(b.q05, vec![0.0, 0.5]);
        assert!((b.q95[0] - (1.0 + Z_Q95)).abs() < 1e-15);
        assert!((b.q90[0] - (1.0 + Z_Q90)).abs() < 1e-15);
        assert_eq!(b.mean, vec![1.0, 0.5]);
    }
}
