//! [`Campaign`]: up to 24 reactors driven together as one self-driving experiment.
//!
//! Every reactor has its own connector (the virtual reactor, a culture file, one folder of an
//! OPC UA server) and its own audit log (`DIR/R07/audit.jsonl`, verifiable on its own); all
//! of them feed **one** shared hybrid model (pooled data, each reactor its own run id), and
//! each day's decisions are one q-batch over the reactors
//! ([`BedPolicy::decide_batch`](perfusio_bed::BedPolicy::decide_batch)), so that the reactors
//! spread over the design space. A day of the campaign:
//!
//! 1. read and validate every reactor's sample concurrently (`sample_read`, one
//!    `sample_rejected` per rejected value, `connector_error` when a read fails);
//! 2. take the operators' interventions of the day (glucose bolus, extra sample, media
//!    exchange, setpoint override; `operator_action`);
//! 3. learn: each reactor's filter and the shared dataset (the same learning step as the
//!    twin, [`ReactorState::learn`]); every `retrain_every` days one warm retraining of the
//!    shared model (`model_retrained` in every reactor's log), or, with
//!    `retrain_in_background`, the adoption of a fit made off the daily path;
//! 4. forecast every reactor (`forecast`; moment matching unless `forecast_method` says
//!    otherwise), alarms per reactor (`alarm`);
//! 5. one batch decision (`decision` per reactor);
//! 6. approval: applied at once (`auto`), or published as pending and waiting for approve,
//!    edit or reject until the deadline, then hold or apply (`required`; `operator_action`);
//! 7. write where writing is on (`setpoint_written`), else `setpoint_withheld` with why.
//!
//! After each day the campaign publishes `snapshot.json` (see [`crate::campaign_files`]) and
//! the index `campaign.json` ([`CampaignIndex`]: the configuration, the reactors' logs, and
//! the head hash of every reactor's log after every day). Operators' actions come from
//! `actions.jsonl` and each gets one answer in `outcomes.jsonl`. A campaign that stopped
//! continues from its directory with [`Campaign::resume`] (module `resume`).

mod config;
mod foreground;
mod report;
mod resume;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use perfusio_audit::event::{
    ConnectorError as ConnectorErrorEvent, Custom, OperatorAction as OperatorActionEvent,
    RunFinished, RunStarted, SampleRejected, SetpointWithheld, SetpointWritten, setpoint_map,
};
use perfusio_audit::{Actor, AuditHandle, AuditWriter, Entry, Event, WriterOptions};
use perfusio_bed::BedPolicy;
use perfusio_bed::objective::{Objective, OutcomeConstraint, parse_objective};
use perfusio_bed::qmc::uniform_points;
use perfusio_bed::space::DecisionSpace;
use perfusio_core::{
    Addition, Connector, Control, ControlArray, CultureDay, DEFAULT_AMBR250_DESIGN_SPACE,
    DesignSpace, N_SPECIES, Pacing, RunConfig, Setpoints, Species, SpeciesArray, Variable,
};
use perfusio_hybrid::{
    Forecast, ForecastJob, ForecastMethod, ForecastOptions, HybridConfig, HybridModel,
};
use perfusio_mechanistic::{PlantSpec, VirtualReactorConfig};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::alarm::AlarmRule;
use crate::campaign_files::{
    self, ActionKind, ActionOutcome, ActiveAlarm, Band, BestPoint, CampaignFileError,
    CampaignSnapshot, ForecastBands, ObjectiveValue, Observation, OperatorAction,
    PendingRecommendation, ReactorSnapshot, SetpointEntry,
};
use crate::cancel::CancelToken;
use crate::error::{Result, TwinError};
use crate::hash::derive_seed;
use crate::reactor::{Learned, ReactorState, retrain_model, retrain_model_pausable};
use crate::report::DayRecord;
use crate::twin::{
    DEFAULT_SAMPLE_WAIT, Read, STEP_FAILED, THREADS, WAIT_EVENT, applied_after, build_policy,
    crate_versions, decision_event, erased::Ser as _, forecast_event, read_with_retry, retrain_due,
    retrained_event, sample_payload, write_with_retry,
};
use foreground::Foreground;

pub use config::{
    ApprovalConfig, ApprovalMode, AtDeadline, CampaignConfig, ConnectorSpec, ConstraintSpec,
    MAX_REACTORS, ReactorConfig, parse_duration,
};
pub use report::{CampaignReport, ReactorOutcome, SpeciesAccuracy};

/// File name of the campaign index inside a campaign directory.
pub const INDEX_FILE: &str = "campaign.json";
/// Glucose: g/L per mmol/L (molar mass 180.156 g/mol).
pub const GLUCOSE_G_PER_MMOL: f64 = 0.180_156;
/// Paths of the Monte-Carlo evaluation of the best point.
const BEST_PATHS: usize = 64;
/// Candidates kept from one day to the next for the best point.
const BEST_KEEP: usize = 8;

/// What is wrong with a campaign's configuration, or with an operator's request to it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CampaignError {
    /// A campaign drives 1 to [`MAX_REACTORS`] reactors.
    #[error("a campaign drives 1 to {MAX_REACTORS} reactors, not {n}")]
    ReactorCount {
        /// Reactors configured.
        n: usize,
    },
    /// The TOML is not a campaign (an unknown field is named in `field`).
    #[error("campaign configuration: {message}")]
    Toml {
        /// The parser's message (it names the field and the line).
        message: String,
        /// The unknown field, when that is the problem.
        field: Option<String>,
    },
    /// A setting is invalid.
    #[error("campaign setting `{name}`: {reason}")]
    Invalid {
        /// The setting.
        name: &'static str,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{}: {message}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The contract files of the campaign directory.
    #[error(transparent)]
    Files(#[from] CampaignFileError),
}

impl CampaignError {
    pub(crate) fn invalid(name: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            name,
            reason: reason.into(),
        }
    }
}

/// The index of a campaign directory (`campaign.json`): the configuration, the reactors and
/// their logs, and the head hash of every reactor's log at the end of every day — what ties
/// the reactors' independent audit trails together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignIndex {
    /// Campaign name.
    pub name: String,
    /// The configuration it runs.
    pub config: CampaignConfig,
    /// The seed in force.
    pub seed: u64,
    /// When it started (ISO 8601, UTC).
    pub started_at: String,
    /// The reactors, in configuration order.
    pub reactors: Vec<IndexReactor>,
    /// One entry per completed day.
    pub days: Vec<IndexDay>,
    /// `None` while running; how it ended otherwise.
    #[serde(default)]
    pub finished: Option<String>,
}

/// One reactor of a [`CampaignIndex`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexReactor {
    /// Reactor id.
    pub id: String,
    /// The run id of its log and of its data in the shared model.
    pub run_id: String,
    /// Its audit log, relative to the campaign directory.
    pub audit: String,
    /// Its connector, for display.
    pub connector: String,
}

/// The heads of the reactors' logs after one day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexDay {
    /// Culture day.
    pub day: u32,
    /// Reactor id → hash of the last record of its log after the day.
    pub heads: BTreeMap<String, String>,
}

impl CampaignIndex {
    /// Reads `DIR/campaign.json`.
    pub fn read(dir: &Path) -> std::result::Result<Self, CampaignError> {
        let path = dir.join(INDEX_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| CampaignError::Io {
            path: path.clone(),
            message: e.to_string(),
        })?;
        serde_json::from_str(&text).map_err(|e| CampaignError::Io {
            path,
            message: format!("not a campaign index: {e}"),
        })
    }

    fn write(&self, dir: &Path) -> std::result::Result<(), CampaignError> {
        let path = dir.join(INDEX_FILE);
        let tmp = dir.join(format!("{INDEX_FILE}.tmp"));
        let io = |p: &Path, e: std::io::Error| CampaignError::Io {
            path: p.to_path_buf(),
            message: e.to_string(),
        };
        let text = serde_json::to_string_pretty(self).map_err(|e| CampaignError::Io {
            path: path.clone(),
            message: e.to_string(),
        })?;
        std::fs::write(&tmp, text).map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))
    }
}

/// What a campaign tells its caller after each day.
#[derive(Debug, Clone)]
pub struct CampaignDay {
    /// Culture day.
    pub day: CultureDay,
    /// Reactors that had a sample.
    pub sampled: usize,
    /// Reactors whose setpoints were written.
    pub written: usize,
    /// Reactors whose recommendation was withheld or held.
    pub held: usize,
    /// Whether the shared model was retrained.
    pub retrained: bool,
    /// Active alarms over all reactors.
    pub alarms: usize,
    /// Wall time of the day's computation (learning, retraining, forecasts, batch decision
    /// on the way from the samples to the writes, and the dashboard's forecast bands after
    /// the writes or before an approval; on the final day, the best point's final search),
    /// without reading, writing and waiting for operators. The daily best-point step runs
    /// after the writes, while the campaign waits for the next sample, and is not in it.
    pub compute: Duration,
    /// Where [`CampaignDay::compute`] went.
    pub timings: CampaignTimings,
    /// The best point so far.
    pub best: Option<BestPoint>,
}

/// The parts of a campaign day's computation, wall time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CampaignTimings {
    /// Filtering every reactor's sample and the interventions into the shared model.
    pub learn: Duration,
    /// Retraining the shared model (zero on days without one).
    pub retrain: Duration,
    /// The published forecasts of every reactor and their alarms, and the dashboard's
    /// bands drawn from them.
    pub forecast: Duration,
    /// The batch decision over the reactors.
    pub decide: Duration,
    /// Scoring the best constant operating point so far: the previous day's step (it runs
    /// after that day's writes, overlapping the wait for this day's samples); on the final
    /// day, the final search.
    pub best: Duration,
}

/// Follows a campaign (e.g. the CLI's progress lines). Methods are called from the
/// campaign's task and must not block.
pub trait CampaignObserver: Send + Sync + std::fmt::Debug {
    /// A day ended.
    fn day_completed(&self, _day: &CampaignDay) {}
}

#[derive(Debug)]
struct NoCampaignObserver;
impl CampaignObserver for NoCampaignObserver {}

/// A campaign of 1–24 reactors over one shared model (see the module docs).
///
/// ```no_run
/// # async fn demo() -> Result<(), perfusio_twin::TwinError> {
/// use perfusio_twin::campaign::{Campaign, CampaignConfig};
/// let cfg = CampaignConfig::from_file("campaign.toml".as_ref())?;
/// let report = Campaign::from_config(cfg)?.run().await?;
/// println!("{report}");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Campaign {
    config: CampaignConfig,
    design_space: DesignSpace,
    connectors: Vec<Arc<dyn Connector>>,
    /// The first (primary) objective.
    objective: Arc<dyn Objective>,
    /// Every objective (one, or two or three traded off on a front).
    objectives: Vec<Arc<dyn Objective>>,
    constraints: Option<Vec<OutcomeConstraint>>,
    hybrid: HybridConfig,
    alarm_rules: Vec<AlarmRule>,
    cancel: CancelToken,
    sample_wait: Duration,
    poll: Duration,
    observer: Arc<dyn CampaignObserver>,
    resume: bool,
    wait_for_fits: bool,
}

impl Campaign {
    /// A campaign whose connectors are built from the configuration (virtual reactors,
    /// culture files, OPC UA folders; the last needs the `opcua` feature).
    pub fn from_config(config: CampaignConfig) -> Result<Self> {
        config.check()?;
        let seed = config.seed();
        let mut connectors: Vec<Arc<dyn Connector>> = Vec::new();
        for (i, r) in config.reactors.iter().enumerate() {
            connectors.push(connector_of(
                r,
                derive_seed(seed, "plant", i as u32),
                &config.output_dir,
            )?);
        }
        Self::with_connectors(config, connectors)
    }

