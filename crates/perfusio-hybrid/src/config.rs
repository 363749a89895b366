//! [`HybridConfig`]: everything that defines a hybrid model before it sees data.

use perfusio_core::{DEFAULT_AMBR250_DESIGN_SPACE, DesignSpace, N_SPECIES, SpeciesArray};
use perfusio_mechanistic::{KineticParams, NoiseModel};
use serde::{Deserialize, Serialize};

use crate::calibrate::CalibrationConfig;
use crate::dataset::InputSource;
use crate::error::{HybridError, Result};
use crate::mean::PriorIntegrator;
use crate::transform::LogTransform;

/// The prior mean of the model's one-day step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeanKind {
    /// The mechanistic one-day step (the hybrid model).
    #[default]
    Mechanistic,
    /// A constant per species (the GP alone, an ablation); before any fit: persistence.
    Constant,
    /// Tomorrow equals today (an ablation; also the GP's prior mean if trained).
    Persistence,
}

/// How the GP is fitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpSettings {
    /// Rank of the task covariance's low-rank part (`B = W Wᵀ + diag(κ)`).
    pub rank: usize,
    /// Rank of the task covariance when the training runs hold one cell line (no line
    /// embedding); `None` uses [`GpSettings::rank`]. [`HybridConfig::for_design`] sets 0:
    /// the nine species' corrections are then independent GPs sharing one input kernel.
    /// On a design that spans the controls, a low-rank coupling carries the structure of
    /// the largest correction (clone Y's lactate, which the mechanism misses) into the
    /// others: one-day glucose from the filtered states of the held-out runs (truth CloneY,
    /// prior CloneX, development seed 2) is 3.61 % rRMSE at rank 2 and 2.15 % at rank 0.
    /// Measured with `perfusio evaluate`, the mean rRMSE at 3 days on development seeds 2
    /// and 3 is, at ranks 0 / 1 / 2: truth CloneY 5.22 and 4.95 / 5.14 and 5.31 / 5.38 and
    /// 5.75 %; truth CloneX 3.26 and 3.54 / 2.88 and 3.25 / 3.13 and 3.50 %; with the 90 %
    /// coverage in [0.92, 0.95] throughout. With two or more lines the coupling stays
    /// ([`GpSettings::rank`]): with a few days of a new line, what the other species and
    /// lines say about a species is what there is to borrow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank_one_line: Option<usize>,
    /// Optimiser starts of a fit from scratch.
    pub n_starts: usize,
    /// Iteration cap per start (a fit that hits it is reported as not converged).
    pub max_iters: u64,
    /// Iteration cap of a warm-started refit.
    pub warm_iters: u64,
    /// Seed of the multistart draws.
    pub seed: u64,
    /// Whether the culture day is a kernel input. Off by default: the plant is autonomous
    /// (its rates depend on state and controls, not on the calendar), and a day column makes
    /// every forecast an extrapolation beyond the training days.
    pub use_day: bool,
    /// Give the GP the mechanism's one-day prediction as nine extra inputs (the hybrid model
    /// only; on by default). The mechanism's error often depends more simply on its own
    /// prediction than on the state it started from (a lactate switch that the mechanism
    /// takes and the cell line does not is a jump in the state but a smooth function of the
    /// predicted lactate), and the GP's prior mean is then exactly those inputs.
    #[serde(default = "yes")]
    pub mechanism_inputs: bool,
    /// Fit, per species, the fraction of the mechanism's one-day change that the GP's prior
    /// mean takes: `z_k + w_k (m_k(z, u) − z_k)`, `w_k` by least squares over the training
    /// transitions before each fit, clamped to `[0, 1]` (1: the mechanism, 0: tomorrow
    /// equals today), with [`GpSettings::mechanism_inputs`] and the mechanistic mean only.
    /// Off by default; on in [`HybridConfig::for_design`]. A stationary GP corrects a
    /// mechanism that is wrong in a way proportional to the state poorly away from its
    /// training data: clone X's mechanism takes clone Y's lactate to 0 below the glucose
    /// switch, while the plant holds it, and the correction the GP had to learn was the
    /// whole level (most of the design's transitions sit on a plateau near 50 mmol/L;
    /// held-out runs move between 20 and 57). With the weight (lactate's comes out at 0.001
    /// to 0.002) what is left is the small daily change. Chosen on `perfusio evaluate`'s
    /// development seeds 2 and 3 (mean rRMSE at 1/3/7 days): truth CloneY 5.46/5.22/5.01 %
    /// and 5.15/4.95/4.77 % → 2.91/3.04/3.21 % and 3.03/2.79/2.74 % (lactate at 3 days
    /// 37.8 → 19.3 % and 36.6 → 19.1 %, 90 % coverage 0.93 throughout); truth CloneX
    /// within 0.01 (every weight but viability's at least 0.9998). Viability's weight comes
    /// out at 0 on both plants and all seeds seen, for a reason not pinned down (its
    /// one-day change, about 0.005 in `z`, is small against its 2-point noise); the GP then
    /// carries the change, at an unchanged viability rRMSE on the development seeds. The
    /// weights travel in the model file and the fit report
    /// ([`crate::HybridModel::mechanism_weights`]).
    #[serde(default, skip_serializing_if = "is_false")]
    pub mechanism_weights: bool,
    /// Carry the GP's fitted noise above the measurement-noise model as process variance
    /// of every transition ([`crate::HybridModel::process_variance`]). Off by default.
    /// Measured with `perfusio evaluate` (27-run design, 10 held-out runs): on, truth CloneX
    /// goes from 2.2 % to 3.5 % rRMSE at 3 days and its 90 % coverage from 0.95 to 0.96
    /// (the noise of the filtered inputs is counted twice); truth CloneY improves a little
    /// (6.6 → 6.3 %, coverage 0.92 → 0.94). On a single online run, whose noise estimate
    /// also holds process variability the few days cannot explain, it lifts the one-day
    /// coverage of the daily-loop example from 0.75 to 0.84 (centred residuals; the
    /// example now also fits uncentred, [`GpSettings::centre_residuals`]: 0.90). On the
    /// twin's closed loop (truth CloneY, 28 days, harvest at medium cost 400, seeds 1–6,
    /// 8–10, 12–21) it lifted the mean one-day coverage from 0.83 to 0.88 but lowered the
    /// mean objective (25 550 → 25 080, with two runs of the 19 losing a quarter of their
    /// harvest), so the twin's online model keeps it off.
    #[serde(default)]
    pub process_noise: bool,
    /// Dimension of the learned cell-line embedding (0 turns it off). When the training
    /// runs carry two or more cell-line labels, the GP's input kernel is multiplied by a
    /// [`perfusio_gp::LevelEmbedding`] over the line: each line gets a position in this
    /// many dimensions, fitted by marginal likelihood with the other hyperparameters, and
    /// lines that behave alike share what the model learned in proportion to how close
    /// they are. Runs without a label form one line of their own. Default 2.
    #[serde(default = "two")]
    pub line_embedding_dims: usize,
    /// Subtract each species' mean residual before the GP fit and add it back to the
    /// predictions ([`perfusio_gp::FitOptions::centre_targets`]; on by default). Centred,
    /// the one-day step returns, far from the training data, to the mechanism plus each
    /// species' mean residual; off, to the mechanism itself with the GP's full signal
    /// variance (the residuals' spread about 0, offset included). Offline, on a design that
    /// spans the control space, the mean residual is what the mechanism gets wrong
    /// everywhere (clone Y's missing lactate consumption), and centring wins
    /// (`perfusio evaluate`, truth CloneY, development seed 2: 5.7 % against 7.0 % rRMSE at
    /// 3 days). Online, on one run, it is the error of the one regime the run has seen, and
    /// centred it follows the forecasts into conditions the run has not seen: one run at
    /// constant controls, retrained every 3 days, then a richer medium and more perfusion
    /// (test `uncentred_residuals_return_to_the_mechanism_under_new_controls`) gives
    /// tomorrow's glucose as 2.71 g/L centred, 1.93 uncentred, 1.25 by the mechanism, while
    /// under the run's own controls the two agree (0.190 and 0.187). The daily-loop
    /// example turns it off (its one-day coverage on eight seeds: 0.85–0.90 off, 0.79–0.88
    /// on).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub centre_residuals: bool,
    /// Leave out of the GP's kernel every control that is constant over the training data
    /// (off by default). The data say nothing about how the mechanism's error changes with
    /// a control they never varied; with the control in the kernel, a forecast under
    /// another value of it is "far" from every training point and the one-day step falls
    /// back to the prior mean, discarding what was learned. Left out, the control acts
    /// through the mechanism (its prediction is an input and the prior mean) and the GP
    /// carries its learned error over unchanged. The 27-run training design holds
    /// agitation and medium pyruvate at their defaults while `perfusio evaluate`'s
    /// held-out runs vary them; measured there (development seeds, mean rRMSE at 1/3/7
    /// days): truth CloneY seed 2 6.38/5.67/5.25 % → 5.88/5.20/5.15 %, seed 3
    /// 6.63/6.58/6.27 % → 6.29/6.17/5.91 %; truth CloneX seed 2 2.27/2.77/1.74 % →
    /// 2.28/2.79/1.79 %. Which controls were left out is recomputed at every fit
    /// ([`crate::HybridModel::ignored_controls`]) and travels in the model file. Off for
    /// the online models of one run, where every control is constant until the first
    /// setpoint change: there the GP's growing uncertainty away from the controls tried
    /// is what the design policy explores with. `perfusio train` and `perfusio evaluate`
    /// turn it on ([`HybridConfig::for_design`]). It has no effect with [`GpSettings::mechanism_inputs`] off and the
    /// mechanistic mean, whose prior mean reads the controls from the GP's input row.
    #[serde(default, skip_serializing_if = "is_false")]
    pub ignore_unvaried_controls: bool,
}

