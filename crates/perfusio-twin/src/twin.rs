//! [`DigitalTwin`] and its builder: the audited daily loop over one reactor.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use perfusio_audit::event::{
    ConnectorError as ConnectorErrorEvent, Custom, Decision as DecisionEvent,
    Forecast as ForecastEvent, ForecastMethod as AuditForecastMethod, ModelRetrained,
    NamedObjectiveEstimates, ObjectiveEstimate, RunFinished, RunStarted, SampleRead,
    SampleRejected, SetpointWithheld, SetpointWritten, SpeciesBands, setpoint_map,
};
use perfusio_audit::{AuditHandle, AuditWriter, Entry, Event, WriterOptions, read_records};
use perfusio_bed::objective::{Harvest, Objective, OutcomeConstraint, parse_objective};
use perfusio_bed::{BedPolicy, Decision, HoldForecast, PolicyConfig};
use perfusio_core::{
    Connector, ConnectorError, Control, ControlArray, CultureDay, DesignSpace, Pacing, RunConfig,
    Sample, Setpoints, Species, ValidatedSample, WriteReceipt, WriteStatus, read_validated,
};
use perfusio_hybrid::{Forecast, ForecastMethod, ForecastOptions, HybridConfig, HybridModel};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::alarm::AlarmRule;
use crate::cancel::CancelToken;
use crate::error::{Result, TwinError};
use crate::hash::{derive_seed, forecast_sha256, os_seed};
use crate::observer::{NoObserver, Observer, RunInfo};
use crate::reactor::ReactorState;
use crate::report::{DayRecord, RunReport};

/// Name of the `custom` audit record that says how long the loop waited for a sample.
pub(crate) const WAIT_EVENT: &str = "sample_wait";
/// Name of the `custom` audit record of a step that failed without stopping the run.
pub(crate) const STEP_FAILED: &str = "step_failed";
/// Days ahead at which forecast records give the bands (those inside the horizon).
pub const FORECAST_DAYS_AHEAD: [u32; 4] = [1, 3, 7, 28];
/// Default time a run paced as fast as possible waits for a sample that is not there yet
/// (polling with backoff) before it takes the data as ended.
pub const DEFAULT_SAMPLE_WAIT: Duration = Duration::from_secs(2);
/// First delay of the retry backoff (doubling, at most [`RETRY_CAP`]).
pub const RETRY_INITIAL: Duration = Duration::from_millis(25);
/// Largest delay between two retries.
pub const RETRY_CAP: Duration = Duration::from_secs(5);
/// While a sample is not there yet (not a fault: the day has not come), the next poll
/// comes after this fraction of the time already waited (at least [`RETRY_INITIAL`], at
/// most [`RETRY_CAP`]), so a sample is read at most about 1/8 of the wait after it
/// appears. Doubling delays would read it up to a whole wait late: half a day of a
/// one-second emulator day.
pub(crate) const POLL_FRACTION: u32 = 8;

/// The delay before the next poll for a sample that is not available yet, after
/// `waited` (see [`POLL_FRACTION`]).
pub(crate) fn poll_delay(waited: Duration) -> Duration {
    (waited / POLL_FRACTION).clamp(RETRY_INITIAL, RETRY_CAP)
}

/// Threads of the Monte-Carlo forecasts and decisions (results do not depend on it).
pub(crate) const THREADS: usize = 2;

/// Where the model comes from.
#[derive(Debug)]
enum ModelSource {
    /// The hybrid model with the CloneX mechanism, learned online from the run's own data.
    Default,
    /// A hybrid model of this configuration, learned online.
    Config(Box<HybridConfig>),
    /// A (pre-trained) model, e.g. loaded from a file.
    Model(Box<HybridModel>, String),
}

/// The objective shared between the policy and the report.
#[derive(Debug)]
struct SharedObjective(Arc<dyn Objective>);

impl Objective for SharedObjective {
    fn value(
        &self,
        states: &[perfusio_core::SpeciesArray<f64>],
        schedule: &[ControlArray<f64>],
    ) -> f64 {
        self.0.value(states, schedule)
    }
    fn name(&self) -> String {
        self.0.name()
    }
    fn species_read(&self) -> Option<Vec<perfusio_core::Species>> {
        self.0.species_read()
    }
}

/// Everything a [`DigitalTwin`] can be given besides its connector, design space and run
/// configuration. Setters consume and return the builder; [`DigitalTwinBuilder::build`]
/// checks everything.
///
/// ```no_run
/// # async fn demo() -> Result<(), perfusio_twin::TwinError> {
/// use perfusio_twin::prelude::*;
/// let connector = FilesystemStore::from_path("culture.csv")?;
/// let cfg = RunConfig { duration_days: 14, seed: Some(7), ..RunConfig::default() };
/// let report = DigitalTwin::builder(connector, DEFAULT_AMBR250_DESIGN_SPACE, cfg)
///     .objective_spec("track:VCV=10", 0.0)
///     .audit_path("runs/audit.jsonl")
///     .alarm_rule(AlarmRule::below(Variable::Species(Species::Glc), 0.5).critical())
///     .build()?
///     .run()
///     .await?;
/// println!("{report}");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct DigitalTwinBuilder {
    connector: Arc<dyn Connector>,
    design_space: DesignSpace,
    config: RunConfig,
    model: ModelSource,
    model_file: Option<PathBuf>,
    objective: Option<Arc<dyn Objective>>,
    objective_spec: Option<(String, f64)>,
    constraints: Option<Vec<OutcomeConstraint>>,
    fixed: Vec<Control>,
    audit_path: PathBuf,
    reactor_id: String,
    alarm_rules: Option<Vec<AlarmRule>>,
    observer: Arc<dyn Observer>,
    cancel: CancelToken,
    initial: Option<ControlArray<f64>>,
    sample_wait: Option<Duration>,
    resume: bool,
}

impl DigitalTwinBuilder {
    /// Use this (pre-trained) model instead of the default online hybrid model.
    #[must_use]
    pub fn model(mut self, model: HybridModel) -> Self {
        self.model = ModelSource::Model(Box::new(model), "given model".into());
        self
    }

