//! The on-disk contract of a campaign directory: what a running campaign publishes for
//! its operators, and how operators' actions reach it.
//!
//! A campaign directory holds:
//!
//! | file | written by | read by |
//! |---|---|---|
//! | `snapshot.json` | the campaign, atomically (temp file + rename) after every step | the dashboard, `perfusio campaign report` |
//! | `actions.jsonl` | operators (CLI `perfusio approve|edit|reject`, the dashboard), one JSON [`OperatorAction`] per line, append-only | the campaign |
//! | `outcomes.jsonl` | the campaign, one [`ActionOutcome`] per consumed action, append-only | the dashboard, the CLI |
//!
//! An action is never lost: it stays in `actions.jsonl`, and the campaign answers each one
//! (by its [`OperatorAction::id`]) exactly once in `outcomes.jsonl`, accepted or refused with
//! the reason; the audit trail of the reactor concerned records it with its actor.
//! Missing values are `null` (`None`), never zero.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name of the published snapshot inside a campaign directory.
pub const SNAPSHOT_FILE: &str = "snapshot.json";
/// File name of the operators' action log inside a campaign directory.
pub const ACTIONS_FILE: &str = "actions.jsonl";
/// File name of the campaign's answers to the actions.
pub const OUTCOMES_FILE: &str = "outcomes.jsonl";

/// Errors of the campaign files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CampaignFileError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file (or one line of it) is not valid JSON of the expected shape.
    #[error("{}: line {line}: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line (1 for whole-file JSON).
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// Result of the campaign file functions.
pub type FileResult<T> = std::result::Result<T, CampaignFileError>;

/// What a running (or finished) campaign publishes: one entry per reactor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignSnapshot {
    /// Campaign name from its configuration.
    pub campaign: String,
    /// The culture day the campaign is on.
    pub day: u32,
    /// When this snapshot was written (ISO 8601, UTC).
    pub updated_at: String,
    /// `"running"`, `"completed"` or `"cancelled"` (with a reason after a colon).
    pub status: String,
    /// `"auto"` or `"required"`.
    pub approval: String,
    /// Objective in the CLI's spelling, e.g. `"harvest"`.
    pub objective: String,
    /// One entry per reactor, in configuration order.
    pub reactors: Vec<ReactorSnapshot>,
    /// The best operating point found so far, if any (by the first objective when there
    /// are several).
    pub best_point: Option<BestPoint>,
    /// With two or three objectives: the operating points found so far that no other one
    /// dominates under the model's means (at most eight, by the first objective), each
    /// with every objective's mean and sd. Empty with one objective.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pareto_front: Vec<BestPoint>,
}

/// One reactor of a [`CampaignSnapshot`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReactorSnapshot {
    /// Reactor id, e.g. `"R07"`.
    pub id: String,
    /// Connector kind and address, for display (`"virtual CloneY seed 3"`, `"opc.tcp://…/R07"`).
    pub connector: String,
    /// Path of its audit log, relative to the campaign directory.
    pub audit: String,
    /// Every sample read so far, in day order; a species that was not measured is `None`.
    pub observations: Vec<Observation>,
    /// The latest forecast, if one was made.
    pub forecast: Option<ForecastBands>,
    /// The setpoints in force from each day on (applied ones only), in day order; control
    /// names as `Control::name`.
    pub setpoints: Vec<SetpointEntry>,
    /// A recommendation waiting for an operator, if any.
    pub pending: Option<PendingRecommendation>,
    /// Alarms that are active now.
    pub alarms: Vec<ActiveAlarm>,
}

/// One sample: species name (as `Species::name`) → value or `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// Culture day.
    pub day: u32,
    /// Values by species name; `None` where not measured or rejected.
    pub values: BTreeMap<String, Option<f64>>,
}

/// A forecast's quantile bands per species, from `from_day` on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecastBands {
    /// Day the forecast starts from (its filtered state).
    pub from_day: u32,
    /// Forecast days (absolute culture days), one per band entry.
    pub days: Vec<u32>,
    /// Species name → one band per entry of `days`: the latent (true) state.
    pub species: BTreeMap<String, Vec<Band>>,
    /// Species name → one band per entry of `days`: the measured value (measurement noise
    /// included), where a sample of that day should fall. Empty in older snapshots.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub measured: BTreeMap<String, Vec<Band>>,
}