    /// A campaign over connectors the caller made (one per configured reactor, in order),
    /// e.g. virtual reactors it keeps handles to. The configuration's connector specs are
    /// then only descriptions.
    pub fn with_connectors(
        config: CampaignConfig,
        connectors: Vec<Arc<dyn Connector>>,
    ) -> Result<Self> {
        config.check()?;
        if connectors.len() != config.reactors.len() {
            return Err(CampaignError::invalid(
                "reactors",
                format!(
                    "{} reactors configured but {} connectors given",
                    config.reactors.len(),
                    connectors.len()
                ),
            )
            .into());
        }
        let design_space = DEFAULT_AMBR250_DESIGN_SPACE;
        let objectives: Vec<Arc<dyn Objective>> = config
            .objective_specs()
            .iter()
            .map(|(spec, cost)| Ok(Arc::from(parse_objective(spec, *cost)?)))
            .collect::<Result<_>>()?;
        let objective = objectives[0].clone();
        let constraints = match &config.constraints {
            None => None,
            Some(list) => Some(
                list.iter()
                    .map(|c| {
                        let v: Variable =
                            c.variable.parse().map_err(|e: perfusio_core::CoreError| {
                                CampaignError::invalid("constraints.variable", e.to_string())
                            })?;
                        Ok(OutcomeConstraint::new(v, c.min, c.max)?)
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
        };
        let mut hybrid = match &config.prior {
            Some(p) => {
                let spec = PlantSpec::from_arg(p)?;
                HybridConfig::with_prior(spec.params, spec.source)
            }
            None => HybridConfig::online(),
        };
        if let Some(c) = config.calibration()? {
            hybrid.calibrate = Some(c);
        }
        if config.run.decision_horizon_days > 28 {
            return Err(CampaignError::invalid(
                "run.decision_horizon_days",
                "the design policy looks at most 28 days ahead",
            )
            .into());
        }
        let alarm_rules = AlarmRule::defaults(&design_space);
        Ok(Self {
            config,
            design_space,
            connectors,
            objective,
            objectives,
            constraints,
            hybrid,
            alarm_rules,
            cancel: CancelToken::new(),
            sample_wait: DEFAULT_SAMPLE_WAIT,
            poll: Duration::from_millis(200),
            observer: Arc::new(NoCampaignObserver),
            resume: false,
            wait_for_fits: false,
        })
    }

    /// A token that cancels the campaign cleanly (keep a clone).
    #[must_use]
    pub fn cancel_token(mut self, token: CancelToken) -> Self {
        self.cancel = token;
        self
    }

    /// The observer told about every day.
    #[must_use]
    pub fn observer(mut self, observer: impl CampaignObserver + 'static) -> Self {
        self.observer = Arc::new(observer);
        self
    }

    /// How long a campaign paced as fast as possible waits for a sample that is not there
    /// yet (default [`DEFAULT_SAMPLE_WAIT`]).
    #[must_use]
    pub fn sample_wait(mut self, wait: Duration) -> Self {
        self.sample_wait = wait;
        self
    }

    /// How often `actions.jsonl` is polled while recommendations wait (default 200 ms).
    #[must_use]
    pub fn action_poll(mut self, every: Duration) -> Self {
        self.poll = every.max(Duration::from_millis(10));
        self
    }

    /// Replaces the alarm rules (default [`AlarmRule::defaults`]).
    pub fn alarm_rules(mut self, rules: Vec<AlarmRule>) -> Result<Self> {
        for r in &rules {
            r.check()?;
        }
        self.alarm_rules = rules;
        Ok(self)
    }

    /// The configuration.
    pub fn config(&self) -> &CampaignConfig {
        &self.config
    }

    /// The design space every reactor shares.
    pub fn design_space(&self) -> &DesignSpace {
        &self.design_space
    }

    /// With `retrain_in_background`: on a retraining day, wait for the running fit instead of
    /// conditioning with the hyperparameters in force (default off). Makes a campaign's
    /// sequence of fits independent of the machine's speed (tests, benchmarks), at the cost
    /// of the wait.
    pub fn wait_for_background_fits(mut self, on: bool) -> Self {
        self.wait_for_fits = on;
        self
    }

    /// Continue the campaign of the output directory instead of starting one: the complete
    /// days (those `campaign.json` lists) are replayed from the reactors' logs, and the
    /// campaign goes on with the next day. See [`Campaign::run`].
    pub fn resume(mut self, on: bool) -> Self {
        self.resume = on;
        self
    }

    /// Runs the campaign to its end (or until the data end or it is cancelled) and returns
    /// the report built from its directory. A directory that already holds a campaign is
    /// refused (each reactor's log must start empty), unless the campaign was built to
    /// [`Campaign::resume`]: then the same configuration continues it after its last complete
    /// day (a completed campaign, another configuration or prior, or a replay that does not
    /// give the logged model hashes are refused with the reason).
    pub async fn run(self) -> Result<CampaignReport> {
        let dir = self.config.output_dir.clone();
        let mut runner = if self.resume {
            Runner::resume(self).await?
        } else {
            Runner::start(self).await?
        };
        let ending = runner.run_days().await;
        let finish = runner.finish(&ending).await;
        ending?;
        finish?;
        CampaignReport::from_dir(&dir)
    }
}

fn connector_of(
    r: &ReactorConfig,
    derived_seed: u64,
    output_dir: &Path,
) -> Result<Arc<dyn Connector>> {
    match &r.connector {
        ConnectorSpec::Virtual { truth, seed } => {
            let plant = PlantSpec::from_arg(truth)?;
            let vr = perfusio_connectors::virtual_reactor::VirtualReactorConnector::new(
                VirtualReactorConfig {
                    clone: plant.clone,
                    params: Some(plant.params),
                    seed: seed.unwrap_or(derived_seed),
                    reactor_id: r.id.clone(),
                    ..VirtualReactorConfig::default()
                },
            )?;
            Ok(Arc::new(vr))
        }
        ConnectorSpec::File { path } => Ok(Arc::new(
            perfusio_connectors::files::FilesystemStore::from_path(path)?,
        )),
        #[cfg(feature = "opcua")]
        ConnectorSpec::Opcua {
            endpoint,
            folder,
            pki_dir,
            trust_on_first_use,
        } => {
            use perfusio_connectors::opcua::{NodeMap, OpcUaConfig, OpcUaConnector};
            let mut cfg = OpcUaConfig::new(endpoint.clone(), NodeMap::ambr250(folder));
            cfg.pki_dir = pki_dir.clone().unwrap_or_else(|| output_dir.join("pki"));
            cfg.trust_on_first_use = *trust_on_first_use;
            cfg.check()?;
            Ok(Arc::new(OpcUaConnector::new(cfg)?))
        }
        #[cfg(not(feature = "opcua"))]
        ConnectorSpec::Opcua { .. } => {
            let _ = output_dir;
            Err(CampaignError::invalid(
                "reactors.connector",
                format!(
                    "reactor {}: OPC UA needs perfusio-twin's `opcua` feature",
                    r.id
                ),
            )
            .into())
        }
    }
}

impl From<CampaignError> for TwinError {
    fn from(e: CampaignError) -> Self {
        TwinError::Campaign(Box::new(e))
    }
}

impl From<CampaignFileError> for TwinError {
    fn from(e: CampaignFileError) -> Self {
        TwinError::Campaign(Box::new(CampaignError::Files(e)))
    }
}

fn now_iso() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

fn control_map(values: &ControlArray<f64>) -> BTreeMap<String, f64> {
    Control::ALL
        .iter()
        .map(|c| (c.name().to_string(), values[c.index()]))
        .collect()
}

/// Parses control names (canonical or alias) → values onto `base`; every value must be
/// finite and the result inside the design space (soft ranges included).
pub fn controls_from_names(
    design_space: &DesignSpace,
    base: &ControlArray<f64>,
    values: &BTreeMap<String, f64>,
) -> std::result::Result<ControlArray<f64>, String> {
    let mut out = *base;
    for (name, v) in values {
        let c: Control = name.parse().map_err(|e| format!("{e}"))?;
        if !v.is_finite() {
            return Err(format!("{name} = {v} is not a finite number"));
        }
        out[c.index()] = *v;
    }
    let violations = design_space.check_setpoints(&out);
    if violations.is_empty() {
        Ok(out)
    } else {
        Err(format!(
            "outside the design space: {}",
            violations
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ))
    }
}

/// One reactor of a running campaign.
#[derive(Debug)]
struct Unit {
    id: String,
    run_id: String,
    connector: Arc<dyn Connector>,
    describe: String,
    audit: AuditHandle,
    audit_rel: String,
    head: String,
    days: Vec<DayRecord>,
    observations: Vec<Observation>,
    setpoints: Vec<SetpointEntry>,
    forecast: Option<ForecastBands>,
    /// The day's forecast whose bands [`Unit::forecast`] does not show yet.
    latest_forecast: Option<Forecast>,
    pending: Option<PendingRecommendation>,
    alarms: BTreeMap<String, ActiveAlarm>,
    ended: Option<String>,
}

impl Unit {
    async fn record(&mut self, day: CultureDay, event: impl Into<Event>) -> Result<()> {
        self.record_as(day, event, Actor::System).await
    }

    async fn record_as(
        &mut self,
        day: CultureDay,
        event: impl Into<Event>,
        actor: Actor,
    ) -> Result<()> {
        let event = event.into();
        let entry = Entry {
            actor,
            ..Entry::new(day, event.clone())
        };
        let receipt = self.audit.append(entry).await?;
        self.head = receipt.hash;
        if let Some(d) = self.days.last_mut().filter(|d| d.day == day) {
            d.push(&event);
        }
        if let Event::Alarm(a) = &event {
            self.track_alarm(day, a);
        }
        Ok(())
    }

    /// The active alarms after alarm record `a` of day `day`.
    fn track_alarm(&mut self, day: CultureDay, a: &perfusio_audit::event::Alarm) {
        let key = format!(
            "{}|{}",
            a.species.as_deref().unwrap_or("?"),
            a.threshold.unwrap_or(f64::NAN)
        );
        match a.state {
            perfusio_audit::event::AlarmState::Raised => {
                self.alarms.insert(
                    key,
                    ActiveAlarm {
                        variable: a.species.clone().unwrap_or_default(),
                        severity: format!("{:?}", a.severity).to_lowercase(),
                        message: a.message.clone(),
                        since_day: day,
                    },
                );
            }
            _ => {
                self.alarms.remove(&key);
            }
        }
    }

    async fn step_failed(&mut self, day: CultureDay, step: &str, message: &str) -> Result<()> {
        tracing::warn!(reactor = %self.id, day, step, message, "campaign step did not complete");
        self.record(
            day,
            Custom {
                name: STEP_FAILED.into(),
                data: json!({ "step": step, "message": message }),
            },
        )
        .await
    }

    fn snapshot(&self) -> ReactorSnapshot {
        ReactorSnapshot {
            id: self.id.clone(),
            connector: self.describe.clone(),
            audit: self.audit_rel.clone(),
            observations: self.observations.clone(),
            forecast: self.forecast.clone(),
            setpoints: self.setpoints.clone(),
            pending: self.pending.clone(),
            alarms: self.alarms.values().cloned().collect(),
        }
    }
}

/// The shared model and every reactor's state, moved together onto the blocking pool.
#[derive(Debug)]
struct Shared {
    model: HybridModel,
    states: Vec<ReactorState>,
}

/// A hyperparameter fit of a copy of the shared model, running off the daily path.
#[derive(Debug)]
struct BackgroundFit {
    /// The retraining day whose data it is fitted on.
    day: CultureDay,
    handle: std::thread::JoinHandle<(HybridModel, Learned)>,
}

impl BackgroundFit {
    /// Fits a copy of the shared model, taken on day `day`, on its own thread at idle
    /// priority (`SCHED_IDLE` where there is one), pausing at its checkpoints while the
    /// daily path holds `foreground`: it uses the cores the daily loop leaves, so that it
    /// does not slow the days down.
    fn start(mut copy: HybridModel, day: CultureDay, foreground: Foreground) -> Result<Self> {
        let handle = std::thread::Builder::new()
            .name(format!("perfusio-fit-{day}"))
            .spawn(move || {
                idle_priority();
                let pause = || {
                    foreground.wait_idle();
                };
                let l = retrain_model_pausable(&mut copy, day, &pause);
                (copy, l)
            })
            .map_err(|e| TwinError::Task(format!("cannot start the background fit: {e}")))?;
        Ok(Self { day, handle })
    }

    /// Waits for the fit (on the blocking pool).
    async fn finish(self) -> Result<(HybridModel, Learned)> {
        tokio::task::spawn_blocking(move || self.handle.join())
            .await?
            .map_err(|_| TwinError::Task("the background fit panicked".into()))
    }
}

/// The calling thread (and the threads it starts) at the lowest scheduling class.
fn idle_priority() {
    #[cfg(unix)]
    {
        use thread_priority::unix::{
            NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy,
            thread_native_id,
        };
        if let Err(e) = set_thread_priority_and_policy(
            thread_native_id(),
            thread_priority::ThreadPriority::Min,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
        ) {
            tracing::debug!(error = ?e, "the background fit keeps the normal priority");
        }
    }
}

/// A finished background fit, to adopt.
pub(super) struct Fitted {
    pub(super) day: CultureDay,
    pub(super) model: HybridModel,
    pub(super) learned: Learned,
}

/// How a retraining day with `retrain_in_background` retrains the shared model.
pub(super) enum Adopt {
    /// The finished fit of an earlier retraining day.
    Fit(Box<Fitted>),
    /// The fit of that day is still running: the model is conditioned on all data with
    /// the hyperparameters in force, and the fit is adopted on a later retraining day.
    Condition(CultureDay),
}

/// Start of the `termination` of a retraining that adopted a background fit.
pub(super) const ADOPTED: &str = "adopted the fit of day ";
/// Start of the `termination` of a retraining that only conditioned on the data.
pub(super) const CONDITIONED: &str = "conditioned on the data through day ";

/// The retraining of the shared model on day `day`: a background fit adopted (its
/// hyperparameters, the model conditioned on all data since), the model conditioned on all
/// data with the hyperparameters in force while a fit still runs, or, without either (first
/// retraining, a fit that was skipped or cannot be adopted), a fit on the spot. The same in
/// the live loop and in a resume's replay.
pub(super) fn shared_retrain(
    model: &mut HybridModel,
    day: CultureDay,
    adopt: Option<Adopt>,
) -> Learned {
    let adopted = match adopt {
        Some(Adopt::Fit(f)) if f.learned.retrained.is_some() => {
            model.adopt_fit(&f.model).map(|mut r| {
                r.termination = format!(
                    "{ADOPTED}{} ({}), conditioned on the data through day {day}",
                    f.day, r.termination
                );
                r
            })
        }
        Some(Adopt::Condition(running)) if model.gp().is_some() => {
            let current = model.clone();
            model.adopt_fit(&current).map(|mut r| {
                r.termination = format!(
                    "{CONDITIONED}{day} with the hyperparameters in force (the fit of day \
                     {running} is still running)"
                );
                r
            })
        }
        _ => return retrain_model(model, day),
    };
    match adopted {
        Ok(r) => Learned {
            retrained: Some(r),
            retrain_skipped: None,
        },
        Err(e) => {
            tracing::warn!(day, error = %e, "the background fit cannot be adopted; fitting now");
            retrain_model(model, day)
        }
    }
}

/// What the operators did to one reactor on one day before it learned.
#[derive(Debug, Default, Clone)]
struct Interventions {
    /// Additions after the sample (boluses, media exchanges), in the order they were made.
    additions: Vec<Addition>,
    /// Setpoints an operator imposed for the day, and who.
    override_values: Option<(ControlArray<f64>, String)>,
}

/// How one reactor's day ends.
#[derive(Debug, Clone)]
enum Resolution {
    Apply {
        values: ControlArray<f64>,
        source: String,
    },
    Hold {
        reason: String,
    },
}

struct Runner {
    c: Campaign,
    dir: PathBuf,
    seed: u64,
    policy: Arc<BedPolicy>,
    shared: Option<Box<Shared>>,
    units: Vec<Unit>,
    index: CampaignIndex,
    answered: BTreeSet<String>,
    day: CultureDay,
    /// The first day `run_days` runs (0, or the day after the last complete one on resume).
    first_day: CultureDay,
    /// The hyperparameter fit running in the background (`retrain_in_background`).
    fitting: Option<BackgroundFit>,
    status: String,
    best: Option<BestPoint>,
    /// With several objectives: the front of operating points found so far.
    front: Vec<BestPoint>,
    best_pool: Vec<ControlArray<f64>>,
    /// The daily best-point step, running while the campaign waits for the next sample.
    best_task: Option<BestTask>,
    day0: Option<perfusio_hybrid::StateEstimate>,
    /// Claimed from a day's learning to its end (not while operators are waited for), once
    /// the days have deadlines (see [`Runner::paced`]); the background fit and best-point
    /// step wait at their checkpoints meanwhile.
    foreground: Foreground,
    /// Whether the days have deadlines: real-time pacing, or a source that has made a read
    /// wait for its sample (a live server that holds only the current day). Days back to
    /// back (a simulation) leave the background work no idle time to run in, so they do not
    /// claim the cores.
    paced: bool,
}

impl Runner {
    /// The design policy, the untrained shared model and the run configuration of a
    /// campaign with `seed` (the same for a start and a resume).
    fn prepare(c: &Campaign, seed: u64) -> Result<(Arc<BedPolicy>, HybridModel, RunConfig)> {
        let mut run_cfg = c.config.run.clone();
        run_cfg.seed = Some(seed);
        if c.objectives.len() > 1 && !run_cfg.acquisition.is_multi_objective() {
            run_cfg.acquisition = perfusio_core::Acquisition::QNEHVI;
        }
        let policy = Arc::new(build_policy(
            &run_cfg,
            &c.design_space,
            &c.objectives,
            c.constraints.as_deref(),
            &[],
            seed,
        )?);
        let mut hc = c.hybrid.clone();
        hc.design_space = c.design_space.clone();
        hc.max_day = hc
            .max_day
            .max(run_cfg.duration_days)
            .max(c.config.best_point_days.unwrap_or(0));
        hc.gp.seed = derive_seed(seed, "gp", 0);
        let model = HybridModel::new(hc)?;
        Ok((policy, model, run_cfg))
    }

    async fn start(c: Campaign) -> Result<Self> {
        let dir = c.config.output_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| CampaignError::Io {
            path: dir.clone(),
            message: e.to_string(),
        })?;
        let seed = c.config.seed();
        let (policy, model, run_cfg) = Self::prepare(&c, seed)?;
        let model_sha = model.fingerprint();
        let initial = Control::defaults();
        let mut units = Vec::new();
        let mut states = Vec::new();
        for (r, conn) in c.config.reactors.iter().zip(&c.connectors) {
            let rel = format!("{}/audit.jsonl", r.id);
            let path = dir.join(&rel);
            if std::fs::metadata(&path).is_ok_and(|m| m.len() > 0) {
                return Err(TwinError::AuditExists {
                    path,
                    records: perfusio_audit::read_records(dir.join(&rel))?.count() as u64,
                    run_id: format!("{}-{}", c.config.name, r.id),
                });
            }
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| CampaignError::Io {
                    path: parent.to_path_buf(),
                    message: e.to_string(),
                })?;
            }
            let run_id = format!("{}-{}", c.config.name, r.id);
            let (writer, _) =
                AuditWriter::open(&path, WriterOptions::new(run_id.clone(), r.id.clone()))?;
            let audit = AuditHandle::spawn(writer)?;
            let describe = format!("{} ({})", conn.describe(), r.connector.describe());
            states.push(ReactorState::new(
                run_id.clone(),
                initial,
                c.alarm_rules.clone(),
            ));
            units.push(Unit {
                id: r.id.clone(),
                run_id,
                connector: conn.clone(),
                describe,
                audit,
                audit_rel: rel,
                head: String::new(),
                days: Vec::new(),
                observations: Vec::new(),
                setpoints: vec![SetpointEntry {
                    day: 0,
                    values: control_map(&initial),
                    source: "initial".into(),
                }],
                forecast: None,
                latest_forecast: None,
                pending: None,
                alarms: BTreeMap::new(),
                ended: None,
            });
        }
        let answered = campaign_files::read_outcomes(&dir)?
            .into_iter()
            .map(|o| o.action)
            .collect();
        let index = CampaignIndex {
            name: c.config.name.clone(),
            config: c.config.clone(),
            seed,
            started_at: now_iso(),
            reactors: units
                .iter()
                .map(|u| IndexReactor {
                    id: u.id.clone(),
                    run_id: u.run_id.clone(),
                    audit: u.audit_rel.clone(),
                    connector: u.describe.clone(),
                })
                .collect(),
            days: Vec::new(),
            finished: None,
        };
        let mut runner = Self {
            dir,
            seed,
            policy,
            shared: Some(Box::new(Shared { model, states })),
            units,
            index,
            answered,
            day: 0,
            first_day: 0,
            fitting: None,
            status: "running".into(),
            best: None,
            front: Vec::new(),
            best_pool: Vec::new(),
            best_task: None,
            day0: None,
            foreground: Foreground::default(),
            paced: c.config.run.pacing == Pacing::RealTime,
            c,
        };
        for i in 0..runner.units.len() {
            let u = &mut runner.units[i];
            let health = u.connector.health().await;
            let mut settings = BTreeMap::new();
            settings.insert("campaign".into(), Value::from(runner.c.config.name.clone()));
            settings.insert(
                "campaign_index".into(),
                Value::from(format!("../{INDEX_FILE}")),
            );
            settings.insert("reactor".into(), Value::from(u.id.clone()));
            settings.insert(
                "reactors".into(),
                Value::from(runner.c.config.reactors.len()),
            );
            settings.insert("run_config".into(), run_cfg.value());
            settings.insert("design_space".into(), runner.c.design_space.value());
            settings.insert("objective".into(), Value::from(runner.c.objective.name()));
            settings.insert("approval".into(), runner.c.config.approval.value());
            settings.insert("connector".into(), Value::from(u.describe.clone()));
            settings.insert("connector_health".into(), Value::from(health.to_string()));
            settings.insert(
                "model".into(),
                Value::from(format!(
                    "shared hybrid model, {} mechanism, learned online from {} reactors",
                    runner.c.hybrid.prior_label,
                    runner.c.config.reactors.len()
                )),
            );
            settings.insert("model_sha256".into(), Value::from(model_sha.clone()));
            settings.insert(
                "initial_setpoints".into(),
                setpoint_map(&Setpoints::new(0, initial)).value(),
            );
            settings.insert("crate_versions".into(), crate_versions());
            u.record(
                0,
                RunStarted {
                    software: format!("perfusio-twin {} campaign", env!("CARGO_PKG_VERSION")),
                    seed: Some(seed),
                    settings,
                },
            )
            .await?;
        }
        runner.index.write(&runner.dir)?;
        runner.publish()?;
        Ok(runner)
    }