    /// Load the model from a file written by `HybridModel::save` (`perfusio train`).
    #[must_use]
    pub fn model_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.model_file = Some(path.into());
        self
    }

    /// Learn online a hybrid model of this configuration (e.g. another mechanism as prior:
    /// `HybridConfig::with_prior`).
    #[must_use]
    pub fn hybrid_config(mut self, config: HybridConfig) -> Self {
        self.model = ModelSource::Config(Box::new(config));
        self
    }

    /// The objective the policy maximises (default: [`Harvest`] without medium cost).
    #[must_use]
    pub fn objective(mut self, objective: impl Objective + 'static) -> Self {
        self.objective = Some(Arc::new(objective));
        self.objective_spec = None;
        self
    }

    /// The objective in its command-line form: `harvest`, `track:VCV=10`, `final-titer`;
    /// `medium_cost` applies to `harvest` only. Parsed by [`DigitalTwinBuilder::build`].
    #[must_use]
    pub fn objective_spec(mut self, spec: impl Into<String>, medium_cost: f64) -> Self {
        self.objective_spec = Some((spec.into(), medium_cost));
        self.objective = None;
        self
    }

    /// Outcome constraints of the policy (default: viability ≥ the design space's floor).
    #[must_use]
    pub fn constraints(mut self, constraints: Vec<OutcomeConstraint>) -> Self {
        self.constraints = Some(constraints);
        self
    }

    /// Keep `control` at its value in force (the policy does not move it).
    #[must_use]
    pub fn fix(mut self, control: Control) -> Self {
        self.fixed.push(control);
        self
    }

    /// The audit log (default `audit.jsonl` in the working directory).
    #[must_use]
    pub fn audit_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.audit_path = path.into();
        self
    }

    /// The reactor id written in the audit records (default `R01`).
    #[must_use]
    pub fn reactor_id(mut self, id: impl Into<String>) -> Self {
        self.reactor_id = id.into();
        self
    }

    /// Replace the alarm rules (default [`AlarmRule::defaults`]: the viability floor).
    #[must_use]
    pub fn alarm_rules(mut self, rules: Vec<AlarmRule>) -> Self {
        self.alarm_rules = Some(rules);
        self
    }

    /// Add an alarm rule to the defaults (or to the rules given so far).
    #[must_use]
    pub fn alarm_rule(mut self, rule: AlarmRule) -> Self {
        let ds = self.design_space.clone();
        self.alarm_rules
            .get_or_insert_with(|| AlarmRule::defaults(&ds))
            .push(rule);
        self
    }

    /// The observer called on every step.
    #[must_use]
    pub fn observer(mut self, observer: impl Observer + 'static) -> Self {
        self.observer = Arc::new(observer);
        self
    }

    /// A shared observer (keep a clone to read what it collected).
    #[must_use]
    pub fn shared_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = observer;
        self
    }

    /// A token that cancels the run (keep a clone; e.g. cancel it on Ctrl-C).
    #[must_use]
    pub fn cancel_token(mut self, token: CancelToken) -> Self {
        self.cancel = token;
        self
    }

    /// The setpoints in force at the start (default: every control's default value).
    #[must_use]
    pub fn initial_setpoints(mut self, values: ControlArray<f64>) -> Self {
        self.initial = Some(values);
        self
    }

    /// How long a run paced as fast as possible waits for a sample that is not there yet
    /// (default [`DEFAULT_SAMPLE_WAIT`]); in real time the day's own budget applies.
    #[must_use]
    pub fn sample_wait(mut self, wait: Duration) -> Self {
        self.sample_wait = Some(wait);
        self
    }

    /// Continue the run recorded in the audit log instead of starting a new one (see
    /// [`DigitalTwin::resume`]).
    #[must_use]
    pub fn resume(mut self, on: bool) -> Self {
        self.resume = on;
        self
    }

    /// Checks the configuration, the design space, the objective, the alarm rules and the
    /// initial setpoints, and loads the model file if one was given.
    pub fn build(self) -> Result<DigitalTwin> {
        self.config.validate()?;
        self.design_space.check()?;
        if self.config.decision_horizon_days > 28 {
            return Err(TwinError::config(
                "decision_horizon_days",
                format!(
                    "{} days: the design policy looks at most 28 days ahead",
                    self.config.decision_horizon_days
                ),
            ));
        }
        let objective: Arc<dyn Objective> = match (self.objective, &self.objective_spec) {
            (Some(o), _) => o,
            (None, Some((spec, cost))) => Arc::from(parse_objective(spec, *cost)?),
            (None, None) => Arc::new(Harvest::default()),
        };
        let rules = self
            .alarm_rules
            .unwrap_or_else(|| AlarmRule::defaults(&self.design_space));
        for r in &rules {
            r.check()?;
        }
        let initial = self.initial.unwrap_or_else(Control::defaults);
        self.design_space.validate(&initial)?;
        if self.audit_path.as_os_str().is_empty() {
            return Err(TwinError::config("audit_path", "the audit path is empty"));
        }
        let model = match self.model_file {
            Some(path) => {
                let m = HybridModel::load(&path)?;
                ModelSource::Model(Box::new(m), path.display().to_string())
            }
            None => self.model,
        };
        let twin = DigitalTwin {
            connector: self.connector,
            design_space: self.design_space,
            config: self.config,
            model,
            objective,
            constraints: self.constraints,
            fixed: self.fixed,
            audit_path: self.audit_path,
            reactor_id: self.reactor_id,
            alarm_rules: rules,
            observer: self.observer,
            cancel: self.cancel,
            initial,
            sample_wait: self.sample_wait.unwrap_or(DEFAULT_SAMPLE_WAIT),
            resume: self.resume,
        };
        // the policy is rebuilt with the run's seed when the run starts; build one now so
        // that its errors surface here
        twin.policy(0)?;
        Ok(twin)
    }
}

