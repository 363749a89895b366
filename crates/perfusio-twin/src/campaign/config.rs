//! [`CampaignConfig`]: a campaign as one TOML file (reactors and their connectors,
//! objective, constraints, approval, the run configuration, prior plant, seed, output
//! directory). Unknown fields are errors that name the field.

use std::path::{Path, PathBuf};
use std::time::Duration;

use perfusio_core::{RunConfig, Variable};
use perfusio_hybrid::{CalibrationConfig, ForecastMethod};
use serde::{Deserialize, Serialize};

use super::CampaignError;

/// Most reactors one campaign drives (the 24-parallel mini-bioreactor platform).
pub const MAX_REACTORS: usize = 24;

/// A campaign, as written in its TOML file.
///
/// ```toml
/// name = "cloneY-screen"
/// output_dir = "campaign-out"
/// seed = 7
/// prior = "CloneX"
/// objective = "harvest"   # or two or three: objectives = ["harvest", "final-titer"]
/// medium_cost = 400.0
/// forecast_method = "moment_matching"   # or "monte_carlo"
///
/// [approval]
/// mode = "required"        # or "auto"
/// deadline = "10m"         # s, m, h (or a number of seconds)
/// at_deadline = "hold"     # or "apply"
///
/// [run]                    # a RunConfig (`perfusio config default`)
/// duration_days = 14
/// allow_write = true
///
/// [[reactors]]
/// id = "R01"
/// connector = { kind = "virtual", truth = "CloneY", seed = 1 }
/// [[reactors]]
/// id = "R02"
/// connector = { kind = "file", path = "r02.csv" }
/// [[reactors]]
/// id = "R03"
/// connector = { kind = "opcua", endpoint = "opc.tcp://127.0.0.1:4855", folder = "R03" }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignConfig {
    /// Name of the campaign (in the snapshot, the index and every run id).
    pub name: String,
    /// Directory of the campaign: `campaign.json`, `snapshot.json`, `actions.jsonl`,
    /// `outcomes.jsonl` and one `RXX/audit.jsonl` per reactor. Relative paths are taken
    /// from the configuration file's directory by [`CampaignConfig::from_file`].
    pub output_dir: PathBuf,
    /// Seed of the campaign (forecasts, decisions, the model's multistart); default: the
    /// run configuration's, else 42.
    #[serde(default)]
    pub seed: Option<u64>,
    /// The mechanism the shared hybrid model starts from: `CloneX`, `CloneY` or a plant
    /// file (TOML). Default: CloneX.
    #[serde(default)]
    pub prior: Option<String>,
    /// The objective in the CLI's spelling: `harvest`, `track:VCV=10`, `final-titer`.
    #[serde(default = "default_objective")]
    pub objective: String,
    /// Two or three objectives, traded off on a Pareto front (replaces `objective`, whose
    /// only allowed value is then the default or the list's first entry), e.g.
    /// `["harvest", "final-titer"]`. The daily batch is then chosen by qNEHVI (or qEHVI if
    /// `run.acquisition` says so), and the report gives the front of operating points found
    /// besides the best by the first objective. Default: none (one objective).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objectives: Vec<String>,
    /// Cost of medium in the harvest objective (mg of titer per L of medium).
    #[serde(default)]
    pub medium_cost: f64,
    /// Outcome constraints (default: viability at least the design space's floor).
    #[serde(default)]
    pub constraints: Option<Vec<ConstraintSpec>>,
    /// Days over which the best constant operating point is evaluated from the day-0
    /// state (default: the run's `duration_days`), e.g. 28 to rank points for a 28-day
    /// production run after a 14-day campaign.
    #[serde(default)]
    pub best_point_days: Option<u32>,
    /// How the reactors' published forecasts (the dashboard's fan charts, the alarms)
    /// propagate uncertainty: `moment_matching` (default) or `monte_carlo`. Monte Carlo
    /// costs `mc_samples × forecast_horizon_days` GP predictions and mechanistic steps per
    /// reactor and day (seconds a day for 24 reactors); moment matching costs
    /// `forecast_horizon_days` linearised transitions. The design policy is not affected.
    #[serde(default = "default_forecast_method")]
    pub forecast_method: ForecastMethod,
    /// Fit the shared model's hyperparameters off the daily path (default false): on a
    /// retraining day, a fit started on an earlier retraining day (on the data through that
    /// day) that has finished is adopted and the model conditioned on all data with it (one
    /// factorisation), then the next fit starts in the background; while a fit still runs,
    /// the model is conditioned on all data with the hyperparameters in force. For sampling
    /// intervals shorter than a fit (an emulator's one-second day with hundreds of rows),
    /// where a fit on the daily path makes the campaign miss samples. The hyperparameters
    /// lag at least one retraining interval behind; which fit each retraining adopted is
    /// in its `model_retrained` record, so a resume replays it.
    #[serde(default)]
    pub retrain_in_background: bool,
    /// Calibrate these kinetic parameters of the shared model's mechanism online, from the
    /// campaign's own data: field names of a plant file, e.g. `["mu_max",
    /// "lac_consump_rate"]` (an empty list: the default subset mu_max, q_glc_max,
    /// q_gln_max, k_d, beta_p). The first retraining with 10 or more one-day transitions
    /// (over all reactors) calibrates from the prior, every 5th retraining after it again,
    /// warm-started; every `model_retrained` record names the parameters in force. Default:
    /// none (the prior's mechanism is kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibrate: Option<Vec<String>>,
    /// Operator approval of the daily recommendations.
    #[serde(default)]
    pub approval: ApprovalConfig,
    /// The run configuration shared by every reactor (days, retraining, horizons, writes,
    /// pacing, acquisition).
    #[serde(default)]
    pub run: RunConfig,
    /// The reactors, 1 to [`MAX_REACTORS`].
    pub reactors: Vec<ReactorConfig>,
}