    fn shared(&mut self) -> Result<&mut Shared> {
        self.shared.as_deref_mut().ok_or_else(|| {
            TwinError::Task("the shared model was lost by an earlier failure".into())
        })
    }

    async fn with_shared<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Shared) -> T + Send + 'static,
    ) -> Result<T> {
        let mut s = self.shared.take().ok_or_else(|| {
            TwinError::Task("the shared model was lost by an earlier failure".into())
        })?;
        let (s, out) = tokio::task::spawn_blocking(move || {
            let out = f(&mut s);
            (s, out)
        })
        .await?;
        self.shared = Some(s);
        Ok(out)
    }

    fn publish(&self) -> Result<()> {
        let snap = CampaignSnapshot {
            campaign: self.c.config.name.clone(),
            day: self.day,
            updated_at: now_iso(),
            status: self.status.clone(),
            approval: self.c.config.approval.mode.as_str().into(),
            objective: self.c.config.objective_label(),
            reactors: self.units.iter().map(Unit::snapshot).collect(),
            best_point: self.best.clone(),
            pareto_front: self.front.clone(),
        };
        campaign_files::write_snapshot(&self.dir, &snap)?;
        Ok(())
    }

    async fn run_days(&mut self) -> Result<()> {
        let last = self.c.config.run.duration_days;
        let interval = Duration::from_secs_f64(self.c.config.run.sampling_interval_hours * 3600.0);
        let anchor = Instant::now();
        let mut day: CultureDay = self.first_day;
        while day <= last {
            let budget = match self.c.config.run.pacing {
                Pacing::RealTime => {
                    let due = anchor + interval * (day - self.first_day);
                    let now = Instant::now();
                    if due > now && !self.c.cancel.sleep(due - now).await {
                        self.status = "cancelled".into();
                        return Ok(());
                    }
                    (anchor + interval * (day - self.first_day + 1))
                        .saturating_duration_since(Instant::now())
                        .max(Duration::from_millis(1))
                }
                Pacing::AsFastAsPossible => self.c.sample_wait,
            };
            if self.c.cancel.is_cancelled() {
                self.status = "cancelled".into();
                return Ok(());
            }
            self.day = day;
            if !self.run_day(day, day == last, budget).await? {
                return Ok(());
            }
            day += 1;
        }
        self.status = "completed".into();
        Ok(())
    }

    /// Ends every log with `run_finished`, closes them, writes the final index and snapshot.
    async fn finish(&mut self, ending: &Result<()>) -> Result<()> {
        // a best-point step still running gives the shared model back first
        let joined = self.join_best().await;
        let (completed, reason) = match ending {
            Err(e) => {
                self.status = format!("stopped: {e}");
                (false, format!("stopped by an error: {e}"))
            }
            Ok(()) if self.status == "completed" => (true, "completed".to_string()),
            Ok(()) => (false, self.status.clone()),
        };
        for u in &mut self.units {
            let last_day = u
                .days
                .iter()
                .rev()
                .find(|d| d.is_complete())
                .map_or(0, |d| d.day);
            let reason = match (&u.ended, completed) {
                (Some(why), _) => why.clone(),
                _ => reason.clone(),
            };
            u.record(
                last_day,
                RunFinished {
                    completed: completed && u.ended.is_none(),
                    reason,
                    last_day,
                },
            )
            .await?;
            u.audit.close().await?;
        }
        self.index.finished = Some(self.status.clone());
        if let Some(d) = self.index.days.last_mut() {
            for u in &self.units {
                d.heads.insert(u.id.clone(), u.head.clone());
            }
        }
        self.index.write(&self.dir)?;
        for u in &mut self.units {
            u.pending = None;
        }
        self.publish()?;
        joined.map(|_| ())
    }

    /// One day of every reactor; `false` when the campaign ends early (data ended for all
    /// reactors, or cancelled).
    async fn run_day(
        &mut self,
        day: CultureDay,
        final_day: bool,
        budget: Duration,
    ) -> Result<bool> {
        let n = self.units.len();
        for u in &mut self.units {
            u.days.push(DayRecord::new(day));
        }
        // 1. read every reactor concurrently
        let mut set = tokio::task::JoinSet::new();
        for (i, u) in self.units.iter().enumerate() {
            if u.ended.is_some() {
                continue;
            }
            let conn = u.connector.clone();
            let ds = self.c.design_space.clone();
            let cancel = self.c.cancel.clone();
            set.spawn(async move { (i, read_with_retry(&*conn, &ds, &cancel, day, budget).await) });
        }
        let mut reads: Vec<Option<Read>> = (0..n).map(|_| None).collect();
        // yesterday's best-point step finishes while the reads wait for their samples (in
        // the background, it is taken only if it has finished)
        let best_took = if self.best_in_background() {
            self.try_join_best()?
        } else {
            self.join_best().await?
        };
        while let Some(r) = set.join_next().await {
            let (i, read) = r?;
            reads[i] = Some(read);
        }
        let mut measured: Vec<Option<SpeciesArray<Option<f64>>>> = vec![None; n];
        let mut reported: Vec<Option<ControlArray<Option<f64>>>> = vec![None; n];
        let mut source_waited = false;
        for (i, read) in reads.into_iter().enumerate() {
            let u = &mut self.units[i];
            match read {
                None => {}
                Some(Read::Sample(v, waited, attempts)) => {
                    if attempts > 1 {
                        source_waited = true;
                        u.record(
                            day,
                            Custom {
                                name: WAIT_EVENT.into(),
                                data: json!({
                                    "operation": "read_raw",
                                    "waited_s": waited.as_secs_f64(),
                                    "attempts": attempts,
                                }),
                            },
                        )
                        .await?;
                    }
                    let payload = sample_payload(&v.sample, &u.describe);
                    u.record(day, payload).await?;
                    for r in &v.rejections {
                        u.record(day, SampleRejected::from(r)).await?;
                    }
                    measured[i] = Some(v.sample.species);
                    reported[i] = Some(v.sample.controls);
                }
                Some(Read::NotYet(e)) => {
                    u.days.pop();
                    u.ended = Some(match day.checked_sub(1) {
                        Some(prev) => format!("data ended on day {prev}"),
                        None => format!("no data: {e}"),
                    });
                }
                Some(Read::Failed(e, waited, attempts)) => {
                    u.record(
                        day,
                        ConnectorErrorEvent {
                            connector: u.describe.clone(),
                            operation: "read_raw".into(),
                            message: format!(
                                "{e} ({attempts} attempt{} over {:.1} s); day {day} goes without a sample",
                                if attempts == 1 { "" } else { "s" },
                                waited.as_secs_f64()
                            ),
                            retryable: false,
                        },
                    )
                    .await?;
                }
                Some(Read::Cancelled) => {
                    self.status = "cancelled".into();
                    return Ok(false);
                }
            }
        }
        self.paced |= source_waited;
        if self.units.iter().all(|u| u.ended.is_some()) {
            self.status = format!("data ended on day {}", day.saturating_sub(1));
            return Ok(false);
        }
        // 2. the operators' interventions of the day
        let mut interventions: Vec<Interventions> = vec![Interventions::default(); n];
        self.take_interventions(day, &mut measured, &mut interventions)
            .await?;
        for (i, u) in self.units.iter_mut().enumerate() {
            if let Some(m) = &measured[i] {
                u.observations.push(Observation {
                    day,
                    values: Species::ALL
                        .iter()
                        .map(|s| (s.name().to_string(), m[s.index()]))
                        .collect(),
                });
            }
        }
        // 3. learn; one retraining of the shared model when due
        let t_compute = Instant::now();
        let retrain = retrain_due(&self.c.config.run, day);
        let background = self.c.config.retrain_in_background;
        // the hyperparameter fit started on an earlier retraining day, when it has finished
        let t_wait = Instant::now();
        let adopt = match (retrain && background, self.fitting.take()) {
            (true, Some(f)) if self.c.wait_for_fits || f.handle.is_finished() => {
                let day = f.day;
                let (fitted, l) = f.finish().await?;
                Some(Adopt::Fit(Box::new(Fitted {
                    day,
                    model: fitted,
                    learned: l,
                })))
            }
            (true, Some(f)) => {
                let running = f.day;
                self.fitting = Some(f);
                Some(Adopt::Condition(running))
            }
            (false, pending) => {
                self.fitting = pending;
                None
            }
            (true, None) => None,
        };
        let waited = t_wait.elapsed();
        let start_next =
            retrain && background && !final_day && !matches!(adopt, Some(Adopt::Condition(_)));
        // from here to the day's end (or an operator's approval) a paced day has the cores:
        // nothing below waits for background work until the claim is dropped
        let mut claim = self.paced.then(|| self.foreground.claim());
        let active: Vec<bool> = self.units.iter().map(|u| u.ended.is_none()).collect();
        let ms = measured.clone();
        let inter = interventions.clone();
        let (learned, day0, retrain_time, next) = self
            .with_shared(move |s| -> Result<_> {
                let tr = s.model.config().transform;
                for i in 0..s.states.len() {
                    if !active[i] {
                        continue;
                    }
                    s.states[i].learn(&mut s.model, day, ms[i].as_ref(), false)?;
                    if let Some(r) = &reported[i] {
                        s.states[i].take_reported(r);
                    }
                    if inter[i].additions.is_empty() {
                        continue;
                    }
                    if let Some(est) = s.states[i].estimate() {
                        let before = est.mean_species(&tr);
                        let mut after = before;
                        for a in &inter[i].additions {
                            a.apply(&mut after);
                        }
                        let delta: SpeciesArray<f64> =
                            std::array::from_fn(|k| after[k] - before[k]);
                        s.states[i].added(&mut s.model, day, delta, ms[i].is_some())?;
                    }
                }
                let t_retrain = Instant::now();
                let learned = retrain.then(|| {
                    let l = shared_retrain(&mut s.model, day, adopt);
                    let sha = l.retrained.is_some().then(|| s.model.fingerprint());
                    (l, sha)
                });
                let next = start_next.then(|| s.model.clone());
                let retrain_time = t_retrain.elapsed() + waited;
                let day0 = if day == 0 {
                    s.states.iter().find_map(|st| st.estimate().cloned())
                } else {
                    None
                };
                Ok((learned, day0, retrain_time, next))
            })
            .await??;
        if let Some(copy) = next {
            // the next hyperparameter fit, off the daily path: on the data through today,
            // adopted on a later retraining day
            self.fitting = Some(BackgroundFit::start(copy, day, self.foreground.clone())?);
        }
        if day0.is_some() {
            self.day0 = day0;
        }
        let mut retrained = false;
        if let Some((l, sha)) = learned {
            for u in self.units.iter_mut().filter(|u| u.ended.is_none()) {
                match (&l.retrained, &sha) {
                    (Some(r), Some(sha)) => {
                        retrained = true;
                        u.record(day, retrained_event(r, sha.clone())).await?;
                    }
                    _ => {
                        let why = l.retrain_skipped.clone().unwrap_or_default();
                        u.step_failed(day, "retrain", &why).await?;
                    }
                }
            }
        }
        let mut compute = t_compute.elapsed();
        let mut timings = CampaignTimings {
            learn: compute.saturating_sub(retrain_time),
            retrain: retrain_time,
            best: best_took,
            ..CampaignTimings::default()
        };
        let mut summary = CampaignDay {
            day,
            sampled: measured.iter().filter(|m| m.is_some()).count(),
            written: 0,
            held: 0,
            retrained,
            alarms: 0,
            compute,
            timings,
            best: None,
        };
        if final_day {
            // (the final search waits for the running best-point step)
            drop(claim);
            // the best point under the final model, searched to convergence
            let t_best = Instant::now();
            let currents: Vec<ControlArray<f64>> = {
                let s = self.shared()?;
                s.states.iter().map(|st| *st.current()).collect()
            };
            self.update_best(&[], &currents, BestSearch::Final).await?;
            summary.timings.best = t_best.elapsed();
            summary.compute += summary.timings.best;
            self.end_day(day, &mut summary)?;
            return Ok(true);
        }
        // 4. forecasts under the setpoints in force, alarms
        let t_compute = Instant::now();
        let horizon = self.c.config.run.forecast_horizon_days as usize;
        let paths = self.c.config.run.mc_samples as usize;
        let method = self.c.config.forecast_method;
        let seeds: Vec<u64> = self
            .units
            .iter()
            .map(|u| derive_seed(self.seed, &format!("forecast-{}", u.id), day))
            .collect();
        let decided_mask: Vec<bool> = (0..n)
            .map(|i| measured[i].is_some() && self.units[i].ended.is_none())
            .collect();
        let mask = decided_mask.clone();
        let forecasts = self
            .with_shared(move |s| {
                let model = &s.model;
                let jobs: Vec<(usize, perfusio_hybrid::StateEstimate, ControlArray<f64>)> = s
                    .states
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask[*i])
                    .filter_map(|(i, st)| st.estimate().map(|e| (i, e.clone(), *st.current())))
                    .collect();
                // one batch over the reactors, each with its own seed
                let schedules: Vec<Vec<ControlArray<f64>>> =
                    jobs.iter().map(|(_, _, cur)| vec![*cur; horizon]).collect();
                let batch: Vec<ForecastJob<'_>> = jobs
                    .iter()
                    .zip(&schedules)
                    .map(|((i, est, _), schedule)| ForecastJob {
                        start: est,
                        schedule,
                        seed: seeds[*i],
                    })
                    .collect();
                let opts = ForecastOptions {
                    method,
                    paths,
                    seed: 0,
                    keep_paths: true,
                    threads: THREADS,
                };
                let out: Vec<(usize, std::result::Result<Forecast, String>)> = jobs
                    .iter()
                    .zip(model.forecast_many(&batch, &opts))
                    .map(|((i, _, _), f)| (*i, f.map_err(|e| e.to_string())))
                    .collect();
                let sha = model.fingerprint();
                out.into_iter()
                    .map(|(i, f)| {
                        let f = f.map(|f| {
                            let alarms = s.states[i].alarms_mut().evaluate(&f);
                            (crate::hash::forecast_sha256(&f), f, alarms)
                        });
                        (i, f, sha.clone())
                    })
                    .collect::<Vec<_>>()
            })
            .await?;
        timings.forecast = t_compute.elapsed();
        compute += timings.forecast;
        for (i, f, model_sha) in forecasts {
            let u = &mut self.units[i];
            match f {
                Ok((fsha, f, alarms)) => {
                    u.record(day, forecast_event(&f, fsha, model_sha)).await?;
                    for a in alarms {
                        u.record(day, a).await?;
                    }
                    // (its bands for the dashboard are drawn after the writes)
                    u.latest_forecast = Some(f);
                }
                Err(e) => u.step_failed(day, "forecast", &e).await?,
            }
        }
        // 5. one batch decision over the reactors with a sample
        let t_compute = Instant::now();
        let policy = self.policy.clone();
        let mask = decided_mask.clone();
        let decided = self
            .with_shared(move |s| {
                let idx: Vec<usize> = (0..s.states.len())
                    .filter(|i| mask[*i] && s.states[*i].estimate().is_some())
                    .collect();
                let inputs: Vec<_> = idx
                    .iter()
                    .filter_map(|i| {
                        s.states[*i]
                            .estimate()
                            .map(|e| (e.clone(), *s.states[*i].current()))
                    })
                    .collect();
                policy
                    .decide_batch(&s.model, &inputs)
                    .map(|d| idx.into_iter().zip(d).collect::<Vec<_>>())
            })
            .await?;
        timings.decide = t_compute.elapsed();
        compute += timings.decide;
        if let Ok(d) = &decided
            && let Some((_, first)) = d.first()
        {
            let t = &first.timings;
            tracing::debug!(
                day,
                screen = ?t.screen,
                choose = ?t.refine,
                forecasts = ?t.forecast,
                "batch decision"
            );
        }
        let mut resolutions: Vec<Option<Resolution>> = vec![None; n];
        let mut recommended: Vec<Option<ControlArray<f64>>> = vec![None; n];
        let currents: Vec<ControlArray<f64>> = {
            let s = self.shared()?;
            s.states.iter().map(|st| *st.current()).collect()
        };
        match decided {
            Ok(list) => {
                for (i, d) in list {
                    let u = &mut self.units[i];
                    u.record(day, decision_event(&d)).await?;
                    recommended[i] = Some(d.setpoints.values);
                    u.pending = Some(PendingRecommendation {
                        day,
                        recommended: control_map(&d.setpoints.values),
                        current: control_map(&currents[i]),
                        reason: d.reason.clone(),
                        deadline: String::new(),
                        at_deadline: self.c.config.approval.at_deadline.as_str().into(),
                    });
                }
            }
            Err(e) => {
                let why = e.to_string();
                for i in (0..n).filter(|i| decided_mask[*i]) {
                    self.units[i].step_failed(day, "decide", &why).await?;
                    resolutions[i] = Some(Resolution::Hold {
                        reason: format!("no decision ({why}): holding the setpoints in force"),
                    });
                }
            }
        }
        summary.compute = compute;
        summary.timings = timings;
        // operator overrides replace the day's decision
        for i in 0..n {
            if let Some((values, actor)) = &interventions[i].override_values {
                self.units[i].pending = None;
                resolutions[i] = Some(Resolution::Apply {
                    values: *values,
                    source: format!("operator:{actor}"),
                });
            }
        }
        // 6. approval
        match self.c.config.approval.mode {
            ApprovalMode::Auto => {
                for i in 0..n {
                    if let (None, Some(r)) = (&resolutions[i], recommended[i]) {
                        self.units[i].pending = None;
                        resolutions[i] = Some(Resolution::Apply {
                            values: r,
                            source: "twin".into(),
                        });
                    }
                }
            }
            ApprovalMode::Required => {
                // the operators see the day's forecast bands while they decide; background
                // work goes on meanwhile
                self.draw_bands(&mut summary).await?;
                claim = None;
                self.await_approval(day, &recommended, &currents, &mut resolutions)
                    .await?;
            }
        }
        // 7. write or withhold
        self.apply(day, &recommended, &currents, resolutions, &mut summary)
            .await?;
        // the dashboard's forecast bands (with approvals, drawn before the wait): after the
        // writes
        self.draw_bands(&mut summary).await?;
        // 8. the best constant operating point so far, under the shared model: after the
        // writes (it decides nothing), on its own thread while the campaign waits for the
        // next sample (its time is in the day's `timings.best` that takes its result)
        summary.timings.best += self.start_best(&recommended, &currents)?;
        self.end_day(day, &mut summary)?;
        drop(claim);
        Ok(true)
    }

    /// The dashboard's bands of every reactor's latest forecast, drawn on [`THREADS`]
    /// threads; their time counts in the day's forecast time.
    async fn draw_bands(&mut self, summary: &mut CampaignDay) -> Result<()> {
        let t = Instant::now();
        let pending: Vec<(usize, Forecast)> = self
            .units
            .iter_mut()
            .enumerate()
            .filter_map(|(i, u)| u.latest_forecast.take().map(|f| (i, f)))
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let drawn = tokio::task::spawn_blocking(move || {
            let bands = par_map(&pending, |(_, f)| bands_of(f));
            pending
                .into_iter()
                .map(|(i, _)| i)
                .zip(bands)
                .collect::<Vec<_>>()
        })
        .await?;
        for (i, b) in drawn {
            self.units[i].forecast = b;
        }
        let took = t.elapsed();
        summary.timings.forecast += took;
        summary.compute += took;
        Ok(())
    }

    /// Index, snapshot and observer at the end of a day.
    fn end_day(&mut self, day: CultureDay, summary: &mut CampaignDay) -> Result<()> {
        self.index.days.push(IndexDay {
            day,
            heads: self
                .units
                .iter()
                .map(|u| (u.id.clone(), u.head.clone()))
                .collect(),
        });
        self.index.write(&self.dir)?;
        self.publish()?;
        summary.alarms = self.units.iter().map(|u| u.alarms.len()).sum();
        summary.best = self.best.clone();
        self.c.observer.day_completed(summary);
        Ok(())
    }

    /// Reads `actions.jsonl` and returns the actions not answered yet.
    fn new_actions(&self) -> Result<Vec<OperatorAction>> {
        Ok(campaign_files::read_actions(&self.dir)?
            .into_iter()
            .filter(|a| !self.answered.contains(&a.id))
            .collect())
    }

    /// Answers an action once: `outcomes.jsonl` and, for a known reactor, its audit log
    /// with the operator as actor.
    #[allow(clippy::too_many_arguments)]
    async fn answer(
        &mut self,
        a: &OperatorAction,
        accepted: bool,
        reason: String,
        values: BTreeMap<String, f64>,
        before: BTreeMap<String, f64>,
        after: BTreeMap<String, f64>,
    ) -> Result<()> {
        if let Some(u) = self.units.iter_mut().find(|u| u.id == a.reactor) {
            let actor = Actor::operator(a.actor.clone())
                .unwrap_or_else(|_| Actor::Operator(format!("unnamed ({:?})", a.actor.trim())));
            u.record_as(
                self.day,
                OperatorActionEvent {
                    action_id: a.id.clone(),
                    action: a.kind.name().into(),
                    requested_at: a.at.clone(),
                    accepted,
                    reason: reason.clone(),
                    values,
                    before,
                    after,
                },
                actor,
            )
            .await?;
        }
        campaign_files::append_outcome(
            &self.dir,
            &ActionOutcome {
                action: a.id.clone(),
                accepted,
                reason,
                at: now_iso(),
            },
        )?;
        self.answered.insert(a.id.clone());
        Ok(())
    }

    /// Refuses actions that cannot apply any more (unknown reactor, a past day, an
    /// approval for a day that has no pending recommendation); keeps future-day actions.
    /// Returns the actions of `day` that concern known reactors.
    async fn triage(&mut self, day: CultureDay, approvals: bool) -> Result<Vec<OperatorAction>> {
        let mut out = Vec::new();
        for a in self.new_actions()? {
            let is_approval = matches!(
                a.kind,
                ActionKind::Approve | ActionKind::Edit { .. } | ActionKind::Reject { .. }
            );
            let unit = self.units.iter().position(|u| u.id == a.reactor);
            let refuse = if unit.is_none() {
                Some(format!(
                    "reactor {} is not part of campaign {}",
                    a.reactor, self.c.config.name
                ))
            } else if a.day < day {
                Some(format!(
                    "day {} is over (the campaign is on day {day}); nothing changes the past",
                    a.day
                ))
            } else if a.day > day {
                None
            } else if is_approval && approvals {
                let has_pending = unit.is_some_and(|i| self.units[i].pending.is_some());
                if has_pending {
                    out.push(a);
                    continue;
                }
                Some(format!(
                    "reactor {} has no recommendation waiting for day {day} (decided already, \
                     no sample, or approval is auto)",
                    a.reactor
                ))
            } else if !is_approval && !approvals {
                out.push(a);
                continue;
            } else if approvals {
                // an intervention while the day's recommendations wait
                out.push(a);
                continue;
            } else {
                None
            };
            if let Some(reason) = refuse {
                self.answer(
                    &a,
                    false,
                    reason,
                    BTreeMap::new(),
                    BTreeMap::new(),
                    BTreeMap::new(),
                )
                .await?;
            }
        }
        Ok(out)
    }

    /// The interventions of `day` (bolus, extra sample, exchange, override): validated,
    /// answered and audited before the day's learning step.
    async fn take_interventions(
        &mut self,
        day: CultureDay,
        measured: &mut [Option<SpeciesArray<Option<f64>>>],
        out: &mut [Interventions],
    ) -> Result<()> {
        let actions = self.triage(day, false).await?;
        let (currents, gln_feed): (Vec<ControlArray<f64>>, f64) = {
            let s = self.shared()?;
            (
                s.states.iter().map(|st| *st.current()).collect(),
                s.model.mechanism_params().gln_feed,
            )
        };
        for a in actions {
            let Some(i) = self.units.iter().position(|u| u.id == a.reactor) else {
                continue;
            };
            if self.units[i].ended.is_some() {
                self.answer(
                    &a,
                    false,
                    format!("reactor {} has no more data; it is not running", a.reactor),
                    BTreeMap::new(),
                    BTreeMap::new(),
                    BTreeMap::new(),
                )
                .await?;
                continue;
            }
            let none = BTreeMap::new;
            match &a.kind {
                ActionKind::GlucoseBolus { mmol_per_l } => {
                    if let Err(why) = a.kind.check_amount() {
                        self.answer(
                            &a,
                            false,
                            why,
                            BTreeMap::from([("mmol_per_l".to_string(), *mmol_per_l)]),
                            none(),
                            none(),
                        )
                        .await?;
                        continue;
                    }
                    let g = mmol_per_l * GLUCOSE_G_PER_MMOL;
                    let addition = Addition::GlucoseBolus { g_per_l: g };
                    let values = BTreeMap::from([("mmol_per_l".to_string(), *mmol_per_l)]);
                    match self.physically(i, day, &addition).await {
                        Ok(how) => {
                            out[i].additions.push(addition);
                            self.answer(
                                &a,
                                true,
                                format!(
                                    "glucose bolus of {mmol_per_l} mmol/L (+{g:.3} g/L) after the \
                                     day-{day} sample, {how}: the day's transition starts from \
                                     the sample plus it"
                                ),
                                values,
                                none(),
                                BTreeMap::from([("Glc_added_g_per_l".to_string(), g)]),
                            )
                            .await?;
                        }
                        Err(why) => self.answer(&a, false, why, values, none(), none()).await?,
                    }
                }
                ActionKind::MediaExchange { fraction } => {
                    if let Err(why) = a.kind.check_amount() {
                        self.answer(
                            &a,
                            false,
                            why,
                            BTreeMap::from([("fraction".to_string(), *fraction)]),
                            none(),
                            none(),
                        )
                        .await?;
                        continue;
                    }
                    let addition = Addition::MediaExchange {
                        fraction: *fraction,
                        glucose: currents[i][Control::GlucoseSetpoint.index()],
                        glutamine: gln_feed,
                    };
                    let values = BTreeMap::from([("fraction".to_string(), *fraction)]);
                    match self.physically(i, day, &addition).await {
                        Ok(how) => {
                            out[i].additions.push(addition);
                            self.answer(
                                &a,
                                true,
                                format!(
                                    "media exchange of {:.0} % of the volume after the day-{day} \
                                     sample, {how}: glucose and glutamine move toward the medium \
                                     (glucose {:.2} g/L, glutamine {gln_feed:.2} mmol/L), other \
                                     metabolites and titer are diluted, cells are retained",
                                    fraction * 100.0,
                                    currents[i][Control::GlucoseSetpoint.index()]
                                ),
                                values,
                                none(),
                                none(),
                            )
                            .await?;
                        }
                        Err(why) => self.answer(&a, false, why, values, none(), none()).await?,
                    }
                }
                ActionKind::ExtraSample { values } => {
                    let mut parsed = Vec::new();
                    let mut problem = None;
                    for (name, v) in values {
                        match Species::lookup(name) {
                            Some(s) if v.is_finite() && s.bounds().contains(*v) => {
                                parsed.push((s, *v));
                            }
                            Some(s) => {
                                problem = Some(format!(
                                    "{name} = {v} is outside the plausible range of {} ({:?})",
                                    s.name(),
                                    s.bounds()
                                ));
                            }
                            None => {
                                problem = Some(format!(
                                    "{name} is not a species ({})",
                                    Species::valid_names()
                                ));
                            }
                        }
                    }
                    if parsed.is_empty() && problem.is_none() {
                        problem = Some("an extra sample needs at least one value".into());
                    }
                    if let Some(p) = problem {
                        self.answer(&a, false, p, values.clone(), none(), none())
                            .await?;
                        continue;
                    }
                    let m = measured[i].get_or_insert([None; N_SPECIES]);
                    let before: BTreeMap<String, f64> = Species::ALL
                        .iter()
                        .filter_map(|s| m[s.index()].map(|v| (s.name().to_string(), v)))
                        .collect();
                    for (s, v) in &parsed {
                        m[s.index()] = Some(*v);
                    }
                    let after: BTreeMap<String, f64> = Species::ALL
                        .iter()
                        .filter_map(|s| m[s.index()].map(|v| (s.name().to_string(), v)))
                        .collect();
                    self.answer(
                        &a,
                        true,
                        format!(
                            "extra sample of day {day}: {} value(s) enter the day's observation",
                            parsed.len()
                        ),
                        values.clone(),
                        before,
                        after,
                    )
                    .await?;
                }
                ActionKind::SetpointOverride { values } => {
                    match controls_from_names(&self.c.design_space, &currents[i], values) {
                        Ok(v) => {
                            out[i].override_values = Some((v, a.actor.clone()));
                            self.answer(
                                &a,
                                true,
                                format!(
                                    "setpoint override from day {day}: replaces the day's \
                                     recommendation"
                                ),
                                values.clone(),
                                control_map(&currents[i]),
                                control_map(&v),
                            )
                            .await?;
                        }
                        Err(why) => {
                            self.answer(
                                &a,
                                false,
                                why,
                                values.clone(),
                                control_map(&currents[i]),
                                none(),
                            )
                            .await?;
                        }
                    }
                }
                ActionKind::Approve | ActionKind::Edit { .. } | ActionKind::Reject { .. } => {}
            }
        }
        Ok(())
    }

    /// An intervention that arrives while day `day`'s recommendations wait (after the day's
    /// learning step): a setpoint override settles the reactor's day; a bolus or a media
    /// exchange reaches the plant and the model's state and data at once; an extra sample is
    /// refused (the day's observation was learned from already).
    async fn late_intervention(
        &mut self,
        day: CultureDay,
        i: usize,
        a: &OperatorAction,
        current: &ControlArray<f64>,
        resolutions: &mut [Option<Resolution>],
    ) -> Result<()> {
        let none = BTreeMap::new;
        let gln_feed = self.shared()?.model.mechanism_params().gln_feed;
        let addition = match &a.kind {
            ActionKind::SetpointOverride { values } => {
                match controls_from_names(&self.c.design_space, current, values) {
                    Ok(v) => {
                        resolutions[i] = Some(Resolution::Apply {
                            values: v,
                            source: format!("operator:{}", a.actor),
                        });
                        self.units[i].pending = None;
                        self.answer(
                            a,
                            true,
                            format!(
                                "setpoint override from day {day}: replaces the waiting \
                                 recommendation"
                            ),
                            values.clone(),
                            control_map(current),
                            control_map(&v),
                        )
                        .await?;
                    }
                    Err(why) => {
                        self.answer(a, false, why, values.clone(), control_map(current), none())
                            .await?;
                    }
                }
                return Ok(());
            }
            ActionKind::ExtraSample { values } => {
                let reason = format!(
                    "day {day}'s observation of {} has been learned from already; an extra \
                     sample enters the model when it is recorded before the day's learning step",
                    a.reactor
                );
                return self
                    .answer(a, false, reason, values.clone(), none(), none())
                    .await;
            }
            ActionKind::GlucoseBolus { mmol_per_l }
                if mmol_per_l.is_finite() && *mmol_per_l > 0.0 && *mmol_per_l <= 500.0 =>
            {
                Addition::GlucoseBolus {
                    g_per_l: mmol_per_l * GLUCOSE_G_PER_MMOL,
                }
            }
            ActionKind::MediaExchange { fraction }
                if fraction.is_finite() && *fraction > 0.0 && *fraction <= 1.0 =>
            {
                Addition::MediaExchange {
                    fraction: *fraction,
                    glucose: current[Control::GlucoseSetpoint.index()],
                    glutamine: gln_feed,
                }
            }
            _ => {
                let reason = "a bolus is > 0 and ≤ 500 mmol/L, an exchanged fraction in (0, 1]";
                return self
                    .answer(a, false, reason.into(), none(), none(), none())
                    .await;
            }
        };
        match self.physically(i, day, &addition).await {
            Ok(how) => {
                let recorded = self.units[i]
                    .days
                    .last()
                    .is_some_and(|d| d.day == day && d.sample.is_some());
                self.with_shared(move |s| -> Result<()> {
                    let tr = s.model.config().transform;
                    if let Some(est) = s.states[i].estimate() {
                        let before = est.mean_species(&tr);
                        let mut after = before;
                        addition.apply(&mut after);
                        let delta: SpeciesArray<f64> =
                            std::array::from_fn(|k| after[k] - before[k]);
                        s.states[i].added(&mut s.model, day, delta, recorded)?;
                    }
                    Ok(())
                })
                .await??;
                self.answer(
                    a,
                    true,
                    format!(
                        "{addition:?} after the day-{day} sample, {how}; made after the day's \
                         decision, it enters the model's state and the day's transition now"
                    ),
                    none(),
                    none(),
                    none(),
                )
                .await
            }
            Err(why) => self.answer(a, false, why, none(), none(), none()).await,
        }
    }

    /// Gives an addition to the reactor's plant: `Ok("the virtual reactor received it")`,
    /// `Ok("made by hand at the reactor")` when the connector only records it, `Err(why)`
    /// when the plant refused it (then the model does not use it either).
    async fn physically(
        &self,
        i: usize,
        day: CultureDay,
        addition: &Addition,
    ) -> std::result::Result<&'static str, String> {
        let u = &self.units[i];
        match u.connector.add(day, addition).await {
            Ok(true) => Ok("received by the simulated plant"),
            Ok(false) => Ok("made by hand at the reactor"),
            Err(e) => Err(format!("{} refused the addition: {e}", u.describe)),
        }
    }

    /// Publishes the pending recommendations and waits for the operators until every one is
    /// resolved or the deadline passes; then holds or applies the rest as configured.
    async fn await_approval(
        &mut self,
        day: CultureDay,
        recommended: &[Option<ControlArray<f64>>],
        currents: &[ControlArray<f64>],
        resolutions: &mut [Option<Resolution>],
    ) -> Result<()> {
        let deadline_in = self.c.config.approval.deadline;
        let deadline_at = OffsetDateTime::now_utc() + deadline_in;
        let deadline_text = deadline_at.format(&Rfc3339).unwrap_or_else(|_| now_iso());
        for (i, u) in self.units.iter_mut().enumerate() {
            match (&resolutions[i], &mut u.pending) {
                (None, Some(p)) => p.deadline.clone_from(&deadline_text),
                (_, p) => *p = None,
            }
        }
        self.publish()?;
        let until = Instant::now() + deadline_in;
        loop {
            for a in self.triage(day, true).await? {
                let Some(i) = self.units.iter().position(|u| u.id == a.reactor) else {
                    continue;
                };
                let before = control_map(&currents[i]);
                if !matches!(
                    a.kind,
                    ActionKind::Approve | ActionKind::Edit { .. } | ActionKind::Reject { .. }
                ) {
                    self.late_intervention(day, i, &a, &currents[i], resolutions)
                        .await?;
                    continue;
                }
                let Some(rec) = recommended[i] else { continue };
                match &a.kind {
                    ActionKind::Approve => {
                        resolutions[i] = Some(Resolution::Apply {
                            values: rec,
                            source: format!("operator:{}", a.actor),
                        });
                        self.units[i].pending = None;
                        self.answer(
                            &a,
                            true,
                            format!("approved: the day-{day} recommendation is applied"),
                            BTreeMap::new(),
                            before,
                            control_map(&rec),
                        )
                        .await?;
                    }
                    ActionKind::Edit { values } => {
                        match controls_from_names(&self.c.design_space, &rec, values) {
                            Ok(v) => {
                                resolutions[i] = Some(Resolution::Apply {
                                    values: v,
                                    source: format!("operator:{}", a.actor),
                                });
                                self.units[i].pending = None;
                                self.answer(
                                    &a,
                                    true,
                                    format!("edited: the edited day-{day} setpoints are applied"),
                                    values.clone(),
                                    before,
                                    control_map(&v),
                                )
                                .await?;
                            }
                            Err(why) => {
                                self.answer(
                                    &a,
                                    false,
                                    format!("edit refused, the recommendation still waits: {why}"),
                                    values.clone(),
                                    before,
                                    BTreeMap::new(),
                                )
                                .await?;
                            }
                        }
                    }
                    ActionKind::Reject { reason } => {
                        let why = reason.clone().unwrap_or_else(|| "no reason given".into());
                        resolutions[i] = Some(Resolution::Hold {
                            reason: format!(
                                "rejected by operator {} ({why}): the reactor keeps its setpoints",
                                a.actor
                            ),
                        });
                        self.units[i].pending = None;
                        self.answer(
                            &a,
                            true,
                            format!("rejected: the setpoints in force stay ({why})"),
                            BTreeMap::new(),
                            before.clone(),
                            before,
                        )
                        .await?;
                    }
                    _ => {}
                }
            }
            self.publish()?;
            let waiting = self.units.iter().any(|u| u.pending.is_some());
            if !waiting {
                return Ok(());
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if !self.c.cancel.sleep(self.c.poll.min(left)).await {
                break;
            }
        }
        // the deadline passed (or the campaign is cancelled): hold or apply as configured
        let apply = self.c.config.approval.at_deadline == AtDeadline::Apply
            && !self.c.cancel.is_cancelled();
        for i in 0..self.units.len() {
            if self.units[i].pending.take().is_none() {
                continue;
            }
            let Some(rec) = recommended[i] else { continue };
            let before = control_map(&currents[i]);
            let (name, reason, after) = if apply {
                resolutions[i] = Some(Resolution::Apply {
                    values: rec,
                    source: "deadline".into(),
                });
                (
                    "deadline_apply",
                    format!(
                        "no operator acted within {:.0} s: the recommendation is applied \
                         (at_deadline = apply)",
                        deadline_in.as_secs_f64()
                    ),
                    control_map(&rec),
                )
            } else {
                let reason = if self.c.cancel.is_cancelled() {
                    "cancelled while waiting for approval: the setpoints in force stay".to_string()
                } else {
                    format!(
                        "no operator acted within {:.0} s: the setpoints in force stay \
                         (at_deadline = hold)",
                        deadline_in.as_secs_f64()
                    )
                };
                resolutions[i] = Some(Resolution::Hold {
                    reason: reason.clone(),
                });
                ("deadline_hold", reason, before.clone())
            };
            let action_id = format!("deadline-{}-{day}", self.units[i].id);
            self.units[i]
                .record(
                    day,
                    OperatorActionEvent {
                        action_id,
                        action: name.into(),
                        requested_at: now_iso(),
                        accepted: true,
                        reason,
                        values: BTreeMap::new(),
                        before,
                        after,
                    },
                )
                .await?;
        }
        Ok(())
    }

    /// Writes (concurrently) what is applied, withholds the rest, and ends every reactor's
    /// day in the shared state.
    async fn apply(
        &mut self,
        day: CultureDay,
        recommended: &[Option<ControlArray<f64>>],
        currents: &[ControlArray<f64>],
        resolutions: Vec<Option<Resolution>>,
        summary: &mut CampaignDay,
    ) -> Result<()> {
        let n = self.units.len();
        let allow_write = self.c.config.run.allow_write;
        let mut set = tokio::task::JoinSet::new();
        for (i, r) in resolutions.iter().enumerate() {
            if let (true, Some(Resolution::Apply { values, .. })) = (allow_write, r) {
                let conn = self.units[i].connector.clone();
                let cancel = self.c.cancel.clone();
                let sp = Setpoints::new(day, *values);
                set.spawn(async move {
                    let got = write_with_retry(&*conn, &cancel, &sp, Duration::from_secs(30)).await;
                    (i, got)
                });
            }
        }
        let mut receipts: Vec<Option<_>> = (0..n).map(|_| None).collect();
        while let Some(r) = set.join_next().await {
            let (i, got) = r?;
            receipts[i] = Some(got);
        }
        let mut applied_all: Vec<Option<(ControlArray<f64>, String)>> = vec![None; n];
        for (i, r) in resolutions.into_iter().enumerate() {
            let u = &mut self.units[i];
            if u.ended.is_some() || u.days.last().is_none_or(|d| d.day != day) {
                continue;
            }
            let current = currents[i];
            let (applied, source) = match r {
                None => {
                    let reason = format!("no sample for day {day}: holding the setpoints in force");
                    u.record(
                        day,
                        SetpointWithheld::new(&Setpoints::new(day, current), reason),
                    )
                    .await?;
                    summary.held += 1;
                    (current, "hold".to_string())
                }
                Some(Resolution::Hold { reason }) => {
                    let sp = recommended[i].unwrap_or(current);
                    u.record(day, SetpointWithheld::new(&Setpoints::new(day, sp), reason))
                        .await?;
                    summary.held += 1;
                    (current, "hold".to_string())
                }
                Some(Resolution::Apply { values, source }) if !allow_write => {
                    let reason = format!(
                        "writing is off (allow_write = false): {source} setpoints recorded, \
                         nothing sent to {}",
                        u.describe
                    );
                    u.record(
                        day,
                        SetpointWithheld::new(&Setpoints::new(day, values), reason),
                    )
                    .await?;
                    summary.held += 1;
                    (current, "hold".to_string())
                }
                Some(Resolution::Apply { values, source }) => match receipts[i].take() {
                    Some(Ok(receipt)) => {
                        let written = SetpointWritten::new(u.describe.clone(), receipt);
                        let applied = applied_after(&current, &written);
                        u.record(day, written).await?;
                        summary.written += 1;
                        (applied, source)
                    }
                    Some(Err(Some((e, attempts)))) => {
                        u.record(
                            day,
                            ConnectorErrorEvent {
                                connector: u.describe.clone(),
                                operation: "write_setpoints".into(),
                                message: format!("{e} ({attempts} attempts)"),
                                retryable: false,
                            },
                        )
                        .await?;
                        let reason =
                            format!("the write failed ({e}); the reactor keeps its setpoints");
                        u.record(
                            day,
                            SetpointWithheld::new(&Setpoints::new(day, values), reason),
                        )
                        .await?;
                        summary.held += 1;
                        (current, "hold".to_string())
                    }
                    Some(Err(None)) | None => {
                        let reason = "cancelled before the write: the reactor keeps its setpoints"
                            .to_string();
                        u.record(
                            day,
                            SetpointWithheld::new(&Setpoints::new(day, values), reason),
                        )
                        .await?;
                        summary.held += 1;
                        (current, "hold".to_string())
                    }
                },
            };
            if let Some(d) = u.days.last_mut() {
                d.applied = Some(applied);
            }
            let changed = u
                .setpoints
                .last()
                .is_none_or(|e| e.values != control_map(&applied));
            if changed {
                u.setpoints.push(SetpointEntry {
                    day,
                    values: control_map(&applied),
                    source: source.clone(),
                });
            }
            applied_all[i] = Some((applied, source));
        }
        let recorded: Vec<bool> = self
            .units
            .iter()
            .map(|u| {
                u.days
                    .last()
                    .is_some_and(|d| d.day == day && d.sample.is_some())
            })
            .collect();
        self.with_shared(move |s| -> Result<()> {
            for (i, a) in applied_all.into_iter().enumerate() {
                if let Some((applied, _)) = a {
                    s.states[i].applied(&mut s.model, day, applied, recorded[i])?;
                }
            }
            Ok(())
        })
        .await??;
        Ok(())
    }

    /// The best constant operating point so far: the candidates (today's recommendations,
    /// the setpoints in force, the best few of earlier days, [`BEST_SCREEN`] fresh
    /// space-filling points of the design space) are run constant from the day-0 state over
    /// the culture under the shared model, and a compass search on each objective's mean
    /// goes on from the best of them by that objective (one poll a day; on the final day
    /// until its step is below [`BEST_MIN_STEP`] of each control's range, at most
    /// [`BEST_FINAL_EVALS`] evaluations). The best by mean objective is scored again with
    /// Monte-Carlo paths for its mean and sd.
    async fn update_best(
        &mut self,
        recommended: &[Option<ControlArray<f64>>],
        currents: &[ControlArray<f64>],
        search: BestSearch,
    ) -> Result<()> {
        self.join_best().await?;
        let Some((job, owner)) = self.best_job(recommended, currents, search) else {
            return Ok(());
        };
        let scored = self.with_shared(move |s| job(&s.model)).await?;
        self.apply_best(scored, &owner);
        Ok(())
    }

    /// Whether the daily best-point step runs off the daily path: with
    /// `retrain_in_background` (short sampling intervals) it runs at idle priority, the day
    /// never waits for it, and a new one starts only when the last one has finished;
    /// otherwise (and with [`Campaign::wait_for_background_fits`]) the next day's learning
    /// waits for it, so a campaign's best points do not depend on the machine's speed.
    fn best_in_background(&self) -> bool {
        self.c.config.retrain_in_background && !self.c.wait_for_fits
    }

    /// Starts the daily [`Runner::update_best`] step on its own thread with a copy of the
    /// shared model (it decides nothing, and a live server's next sample must not wait for
    /// it); see [`Runner::best_in_background`].
    /// Returns the wall time of a finished step whose result it took first.
    fn start_best(
        &mut self,
        recommended: &[Option<ControlArray<f64>>],
        currents: &[ControlArray<f64>],
    ) -> Result<Duration> {
        if self
            .best_task
            .as_ref()
            .is_some_and(|t| !t.handle.is_finished())
        {
            // (only in the background: otherwise the day began by waiting for it)
            return Ok(Duration::ZERO);
        }
        let took = self.try_join_best()?;
        let Some((job, owner)) = self.best_job(recommended, currents, BestSearch::Daily) else {
            return Ok(took);
        };
        let model = self.shared()?.model.clone();
        let background = self.best_in_background();
        let handle = std::thread::Builder::new()
            .name(format!("perfusio-best-{}", self.day))
            .spawn(move || {
                if background {
                    idle_priority();
                }
                let t = Instant::now();
                let out = job(&model);
                (out, t.elapsed())
            })
            .map_err(|e| TwinError::Task(format!("cannot start the best-point step: {e}")))?;
        self.best_task = Some(BestTask { handle, owner });
        Ok(took)
    }

    /// Takes a finished best-point step's result; returns its wall time (zero when none
    /// had finished).
    fn try_join_best(&mut self) -> Result<Duration> {
        match &self.best_task {
            Some(t) if t.handle.is_finished() => {}
            _ => return Ok(Duration::ZERO),
        }
        let Some(t) = self.best_task.take() else {
            return Ok(Duration::ZERO);
        };
        let (scored, took) = t
            .handle
            .join()
            .map_err(|_| TwinError::Task("the best-point step panicked".into()))?;
        self.apply_best(scored, &t.owner);
        Ok(took)
    }

    /// Waits for a running best-point step and takes its result; returns its wall time.
    async fn join_best(&mut self) -> Result<Duration> {
        let Some(t) = self.best_task.take() else {
            return Ok(Duration::ZERO);
        };
        let owner = t.owner;
        let handle = t.handle;
        let (scored, took) = tokio::task::spawn_blocking(move || handle.join())
            .await?
            .map_err(|_| TwinError::Task("the best-point step panicked".into()))?;
        self.apply_best(scored, &owner);
        Ok(took)
    }

    /// The work of a best-point step (see [`Runner::update_best`]) and the reactors'
    /// setpoints it attributes points to; `None` before the day-0 state is known.
    #[allow(clippy::type_complexity)]
    fn best_job(
        &self,
        recommended: &[Option<ControlArray<f64>>],
        currents: &[ControlArray<f64>],
        search: BestSearch,
    ) -> Option<(
        impl FnOnce(&HybridModel) -> BestScored + Send + 'static,
        Vec<(ControlArray<f64>, String)>,
    )> {
        let start = self.day0.clone()?;
        let mut pool = self.best_pool.clone();
        for c in recommended.iter().flatten().chain(currents) {
            if !pool.iter().any(|p| same_controls(p, c)) {
                pool.push(*c);
            }
        }
        let days = self
            .c
            .config
            .best_point_days
            .unwrap_or(self.c.config.run.duration_days)
            .max(1) as usize;
        let objectives = self.c.objectives.clone();
        let m = objectives.len();
        let seed = derive_seed(self.seed, "best", self.day);
        let foreground = self.foreground.clone();
        let design = self.c.design_space.clone();
        let owner: Vec<(ControlArray<f64>, String)> = self
            .units
            .iter()
            .zip(currents)
            .map(|(u, c)| (*c, u.id.clone()))
            .collect();
        let job = move |model: &HybridModel| -> BestScored {
            let mm = ForecastOptions {
                method: ForecastMethod::MomentMatching,
                paths: 2,
                seed,
                keep_paths: false,
                threads: 1,
            };
            // every objective at the mean path, for every candidate (each a checkpoint: see
            // `Foreground`)
            let eval = |c: &ControlArray<f64>| -> Option<Vec<f64>> {
                foreground.wait_idle();
                let f = model.forecast(&start, &vec![*c; days], &mm).ok()?;
                let states: Vec<SpeciesArray<f64>> = f.state.iter().map(|b| b.mean).collect();
                let v: Vec<f64> = objectives
                    .iter()
                    .map(|o| o.value(&states, &vec![*c; days]))
                    .collect();
                v.iter().all(|x| x.is_finite()).then_some(v)
            };
            let space = DecisionSpace::new(&design, Control::defaults()).ok();
            if let Some(sp) = &space
                && let Ok(units) = uniform_points(BEST_SCREEN, sp.dim(), seed)
            {
                pool.extend(
                    units
                        .chunks_exact(sp.dim())
                        .filter_map(|u| sp.to_controls(u).ok()),
                );
            }
            let mut scored: Vec<(Vec<f64>, ControlArray<f64>)> = eval_all(&eval, &pool)
                .into_iter()
                .zip(&pool)
                .filter_map(|(v, c)| v.map(|v| (v, *c)))
                .collect();
            scored.sort_by(|a, b| b.0[0].total_cmp(&a.0[0]));
            // each objective's best, searched from the best candidate by it (the first
            // objective's is the best point; the others end the front)
            let mut report = None;
            for k in (0..m).rev() {
                let start_k = scored
                    .iter()
                    .max_by(|a, b| a.0[k].total_cmp(&b.0[k]))
                    .cloned();
                let (Some(sp), Some((vk, ck))) = (&space, start_k) else {
                    continue;
                };
                let (step, cap) = match search {
                    BestSearch::Daily => (BEST_DAILY_STEP, 2 * sp.dim()),
                    BestSearch::Final => (BEST_FINAL_STEP, BEST_FINAL_EVALS),
                };
                let r = compass_search(&eval, sp, &ck, vk, k, step, cap);
                if let Some(v) = &r.values
                    && r.moved
                {
                    scored.push((v.clone(), r.controls));
                }
                if k == 0 {
                    report = Some(r.describe(search));
                }
            }
            scored.sort_by(|a, b| b.0[0].total_cmp(&a.0[0]));
            // each objective's mean and sd over Monte-Carlo paths
            let mc_of = |c: &ControlArray<f64>| -> Option<Vec<(f64, f64)>> {
                foreground.wait_idle();
                let mc = ForecastOptions {
                    method: ForecastMethod::MonteCarlo,
                    paths: BEST_PATHS,
                    seed,
                    keep_paths: true,
                    threads: THREADS,
                };
                let f = model.forecast(&start, &vec![*c; days], &mc).ok()?;
                let paths = f.paths.as_ref()?;
                objectives
                    .iter()
                    .map(|o| {
                        let values: Vec<f64> = paths
                            .iter()
                            .map(|p| o.value(p, &vec![*c; days]))
                            .filter(|v| v.is_finite())
                            .collect();
                        let n = values.len() as f64;
                        if n < 2.0 {
                            return None;
                        }
                        let mean = values.iter().sum::<f64>() / n;
                        let var =
                            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
                        Some((mean, var.sqrt()))
                    })
                    .collect()
            };
            // the moment-matched mean ranks, Monte Carlo decides among the leaders
            let confirmed = confirm_best(&scored, BEST_CONFIRM, &mc_of);
            let best = confirmed.as_ref().map(|b| (b.controls, b.values.clone()));
            if let (Some(r), Some(b)) = (report.as_mut(), &confirmed) {
                r.push_str(&b.describe());
            }
            // with several objectives: the points no other one dominates (by their
            // means), best first by the first objective; they are kept for tomorrow
            // before the rest
            let mut keep: Vec<ControlArray<f64>> = Vec::with_capacity(BEST_KEEP);
            let mut front = Vec::new();
            if m > 1 {
                let flat: Vec<f64> = scored.iter().flat_map(|(v, _)| v.clone()).collect();
                let mask = perfusio_bed::pareto::non_dominated_mask(&flat, m)
                    .unwrap_or_else(|_| vec![false; scored.len()]);
                for ((_, c), on) in scored.iter().zip(&mask) {
                    if *on && front.len() < BEST_KEEP {
                        if let Some(v) = mc_of(c) {
                            front.push((*c, v));
                        }
                        keep.push(*c);
                    }
                }
            }
            for (_, c) in &scored {
                if keep.len() >= BEST_KEEP {
                    break;
                }
                if !keep.contains(c) {
                    keep.push(*c);
                }
            }
            (best, front, keep, report)
        };
        Some((job, owner))
    }

    /// Takes a best-point step's result: the best point, the front, the pool for tomorrow.
    fn apply_best(&mut self, scored: BestScored, owner: &[(ControlArray<f64>, String)]) {
        let (best, front, keep, search_report) = scored;
        self.best_pool = keep;
        let names: Vec<String> = self.c.objectives.iter().map(|o| o.name()).collect();
        let point = |c: ControlArray<f64>, v: Vec<(f64, f64)>| -> BestPoint {
            let reactor = owner
                .iter()
                .find(|(o, _)| same_controls(o, &c))
                .map(|(_, id)| id.clone());
            BestPoint {
                controls: control_map(&c),
                objective_mean: v[0].0,
                objective_sd: v[0].1,
                reactor,
                search: None,
                objectives: if v.len() > 1 {
                    names
                        .iter()
                        .zip(&v)
                        .map(|(name, (mean, sd))| ObjectiveValue {
                            name: name.clone(),
                            mean: *mean,
                            sd: *sd,
                        })
                        .collect()
                } else {
                    Vec::new()
                },
            }
        };
        if let Some((c, v)) = best {
            let mut b = point(c, v);
            b.search = search_report;
            self.best = Some(b);
        }
        self.front = front.into_iter().map(|(c, v)| point(c, v)).collect();
    }
}