/// Quantiles of one forecast day.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Band {
    /// 5 % quantile.
    pub q05: f64,
    /// 25 % quantile.
    pub q25: f64,
    /// Median.
    pub q50: f64,
    /// 75 % quantile.
    pub q75: f64,
    /// 95 % quantile.
    pub q95: f64,
}

/// Setpoints in force from `day` on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetpointEntry {
    /// First day these setpoints act on.
    pub day: u32,
    /// Control name → value.
    pub values: BTreeMap<String, f64>,
    /// Who set them: `"twin"` (auto-applied decision), `"operator:NAME"`, or `"hold"`.
    pub source: String,
}

/// A recommendation waiting for approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingRecommendation {
    /// The day the recommendation is for.
    pub day: u32,
    /// Control name → recommended value.
    pub recommended: BTreeMap<String, f64>,
    /// Control name → value in force now.
    pub current: BTreeMap<String, f64>,
    /// Why the policy chose it (the decision's reason).
    pub reason: String,
    /// When the deadline passes (ISO 8601, UTC).
    pub deadline: String,
    /// What happens at the deadline: `"hold"` or `"apply"`.
    pub at_deadline: String,
}

/// An active alarm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveAlarm {
    /// Variable name.
    pub variable: String,
    /// `"warning"` or `"critical"`.
    pub severity: String,
    /// Human-readable condition, e.g. `"viability < 80 within 3 d with p ≥ 0.2"`.
    pub message: String,
    /// Day it was raised.
    pub since_day: u32,
}

/// The campaign's best operating point so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BestPoint {
    /// Control name → value.
    pub controls: BTreeMap<String, f64>,
    /// Predicted objective of running these controls constant (model mean).
    pub objective_mean: f64,
    /// Its standard deviation.
    pub objective_sd: f64,
    /// Reactor whose data it came from, if it is an observed point.
    pub reactor: Option<String>,
    /// How the best-point step searched the design space that day (evaluations, whether
    /// its compass search converged); absent for the points of the front.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<String>,
    /// With two or three objectives: each one's predicted mean and sd (the first is
    /// `objective_mean` and `objective_sd`). Empty with one objective.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objectives: Vec<ObjectiveValue>,
}

/// One objective's predicted value at an operating point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectiveValue {
    /// The objective's name (`harvest (medium cost 400)`, `final-titer`, …).
    pub name: String,
    /// Model mean of running the point constant.
    pub mean: f64,
    /// Its standard deviation.
    pub sd: f64,
}

/// What an operator does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ActionKind {
    /// Apply the pending recommendation as it is.
    Approve,
    /// Apply these values instead (control name → value, inside the design space); controls
    /// not named keep the recommended value.
    Edit {
        /// The edited values.
        values: BTreeMap<String, f64>,
    },
    /// Do not apply the recommendation; the current setpoints stay.
    Reject {
        /// Optional reason given by the operator.
        reason: Option<String>,
    },
    /// A glucose bolus: the amount added, as the concentration increase in mmol/L.
    GlucoseBolus {
        /// Concentration increase (mmol/L).
        mmol_per_l: f64,
    },
    /// An extra sample taken by hand: species name → value.
    ExtraSample {
        /// The measured values.
        values: BTreeMap<String, f64>,
    },
    /// A media exchange: the fraction of the working volume exchanged for fresh medium.
    MediaExchange {
        /// Fraction in (0, 1].
        fraction: f64,
    },
    /// A setpoint override outside the approval flow: control name → value.
    SetpointOverride {
        /// The values.
        values: BTreeMap<String, f64>,
    },
}

/// Largest glucose bolus an operator can record, mmol/L of working volume (18 g/L: far
/// above any feeding step; a larger value is a typing error).
pub const MAX_GLUCOSE_BOLUS_MMOL_PER_L: f64 = 100.0;