fn default_forecast_method() -> ForecastMethod {
    ForecastMethod::MomentMatching
}

fn default_objective() -> String {
    "harvest".into()
}

fn is_harvest(spec: &str) -> bool {
    spec.trim().eq_ignore_ascii_case("harvest")
}

/// An outcome constraint: `variable` (a species, VCV or Diam) within `[min, max]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConstraintSpec {
    /// Variable name (as `perfusio design-space` lists them, e.g. `viability`, `VCV`).
    pub variable: String,
    /// Lower limit.
    #[serde(default)]
    pub min: Option<f64>,
    /// Upper limit.
    #[serde(default)]
    pub max: Option<f64>,
}

/// One reactor of a campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReactorConfig {
    /// Reactor id, e.g. `R07` (its audit log is `OUTPUT_DIR/R07/audit.jsonl`).
    pub id: String,
    /// Where its data come from and its setpoints go.
    pub connector: ConnectorSpec,
}

/// A reactor's connector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ConnectorSpec {
    /// The simulated ambr250 of `perfusio-mechanistic`.
    Virtual {
        /// The true plant: `CloneX`, `CloneY` or a plant file (TOML).
        truth: String,
        /// Seed of its noise and initial state (default: the campaign's seed plus the
        /// reactor's position).
        #[serde(default)]
        seed: Option<u64>,
    },
    /// A culture file (CSV, Parquet) with its setpoint log.
    File {
        /// The file.
        path: PathBuf,
    },
    /// One reactor folder of an OPC UA server (e.g. the emulator's `R01`…`R24`).
    Opcua {
        /// Endpoint URL, `opc.tcp://host:port`.
        endpoint: String,
        /// The reactor's folder on the server.
        folder: String,
        /// The client's PKI directory (default: `OUTPUT_DIR/pki`).
        #[serde(default)]
        pki_dir: Option<PathBuf>,
        /// Trust the server's certificate on first use (default: no; put it in
        /// `PKI/trusted/` instead).
        #[serde(default)]
        trust_on_first_use: bool,
    },
}

impl ConnectorSpec {
    /// For display: `virtual CloneY seed 3`, `file r02.csv`, `opc.tcp://…/R07`.
    pub fn describe(&self) -> String {
        match self {
            Self::Virtual { truth, seed } => match seed {
                Some(s) => format!("virtual {truth} seed {s}"),
                None => format!("virtual {truth}"),
            },
            Self::File { path } => format!("file {}", path.display()),
            Self::Opcua {
                endpoint, folder, ..
            } => format!("{endpoint}/{folder}"),
        }
    }
}

/// Whether recommendations need an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalMode {
    /// Decisions are applied as the twin applies them.
    #[default]
    Auto,
    /// Each day's recommendations wait for approve, edit or reject until the deadline.
    Required,
}

impl ApprovalMode {
    /// `"auto"` or `"required"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Required => "required",
        }
    }
}