/// An online digital twin of one perfusion reactor, driven as a self-driving experiment.
///
/// A connector, a design space and a run configuration are enough: the default model is
/// the hybrid model with the CloneX mechanism, learned online from the run's own data; the
/// default policy maximises the [`Harvest`] with `run_config.acquisition`; the audit log
/// is `audit.jsonl` in the working directory. [`DigitalTwin::builder`] sets the rest.
///
/// Each culture day `t` of `0..duration_days` is one pass of the loop, and each step of it
/// one audit record: read and validate the sample (`sample_read`, one `sample_rejected`
/// per rejected value); filter the state and learn — every `retrain_every` days the model
/// is retrained, warm-started, on the deduplicated dataset (`model_retrained`); forecast
/// `forecast_horizon_days` under the setpoints in force with `mc_samples` paths
/// (`forecast`: bands at days +1, +3, +7, +28 and the hash of the full forecast); raise or
/// clear alarms (`alarm`); decide (`decision`); write when `allow_write` is on
/// (`setpoint_written` with the receipt) or record why not (`setpoint_withheld`). The last
/// day, `duration_days`, is read and learned from without a decision. Only **applied**
/// controls enter the model's data: those the connector confirmed, or those in force when
/// nothing was written. CPU-heavy steps run on tokio's blocking pool.
///
/// ```no_run
/// use perfusio_twin::prelude::*;
///
/// #[tokio::main]
/// async fn main() -> Result<(), TwinError> {
///     let connector = FilesystemStore::from_path("my_data.csv")?;
///     let run_cfg = RunConfig { duration_days: 14, sampling_interval_hours: 24.0, ..RunConfig::default() };
///     let twin = DigitalTwin::new(connector, DEFAULT_AMBR250_DESIGN_SPACE, run_cfg)?;
///     let report = twin.run().await?;
///     println!("{report}");
///     Ok(())
/// }
/// ```
#[derive(Debug)]
pub struct DigitalTwin {
    connector: Arc<dyn Connector>,
    design_space: DesignSpace,
    config: RunConfig,
    model: ModelSource,
    objective: Arc<dyn Objective>,
    constraints: Option<Vec<OutcomeConstraint>>,
    fixed: Vec<Control>,
    audit_path: PathBuf,
    reactor_id: String,
    alarm_rules: Vec<AlarmRule>,
    observer: Arc<dyn Observer>,
    cancel: CancelToken,
    initial: ControlArray<f64>,
    sample_wait: Duration,
    resume: bool,
}

impl DigitalTwin {
    /// A twin with every default (see the type's docs).
    pub fn new(
        connector: impl Connector + 'static,
        design_space: DesignSpace,
        run_config: RunConfig,
    ) -> Result<Self> {
        Self::builder(connector, design_space, run_config).build()
    }

    /// A builder for everything else.
    pub fn builder(
        connector: impl Connector + 'static,
        design_space: DesignSpace,
        run_config: RunConfig,
    ) -> DigitalTwinBuilder {
        Self::builder_shared(Arc::new(connector), design_space, run_config)
    }

    /// A builder over a connector the caller keeps a handle to (e.g. to read a simulated
    /// plant's true states after the run).
    pub fn builder_shared(
        connector: Arc<dyn Connector>,
        design_space: DesignSpace,
        run_config: RunConfig,
    ) -> DigitalTwinBuilder {
        DigitalTwinBuilder {
            connector,
            design_space,
            config: run_config,
            model: ModelSource::Default,
            model_file: None,
            objective: None,
            objective_spec: None,
            constraints: None,
            fixed: Vec::new(),
            audit_path: PathBuf::from("audit.jsonl"),
            reactor_id: "R01".into(),
            alarm_rules: None,
            observer: Arc::new(NoObserver),
            cancel: CancelToken::new(),
            initial: None,
            sample_wait: None,
            resume: false,
        }
    }

    /// A twin that continues the run recorded in `audit_path` after a crash or a
    /// cancellation: the log is verified (a torn last line is quarantined), the days it
    /// completed are replayed into a fresh model (samples, estimates, retrainings — their
    /// model hashes must match the log's), the connector restores what lived only in the
    /// old process ([`Connector::restore`]: a simulated plant replays the written
    /// setpoints), and the loop continues with the first incomplete day. The seed is the
    /// log's; the report covers the whole run from day 0.
    pub fn resume(
        audit_path: impl AsRef<Path>,
        connector: impl Connector + 'static,
        design_space: DesignSpace,
        run_config: RunConfig,
    ) -> Result<Self> {
        Self::builder(connector, design_space, run_config)
            .audit_path(audit_path.as_ref())
            .resume(true)
            .build()
    }

    /// The run configuration.
    pub fn config(&self) -> &RunConfig {
        &self.config
    }

    /// The audit log.
    pub fn audit_path(&self) -> &Path {
        &self.audit_path
    }

    /// A clone of the cancellation token.
    pub fn cancel_token(&self) -> CancelToken {
        self.cancel.clone()
    }

    pub(crate) fn config_mut(&mut self) -> &mut RunConfig {
        &mut self.config
    }

    pub(crate) fn reactor_id_str(&self) -> &str {
        &self.reactor_id
    }

    pub(crate) fn initial_setpoints(&self) -> &ControlArray<f64> {
        &self.initial
    }

    pub(crate) fn rules(&self) -> &[AlarmRule] {
        &self.alarm_rules
    }

    pub(crate) fn connector_ref(&self) -> &Arc<dyn Connector> {
        &self.connector
    }

    /// The design policy with the seed derived from the run's.
    pub(crate) fn policy(&self, seed: u64) -> Result<BedPolicy> {
        build_policy(
            &self.config,
            &self.design_space,
            std::slice::from_ref(&self.objective),
            self.constraints.as_deref(),
            &self.fixed,
            seed,
        )
    }