impl ActionKind {
    /// Checks the amounts of a manual addition, the one rule for every way an action comes
    /// in (CLI, dashboard, the campaign itself): a glucose bolus adds more than 0 and at most
    /// [`MAX_GLUCOSE_BOLUS_MMOL_PER_L`], a media exchange replaces a fraction in (0, 1].
    /// Other kinds are checked against the design space or the species' ranges where they
    /// are used. The error says what is accepted.
    ///
    /// ```
    /// use perfusio_twin::campaign_files::ActionKind;
    /// assert!(ActionKind::GlucoseBolus { mmol_per_l: 5.0 }.check_amount().is_ok());
    /// assert!(ActionKind::GlucoseBolus { mmol_per_l: 500.0 }.check_amount().is_err());
    /// assert!(ActionKind::MediaExchange { fraction: 0.0 }.check_amount().is_err());
    /// ```
    pub fn check_amount(&self) -> Result<(), String> {
        match *self {
            Self::GlucoseBolus { mmol_per_l: v }
                if !(v.is_finite() && v > 0.0 && v <= MAX_GLUCOSE_BOLUS_MMOL_PER_L) =>
            {
                Err(format!(
                    "a glucose bolus adds more than 0 and at most \
                     {MAX_GLUCOSE_BOLUS_MMOL_PER_L} mmol/L, not {v}"
                ))
            }
            Self::MediaExchange { fraction: v } if !(v.is_finite() && v > 0.0 && v <= 1.0) => Err(
                format!("a media exchange replaces a fraction in (0, 1] of the volume, not {v}"),
            ),
            _ => Ok(()),
        }
    }

    /// The kind's name as `actions.jsonl`, the audit and the dashboard's forms spell it
    /// (`"approve"`, `"glucose_bolus"`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Edit { .. } => "edit",
            Self::Reject { .. } => "reject",
            Self::GlucoseBolus { .. } => "glucose_bolus",
            Self::ExtraSample { .. } => "extra_sample",
            Self::MediaExchange { .. } => "media_exchange",
            Self::SetpointOverride { .. } => "setpoint_override",
        }
    }
}

/// One line of `actions.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorAction {
    /// Unique id (for example `"{actor}-{unix_nanos}"`); outcomes refer to it.
    pub id: String,
    /// Who did it (a user name; never a password).
    pub actor: String,
    /// When (ISO 8601, UTC).
    pub at: String,
    /// Reactor id.
    pub reactor: String,
    /// Culture day it concerns.
    pub day: u32,
    /// What was done.
    #[serde(flatten)]
    pub kind: ActionKind,
}

/// One line of `outcomes.jsonl`: the campaign's answer to one action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionOutcome {
    /// The action's id.
    pub action: String,
    /// Whether it took effect.
    pub accepted: bool,
    /// Why it was refused, or what it did.
    pub reason: String,
    /// When the campaign handled it (ISO 8601, UTC).
    pub at: String,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CampaignFileError + '_ {
    move |source| CampaignFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes the snapshot atomically: a reader sees the old or the new file, never half of one.
pub fn write_snapshot(dir: &Path, snapshot: &CampaignSnapshot) -> FileResult<()> {
    let path = dir.join(SNAPSHOT_FILE);
    let tmp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
    let text =
        serde_json::to_string_pretty(snapshot).map_err(|e| CampaignFileError::Malformed {
            path: path.clone(),
            line: 1,
            reason: e.to_string(),
        })?;
    fs::write(&tmp, text).map_err(io(&tmp))?;
    fs::rename(&tmp, &path).map_err(io(&path))
}

/// Reads the snapshot, `Ok(None)` when the campaign has not published one yet.
pub fn read_snapshot(dir: &Path) -> FileResult<Option<CampaignSnapshot>> {
    let path = dir.join(SNAPSHOT_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| CampaignFileError::Malformed {
                    path,
                    line: 1,
                    reason: e.to_string(),
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&path)(e)),
    }
}