/// What happens to a recommendation nobody acted on by its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AtDeadline {
    /// Keep the setpoints in force.
    #[default]
    Hold,
    /// Apply the recommendation.
    Apply,
}

impl AtDeadline {
    /// `"hold"` or `"apply"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hold => "hold",
            Self::Apply => "apply",
        }
    }
}

/// The `[approval]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalConfig {
    /// `auto` or `required`.
    #[serde(default)]
    pub mode: ApprovalMode,
    /// How long a recommendation waits: `90s`, `10m`, `2h`, or a number of seconds.
    #[serde(default = "default_deadline", with = "duration_text")]
    pub deadline: Duration,
    /// `hold` or `apply`.
    #[serde(default)]
    pub at_deadline: AtDeadline,
}

fn default_deadline() -> Duration {
    Duration::from_secs(600)
}

impl Default for ApprovalConfig {
    fn default() -> Self {
        Self {
            mode: ApprovalMode::Auto,
            deadline: default_deadline(),
            at_deadline: AtDeadline::Hold,
        }
    }
}

/// Parses `90s`, `1.5m`, `2h`, `250ms` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 90s, 10m, 2h)"))?;
    let secs = v * scale;
    if !(secs.is_finite() && (0.0..1e9).contains(&secs)) {
        return Err(format!("{text:?} is not a duration ≥ 0"));
    }
    Ok(Duration::from_secs_f64(secs))
}

mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}s", d.as_secs_f64()))
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        S(String),
        N(f64),
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Text::deserialize(d)? {
            Text::S(s) => super::parse_duration(&s).map_err(serde::de::Error::custom),
            Text::N(n) => super::parse_duration(&n.to_string()).map_err(serde::de::Error::custom),
        }
    }
}

impl CampaignConfig {
    /// Parses a campaign from TOML and checks it ([`CampaignConfig::check`]).
    pub fn from_toml_str(text: &str) -> Result<Self, CampaignError> {
        let cfg: Self = toml::from_str(text).map_err(|e| CampaignError::Toml {
            message: e.message().to_string(),
            field: unknown_field(e.message()),
        })?;
        cfg.check()?;
        Ok(cfg)
    }