/// Most leaders by the moment-matched mean path the best-point step scores by Monte Carlo:
/// in order, until one's mean-path value lies within three path sds of its Monte Carlo
/// mean; the best Monte Carlo mean among them is the best point.
pub const BEST_CONFIRM: usize = 4;

/// A leader's moment-matched value is borne out when it lies within this many path
/// standard deviations of its Monte Carlo mean.
const BEST_AGREE_SD: f64 = 3.0;

/// The best point among the leading distinct candidates of `ranked` (best first by the
/// first objective on the moment-matched mean path), by the Monte Carlo mean `mc` gives of
/// the first objective. The moment-matched mean path is cheap enough for a search but is a
/// linearisation: through a steep stretch of the model it can promise far more than the
/// paths it summarises reach, and a search climbs exactly such promises. Leaders are scored
/// in order until one's mean-path value lies within [`BEST_AGREE_SD`] path sds of its Monte
/// Carlo mean (usually the first), at most `k`; the best Monte Carlo mean among them wins. A
/// candidate `mc` cannot score is skipped.
fn confirm_best<F>(ranked: &[(Vec<f64>, ControlArray<f64>)], k: usize, mc: &F) -> Option<Confirmed>
where
    F: Fn(&ControlArray<f64>) -> Option<Vec<(f64, f64)>>,
{
    let mut seen: Vec<&ControlArray<f64>> = Vec::with_capacity(k);
    let mut best: Option<Confirmed> = None;
    for (mm, c) in ranked {
        if seen.len() >= k {
            break;
        }
        if seen.iter().any(|p| same_controls(p, c)) {
            continue;
        }
        seen.push(c);
        let rank = seen.len() - 1;
        let Some(values) = mc(c) else { continue };
        let Some(&(mean, sd)) = values.first() else {
            continue;
        };
        let mm_value = mm.first().copied().unwrap_or(f64::NAN);
        let agrees = (mm_value - mean).abs() <= BEST_AGREE_SD * sd;
        if best.as_ref().is_none_or(|b| mean > b.values[0].0) {
            best = Some(Confirmed {
                controls: *c,
                values,
                rank,
                mm_value,
                checked: 0,
            });
        }
        if agrees {
            break;
        }
    }
    let checked = seen.len();
    best.map(|mut b| {
        b.checked = checked;
        b
    })
}