    /// The model the run starts from (a fresh one for the default and configured sources;
    /// the GP's multistart seed derived from the run's).
    pub(crate) fn initial_model(&self, seed: u64) -> Result<(HybridModel, String)> {
        let fresh = |mut cfg: HybridConfig, label: String| -> Result<(HybridModel, String)> {
            cfg.design_space = self.design_space.clone();
            cfg.max_day = cfg.max_day.max(self.config.duration_days);
            cfg.gp.seed = derive_seed(seed, "gp", 0);
            Ok((HybridModel::new(cfg)?, label))
        };
        match &self.model {
            ModelSource::Default => fresh(
                HybridConfig::online(),
                "hybrid model, CloneX mechanism, learned online".into(),
            ),
            ModelSource::Config(c) => {
                let label = format!("hybrid model, {} mechanism, learned online", c.prior_label);
                fresh((**c).clone(), label)
            }
            ModelSource::Model(m, label) => Ok(((**m).clone(), label.clone())),
        }
    }

    /// Runs (or, when built to resume, continues) the loop to the end of the run and returns
    /// its report. Ends early, cleanly, when the data end ("data ended on day N") or the
    /// token is cancelled; both are recorded in `run_finished{completed: false}`.
    pub async fn run(self) -> Result<RunReport> {
        let mut runner = if self.resume {
            crate::resume::resume(self).await?
        } else {
            Runner::start(self).await?
        };
        runner.run_days().await
    }
}

/// The model and the reactor's state, moved together onto the blocking pool.
#[derive(Debug)]
pub(crate) struct Brain {
    pub(crate) model: HybridModel,
    pub(crate) state: ReactorState,
}

/// How a day ended.
enum Flow {
    Continue,
    DataEnded(String),
    Cancelled,
}

/// What waiting for a sample gave.
pub(crate) enum Read {
    Sample(Box<ValidatedSample>, Duration, u32),
    NotYet(ConnectorError),
    Failed(ConnectorError, Duration, u32),
    Cancelled,
}

/// A running loop: the twin's settings plus the state it builds.
pub(crate) struct Runner {
    pub(crate) twin: DigitalTwin,
    pub(crate) describe: String,
    pub(crate) seed: u64,
    pub(crate) policy: Arc<BedPolicy>,
    pub(crate) brain: Option<Box<Brain>>,
    pub(crate) audit: AuditHandle,
    pub(crate) days: Vec<DayRecord>,
    pub(crate) first_day: CultureDay,
    pub(crate) started: OffsetDateTime,
    pub(crate) last_forecast: Option<Forecast>,
}