    /// Reads a campaign file; a relative `output_dir` or file path is taken from the
    /// file's directory.
    pub fn from_file(path: &Path) -> Result<Self, CampaignError> {
        let text = std::fs::read_to_string(path).map_err(|e| CampaignError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut cfg = Self::from_toml_str(&text).map_err(|e| match e {
            CampaignError::Toml { message, field } => CampaignError::Toml {
                message: format!("{}: {message}", path.display()),
                field,
            },
            other => other,
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        if cfg.output_dir.is_relative() {
            cfg.output_dir = base.join(&cfg.output_dir);
        }
        for r in &mut cfg.reactors {
            match &mut r.connector {
                ConnectorSpec::File { path }
                | ConnectorSpec::Opcua {
                    pki_dir: Some(path),
                    ..
                } if path.is_relative() => *path = base.join(&*path),
                _ => {}
            }
        }
        Ok(cfg)
    }

    /// The online calibration of the shared model that [`CampaignConfig::calibrate`] asks
    /// for (`None`: none); an unknown parameter name is [`CampaignError::Invalid`] naming
    /// `calibrate` and listing the valid names.
    pub fn calibration(&self) -> Result<Option<CalibrationConfig>, CampaignError> {
        let Some(names) = &self.calibrate else {
            return Ok(None);
        };
        let c = CalibrationConfig::named_or_default(names)
            .map_err(|e| CampaignError::invalid("calibrate", e.to_string()))?;
        Ok(Some(CalibrationConfig {
            online_from_prior: true,
            ..c
        }))
    }

    /// Checks the reactors (1 to [`MAX_REACTORS`], unique ids usable as directory names),
    /// the calibrated parameters' names, the constraints, the medium cost and the run
    /// configuration.
    pub fn check(&self) -> Result<(), CampaignError> {
        let n = self.reactors.len();
        if n == 0 || n > MAX_REACTORS {
            return Err(CampaignError::ReactorCount { n });
        }
        if self.name.trim().is_empty() || self.name.chars().any(char::is_control) {
            return Err(CampaignError::invalid("name", "give the campaign a name"));
        }
        for (i, r) in self.reactors.iter().enumerate() {
            let ok = !r.id.is_empty()
                && r.id.len() <= 32
                && r.id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
                return Err(CampaignError::invalid(
                    "reactors.id",
                    format!(
                        "{:?}: a reactor id is 1–32 letters, digits, '-' or '_' (it names its directory)",
                        r.id
                    ),
                ));
            }
            if self.reactors[..i].iter().any(|o| o.id == r.id) {
                return Err(CampaignError::invalid(
                    "reactors.id",
                    format!("{} appears twice", r.id),
                ));
            }
        }
        self.calibration()?;
        if !(self.medium_cost.is_finite() && self.medium_cost >= 0.0) {
            return Err(CampaignError::invalid(
                "medium_cost",
                format!("{} must be a finite number ≥ 0", self.medium_cost),
            ));
        }
        if !self.objectives.is_empty() {
            if !(2..=3).contains(&self.objectives.len()) {
                return Err(CampaignError::invalid(
                    "objectives",
                    format!(
                        "give two or three objectives, not {} (one goes in `objective`)",
                        self.objectives.len()
                    ),
                ));
            }
            if self.objective != default_objective() && self.objective != self.objectives[0] {
                return Err(CampaignError::invalid(
                    "objective",
                    format!(
                        "{:?} conflicts with objectives = {:?}: give one of them",
                        self.objective, self.objectives
                    ),
                ));
            }
            if self.medium_cost > 0.0 && !self.objectives.iter().any(|o| is_harvest(o)) {
                return Err(CampaignError::invalid(
                    "medium_cost",
                    "applies to the harvest objective, which `objectives` does not list",
                ));
            }
            if self.run.acquisition == perfusio_core::Acquisition::QNParEGO {
                return Err(CampaignError::invalid(
                    "run.acquisition",
                    "a campaign's batch over several objectives takes qNEHVI or qEHVI",
                ));
            }
        } else if self.run.acquisition.is_multi_objective() {
            return Err(CampaignError::invalid(
                "run.acquisition",
                format!(
                    "{} needs two or three `objectives`",
                    self.run.acquisition.name()
                ),
            ));
        }
        for c in self.constraints.iter().flatten() {
            c.variable
                .parse::<Variable>()
                .map_err(|e| CampaignError::invalid("constraints.variable", e.to_string()))?;
        }
        if let Some(d) = self.best_point_days
            && !(1..=perfusio_core::MAX_DURATION_DAYS).contains(&d)
        {
            return Err(CampaignError::invalid(
                "best_point_days",
                format!("{d}: give 1 to {} days", perfusio_core::MAX_DURATION_DAYS),
            ));
        }
        self.run
            .validate()
            .map_err(|e| CampaignError::invalid("run", e.to_string()))?;
        Ok(())
    }

    /// The objectives in force with each one's medium cost (the harvest objective's is
    /// `medium_cost`, the others' 0): `objectives` when given, else `objective`.
    pub fn objective_specs(&self) -> Vec<(String, f64)> {
        if self.objectives.is_empty() {
            return vec![(self.objective.clone(), self.medium_cost)];
        }
        self.objectives
            .iter()
            .map(|o| {
                let cost = if is_harvest(o) { self.medium_cost } else { 0.0 };
                (o.clone(), cost)
            })
            .collect()
    }

    /// The objective(s) as the snapshot and the report name them: `harvest`, or
    /// `harvest, final-titer` with several.
    pub fn objective_label(&self) -> String {
        if self.objectives.is_empty() {
            self.objective.clone()
        } else {
            self.objectives.join(", ")
        }
    }

    /// The seed in force: the campaign's, else the run configuration's, else 42.
    pub fn seed(&self) -> u64 {
        self.seed.or(self.run.seed).unwrap_or(42)
    }
}

/// The field a serde "unknown field `x`" message names.
fn unknown_field(message: &str) -> Option<String> {
    let rest = message.split("unknown field `").nth(1)?;
    rest.split('`').next().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"
        name = "c"
        output_dir = "out"
        [[reactors]]
        id = "R01"
        connector = { kind = "virtual", truth = "CloneY" }
    "#;

    #[test]
    fn a_minimal_campaign_parses_with_defaults() {
        let c = CampaignConfig::from_toml_str(MIN).unwrap();
        assert_eq!(c.approval.mode, ApprovalMode::Auto);
        assert_eq!(c.approval.deadline, Duration::from_secs(600));
        assert_eq!(c.objective, "harvest");
        assert_eq!(c.seed(), 42);
    }

    #[test]
    fn durations_parse_in_their_units() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5m").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