/// Whether two sets of setpoints are the same operating point (every control within 1e-9).
fn same_controls(a: &ControlArray<f64>, b: &ControlArray<f64>) -> bool {
    a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9)
}

/// The best point [`confirm_best`] chose.
#[derive(Debug, Clone)]
struct Confirmed {
    controls: ControlArray<f64>,
    /// Each objective's Monte Carlo (mean, sd).
    values: Vec<(f64, f64)>,
    /// Its place among the distinct candidates of the moment-matched ranking (0: the
    /// leader).
    rank: usize,
    /// Its first objective on the moment-matched mean path.
    mm_value: f64,
    /// How many leaders were looked at (scored by Monte Carlo unless it failed).
    checked: usize,
}

impl Confirmed {
    /// A clause for the search report.
    fn describe(&self) -> String {
        let place = if self.rank == 0 {
            "the leader".to_string()
        } else {
            format!("number {} (the leader scored lower)", self.rank + 1)
        };
        let how_many = if self.checked == 1 {
            "1 leader".to_string()
        } else {
            format!("{} leaders", self.checked)
        };
        format!(
            "; Monte Carlo over {how_many} by the moment-matched mean chose {place} \
             (moment-matched {:.1}, Monte Carlo {:.1} ± {:.1})",
            self.mm_value, self.values[0].0, self.values[0].1
        )
    }
}