fn is_true(v: &bool) -> bool {
    *v
}

fn is_false(v: &bool) -> bool {
    !*v
}

fn yes() -> bool {
    true
}

fn two() -> usize {
    2
}

impl Default for GpSettings {
    fn default() -> Self {
        Self {
            rank: 2,
            rank_one_line: None,
            n_starts: 1,
            max_iters: 500,
            warm_iters: 200,
            seed: 42,
            use_day: false,
            mechanism_inputs: true,
            mechanism_weights: false,
            process_noise: false,
            line_embedding_dims: 2,
            centre_residuals: true,
            ignore_unvaried_controls: false,
        }
    }
}

/// Configuration of a [`crate::HybridModel`].
///
/// ```
/// use perfusio_hybrid::HybridConfig;
/// let cfg = HybridConfig::default();
/// cfg.check().unwrap();
/// assert_eq!(cfg.prior_label, "CloneX");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HybridConfig {
    /// Kinetic parameters of the mechanism inside the model (the prior).
    pub prior: KineticParams,
    /// Which prior mean the one-day step uses (default: the mechanism).
    #[serde(default)]
    pub mean: MeanKind,
    /// Name of the prior for reports (`"CloneX"`, a plant file path…).
    pub prior_label: String,
    /// Species coordinates.
    pub transform: LogTransform,
    /// Coefficient of variation of each species' assay: the observation model of the state
    /// filter and of the measured-value bands. Default: the ambr250 noise of
    /// `docs/plant-model.md` (5 % VCD, 2 % Via, 7 % metabolites, 8 % titer).
    pub observation_cv: SpeciesArray<f64>,
    /// Control bounds (input scaling of the GP and Jacobian steps).
    pub design_space: DesignSpace,
    /// Culture length the day input is scaled to, days.
    pub max_day: u32,
    /// Where training inputs come from.
    pub input_source: InputSource,
    /// Prior-mean integrator.
    pub integrator: PriorIntegrator,
    /// GP fitting.
    pub gp: GpSettings,
    /// One-day transition sd in `z` of the mechanism alone, per species: the model
    /// uncertainty before the GP has data, and the filter's process noise until then.
    pub mechanism_sd: SpeciesArray<f64>,
    /// Match the mechanism's one-day sd to the training runs before the GP is fitted
    /// offline ([`crate::HybridModel::match_mechanism_sd`]; off by default, on in
    /// [`HybridConfig::for_design`]). The states the GP trains on come from the
    /// mechanism-only filter, whose process noise is [`HybridConfig::mechanism_sd`]. Set
    /// wider than the mechanism's real error, that filter follows each noisy sample, and
    /// the GP, whose inputs (a run's constant controls, its other species) tell the runs
    /// apart, learns how each run's estimates scatter about its own trajectory, which no
    /// other run shares. Measured with the true plant as prior (truth and prior CloneY,
    /// development seed 2, one-day steps from the true states of the held-out runs): at the
    /// default 0.05 the GP's corrections, which should vanish, cost 4.0 % rRMSE on VCD,
    /// 8.3 % on glucose and 3.8 % on titer; matched (every species at the floor, 0.01)
    /// 0.3 %, 0.9 % and 0.8 %. On `perfusio evaluate` (development seeds 2 and
    /// 3, mean rRMSE at 1/3/7 days) truth CloneX went from 2.28/2.79/1.79 % and
    /// 2.48/3.99/2.13 % to 1.75/3.13/2.53 % and 1.97/3.50/1.94 %, truth CloneY (prior
    /// CloneX) from 5.88/5.20/5.15 % and 6.29/6.17/5.91 % to 5.63/5.38/5.01 % and
    /// 5.85/5.75/5.99 %: better one day ahead on all four, mixed further out, where
    /// lactate, which the design leaves the GP to extrapolate, dominates the mean. Skipped
    /// when the same fit calibrates the mechanism: the calibrated parameters were fitted to
    /// these days, and matched after them the filter trusted a mechanism the calibration
    /// had pulled off its right values (truth CloneY, prior CloneX, default subset, seed 2:
    /// `hybrid-calibrated` 6.67/7.60/8.99 % with 90 % coverage down to 0.79, against
    /// 6.14/5.94/5.93 % and 0.95 without the match).
    #[serde(default, skip_serializing_if = "is_false")]
    pub match_mechanism_sd: bool,
    /// Fewest one-day transitions the GP is fitted on.
    pub min_transitions: usize,
    /// Calibration of the mechanism's kinetic parameters before the GP is fitted
    /// ([`crate::calibrate`]); `None` keeps the prior as it is. On by default
    /// (`Some(CalibrationConfig::default())`: μ_max, q_glc,max, q_gln,max, K_d, β_P): the
    /// offline fit ([`crate::HybridModel::fit_runs`], [`crate::HybridModel::fit_offline`])
    /// calibrates from the prior, and online retraining of a calibrated model re-calibrates
    /// every [`CalibrationConfig::every_retrains`] warm retrains, warm-started (a cold-start
    /// online model keeps its prior mechanism unless
    /// [`CalibrationConfig::online_from_prior`] is on). Only the mechanistic mean is
    /// calibrated. A configuration (or model file) without this field
    /// reads as `None`: models written before calibration existed stay as they were.
    #[serde(default)]
    pub calibrate: Option<CalibrationConfig>,
}