fn append_line<T: Serialize>(path: &Path, value: &T) -> FileResult<()> {
    let mut line = serde_json::to_string(value).map_err(|e| CampaignFileError::Malformed {
        path: path.to_path_buf(),
        line: 0,
        reason: e.to_string(),
    })?;
    line.push('\n');
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io(path))?;
    // one write of the whole line: with O_APPEND, concurrent writers do not interleave
    f.write_all(line.as_bytes()).map_err(io(path))?;
    f.sync_data().map_err(io(path))
}

fn read_lines<T: for<'de> Deserialize<'de>>(path: &Path) -> FileResult<Vec<T>> {
    let f = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(path)(e)),
    };
    let mut out = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(io(path))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(&line).map_err(|e| CampaignFileError::Malformed {
                path: path.to_path_buf(),
                line: i + 1,
                reason: e.to_string(),
            })?,
        );
    }
    Ok(out)
}

/// Appends one operator action to `actions.jsonl` (durably).
pub fn append_action(dir: &Path, action: &OperatorAction) -> FileResult<()> {
    append_line(&dir.join(ACTIONS_FILE), action)
}

/// Every operator action so far, in file order.
pub fn read_actions(dir: &Path) -> FileResult<Vec<OperatorAction>> {
    read_lines(&dir.join(ACTIONS_FILE))
}

/// Appends the campaign's answer to one action to `outcomes.jsonl` (durably).
pub fn append_outcome(dir: &Path, outcome: &ActionOutcome) -> FileResult<()> {
    append_line(&dir.join(OUTCOMES_FILE), outcome)
}

/// Every answer so far, in file order.
pub fn read_outcomes(dir: &Path) -> FileResult<Vec<ActionOutcome>> {
    read_lines(&dir.join(OUTCOMES_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_round_trip_and_keep_order() -> FileResult<()> {
        let dir = tempfile::tempdir().map_err(io(Path::new("tempdir")))?;
        let a = OperatorAction {
            id: "ana-1".into(),
            actor: "ana".into(),
            at: "2026-12-02T08:00:00Z".into(),
            reactor: "R07".into(),
            day: 12,
            kind: ActionKind::Edit {
                values: BTreeMap::from([("perfusion_rate".to_string(), 1.5)]),
            },
        };
        let b = OperatorAction {
            id: "ben-2".into(),
            kind: ActionKind::Reject { reason: None },
            ..a.clone()
        };
        append_action(dir.path(), &a)?;
        append_action(dir.path(), &b)?;
        assert_eq!(read_actions(dir.path())?, vec![a, b]);
        assert!(read_outcomes(dir.path())?.is_empty());
        Ok(())
    }

    #[test]
    fn a_malformed_action_line_is_an_error_naming_the_line() -> FileResult<()> {
        let dir = tempfile::tempdir().map_err(io(Path::new("tempdir")))?;
        let path = dir.path().join(ACTIONS_FILE);
        fs::write(&path, "{\"id\":\"x\"}\nnot json\n").map_err(io(&path))?;
        match read_actions(dir.path()) {
            Err(CampaignFileError::Malformed { line, .. }) => assert_eq!(line, 1),
            other => panic!("expected a malformed-line error, got {other:?}"),
        }
        Ok(())
    }

    #[test]
    fn a_missing_snapshot_is_none_and_a_written_one_reads_back() -> FileResult<()> {
        let dir = tempfile::tempdir().map_err(io(Path::new("tempdir")))?;
        assert!(read_snapshot(dir.path())?.is_none());
        let s = CampaignSnapshot {
            campaign: "c".into(),
            day: 3,
            updated_at: "2026-12-02T08:00:00Z".into(),
            status: "running".into(),
            approval: "required".into(),
            objective: "harvest".into(),
            reactors: vec![ReactorSnapshot {
                id: "R01".into(),
                connector: "virtual".into(),
                audit: "R01/audit.jsonl".into(),
                observations: vec![Observation {
                    day: 0,
                    values: BTreeMap::from([("glucose".to_string(), None)]),
                }],
                forecast: None,
                setpoints: Vec::new(),
                pending: None,
                alarms: Vec::new(),
            }],
            best_point: None,
            pareto_front: Vec::new(),
        };
        write_snapshot(dir.path(), &s)?;
        assert_eq!(read_snapshot(dir.path())?, Some(s));
        Ok(())
    }
}