/// Fresh space-filling points of the design space scored by the best-point step each day.
pub const BEST_SCREEN: usize = 16;
/// Initial compass step of the daily best-point poll (fraction of each control's range).
const BEST_DAILY_STEP: f64 = 0.05;
/// Initial compass step of the final day's best-point search.
const BEST_FINAL_STEP: f64 = 0.25;
/// Smallest compass step of the best-point search: below it the search has converged.
pub const BEST_MIN_STEP: f64 = 1e-3;
/// Most model evaluations of the final day's best-point search (reported when reached).
pub const BEST_FINAL_EVALS: usize = 1500;

/// What a best-point step found: the best point and each objective's (mean, sd), the front,
/// the candidates kept for tomorrow, how its search went.
type BestScored = (
    Option<(ControlArray<f64>, Vec<(f64, f64)>)>,
    Vec<(ControlArray<f64>, Vec<(f64, f64)>)>,
    Vec<ControlArray<f64>>,
    Option<String>,
);

/// A best-point step running on its own thread with a copy of the shared model, and the
/// reactors' setpoints it attributes points to.
struct BestTask {
    handle: std::thread::JoinHandle<(BestScored, Duration)>,
    owner: Vec<(ControlArray<f64>, String)>,
}

/// How far the best-point step searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BestSearch {
    /// One compass poll around the best candidate.
    Daily,
    /// To convergence (the campaign's final day).
    Final,
}