impl Default for HybridConfig {
    fn default() -> Self {
        Self {
            prior: KineticParams::clone_x(),
            mean: MeanKind::Mechanistic,
            prior_label: "CloneX".to_string(),
            transform: LogTransform::default(),
            observation_cv: NoiseModel::default().cv,
            design_space: DEFAULT_AMBR250_DESIGN_SPACE,
            max_day: 28,
            input_source: InputSource::default(),
            integrator: PriorIntegrator::default(),
            gp: GpSettings::default(),
            mechanism_sd: [0.05; N_SPECIES],
            match_mechanism_sd: false,
            min_transitions: 3,
            calibrate: Some(CalibrationConfig::default()),
        }
    }
}

impl HybridConfig {
    /// The configuration of a model learned online from one run's own days (the twin's
    /// default): the defaults without the offline calibration, so the mechanism stays the
    /// prior (online re-calibration applies only to models calibrated before).
    pub fn online() -> Self {
        Self {
            calibrate: None,
            ..Self::default()
        }
    }

    /// A default configuration with another mechanism as prior.
    pub fn with_prior(prior: KineticParams, label: impl Into<String>) -> Self {
        Self {
            prior,
            prior_label: label.into(),
            ..Self::default()
        }
    }

    /// The configuration of a model trained offline on a design of runs, as `perfusio
    /// train` and `perfusio evaluate` train it: [`HybridConfig::with_prior`] with the
    /// controls the runs never varied left out of the GP's inputs
    /// ([`GpSettings::ignore_unvaried_controls`]), the mechanism's one-day sd matched to
    /// the runs ([`HybridConfig::match_mechanism_sd`]), the mechanism's weight in the GP's
    /// prior mean fitted per species ([`GpSettings::mechanism_weights`]) and, for runs of one
    /// cell line, independent corrections per species ([`GpSettings::rank_one_line`]).
    ///
    /// ```
    /// use perfusio_hybrid::HybridConfig;
    /// use perfusio_mechanistic::KineticParams;
    /// let cfg = HybridConfig::for_design(KineticParams::clone_y(), "CloneY");
    /// assert!(cfg.gp.ignore_unvaried_controls && cfg.calibrate.is_some());
    /// assert!(cfg.match_mechanism_sd && cfg.gp.rank_one_line == Some(0));
    /// assert!(cfg.gp.mechanism_weights);
    /// ```
    pub fn for_design(prior: KineticParams, label: impl Into<String>) -> Self {
        let mut cfg = Self::with_prior(prior, label);
        cfg.gp.ignore_unvaried_controls = true;
        cfg.gp.rank_one_line = Some(0);
        cfg.gp.mechanism_weights = true;
        cfg.match_mechanism_sd = true;
        cfg
    }