impl Runner {
    /// Starts a new run: refuses a log that already holds one, opens it, records
    /// `run_started`.
    async fn start(mut twin: DigitalTwin) -> Result<Self> {
        let path = twin.audit_path.clone();
        if std::fs::metadata(&path).is_ok_and(|m| m.len() > 0) {
            let mut records = read_records(&path)?;
            let run_id = match records.next() {
                Some(Ok(r)) => r.run_id,
                _ => "?".to_string(),
            };
            let n = 1 + records.count() as u64;
            return Err(TwinError::AuditExists {
                path,
                records: n,
                run_id,
            });
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| TwinError::Output {
                context: format!("creating the directory of {}", path.display()),
                message: e.to_string(),
            })?;
        }
        let seed = twin.config.seed.unwrap_or_else(os_seed);
        twin.config.seed = Some(seed);
        let (model, model_label) = twin.initial_model(seed)?;
        let policy = Arc::new(twin.policy(seed)?);
        let (writer, _) = AuditWriter::open(
            &path,
            WriterOptions::new(twin.config.run_id.clone(), twin.reactor_id.clone()),
        )?;
        let audit = AuditHandle::spawn(writer)?;
        let describe = twin.connector.describe();
        let health = twin.connector.health().await;
        let state = ReactorState::new(
            twin.config.run_id.clone(),
            twin.initial,
            twin.alarm_rules.clone(),
        );
        let mut settings = BTreeMap::new();
        let to_value = |v: &dyn erased::Ser| v.value();
        settings.insert("run_config".into(), to_value(&twin.config));
        settings.insert("design_space".into(), to_value(&twin.design_space));
        settings.insert("objective".into(), Value::from(twin.objective.name()));
        settings.insert("connector".into(), Value::from(describe.clone()));
        settings.insert("connector_health".into(), Value::from(health.to_string()));
        settings.insert("model".into(), Value::from(model_label));
        settings.insert("model_sha256".into(), Value::from(model.fingerprint()));
        settings.insert(
            "alarm_rules".into(),
            Value::from(
                twin.alarm_rules
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>(),
            ),
        );
        settings.insert(
            "initial_setpoints".into(),
            to_value(&setpoint_map(&Setpoints::new(0, twin.initial))),
        );
        settings.insert("crate_versions".into(), crate_versions());
        let mut runner = Self {
            describe,
            seed,
            policy,
            brain: Some(Box::new(Brain { model, state })),
            audit,
            days: Vec::new(),
            first_day: 0,
            started: OffsetDateTime::now_utc(),
            last_forecast: None,
            twin,
        };
        runner
            .record(
                0,
                RunStarted {
                    software: format!("perfusio-twin {}", env!("CARGO_PKG_VERSION")),
                    seed: Some(seed),
                    settings,
                },
            )
            .await?;
        runner.announce();
        Ok(runner)
    }

    pub(crate) fn announce(&self) {
        self.twin.observer.run_started(&RunInfo {
            run_id: self.twin.config.run_id.clone(),
            seed: self.seed,
            first_day: self.first_day,
            last_day: self.twin.config.duration_days,
            connector: self.describe.clone(),
            audit_path: self.twin.audit_path.clone(),
        });
    }

    /// Appends one step to the audit log, to the day's record and tells the observer.
    pub(crate) async fn record(&mut self, day: CultureDay, event: impl Into<Event>) -> Result<()> {
        let event = event.into();
        self.audit.append(Entry::new(day, event.clone())).await?;
        if let Some(d) = self.days.last_mut().filter(|d| d.day == day) {
            d.push(&event);
        }
        self.twin.observer.step(day, &event);
        Ok(())
    }

    /// Runs `f` on the model and the reactor state on tokio's blocking pool.
    async fn with_brain<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Brain) -> T + Send + 'static,
    ) -> Result<T> {
        let mut brain = self
            .brain
            .take()
            .ok_or_else(|| TwinError::Task("the model was lost by an earlier failure".into()))?;
        let (brain, out) = tokio::task::spawn_blocking(move || {
            let out = f(&mut brain);
            (brain, out)
        })
        .await?;
        self.brain = Some(brain);
        Ok(out)
    }

    fn brain(&mut self) -> Result<&mut Brain> {
        self.brain
            .as_deref_mut()
            .ok_or_else(|| TwinError::Task("the model was lost by an earlier failure".into()))
    }

    /// The loop over the days of this process, then `run_finished` and the report.
    async fn run_days(&mut self) -> Result<RunReport> {
        let last = self.twin.config.duration_days;
        let pacing = self.twin.config.pacing;
        let interval = Duration::from_secs_f64(self.twin.config.sampling_interval_hours * 3600.0);
        let anchor = Instant::now();
        let mut ending = (true, "completed".to_string(), last);
        let mut day = self.first_day;
        while day <= last {
            let k = day - self.first_day;
            let budget = match pacing {
                Pacing::RealTime => {
                    let due = anchor + interval * k;
                    let now = Instant::now();
                    if due > now && !self.twin.cancel.sleep(due - now).await {
                        ending = self.cancelled();
                        break;
                    }
                    (anchor + interval * (k + 1))
                        .saturating_duration_since(Instant::now())
                        .max(Duration::from_millis(1))
                }
                Pacing::AsFastAsPossible => self.twin.sample_wait,
            };
            if self.twin.cancel.is_cancelled() {
                ending = self.cancelled();
                break;
            }
            let flow = match self.run_day(day, day == last, budget).await {
                Ok(f) => f,
                Err(e) => {
                    // best effort: the log says why the run stopped
                    let _ = self
                        .record(
                            day,
                            RunFinished {
                                completed: false,
                                reason: format!("stopped by an error: {e}"),
                                last_day: self.last_complete_day(),
                            },
                        )
                        .await;
                    let _ = self.audit.close().await;
                    return Err(e);
                }
            };
            match flow {
                Flow::Continue => {}
                Flow::DataEnded(why) => {
                    ending = match day.checked_sub(1) {
                        Some(prev) => (false, format!("data ended on day {prev}"), prev),
                        None => (false, format!("no data: {why}"), 0),
                    };
                    tracing::info!(day, reason = %why, "no more data");
                    break;
                }
                Flow::Cancelled => {
                    ending = self.cancelled();
                    break;
                }
            }
            day += 1;
        }
        let (completed, reason, last_day) = ending;
        let finished = RunFinished {
            completed,
            reason: reason.clone(),
            last_day,
        };
        let event = Event::from(finished);
        let receipt = self
            .audit
            .append(Entry::new(last_day, event.clone()))
            .await?;
        self.twin.observer.step(last_day, &event);
        self.audit.close().await?;
        let report = RunReport {
            run_id: self.twin.config.run_id.clone(),
            seed: self.seed,
            days: std::mem::take(&mut self.days),
            completed,
            reason,
            last_day,
            audit_path: self.twin.audit_path.clone(),
            audit_head: receipt.hash,
            seconds: (OffsetDateTime::now_utc() - self.started).as_seconds_f64(),
            resumed_at: (self.first_day > 0).then_some(self.first_day),
            last_forecast: self.last_forecast.take(),
            objective: self.twin.objective.clone(),
        };
        self.twin.observer.run_finished(&report);
        Ok(report)
    }

    fn last_complete_day(&self) -> CultureDay {
        self.days
            .iter()
            .rev()
            .find(|d| d.is_complete())
            .map_or(0, |d| d.day)
    }

    fn cancelled(&self) -> (bool, String, CultureDay) {
        (false, "cancelled".to_string(), self.last_complete_day())
    }

    /// Reads day `day`, retrying transient failures with backoff within `budget`.
    async fn read(&self, day: CultureDay, budget: Duration) -> Read {
        read_with_retry(
            &*self.twin.connector,
            &self.twin.design_space,
            &self.twin.cancel,
            day,
            budget,
        )
        .await
    }

    /// Writes setpoints, retrying transient failures with backoff within `budget`.
    async fn write(
        &self,
        setpoints: &Setpoints,
        budget: Duration,
    ) -> std::result::Result<WriteReceipt, Option<(ConnectorError, u32)>> {
        write_with_retry(&*self.twin.connector, &self.twin.cancel, setpoints, budget).await
    }

    /// One culture day; the last day (`final_day`) is read and learned from only.
    async fn run_day(
        &mut self,
        day: CultureDay,
        final_day: bool,
        budget: Duration,
    ) -> Result<Flow> {
        self.days.push(DayRecord::new(day));
        let day_start = Instant::now();
        let sample: Option<Sample> = match self.read(day, budget).await {
            Read::Sample(v, waited, attempts) => {
                if attempts > 1 {
                    self.record(
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
                let payload = sample_payload(&v.sample, &self.describe);
                self.record(day, payload).await?;
                for r in &v.rejections {
                    self.record(day, SampleRejected::from(r)).await?;
                }
                Some(v.sample)
            }
            Read::NotYet(e) => {
                self.days.pop();
                return Ok(Flow::DataEnded(e.to_string()));
            }
            Read::Failed(e, waited, attempts) => {
                self.record(
                    day,
                    ConnectorErrorEvent {
                        connector: self.describe.clone(),
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
                None
            }
            Read::Cancelled => return Ok(Flow::Cancelled),
        };
        // learn: filter, dataset, retraining when due
        let retrain = retrain_due(&self.twin.config, day);
        let measured = sample.as_ref().map(|s| s.species);
        let reported = sample.as_ref().map(|s| s.controls);
        let (learned, sha) = self
            .with_brain(move |b| {
                let l = b.state.learn(&mut b.model, day, measured.as_ref(), retrain);
                if let Some(r) = reported {
                    b.state.take_reported(&r);
                }
                let sha =
                    matches!(&l, Ok(x) if x.retrained.is_some()).then(|| b.model.fingerprint());
                (l, sha)
            })
            .await?;
        let learned = learned?;
        if let (Some(r), Some(sha)) = (&learned.retrained, sha) {
            self.record(day, retrained_event(r, sha)).await?;
        } else if let Some(why) = &learned.retrain_skipped {
            self.step_failed(day, "retrain", why).await?;
        }
        if final_day {
            return Ok(Flow::Continue);
        }
        let current = *self.brain()?.state.current();
        if sample.is_none() {
            let reason = format!("no sample for day {day}: holding the setpoints in force");
            self.record(
                day,
                SetpointWithheld::new(&Setpoints::new(day, current), reason),
            )
            .await?;
            self.finish_day(day, current, false)?;
            return Ok(Flow::Continue);
        }
        if self.twin.cancel.is_cancelled() {
            return Ok(Flow::Cancelled);
        }
        // forecast under the setpoints in force
        let horizon = self.twin.config.forecast_horizon_days as usize;
        let opts = ForecastOptions {
            method: ForecastMethod::MonteCarlo,
            paths: self.twin.config.mc_samples as usize,
            seed: derive_seed(self.seed, "forecast", day),
            keep_paths: true,
            threads: THREADS,
        };
        let forecast_seed = opts.seed;
        let forecast = self
            .with_brain(move |b| {
                let est = b.state.estimate().cloned().ok_or_else(|| {
                    TwinError::Task("no state estimate after the learning step".into())
                })?;
                let f = b.model.forecast(&est, &vec![current; horizon], &opts)?;
                let sha = forecast_sha256(&f);
                let model_sha = b.model.fingerprint();
                let alarms = b.state.alarms_mut().evaluate(&f);
                Ok::<_, TwinError>((f, sha, model_sha, alarms))
            })
            .await?;
        match forecast {
            Ok((f, sha, model_sha, alarms)) => {
                self.record(day, forecast_event(&f, sha, model_sha)).await?;
                for a in alarms {
                    self.record(day, a).await?;
                }
                self.last_forecast = Some(f);
            }
            Err(e) => self.step_failed(day, "forecast", &e.to_string()).await?,
        }
        if self.twin.cancel.is_cancelled() {
            return Ok(Flow::Cancelled);
        }
        // decide; today's forecast under the setpoints in force is the final check's holding
        // course (the policy does not use one from another day or under other setpoints)
        let policy = self.policy.clone();
        let today = self.last_forecast.clone();
        let decided = self
            .with_brain(move |b| {
                let est = b.state.estimate().cloned().ok_or_else(|| {
                    TwinError::Task("no state estimate after the learning step".into())
                })?;
                let hold = today.as_ref().map(|forecast| HoldForecast {
                    forecast,
                    seed: forecast_seed,
                });
                Ok::<_, TwinError>(policy.decide_sharing(&b.model, &est, &current, hold)?)
            })
            .await?;
        let decision = match decided {
            Ok(d) => d,
            Err(e) => {
                let why = e.to_string();
                self.step_failed(day, "decide", &why).await?;
                let reason = format!("no decision ({why}): holding the setpoints in force");
                self.record(
                    day,
                    SetpointWithheld::new(&Setpoints::new(day, current), reason),
                )
                .await?;
                self.finish_day(day, current, true)?;
                return Ok(Flow::Continue);
            }
        };
        self.record(day, decision_event(&decision)).await?;
        // write, or say why not
        let applied = if self.twin.config.allow_write {
            let left = budget
                .saturating_sub(day_start.elapsed())
                .max(Duration::from_secs(1));
            match self.write(&decision.setpoints, left).await {
                Ok(receipt) => {
                    let written = SetpointWritten::new(self.describe.clone(), receipt);
                    let applied = applied_after(&current, &written);
                    self.record(day, written).await?;
                    applied
                }
                Err(None) => return Ok(Flow::Cancelled),
                Err(Some((e, attempts))) => {
                    self.record(
                        day,
                        ConnectorErrorEvent {
                            connector: self.describe.clone(),
                            operation: "write_setpoints".into(),
                            message: format!("{e} ({attempts} attempts)"),
                            retryable: false,
                        },
                    )
                    .await?;
                    let reason = format!("the write failed ({e}); the reactor keeps its setpoints");
                    self.record(day, SetpointWithheld::new(&decision.setpoints, reason))
                        .await?;
                    current
                }
            }
        } else {
            let reason = format!(
                "writing is off (allow_write = false): recommended only, nothing sent to {}",
                self.describe
            );
            self.record(day, SetpointWithheld::new(&decision.setpoints, reason))
                .await?;
            current
        };
        self.finish_day(day, applied, true)?;
        Ok(Flow::Continue)
    }

    async fn step_failed(&mut self, day: CultureDay, step: &str, message: &str) -> Result<()> {
        tracing::warn!(day, step, message, "step did not complete; the run goes on");
        self.record(
            day,
            Custom {
                name: STEP_FAILED.into(),
                data: json!({ "step": step, "message": message }),
            },
        )
        .await
    }

    /// Ends a day: `applied` acted over `day → day + 1`.
    fn finish_day(
        &mut self,
        day: CultureDay,
        applied: ControlArray<f64>,
        sample_recorded: bool,
    ) -> Result<()> {
        let b = self.brain()?;
        b.state
            .applied(&mut b.model, day, applied, sample_recorded)?;
        if let Some(d) = self.days.last_mut().filter(|d| d.day == day) {
            d.applied = Some(applied);
            self.twin.observer.day_completed(d);
        }
        Ok(())
    }
}

/// The design policy of a run configuration, with the seed derived from the run's (shared
/// by the twin and the campaign).
pub(crate) fn build_policy(
    c: &RunConfig,
    design_space: &DesignSpace,
    objectives: &[Arc<dyn Objective>],
    constraints: Option<&[OutcomeConstraint]>,
    fixed: &[Control],
    seed: u64,
) -> Result<BedPolicy> {
    let mut pc = PolicyConfig {
        acquisition: c.acquisition,
        horizon_days: c.decision_horizon_days,
        end_day: Some(c.duration_days),
        raw_samples: c.raw_samples as usize,
        restarts: c.optimizer_restarts as usize,
        mc_samples: c.mc_samples as usize,
        seed: derive_seed(seed, "policy", 0),
        fixed: fixed.to_vec(),
        threads: THREADS,
        ..PolicyConfig::new(design_space)
    };
    if let Some(cons) = constraints {
        pc.constraints = cons.to_vec();
    }
    Ok(BedPolicy::new(
        design_space.clone(),
        objectives
            .iter()
            .map(|o| Box::new(SharedObjective(o.clone())) as Box<dyn Objective>)
            .collect(),
        pc,
    )?)
}

/// Reads and validates day `day` from `connector`, retrying transient failures with
/// backoff within `budget` (shared by the twin and the campaign).
pub(crate) async fn read_with_retry(
    connector: &dyn Connector,
    design_space: &DesignSpace,
    cancel: &CancelToken,
    day: CultureDay,
    budget: Duration,
) -> Read {
    let start = Instant::now();
    let mut delay = RETRY_INITIAL;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let got = tokio::select! {
            r = read_validated(connector, day, design_space) => r,
            () = cancel.cancelled() => return Read::Cancelled,
        };
        match got {
            Ok(v) => return Read::Sample(Box::new(v), start.elapsed(), attempts),
            Err(e) if e.is_transient() => {
                let left = budget.saturating_sub(start.elapsed());
                let not_yet = matches!(e, ConnectorError::NotYetAvailable { .. });
                if left.is_zero() {
                    return if not_yet {
                        Read::NotYet(e)
                    } else {
                        Read::Failed(e, start.elapsed(), attempts)
                    };
                }
                // a day that has not come is polled with bounded lateness, a fault backs off
                let wait = if not_yet {
                    poll_delay(start.elapsed())
                } else {
                    delay
                };
                if !cancel.sleep(wait.min(left)).await {
                    return Read::Cancelled;
                }
                if !not_yet {
                    delay = (delay * 2).min(RETRY_CAP);
                }
            }
            Err(e) => return Read::Failed(e, start.elapsed(), attempts),
        }
    }
}

/// Writes setpoints, retrying transient failures with backoff within `budget`; `Err(None)`
/// when cancelled, else the last error and the attempts.
pub(crate) async fn write_with_retry(
    connector: &dyn Connector,
    cancel: &CancelToken,
    setpoints: &Setpoints,
    budget: Duration,
) -> std::result::Result<WriteReceipt, Option<(ConnectorError, u32)>> {
    let start = Instant::now();
    let mut delay = RETRY_INITIAL;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        match connector.write_setpoints(setpoints).await {
            Ok(r) => return Ok(r),
            Err(e) if e.is_transient() => {
                let left = budget.saturating_sub(start.elapsed());
                if left.is_zero() {
                    return Err(Some((e, attempts)));
                }
                if !cancel.sleep(delay.min(left)).await {
                    return Err(None);
                }
                delay = (delay * 2).min(RETRY_CAP);
            }
            Err(e) => return Err(Some((e, attempts))),
        }
    }
}

/// Whether day `day` retrains: every `retrain_every` days from day `retrain_every` on,
/// before the last day.
pub(crate) fn retrain_due(cfg: &RunConfig, day: CultureDay) -> bool {
    day > 0 && day < cfg.duration_days && day.is_multiple_of(cfg.retrain_every)
}

/// The controls applied after a write: the confirmed ones at their read-back value, the
/// others as they were in force.
pub(crate) fn applied_after(
    current: &ControlArray<f64>,
    written: &SetpointWritten,
) -> ControlArray<f64> {
    let mut applied = *current;
    for c in &written.receipt.controls {
        if c.status == WriteStatus::Confirmed {
            applied[c.control.index()] = c.readback.unwrap_or(c.requested);
        }
    }
    applied
}

/// The `sample_read` payload: the accepted values (species, derived variables) and the
/// controls the source reports as applied that day, by canonical name.
pub(crate) fn sample_payload(sample: &Sample, source: &str) -> SampleRead {
    let mut p = SampleRead::from_sample(sample, source);
    for c in Control::ALL {
        if let Some(v) = sample.controls[c.index()] {
            p.values.insert(c.name().to_string(), Some(v));
        }
    }
    p
}

pub(crate) fn retrained_event(r: &perfusio_hybrid::HybridFitReport, sha: String) -> ModelRetrained {
    ModelRetrained {
        model_sha256: sha,
        rows: r.rows as u64,
        transitions: r.transitions as u64,
        nlml: if r.nlml.is_finite() { r.nlml } else { f64::MAX },
        iterations: r.iterations,
        evaluations: r.evaluations,
        converged: r.converged,
        termination: snake(&r.termination),
        warm_start: r.warm_start,
        duration_s: r.wall_time.as_secs_f64(),
        calibrated: calibrated_event(r),
        pathways: r.pathways.clone(),
    }
}

/// The kinetic parameters in force after a (re)training, with the standard errors of the
/// calibration when this retraining ran one (empty for an uncalibrated mechanism).
fn calibrated_event(
    r: &perfusio_hybrid::HybridFitReport,
) -> BTreeMap<String, perfusio_audit::event::CalibratedParameter> {
    r.calibrated
        .iter()
        .map(|(name, value)| {
            let std_error = r.calibration.as_ref().and_then(|c| {
                c.parameters
                    .iter()
                    .find(|p| &p.name == name)
                    .and_then(|p| p.std_error)
            });
            (
                name.clone(),
                perfusio_audit::event::CalibratedParameter {
                    value: *value,
                    std_error: std_error.filter(|v| v.is_finite()),
                },
            )
        })
        .collect()
}

/// `GradientTolerance` → `gradient_tolerance`.
fn snake(s: &str) -> String {
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if ch.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(ch.to_ascii_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

pub(crate) fn finite(v: f64) -> f64 {
    if v.is_finite() {
        v
    } else if v > 0.0 {
        f64::MAX
    } else {
        f64::MIN
    }
}

pub(crate) fn forecast_event(
    f: &Forecast,
    forecast_sha256: String,
    model_sha256: String,
) -> ForecastEvent {
    let horizon = f.horizon() as u32;
    let days_ahead: Vec<u32> = FORECAST_DAYS_AHEAD
        .iter()
        .copied()
        .filter(|d| *d <= horizon)
        .collect();
    let days: Vec<&perfusio_hybrid::DayBand> = days_ahead
        .iter()
        .map(|d| &f.state[*d as usize - 1])
        .collect();
    let bands = Species::ALL
        .iter()
        .map(|s| (s.name().to_string(), species_bands(&days, s.index())))
        .collect();
    ForecastEvent {
        from_day: f.start_day,
        horizon_days: horizon,
        method: match f.method {
            perfusio_hybrid::ForecastMethod::MonteCarlo => AuditForecastMethod::MonteCarlo,
            perfusio_hybrid::ForecastMethod::MomentMatching => AuditForecastMethod::MomentMatching,
        },
        paths: f.paths.as_ref().map_or(0, |p| p.len() as u32),
        model_sha256,
        forecast_sha256,
        days_ahead,
        bands,
    }
}

pub(crate) fn decision_event(d: &Decision) -> DecisionEvent {
    let est = |s: Option<&perfusio_bed::ObjectiveSummary>| {
        s.map_or(ObjectiveEstimate { mean: 0.0, sd: 0.0 }, |s| {
            ObjectiveEstimate {
                mean: finite(s.mean),
                sd: finite(s.sd.max(0.0)),
            }
        })
    };
    DecisionEvent {
        controls: setpoint_map(&d.setpoints),
        acquisition: d.acquisition,
        acquisition_value: finite(d.acquisition_value),
        objective: d.objectives.first().cloned().unwrap_or_default(),
        recommended: est(d.recommended.first()),
        hold: est(d.holding.first()),
        probability_feasible: if d.probability_feasible.is_finite() {
            d.probability_feasible.clamp(0.0, 1.0)
        } else {
            0.0
        },
        reason: d.reason.clone(),
        elapsed_s: d.elapsed.as_secs_f64(),
        horizon_days: u32::try_from(d.forecast.horizon()).ok(),
        objectives: if d.objectives.len() > 1 {
            d.objectives
                .iter()
                .enumerate()
                .map(|(k, name)| NamedObjectiveEstimates {
                    name: name.clone(),
                    recommended: est(d.recommended.get(k)),
                    hold: est(d.holding.get(k)),
                })
                .collect()
        } else {
            Vec::new()
        },
        next_sample: d
            .forecast
            .measured
            .first()
            .map(next_sample)
            .unwrap_or_default(),
    }
}

/// The bands of species `k` on the given forecast days, one value per day (a value that
/// is not finite is clamped by [`finite`]).
fn species_bands(days: &[&perfusio_hybrid::DayBand], k: usize) -> SpeciesBands {
    let at = |q: Option<usize>| -> Vec<f64> {
        days.iter()
            .map(|b| finite(q.map_or(b.mean[k], |q| b.quantiles[q][k])))
            .collect()
    };
    SpeciesBands {
        mean: at(None),
        q05: at(Some(0)),
        q10: at(Some(1)),
        q50: at(Some(2)),
        q90: at(Some(3)),
        q95: at(Some(4)),
    }
}

/// The measured-value bands of a forecast's first day, one value per series; a species
/// whose quantiles are not finite and ordered is left out (the record would be refused).
fn next_sample(b: &perfusio_hybrid::DayBand) -> BTreeMap<String, SpeciesBands> {
    Species::ALL
        .iter()
        .filter(|s| {
            let q: [f64; 5] = std::array::from_fn(|i| b.quantiles[i][s.index()]);
            b.mean[s.index()].is_finite()
                && q.iter().all(|v| v.is_finite())
                && q.windows(2).all(|w| w[0] <= w[1])
        })
        .map(|s| (s.name().to_string(), species_bands(&[b], s.index())))
        .collect()
}

/// The versions of the layers (one workspace version for all).
pub(crate) fn crate_versions() -> Value {
    let v = env!("CARGO_PKG_VERSION");
    json!({
        "perfusio-twin": v, "perfusio-core": v, "perfusio-mechanistic": v,
        "perfusio-hybrid": v, "perfusio-gp": v, "perfusio-bed": v,
        "perfusio-connectors": v, "perfusio-audit": v,
    })
}

/// Serialisation into a JSON value without failing (a value that cannot be serialised is
/// recorded as its error message).
pub(crate) mod erased {
    pub(crate) trait Ser {
        fn value(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> Ser for T {
        fn value(&self) -> serde_json::Value {
            serde_json::to_value(self)
                .unwrap_or_else(|e| serde_json::Value::String(format!("not serialisable: {e}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_delay_is_a_bounded_fraction_of_the_wait() {
        assert_eq!(poll_delay(Duration::ZERO), RETRY_INITIAL);
        assert_eq!(
            poll_delay(Duration::from_secs(1)),
            Duration::from_millis(125)
        );
        assert_eq!(poll_delay(Duration::from_secs(3600)), RETRY_CAP);
        // a sample that appears at `t` is read within max(25 ms, t/8) (+ the step's
        // rounding), and a one-second wait takes a bounded number of polls
        let mut polls = vec![Duration::ZERO];
        while let Some(&last) = polls.last() {
            if last > Duration::from_secs(120) {
                break;
            }
            polls.push(last + poll_delay(last));
        }
        for ms in (10..60_000).step_by(7) {
            let appears = Duration::from_millis(ms);
            let read = polls.iter().find(|&&p| p >= appears).copied();
            let late = read.map(|r| r - appears);
            let bound = (appears / 8).max(RETRY_INITIAL) + Duration::from_millis(1);
            assert!(
                late.is_some_and(|l| l <= bound),
                "{appears:?}: {late:?} > {bound:?}"
            );
        }
        let within_a_second = polls
            .iter()
            .filter(|&&p| p <= Duration::from_secs(1))
            .count();
        assert!(
            (15..=25).contains(&within_a_second),
            "{within_a_second} polls"
        );
    }
}