/// `f` of every item, in order, on [`THREADS`] scoped threads (`None` for the items of a
/// worker that panicked).
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<Option<R>> {
    let threads = THREADS.min(items.len()).max(1);
    if threads == 1 {
        return items.iter().map(|x| Some(f(x))).collect();
    }
    let f = &f;
    let parts: Vec<(usize, R)> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                sc.spawn(move || {
                    items
                        .iter()
                        .enumerate()
                        .skip(t)
                        .step_by(threads)
                        .map(|(i, x)| (i, f(x)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut out: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
    for (i, r) in parts {
        out[i] = Some(r);
    }
    out
}

/// Values of `eval` at every candidate, on [`THREADS`] threads.
fn eval_all<F>(eval: &F, cands: &[ControlArray<f64>]) -> Vec<Option<Vec<f64>>>
where
    F: Fn(&ControlArray<f64>) -> Option<Vec<f64>> + Sync,
{
    par_map(cands, eval)
        .into_iter()
        .map(Option::flatten)
        .collect()
}

/// Where a compass search of the best point ended.
struct CompassResult {
    controls: ControlArray<f64>,
    values: Option<Vec<f64>>,
    evaluations: usize,
    step: f64,
    converged: bool,
    /// Whether it left its start.
    moved: bool,
}

impl CompassResult {
    fn describe(&self, search: BestSearch) -> String {
        let kind = match search {
            BestSearch::Daily => "daily compass poll",
            BestSearch::Final => "final compass search",
        };
        let how = if self.converged {
            format!("converged (step {:.1e} of each range)", self.step)
        } else if search == BestSearch::Final {
            format!(
                "stopped at its cap of {BEST_FINAL_EVALS} evaluations (step {:.1e})",
                self.step
            )
        } else {
            format!("step {:.1e}", self.step)
        };
        format!("{kind}: {} model evaluations, {how}", self.evaluations)
    }
}

/// Compass (pattern) search of objective `k`'s mean over the unit cube of `space`, from
/// `start`: poll `±step` along every coordinate (in parallel), move to the best poll
/// point that improves and double the step (at most the initial one), else halve it; stop when the step is below [`BEST_MIN_STEP`]
/// (converged) or after `cap` evaluations.
fn compass_search<F>(
    eval: &F,
    space: &DecisionSpace,
    start: &ControlArray<f64>,
    start_values: Vec<f64>,
    k: usize,
    step: f64,
    cap: usize,
) -> CompassResult
where
    F: Fn(&ControlArray<f64>) -> Option<Vec<f64>> + Sync,
{
    let mut out = CompassResult {
        controls: *start,
        values: Some(start_values.clone()),
        evaluations: 0,
        step,
        converged: false,
        moved: false,
    };
    let Ok(mut x) = space.to_unit(start) else {
        return out;
    };
    let mut fx = start_values;
    let dim = x.len();
    while out.evaluations + 2 * dim <= cap.max(2 * dim) {
        if out.step < BEST_MIN_STEP {
            out.converged = true;
            break;
        }
        let mut polls: Vec<Vec<f64>> = Vec::with_capacity(2 * dim);
        for j in 0..dim {
            for sign in [1.0, -1.0] {
                let mut y = x.clone();
                y[j] = (y[j] + sign * out.step).clamp(0.0, 1.0);
                if (y[j] - x[j]).abs() > 0.0 {
                    polls.push(y);
                }
            }
        }
        let cands: Vec<ControlArray<f64>> = polls
            .iter()
            .filter_map(|u| space.to_controls(u).ok())
            .collect();
        out.evaluations += cands.len();
        let values = eval_all(eval, &cands);
        let best = values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.as_ref().map(|v| (i, v)))
            .max_by(|a, b| a.1[k].total_cmp(&b.1[k]));
        match best {
            Some((i, v)) if v[k] > fx[k] + 1e-9 * fx[k].abs().max(1.0) => {
                x = polls[i].clone();
                fx = v.clone();
                out.controls = cands[i];
                out.values = Some(fx.clone());
                out.moved = true;
                // a successful poll doubles the step (up to the initial one): a ridge is
                // followed in long strides, not at the smallest step
                out.step = (2.0 * out.step).min(step);
            }
            _ => out.step *= 0.5,
        }
        if out.evaluations >= cap {
            break;
        }
    }
    if out.step < BEST_MIN_STEP {
        out.converged = true;
    }
    out
}

/// Draws per day behind the snapshot's bands of a moment-matched forecast.
const BAND_DRAWS: usize = 512;

/// The snapshot's bands of a forecast: q05/q25/q50/q75/q95 of its latent paths (or of
/// per-day draws of a moment-matched forecast), and the same of the measured value (its
/// paths or per-day draws with the measurement noise), every species, every forecast day.
fn bands_of(f: &Forecast) -> ForecastBands {
    let days: Vec<u32> = (1..=f.horizon() as u32).map(|h| f.start_day + h).collect();
    let seed = u64::from(f.start_day);
    let draws = f.latent_draws(BAND_DRAWS, seed);
    let mut measured_draws: Vec<SpeciesArray<Vec<f64>>> = (0..f.horizon())
        .map(|h| f.measured_ensemble(h, seed ^ h as u64))
        .collect();
    let mut species = BTreeMap::new();
    let mut measured = BTreeMap::new();
    for s in Species::ALL {
        let k = s.index();
        let latent: Vec<Band> = (0..f.horizon())
            .map(|h| {
                let v = draws
                    .iter()
                    .filter_map(|path| path.get(h).map(|x| x[k]))
                    .collect();
                band_of(v, f.state[h].mean[k])
            })
            .collect();
        let noisy: Vec<Band> = measured_draws
            .iter_mut()
            .zip(&f.measured)
            .map(|(d, b)| band_of(std::mem::take(&mut d[k]), b.mean[k]))
            .collect();
        species.insert(s.name().to_string(), latent);
        measured.insert(s.name().to_string(), noisy);
    }
    ForecastBands {
        from_day: f.start_day,
        days,
        species,
        measured,
    }
}

/// q05/q25/q50/q75/q95 of the finite values of `v` (linear interpolation), all `fallback`
/// when there are none.
fn band_of(mut v: Vec<f64>, fallback: f64) -> Band {
    v.retain(|x| x.is_finite());
    v.sort_by(f64::total_cmp);
    let q = |p: f64| -> f64 {
        if v.is_empty() {
            return fallback;
        }
        let pos = p * (v.len() - 1) as f64;
        let lo = pos.floor() as usize;
        let hi = pos.ceil() as usize;
        let w = pos - lo as f64;
        v[lo] * (1.0 - w) + v[hi] * w
    };
    Band {
        q05: q(0.05),
        q25: q(0.25),
        q50: q(0.5),
        q75: q(0.75),
        q95: q(0.95),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The best-point compass search finds the maximiser of a known function of the
    /// controls (objective index 1; index 0 is constant) to its step, says it converged, and
    /// at a small cap says it stopped there instead.
    #[test]
    fn compass_search_finds_a_known_maximum_and_reports_its_cap() {
        let ds = DEFAULT_AMBR250_DESIGN_SPACE;
        let space = DecisionSpace::new(&ds, Control::defaults()).unwrap();
        let dim = space.dim();
        let target: Vec<f64> = (0..dim)
            .map(|j| 0.2 + 0.6 * j as f64 / dim as f64)
            .collect();
        let f = |c: &ControlArray<f64>| -> Option<Vec<f64>> {
            let u = space.to_unit(c).ok()?;
            let d2: f64 = u.iter().zip(&target).map(|(a, b)| (a - b).powi(2)).sum();
            Some(vec![1.0, 10.0 - d2])
        };
        let start = space.to_controls(&vec![0.5; dim]).unwrap();
        let v0 = f(&start).unwrap();
        let r = compass_search(&f, &space, &start, v0.clone(), 1, 0.25, 5000);
        assert!(r.converged && r.moved, "{}", r.describe(BestSearch::Final));
        assert!(r.step < BEST_MIN_STEP);
        let u = space.to_unit(&r.controls).unwrap();
        for (a, b) in u.iter().zip(&target) {
            assert!((a - b).abs() < 2e-3, "{u:?} vs {target:?}");
        }
        assert!(r.values.as_ref().unwrap()[1] > 10.0 - 1e-5);
        let capped = compass_search(&f, &space, &start, v0, 1, 0.25, 2 * dim);
        assert!(!capped.converged);
        assert_eq!(capped.evaluations, 2 * dim);
        assert!(
            capped
                .describe(BestSearch::Final)
                .contains("stopped at its cap"),
            "{}",
            capped.describe(BestSearch::Final)
        );
    }

    /// The best point is the best Monte Carlo mean among the leaders of the moment-matched
    /// ranking scored until one is borne out (its mean-path value within three path sds of
    /// its Monte Carlo mean), at most `k`: a leader whose paths do not bear out its mean path
    /// loses, duplicates count once, an unscorable candidate is skipped.
    #[test]
    fn the_best_point_is_confirmed_by_monte_carlo_among_the_leaders() {
        let c = |x: f64| -> ControlArray<f64> { [x, 0.1, 5.0, 36.0, 700.0, 0.0] };
        let id = |x: &ControlArray<f64>| (x[0] * 10.0).round() as i64;
        let ranked = vec![
            (vec![1e9], c(1.0)),
            (vec![30.0], c(1.1)),
            (vec![30.0], c(1.1)),
            (vec![20.0], c(1.2)),
            (vec![10.0], c(1.3)),
            (vec![5.0], c(1.4)),
        ];
        let scored = std::cell::RefCell::new(Vec::new());
        let mc = |x: &ControlArray<f64>| -> Option<Vec<(f64, f64)>> {
            scored.borrow_mut().push(id(x));
            match id(x) {
                10 => Some(vec![(-5.0, 1.0)]), // far below its mean path
                11 => Some(vec![(25.0, 1.0)]), // 5 sds below
                12 => Some(vec![(28.0, 2.0)]), // 4 sds above
                13 => None,
                _ => Some(vec![(100.0, 1.0)]),
            }
        };
        let b = confirm_best(&ranked, 4, &mc).unwrap();
        assert_eq!(id(&b.controls), 12);
        assert_eq!(b.values.len(), 1);
        assert!((b.values[0].0 - 28.0).abs() < 1e-12 && (b.values[0].1 - 2.0).abs() < 1e-12);
        assert_eq!((b.rank, b.checked), (2, 4));
        assert_eq!(*scored.borrow(), vec![10, 11, 12, 13]);
        assert!(b.describe().contains("number 3"), "{}", b.describe());
        // a leader borne out ends the scoring: 1.1 (mean path 27) is within 3 sds of 25
        scored.borrow_mut().clear();
        let agreeing = vec![
            (vec![27.0], c(1.1)),
            (vec![26.0], c(1.2)),
            (vec![25.0], c(1.4)),
        ];
        let a = confirm_best(&agreeing, 4, &mc).unwrap();
        assert_eq!((id(&a.controls), a.rank, a.checked), (11, 0, 1));
        assert_eq!(*scored.borrow(), vec![11]);
        assert!(
            a.describe().contains("over 1 leader by"),
            "{}",
            a.describe()
        );
        // the leader is chosen when the others score lower; nothing scorable gives none
        let lone = confirm_best(&ranked[..2], 4, &mc).unwrap();
        assert_eq!((id(&lone.controls), lone.rank), (11, 1));
        let only = confirm_best(&ranked[1..2], 4, &mc).unwrap();
        assert_eq!((id(&only.controls), only.rank), (11, 0));
        assert!(only.describe().contains("the leader"));
        assert!(confirm_best(&ranked[4..5], 4, &mc).is_none());
        // the cap: the first two distinct leaders only
        let capped = confirm_best(&ranked, 2, &mc).unwrap();
        assert_eq!((id(&capped.controls), capped.checked), (11, 2));
    }

    #[test]
    fn edits_outside_the_design_space_are_refused_with_the_reason() {
        let ds = DEFAULT_AMBR250_DESIGN_SPACE;
        let base = Control::defaults();
        let bad = BTreeMap::from([("perfusion_rate".to_string(), 99.0)]);
        let why = controls_from_names(&ds, &base, &bad).unwrap_err();
        assert!(
            why.contains("perfusion_rate") || why.contains("perfusion"),
            "{why}"
        );
        let unknown = BTreeMap::from([("sugar".to_string(), 1.0)]);
        assert!(controls_from_names(&ds, &base, &unknown).is_err());
        let ok = BTreeMap::from([("temperature".to_string(), 36.0)]);
        let v = controls_from_names(&ds, &base, &ok).unwrap();
        assert!((v[Control::Temperature.index()] - 36.0).abs() < 1e-12);
    }
}