    /// Checks every field; the error names it.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(HybridError::Config(m));
        self.prior.check()?;
        self.transform.check()?;
        self.design_space
            .check()
            .map_err(|e| HybridError::Config(e.to_string()))?;
        if let Some(cv) = self
            .observation_cv
            .iter()
            .find(|c| !(c.is_finite() && **c >= 0.0))
        {
            return bad(format!("observation_cv {cv}: must be finite and >= 0"));
        }
        if let Some(v) = self
            .mechanism_sd
            .iter()
            .find(|c| !(c.is_finite() && **c > 0.0))
        {
            return bad(format!("mechanism_sd {v}: must be finite and > 0"));
        }
        if self.max_day == 0 {
            return bad("max_day = 0: the day input needs a positive culture length".into());
        }
        if self.gp.rank > N_SPECIES {
            return bad(format!("gp.rank = {}: at most {N_SPECIES}", self.gp.rank));
        }
        if let Some(r) = self.gp.rank_one_line.filter(|r| *r > N_SPECIES) {
            return bad(format!("gp.rank_one_line = {r}: at most {N_SPECIES}"));
        }
        if self.gp.line_embedding_dims > 4 {
            return bad(format!(
                "gp.line_embedding_dims = {}: use 0 (off) to 4",
                self.gp.line_embedding_dims
            ));
        }
        if self.gp.n_starts == 0 {
            return bad("gp.n_starts = 0: need at least one start".into());
        }
        if let Some(c) = &self.calibrate {
            c.check()?;
        }
        if self.min_transitions < 2 {
            return bad("min_transitions must be at least 2".into());
        }
        if !(self.integrator.rtol > 0.0
            && self.integrator.atol > 0.0
            && self.integrator.h_max > 0.0
            && self.integrator.h_init.is_none_or(|h| h > 0.0))
        {
            return bad("integrator tolerances, h_max and h_init must be positive".into());
        }
        Ok(())
    }
}
