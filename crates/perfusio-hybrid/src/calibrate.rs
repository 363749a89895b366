//! Calibrating the mechanism: weighted least squares of the one-day step against the data.
//!
//! Before the GP learns what the mechanism gets wrong, a chosen subset of the kinetic
//! parameters is fitted to the training runs, so that the GP is left with what no parameter
//! value can explain. For every consecutive-day pair `(t, t + 1)` of every run with applied
//! controls `u_t`, and every species `k` measured on `t + 1`, the residual is
//!
//! ```text
//! r_{t,k}(θ) = (y_{t+1,k} − m_k(s_t, u_t; p(θ))) / σ_{t,k}
//! ```
//!
//! in the model's coordinates `z = ln(s + c)` ([`LogTransform`]): `y` is the observed `z`,
//! `m` the mechanism's one-day step from the day-`t` state (the same step as
//! [`crate::MechanisticMean`]), `s_t` the measured state (the filter's estimate where a
//! species was not measured) and `σ_{t,k} = cv_k · s / (s + c_k)` the measurement sd in `z`
//! at the **observed** value (the noise model of [`crate::HybridConfig::observation_cv`],
//! through [`LogTransform::measurement_sd_z`]). The parameters are fitted in log space,
//! `p_j = p_j⁰ · e^{θ_j}` with `p⁰` the prior, inside the box
//! `[lower_factor · p⁰, upper_factor · p⁰] ∩` [`KineticParams::range`] (positivity comes with
//! the logarithm). A parameter that may be zero ([`KineticParams::may_vanish`]: the rate or
//! yield of a pathway a cell line can lack) goes down to `vanishing_factor · p⁰` instead
//! (default 1e-3: a pathway at a thousandth of the prior's rate is absent for the culture):
//! a clone that never consumes lactate calibrates `lac_consump_rate` to that bound, which
//! the 0.2 × prior floor of the other parameters would hold at a fifth of the prior's rate.
//!
//! ## Pathway switches
//! A cell line can lack a pathway the prior takes, or take one it lacks: the classic case is
//! lactate uptake once glucose runs low, which clone X has and clone Y does not
//! (`consumes_lactate`). No value of the rates fixes a wrong switch, and least squares
//! bends them trying (clone Y's runs under clone X's prior: K_d +44 %). So a calibration
//! from the prior also tests each switch of [`CalibrationConfig::pathways`] (default: every
//! switch of [`KineticParams::switch_names`]) ([`Calibrator::run_checked`]): it calibrates
//! again from the prior with the switch flipped and compares the two fits by their
//! profile deviance `D = n ln(SSE / n) + 2 Σ ln σ_i`, −2 × the Gaussian log-likelihood of
//! the residuals with the noise model's sds known up to one common factor, maximised over
//! that factor (the `2 Σ ln σ_i` term counts the input-noise sds, which depend on the
//! mechanism). A flip is kept when it lowers `D` by more than `ln n`, the Bayesian
//! information criterion's price of one more parameter, so that data which cannot tell
//! the two apart (glucose never below the switch) keep the prior's. Warm re-calibrations
//! keep the switches they start from; the tests are in [`CalibrationReport::pathways`], and
//! the switch in force travels in the calibrated parameters (the model file) and in every
//! `model_retrained` audit record (`pathways`).
//!
//! Measured with `perfusio evaluate --calibrate` on development seeds 2 and 3 (mean rRMSE
//! at 1/3/7 days; truth clone Y, prior clone X): the switch is turned off (`D` 1 519.5 →
//! −34 113.9 and 1 358.6 → −34 610.6, `n` 6 464 and 6 466 residuals, penalty 8.8), and
//! `hybrid-calibrated` scores 1.37/1.11/1.05 % and 1.13/0.84/0.84 % against the uncalibrated
//! `hybrid`'s 2.91/3.04/3.21 % and 3.03/2.79/2.74 % (90 % coverage 0.902–0.919); truth and
//! prior clone X (seed 2) keep it on (`D` −36 615.2 against 328.8 flipped).
//!
//! ## Species the mechanism cannot describe
//! The noise model gives every species its weight, which is right only when the mechanism
//! can fit that species to within its noise. A prior that takes a pathway the cell line
//! lacks leaves a misfit thousands of times the noise in one species (clone Y's lactate
//! under clone X's lactate switch), and weighted least squares then bends every other
//! parameter towards reducing that one species' error. With
//! [`CalibrationConfig::species_weights`] on, each run first measures, at its starting
//! parameters, the mean squared weighted residual `s²_k` of every species and multiplies
//! that species' variances by `max(1, s²_k)`: weighted least squares with one variance
//! factor per species, estimated from the residuals (feasible generalised least squares).
//! Species the mechanism fits keep the noise model's weight. The factors are in
//! [`CalibrationReport::species_factors`]; offline, every round recomputes them at the
//! previous round's estimate.
//!
//! Measured on the 27-run design, 28 days, noise on (the tests `a_species_the_mechanism_
//! cannot_describe_loses_its_weight` and `noisy_runs_estimates_within_3_se…`):
//!
//! | data, prior | weights | estimates off the truth (μ_max, q_glc,max, q_gln,max, K_d, β_P) | s² |
//! |---|---|---|---|
//! | clone Y, prior clone X, seed 5 | off | 3.6, 1.8, 1.6, 44.0, 1.1 % | 253 |
//! | clone Y, prior clone X, seed 5 | on (lactate ×2286) | 3.6, 0.4, 0.4, 13.5, 0.4 % | 0.85 |
//! | perturbed clone X, 10 seeds, mean | off | +3.0, −0.8, −0.3, +8.6, +0.3 % | 2.0–3.8 |
//! | perturbed clone X, 10 seeds, mean | on (lactate ×20–26) | +2.9, −0.7, −0.3, +7.3, +0.3 % | 0.85 |
//!
//! The estimates are closer with the weights, but μ_max and K_d keep a bias of the same
//! sign on every seed, and the smaller `s²` shrinks the standard errors below it: with the
//! weights 3 of 10 seeds have every estimate within 3 standard errors of the truth, without
//! them 9 of 10, whose larger `s²` comes from the lactate days near the switch. The weights
//! are therefore off by default; turn them on when one species is known to escape the
//! mechanism. The bias comes from the noise of the measured VCD inputs (seeds 1–3, weights
//! off: with VCD noise alone μ_max +3.1 % and K_d +14.8 %, with viability noise alone
//! −0.3 and −2.2 %): the input-noise correction carries the variance and the second-order
//! mean shift of a noisy input, not the attenuation of a noisy regressor.
//!
//! ## The bias of noisy inputs
//! [`CalibrationConfig::simex_replicates`] (off by default) corrects it offline by
//! simulation–extrapolation ([`Calibrator::simex`]): refits with extra input noise show how
//! the estimate drifts with the noise, and the drift is extrapolated back to none. Measured
//! on the perturbed clone X (27 runs, noise on, seeds 1–3, mean error naive → SIMEX, 4 refits
//! per level): μ_max +2.75 → +0.35 %, q_glc,max −0.75 → −0.37 %, q_gln,max −0.28 → −0.04 %,
//! K_d +7.2 → −4.7 %, β_P +0.34 → +0.66 %; with 8 refits K_d −3.0 %. It costs
//! `2 × replicates + 1` more fits, each warm-started: the `calibrate` bench's median on the
//! 27-run design is 2.73 s with 4 against 1.26 s without (1.26 s includes the pathway test's
//! second calibration).
//!
//! ## The solver
//! A projected Levenberg–Marquardt method (Marquardt 1963, doi:10.1137/0111030; the
//! projection onto the box as in Kanzow, Yamashita & Fukushima 2004,
//! doi:10.1016/j.cam.2004.02.011), written as an argmin [`Solver`] and run by argmin's
//! [`Executor`]: argmin's own Gauss–Newton solvers have no bounds, and its L-BFGS has none
//! either, while a bounded Gauss–Newton step is what both the fit and the standard errors
//! need. Each iteration solves `(JᵀJ + λ D) δ = −Jᵀr` over the parameters not held at a
//! bound (`D = diag(JᵀJ)`), projects `θ + δ` onto the box and accepts it if the weighted
//! SSE falls (λ shrinks), otherwise it raises λ and tries again. The Jacobian is by forward
//! differences in `θ` ([`CalibrationConfig::fd_step`]); residuals are evaluated for all
//! transitions on [`CalibrationConfig::threads`] threads.
//!
//! ## Standard errors
//! From the Gauss–Newton Hessian at the estimate: `Cov(θ̂) = s² (JᵀJ)⁻¹` with `J` the
//! Jacobian of the **weighted** residuals and `s² = SSE / (n − p)` the residual variance
//! (reduced χ²), the usual scaling when the weights are known only up to a factor (SciPy's
//! `curve_fit` with `absolute_sigma=False`). The standard error of `p` is `p̂ · se(θ̂)` (delta
//! method). A direction the data do not constrain (a zero or collinear Jacobian column) has
//! no standard error (`None`). A parameter is [`CalibratedParameter::not_identifiable`]
//! when its standard error exceeds its value, when it has none, or when its correlation
//! with another calibrated parameter exceeds [`NOT_IDENTIFIABLE_CORRELATION`] in magnitude.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use argmin::core::{
    Executor, IterState, Jacobian, KV, Operator, Problem, Solver, State, TerminationReason,
    TerminationStatus,
};
use perfusio_core::{DesignSpace, N_SPECIES, SpeciesArray};
use perfusio_mechanistic::KineticParams;
use serde::{Deserialize, Serialize};

use crate::config::HybridConfig;
use crate::dataset::{Dataset, InputSource, N_BASE, base_row};
use crate::error::{HybridError, Result};
use crate::mean::{MechanisticMean, PriorIntegrator};
use crate::transform::LogTransform;

/// The parameters calibrated by default: μ_max, q_glc,max, q_gln,max, K_d and β_P.
pub const DEFAULT_PARAMETERS: [&str; 5] = ["mu_max", "q_glc_max", "q_gln_max", "k_d", "beta_p"];

/// Correlation (in magnitude) above which two calibrated parameters are flagged as not
/// identifiable from the data.
pub const NOT_IDENTIFIABLE_CORRELATION: f64 = 0.95;

/// Eigenvalues of the scaled Gauss–Newton Hessian below this fraction of the largest are
/// treated as zero: the data do not constrain that direction (no standard error).
pub const NULL_SPACE_RTOL: f64 = 1e-12;

/// Default lower bound, as a multiple of the prior value, of a calibrated parameter that may
/// be zero ([`CalibrationConfig::vanishing_factor`]).
pub const VANISHING_FACTOR: f64 = 1e-3;

/// Largest damping factor λ tried before an iteration gives up finding a decrease.
const MAX_LAMBDA: f64 = 1e12;

/// How the mechanism is calibrated.
///
/// ```
/// use perfusio_hybrid::CalibrationConfig;
/// let c = CalibrationConfig::default();
/// assert_eq!(c.parameters, ["mu_max", "q_glc_max", "q_gln_max", "k_d", "beta_p"]);
/// c.check().unwrap();
/// let e = CalibrationConfig::with_parameters(&["mu_max", "mumax"]).unwrap_err();
/// assert!(e.to_string().contains("valid names: mu_max, k_glc"), "{e}");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationConfig {
    /// Names of the calibrated [`KineticParams`] fields (default: [`DEFAULT_PARAMETERS`]).
    pub parameters: Vec<String>,
    /// Lower bound of each parameter as a multiple of its prior value (default 0.2), except
    /// the parameters that may be zero.
    pub lower_factor: f64,
    /// Lower bound of a parameter that may be zero ([`KineticParams::may_vanish`]) as a
    /// multiple of its prior value (default 1e-3; at most `lower_factor`). Measured with
    /// `perfusio evaluate --truth CloneY --prior CloneX --calibrate
    /// mu_max,q_glc_max,q_gln_max,k_d,beta_p,lac_consump_rate` (seed 1): clone Y consumes no
    /// lactate; with the floor at 0.2 × prior the rate stops there and the calibrated hybrid
    /// scores 13.2 % mean rRMSE at 3 days (the uncalibrated one 6.6 %); at 1e-3 × prior it
    /// scores 4.6 %.
    #[serde(default = "vanishing")]
    pub vanishing_factor: f64,
    /// Upper bound of each parameter as a multiple of its prior value (default 5).
    pub upper_factor: f64,
    /// Iteration cap of a calibration from the prior (default 50); a calibration that hits it
    /// is reported as not converged.
    pub max_iters: u64,
    /// Iteration cap of a warm-started online re-calibration (default 20).
    pub warm_iters: u64,
    /// Online: re-calibrate every this many warm retrains (`K`, default 5). The first
    /// retrain with enough transitions calibrates whatever the count.
    pub every_retrains: u32,
    /// Online, also calibrate a model whose mechanism was never calibrated (a twin's cold
    /// start): its first warm retrain with at least `min_transitions` transitions calibrates
    /// from the prior, later ones every `every_retrains` warm retrains, warm-started. Off by
    /// default: a cold start keeps its prior mechanism (with the default subset, on held-out
    /// clone-Y runs, the calibrated hybrid forecast worse than the uncalibrated one: 3-day
    /// rRMSE 7.14 % against 6.64 %, measured before the pathway switches were tested). Name
    /// the parameters the new cell line is suspected to differ in.
    #[serde(default)]
    pub online_from_prior: bool,
    /// Fewest one-day transitions a calibration runs on (default 10); with fewer it is
    /// skipped and the mechanism kept.
    pub min_transitions: usize,
    /// Relative decrease of the weighted SSE in an undamped step below which the fit has
    /// converged (default 1e-9).
    pub rel_cost_tol: f64,
    /// Largest change of any log-parameter below which the fit has converged (default 1e-7,
    /// a relative change of 1e-7).
    pub step_tol: f64,
    /// Forward-difference step of the Jacobian in log-parameters (default 1e-4; see the
    /// Jacobian test against tight central differences).
    pub fd_step: f64,
    /// Threads that evaluate the residuals (default 2).
    pub threads: usize,
    /// Whether the residual sd includes the measurement noise of the day-`t` inputs carried
    /// through the one-day step (default on; see [`Calibrator::residual_sd`]). The inputs
    /// are measured values, so without it the fit treats them as exact and the near-switch
    /// days of the lactate balance dominate it.
    #[serde(default = "yes")]
    pub input_noise: bool,
    /// Weigh each species by the misfit the mechanism actually leaves (default off; see
    /// the module documentation for what it changes): every
    /// calibration run first computes, at its starting parameters, the mean squared
    /// weighted residual of each species, and divides that species' weights by it where it
    /// exceeds 1 ([`CalibrationReport::species_factors`]). Weighted least squares with one
    /// variance factor per species (feasible generalised least squares): a species whose
    /// misfit is the noise model's keeps its weight, one the mechanism cannot describe
    /// (clone Y's lactate under clone X's lactate switch, thousands of times its noise)
    /// stops dominating the fit and dragging the other parameters to compensate, and the
    /// standard errors are those of the residuals left. Offline, each round recomputes the
    /// factors at the previous round's estimate, so a species that the calibrated
    /// parameters come to describe regains its weight. Configurations (and model files)
    /// written before this setting read as off.
    #[serde(default)]
    pub species_weights: bool,
    /// Where the day-`t` inputs come from (default: the measurements, the stored state
    /// estimate where a species is missing). Measured inputs have a known noise, which
    /// [`CalibrationConfig::input_noise`] accounts for; filtered inputs are less noisy but
    /// pulled towards the mechanism that filtered them (see
    /// [`crate::HybridModel::calibrate_offline`]).
    #[serde(default = "measured")]
    pub input_source: InputSource,
    /// Most rounds of the offline calibration (default 4): each round refreshes the input
    /// noise weights and corrections at the previous round's estimate (and, with filtered
    /// inputs, re-estimates the states).
    #[serde(default = "four")]
    pub rounds: usize,
    /// Correct the offline estimates for the noise of the measured inputs by
    /// simulation–extrapolation (SIMEX; Cook & Stefanski 1994,
    /// doi:10.1080/01621459.1994.10476871): after the rounds, this many fits on the data
    /// with extra input noise of 1× and of 2× the noise model's variance each, warm-started
    /// from the estimate, and the quadratic through the naive estimate and the two means,
    /// in log-parameters, extrapolated to no input noise ([`Calibrator::simex`]). 0 (the
    /// default) turns it off; online re-calibrations never use it. See the module
    /// documentation for what it corrects.
    #[serde(default)]
    pub simex_replicates: usize,
    /// The offline rounds stop when no parameter moved by more than this many of its
    /// standard errors in a round (default 0.5).
    #[serde(default = "half")]
    pub round_tol: f64,
    /// Integrator of the mechanism during calibration: the model's one-day step with a
    /// tighter relative tolerance (default 1e-7) so that forward differences of size
    /// [`CalibrationConfig::fd_step`] resolve the sensitivities.
    pub integrator: PriorIntegrator,
    /// Pathway switches tested against the data ([`KineticParams::switch_names`]; default:
    /// all of them, today `consumes_lactate`). A calibration from the prior (offline, or
    /// an online model's first) also runs with each switch flipped, and keeps the flip
    /// when its profile deviance ([`CalibrationReport::deviance`]) is lower by more than
    /// `ln n` (`n` residuals: the BIC's price of one more parameter); see the module
    /// documentation. Warm re-calibrations keep the switches they start from. Naming
    /// switches among the `--calibrate` names tests those (and only those). Configurations
    /// (and model files) written before this setting read as none.
    #[serde(default)]
    pub pathways: Vec<String>,
    /// Offline, with runs of two or more cell lines: after the shared calibration on all
    /// runs, calibrate a mechanism for each line on that line's runs alone, from the prior
    /// and with the pathway test ([`crate::HybridModel::line_params`]). The line's runs and
    /// predictions then use its own mechanism; an unseen line, and a line with too few
    /// transitions, the shared one. Online re-calibrations leave the per-line mechanisms as
    /// they are. Off by default; configurations written before it read as off.
    #[serde(default)]
    pub per_line: bool,
}

impl Default for CalibrationConfig {
    fn default() -> Self {
        Self {
            parameters: DEFAULT_PARAMETERS.iter().map(|s| s.to_string()).collect(),
            lower_factor: 0.2,
            vanishing_factor: VANISHING_FACTOR,
            upper_factor: 5.0,
            max_iters: 50,
            warm_iters: 20,
            every_retrains: 5,
            online_from_prior: false,
            min_transitions: 10,
            rel_cost_tol: 1e-9,
            step_tol: 1e-7,
            fd_step: 1e-4,
            threads: 2,
            input_noise: true,
            species_weights: false,
            input_source: InputSource::Measured,
            rounds: 4,
            round_tol: 0.5,
            simex_replicates: 0,
            integrator: PriorIntegrator {
                rtol: 1e-7,
                ..PriorIntegrator::default()
            },
            pathways: KineticParams::switch_names()
                .iter()
                .map(|s| s.to_string())
                .collect(),
            per_line: false,
        }
    }
}

fn yes() -> bool {
    true
}

fn vanishing() -> f64 {
    VANISHING_FACTOR
}

fn ones() -> SpeciesArray<f64> {
    [1.0; N_SPECIES]
}

fn one() -> usize {
    1
}

fn four() -> usize {
    4
}

fn measured() -> InputSource {
    InputSource::Measured
}

fn half() -> f64 {
    0.5
}

fn unknown_parameter(name: &str) -> HybridError {
    HybridError::UnknownParameter {
        name: name.to_string(),
        valid: KineticParams::field_names()
            .chain(KineticParams::switch_names().iter().copied())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The canonical spelling of the pathway switch `name`, if it is one.
fn switch_name(name: &str) -> Option<&'static str> {
    KineticParams::switch_names()
        .iter()
        .copied()
        .find(|f| f.eq_ignore_ascii_case(name.trim()))
}

impl CalibrationConfig {
    /// The default configuration calibrating `names` (checked: unknown names are
    /// [`HybridError::UnknownParameter`], listing the valid ones). Pathway switches among
    /// them ([`KineticParams::switch_names`]) are tested ([`CalibrationConfig::pathways`]),
    /// the rest fitted; with none named, no switch is tested.
    ///
    /// ```
    /// use perfusio_hybrid::CalibrationConfig;
    /// let c = CalibrationConfig::with_parameters(&["mu_max", "consumes_lactate"]).unwrap();
    /// assert_eq!(c.parameters, ["mu_max"]);
    /// assert_eq!(c.pathways, ["consumes_lactate"]);
    /// assert!(CalibrationConfig::with_parameters(&["mu_max"]).unwrap().pathways.is_empty());
    /// ```
    pub fn with_parameters<S: AsRef<str>>(names: &[S]) -> Result<Self> {
        let (pathways, parameters): (Vec<String>, Vec<String>) = names
            .iter()
            .map(|s| s.as_ref().trim().to_string())
            .partition(|n| switch_name(n).is_some());
        let c = Self {
            parameters,
            pathways,
            ..Self::default()
        };
        c.check()?;
        Ok(c)
    }

    /// [`CalibrationConfig::with_parameters`] for the names given, the default
    /// configuration (the [`DEFAULT_PARAMETERS`]) for none: what a bare `--calibrate` or an
    /// empty `calibrate = []` asks for.
    ///
    /// ```
    /// use perfusio_hybrid::CalibrationConfig;
    /// let none: [&str; 0] = [];
    /// assert_eq!(CalibrationConfig::named_or_default(&none).unwrap(), CalibrationConfig::default());
    /// let c = CalibrationConfig::named_or_default(&["lac_consump_rate"]).unwrap();
    /// assert_eq!(c.parameters, ["lac_consump_rate"]);
    /// assert!(CalibrationConfig::named_or_default(&["mumax"]).is_err());
    /// ```
    pub fn named_or_default<S: AsRef<str>>(names: &[S]) -> Result<Self> {
        if names.is_empty() {
            Ok(Self::default())
        } else {
            Self::with_parameters(names)
        }
    }

    /// Checks every field; the error names it.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(HybridError::Config(m));
        if self.parameters.is_empty() {
            return bad(
                "calibration parameters: name at least one numeric kinetic parameter (a \
                 pathway switch is tested alongside the parameters fitted)"
                    .into(),
            );
        }
        let mut seen: Vec<&'static str> = Vec::new();
        for n in &self.parameters {
            if let Some(sw) = switch_name(n) {
                return bad(format!(
                    "calibration parameter {sw} is a pathway switch: name it in pathways"
                ));
            }
            let canonical = KineticParams::field_names()
                .find(|f| f.eq_ignore_ascii_case(n.trim()))
                .ok_or_else(|| unknown_parameter(n))?;
            if seen.contains(&canonical) {
                return bad(format!("calibration parameter {canonical} is named twice"));
            }
            seen.push(canonical);
        }
        for n in &self.pathways {
            let canonical = switch_name(n).ok_or_else(|| {
                HybridError::Config(format!(
                    "calibration pathway {n}: not a pathway switch (valid: {})",
                    KineticParams::switch_names().join(", ")
                ))
            })?;
            if seen.contains(&canonical) {
                return bad(format!("calibration pathway {canonical} is named twice"));
            }
            seen.push(canonical);
        }
        if !(self.lower_factor.is_finite() && self.lower_factor > 0.0 && self.lower_factor <= 1.0) {
            return bad(format!(
                "calibration lower_factor {}: must be in (0, 1]",
                self.lower_factor
            ));
        }
        if !(self.vanishing_factor.is_finite()
            && self.vanishing_factor > 0.0
            && self.vanishing_factor <= self.lower_factor)
        {
            return bad(format!(
                "calibration vanishing_factor {}: must be in (0, lower_factor = {}]",
                self.vanishing_factor, self.lower_factor
            ));
        }
        if !(self.upper_factor.is_finite() && self.upper_factor >= 1.0) {
            return bad(format!(
                "calibration upper_factor {}: must be finite and >= 1",
                self.upper_factor
            ));
        }
        if self.max_iters == 0 || self.warm_iters == 0 {
            return bad("calibration max_iters and warm_iters must be at least 1".into());
        }
        if self.every_retrains == 0 {
            return bad(
                "calibration every_retrains = 0: use 1 to re-calibrate at every retrain".into(),
            );
        }
        if self.min_transitions < 2 {
            return bad("calibration min_transitions must be at least 2".into());
        }
        if !(self.rel_cost_tol >= 0.0 && self.step_tol >= 0.0) {
            return bad("calibration tolerances must be >= 0".into());
        }
        if !(self.fd_step.is_finite() && self.fd_step > 0.0 && self.fd_step < 0.1) {
            return bad(format!(
                "calibration fd_step {}: must be in (0, 0.1)",
                self.fd_step
            ));
        }
        if self.simex_replicates > 100 {
            return bad(format!(
                "calibration simex_replicates = {}: use 0 (off) to 100",
                self.simex_replicates
            ));
        }
        if self.rounds == 0 {
            return bad("calibration rounds = 0: use at least 1".into());
        }
        if !(self.round_tol.is_finite() && self.round_tol >= 0.0) {
            return bad(format!(
                "calibration round_tol {}: must be finite and >= 0",
                self.round_tol
            ));
        }
        if self.threads == 0 {
            return bad("calibration threads = 0: use at least 1".into());
        }
        if !(self.integrator.rtol > 0.0
            && self.integrator.atol > 0.0
            && self.integrator.h_max > 0.0)
        {
            return bad("calibration integrator tolerances and h_max must be positive".into());
        }
        Ok(())
    }

    /// The canonical names of the calibrated parameters (as [`KineticParams::field_names`]
    /// spells them).
    pub fn canonical_names(&self) -> Result<Vec<&'static str>> {
        self.parameters
            .iter()
            .map(|n| {
                KineticParams::field_names()
                    .find(|f| f.eq_ignore_ascii_case(n.trim()))
                    .ok_or_else(|| unknown_parameter(n))
            })
            .collect()
    }

    /// The canonical names of the tested pathway switches.
    pub fn canonical_pathways(&self) -> Result<Vec<&'static str>> {
        self.pathways
            .iter()
            .map(|n| {
                switch_name(n).ok_or_else(|| {
                    HybridError::Config(format!("calibration pathway {n}: not a pathway switch"))
                })
            })
            .collect()
    }
}

/// One observed next-day species of a transition: `z` and its measurement sd in `z`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Target {
    z: f64,
    sd: f64,
}

/// The residuals' data: every usable consecutive-day transition of a [`Dataset`], in `z`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CalibrationData {
    inputs: Vec<[f64; N_BASE]>,
    targets: Vec<SpeciesArray<Option<Target>>>,
    input_sd: Vec<SpeciesArray<f64>>,
    first: Vec<usize>,
    species: Vec<usize>,
    n_residuals: usize,
    skipped: usize,
}

impl CalibrationData {
    /// The transitions of `dataset`: day `t` and `t + 1` recorded with the controls applied
    /// on `t`. The input of a species is, per `source`, the stored estimate of day `t`
    /// (`Filtered`; the measurement where the day has no estimate) or the measurement
    /// (`Measured`; the estimate where it is missing); a transition lacking both is skipped
    /// and counted ([`CalibrationData::skipped`]). One residual per species measured on
    /// `t + 1`, with the sd of [`residual_sd`] at the observed value.
    pub fn from_dataset(
        dataset: &Dataset,
        transform: &LogTransform,
        observation_cv: &SpeciesArray<f64>,
        source: InputSource,
    ) -> Self {
        let mut d = Self::default();
        for run in dataset.runs() {
            for (&day, rec) in &run.days {
                let (Some(next), Some(controls)) = (run.days.get(&(day + 1)), rec.applied) else {
                    continue;
                };
                let mut state = [0.0; N_SPECIES];
                let mut complete = true;
                for k in 0..N_SPECIES {
                    match (rec.measured[k], rec.estimate) {
                        (_, Some(e)) if source == InputSource::Filtered => state[k] = e[k],
                        (Some(m), _) => state[k] = m,
                        (None, Some(e)) => state[k] = e[k],
                        (None, None) => complete = false,
                    }
                }
                if !complete {
                    d.skipped += 1;
                    continue;
                }
                let targets: SpeciesArray<Option<Target>> = std::array::from_fn(|k| {
                    next.measured[k].map(|y| Target {
                        z: transform.z(k, y),
                        sd: residual_sd(transform, k, y, observation_cv[k]),
                    })
                });
                let n = targets.iter().flatten().count();
                if n == 0 {
                    continue;
                }
                d.first.push(d.n_residuals);
                d.n_residuals += n;
                d.input_sd.push(std::array::from_fn(|k| {
                    residual_sd(transform, k, state[k], observation_cv[k])
                }));
                d.species
                    .extend((0..N_SPECIES).filter(|&k| targets[k].is_some()));
                d.inputs
                    .push(base_row(&transform.to_z(&state), &controls, day));
                d.targets.push(targets);
            }
        }
        d
    }

    /// The same data with extra noise on the species inputs: each input `z` gains an
    /// independent normal error of variance `lambda` times its noise variance (the noise
    /// model at the input's value), and the recorded input noise grows to `1 + lambda`
    /// times it. The remeasurement step of SIMEX ([`Calibrator::simex`]); deterministic in
    /// `seed`.
    pub fn with_extra_input_noise(&self, lambda: f64, seed: u64) -> Self {
        use rand::SeedableRng;
        use rand_distr::{Distribution, StandardNormal};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut out = self.clone();
        let lambda = lambda.max(0.0);
        for (x, sd) in out.inputs.iter_mut().zip(out.input_sd.iter_mut()) {
            for (xj, sj) in x.iter_mut().zip(sd.iter_mut()) {
                let e: f64 = StandardNormal.sample(&mut rng);
                *xj += lambda.sqrt() * *sj * e;
                *sj *= (1.0 + lambda).sqrt();
            }
        }
        out
    }

    /// Number of transitions.
    pub fn transitions(&self) -> usize {
        self.inputs.len()
    }

    /// Number of residuals (observed next-day species).
    pub fn residuals(&self) -> usize {
        self.n_residuals
    }

    /// The species of each residual, in residual order.
    pub fn residual_species(&self) -> &[usize] {
        &self.species
    }

    /// Transitions left out because an input species had neither a measurement nor an
    /// estimate.
    pub fn skipped(&self) -> usize {
        self.skipped
    }
}

/// Measurement sd in `z` of an observed value `y` of species `k`: `cv · max(y, c) / (y + c)`,
/// the noise model's `cv · y / (y + c)` ([`LogTransform::measurement_sd_z`]) with the sd of a
/// value below the species' offset `c` taken as that at `c` (an absolute `cv · c`). The
/// offset is the assay's resolution (see [`LogTransform`]): a near-zero lactate or glucose
/// would otherwise weigh thousands of times more than any other value, and the fit would
/// be set by whether the mechanism's lactate switch happens on the exact day.
pub fn residual_sd(transform: &LogTransform, k: usize, y: f64, cv: f64) -> f64 {
    let c = transform.offsets[k];
    let y = y.max(0.0);
    (cv * y.max(c) / (y + c)).max(1e-3)
}

/// One calibrated parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibratedParameter {
    /// Field name of [`KineticParams`].
    pub name: String,
    /// Value in the prior (the reference of the bounds).
    pub prior: f64,
    /// Value the calibration started from (the prior, or the previous estimate when
    /// warm-started).
    pub start: f64,
    /// Estimate.
    pub estimate: f64,
    /// Standard error of the estimate, same unit; `None` when the data do not constrain it.
    pub std_error: Option<f64>,
    /// Lower bound.
    pub lower: f64,
    /// Upper bound.
    pub upper: f64,
    /// Whether the estimate sits on a bound (its standard error is then not meaningful).
    pub at_bound: bool,
    /// The other calibrated parameter it is most correlated with, and that correlation.
    pub most_correlated: Option<(String, f64)>,
    /// Whether the data cannot identify it (see [`CalibratedParameter::reason`]).
    pub not_identifiable: bool,
    /// Why it is not identifiable (standard error above the value, none at all, or the
    /// correlated partner).
    pub reason: Option<String>,
}

/// What the SIMEX correction did ([`Calibrator::simex`]): per calibrated parameter (the
/// configured order), the naive estimate and the means of the refits with extra input noise
/// of 1× and 2× the noise variance; the corrected estimate is in
/// [`CalibratedParameter::estimate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimexReport {
    /// Refits per noise level.
    pub replicates: usize,
    /// Estimates without the correction.
    pub naive: Vec<f64>,
    /// Geometric means of the refits with 1× extra input-noise variance.
    pub extra_1: Vec<f64>,
    /// Geometric means of the refits with 2× extra input-noise variance.
    pub extra_2: Vec<f64>,
    /// Whether every refit converged.
    pub converged: bool,
}

/// The test of one pathway switch ([`CalibrationConfig::pathways`]): the calibration with
/// the switch as it started and with it flipped, compared by their profile deviances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathwayTest {
    /// The switch ([`KineticParams::switch_names`]).
    pub name: String,
    /// Its value at the start (the prior's).
    pub start: bool,
    /// Its value kept.
    pub chosen: bool,
    /// Profile deviance of the calibration with the switch as it started.
    pub deviance_start: f64,
    /// Profile deviance of the calibration with it flipped; `None` when that calibration
    /// failed (the reason is in [`PathwayTest::failure`]).
    pub deviance_flipped: Option<f64>,
    /// The margin a flip has to win by: `ln n` for `n` residuals.
    pub penalty: f64,
    /// Why the flipped calibration failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// What a calibration did: estimates, standard errors, correlations, convergence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationReport {
    /// Per parameter, in the configured order.
    pub parameters: Vec<CalibratedParameter>,
    /// Correlation matrix of the estimates (configured order); `None` where a parameter has
    /// no standard error.
    pub correlation: Vec<Vec<Option<f64>>>,
    /// Solver iterations (of the last round).
    pub iterations: u64,
    /// Rounds of filtering and calibrating (offline; 1 otherwise).
    #[serde(default = "one")]
    pub rounds: usize,
    /// Evaluations of the residual vector (each Jacobian counts its parameter count).
    pub evaluations: u64,
    /// Whether the solver stopped on a tolerance (not on its iteration cap).
    pub converged: bool,
    /// Why the solver stopped.
    pub termination: String,
    /// Weighted SSE `Σ r²` at the start.
    pub initial_sse: f64,
    /// Weighted SSE at the estimate.
    pub sse: f64,
    /// Residual variance `s² = SSE / (n − p)` that scales the covariance.
    pub residual_variance: f64,
    /// Profile deviance at the estimate: −2 × the Gaussian log-likelihood of the residuals
    /// with their sds known up to the common factor `s²`, maximised over it, constants
    /// dropped: `n ln(SSE / n) + 2 Σ ln σ_i` (`σ_i` the residual sds, input noise and
    /// species factors included). What the pathway test compares (`None` in reports
    /// written before it).
    #[serde(default)]
    pub deviance: Option<f64>,
    /// The pathway switches tested ([`CalibrationConfig::pathways`]; empty for a warm
    /// start, which keeps the switches it starts from).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pathways: Vec<PathwayTest>,
    /// The factor each species' residual variance was multiplied by
    /// ([`CalibrationConfig::species_weights`]): its mean squared weighted residual at the
    /// run's start where that exceeds 1, else 1 (all 1 with the setting off). Canonical
    /// species order.
    #[serde(default = "ones")]
    pub species_factors: SpeciesArray<f64>,
    /// The SIMEX correction when it ran ([`CalibrationConfig::simex_replicates`]).
    #[serde(default)]
    pub simex: Option<SimexReport>,
    /// Residuals `n`.
    pub residuals: usize,
    /// One-day transitions.
    pub transitions: usize,
    /// Whether it started from a previous calibration (online re-calibration).
    pub warm_start: bool,
    /// Wall time.
    pub wall_time: Duration,
}

impl CalibrationReport {
    /// The estimates by name.
    pub fn estimates(&self) -> BTreeMap<String, f64> {
        self.parameters
            .iter()
            .map(|p| (p.name.clone(), p.estimate))
            .collect()
    }

    /// Names of the parameters flagged as not identifiable.
    pub fn not_identifiable(&self) -> Vec<&str> {
        self.parameters
            .iter()
            .filter(|p| p.not_identifiable)
            .map(|p| p.name.as_str())
            .collect()
    }

    /// A table for terminals: one line per parameter, then the correlations.
    pub fn table(&self) -> String {
        let mut s = format!(
            "calibration: {} transitions, {} residuals, {} round(s), {} iterations, converged {} \
             ({}), weighted SSE {:.1} -> {:.1}, s^2 {:.3}, {:.2} s\n",
            self.transitions,
            self.residuals,
            self.rounds,
            self.iterations,
            self.converged,
            self.termination,
            self.initial_sse,
            self.sse,
            self.residual_variance,
            self.wall_time.as_secs_f64()
        );
        let weighted: Vec<String> = perfusio_core::Species::ALL
            .iter()
            .zip(&self.species_factors)
            .filter(|(_, f)| **f > 1.0)
            .map(|(sp, f)| format!("{} {f:.3}", sp.name()))
            .collect();
        if !weighted.is_empty() {
            s += &format!(
                "species variance factors (misfit above the noise model): {}\n",
                weighted.join(", ")
            );
        }
        for t in &self.pathways {
            let flipped = t
                .deviance_flipped
                .map_or_else(|| "failed".to_string(), |d| format!("{d:.1}"));
            s += &format!(
                "pathway {}: {} -> {} (profile deviance {:.1} as started, {} flipped; a flip \
                 must win by {:.1}){}\n",
                t.name,
                t.start,
                t.chosen,
                t.deviance_start,
                flipped,
                t.penalty,
                t.failure
                    .as_ref()
                    .map_or_else(String::new, |f| format!("; flipped run: {f}"))
            );
        }
        if let Some(x) = &self.simex {
            let naive: Vec<String> = self
                .parameters
                .iter()
                .zip(&x.naive)
                .map(|(p, v)| format!("{} {v:.4e}", p.name))
                .collect();
            s += &format!(
                "input-noise correction (SIMEX, {} refits per level, converged {}); estimates \
                 before it: {}\n",
                x.replicates,
                x.converged,
                naive.join(", ")
            );
        }
        s += &format!(
            "{:<24} {:>12} {:>12} {:>10} {:>8}  flags\n",
            "parameter", "prior", "estimate", "se", "se %"
        );
        for p in &self.parameters {
            let (se, rel) = match p.std_error {
                Some(se) => (
                    format!("{se:.3e}"),
                    format!(
                        "{:.2}",
                        100.0 * se / p.estimate.abs().max(f64::MIN_POSITIVE)
                    ),
                ),
                None => ("-".into(), "-".into()),
            };
            let mut flags = Vec::new();
            if p.at_bound {
                flags.push("at bound".to_string());
            }
            if let Some(r) = &p.reason {
                flags.push(format!("NOT IDENTIFIABLE: {r}"));
            }
            s += &format!(
                "{:<24} {:>12.4e} {:>12.4e} {:>10} {:>8}  {}\n",
                p.name,
                p.prior,
                p.estimate,
                se,
                rel,
                flags.join("; ")
            );
        }
        s += "correlation\n";
        for (i, row) in self.correlation.iter().enumerate() {
            s += &format!("{:<24}", self.parameters[i].name);
            for v in row {
                s += &v.map_or(format!(" {:>6}", "-"), |c| format!(" {c:>6.3}"));
            }
            s.push('\n');
        }
        s
    }
}

/// The result of a calibration: the mechanism's new parameters and the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// The start parameters with the calibrated fields replaced by their estimates.
    pub params: KineticParams,
    /// Estimates, standard errors, correlations, convergence.
    pub report: CalibrationReport,
}

/// Fits a subset of a mechanism's kinetic parameters to data (see the module docs).
///
/// ```no_run
/// use perfusio_hybrid::{
///     CalibrationConfig, CalibrationData, Calibrator, Dataset, HybridConfig, InputSource,
/// };
/// # fn main() -> Result<(), perfusio_hybrid::HybridError> {
/// # let dataset = Dataset::default();
/// let model_cfg = HybridConfig::default();
/// let cal = Calibrator::new(&model_cfg, &CalibrationConfig::default())?;
/// let data = CalibrationData::from_dataset(
///     &dataset,
///     &model_cfg.transform,
///     &model_cfg.observation_cv,
///     InputSource::Measured,
/// );
/// let fit = cal.run(&data, &model_cfg.prior, false)?;
/// println!("{}", fit.report.table());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Calibrator {
    config: CalibrationConfig,
    names: Vec<&'static str>,
    pathways: Vec<&'static str>,
    prior: KineticParams,
    transform: LogTransform,
    design_space: DesignSpace,
    lower: Vec<f64>,
    upper: Vec<f64>,
}

impl Calibrator {
    /// A calibrator of the mechanism of `model` (its prior is the reference of the bounds,
    /// its transform and noise model define the residuals) with `config`.
    pub fn new(model: &HybridConfig, config: &CalibrationConfig) -> Result<Self> {
        config.check()?;
        let names = config.canonical_names()?;
        let mut lower = Vec::with_capacity(names.len());
        let mut upper = Vec::with_capacity(names.len());
        for n in &names {
            let p0 = model.prior.get(n).ok_or_else(|| unknown_parameter(n))?;
            if !(p0.is_finite() && p0 > 0.0) {
                return Err(HybridError::Config(format!(
                    "calibration parameter {n} is {p0} in the prior; a log-parametrised \
                     calibration needs a positive prior value (set it in the plant file)"
                )));
            }
            let (lo, hi) = KineticParams::range(n).ok_or_else(|| unknown_parameter(n))?;
            let floor = if KineticParams::may_vanish(n) == Some(true) {
                config.vanishing_factor
            } else {
                config.lower_factor
            };
            let l = (floor * p0).max(lo);
            let u = (config.upper_factor * p0).min(hi);
            if !(l > 0.0 && l <= u) {
                return Err(HybridError::Config(format!(
                    "calibration parameter {n}: the box [{l:e}, {u:e}] from the factors and \
                     its plausible range [{lo:e}, {hi:e}] is empty"
                )));
            }
            lower.push((l / p0).ln());
            upper.push((u / p0).ln());
        }
        Ok(Self {
            config: config.clone(),
            pathways: config.canonical_pathways()?,
            names,
            prior: model.prior,
            transform: model.transform,
            design_space: model.design_space.clone(),
            lower,
            upper,
        })
    }

    /// The canonical names of the calibrated parameters.
    pub fn names(&self) -> &[&'static str] {
        &self.names
    }

    /// The calibration configuration.
    pub fn config(&self) -> &CalibrationConfig {
        &self.config
    }

    /// Calibrates on `data`, starting from `start` (the prior, or the current parameters
    /// for a warm start, which also caps the iterations at
    /// [`CalibrationConfig::warm_iters`]). Fields that are not calibrated keep their values
    /// in `start`.
    ///
    /// Errors: [`HybridError::TooFewTransitions`] below
    /// [`CalibrationConfig::min_transitions`] (or with fewer residuals than parameters);
    /// [`HybridError::Mechanistic`] when the mechanism cannot step from the data at the
    /// start; [`HybridError::Calibration`] when the solver fails.
    pub fn run(
        &self,
        data: &CalibrationData,
        start: &KineticParams,
        warm: bool,
    ) -> Result<Calibration> {
        let t0 = Instant::now();
        let p = self.names.len();
        if data.transitions() < self.config.min_transitions || data.residuals() <= p {
            return Err(HybridError::TooFewTransitions {
                got: data.transitions(),
                need: self.config.min_transitions.max(1),
            });
        }
        let theta0: Vec<f64> = self
            .names
            .iter()
            .enumerate()
            .map(|(j, n)| {
                let v = start.get(n).unwrap_or(0.0);
                let p0 = self.prior.get(n).unwrap_or(1.0);
                let t = if v > 0.0 { (v / p0).ln() } else { 0.0 };
                t.clamp(self.lower[j], self.upper[j])
            })
            .collect();
        let (mut sd, shift) = self.residual_sd(data, start)?;
        let species_factors = if self.config.species_weights {
            let factors = ResidualProblem {
                cal: self,
                data,
                start: *start,
                sd: &sd,
                shift: &shift,
            }
            .species_factors(*start)?;
            for (v, &k) in sd.iter_mut().zip(data.residual_species()) {
                *v *= factors[k].sqrt();
            }
            factors
        } else {
            ones()
        };
        let problem = ResidualProblem {
            cal: self,
            data,
            start: *start,
            sd: &sd,
            shift: &shift,
        };
        let max_iters = if warm {
            self.config.warm_iters
        } else {
            self.config.max_iters
        };
        let solver = BoundedLm::new(
            self.lower.clone(),
            self.upper.clone(),
            self.config.rel_cost_tol,
            self.config.step_tol,
        );
        let result = Executor::new(problem, solver)
            .configure(|s| s.param(theta0.clone()).max_iters(max_iters))
            .timer(false)
            .run()
            .map_err(from_argmin)?;
        let state = result.state();
        let solver = result.solver();
        let theta = state
            .get_best_param()
            .cloned()
            .ok_or_else(|| HybridError::Calibration("the solver returned no estimate".into()))?;
        let jac = state
            .get_jacobian()
            .cloned()
            .ok_or_else(|| HybridError::Calibration("the solver returned no Jacobian".into()))?;
        let sse = state.get_best_cost();
        let reason = state
            .get_termination_reason()
            .cloned()
            .unwrap_or(TerminationReason::SolverExit("not run".into()));
        let converged = matches!(reason, TerminationReason::SolverConverged)
            || (matches!(reason, TerminationReason::SolverExit(_)) && solver.stationary);
        let termination = match &reason {
            TerminationReason::SolverConverged => solver.why.to_string(),
            TerminationReason::MaxItersReached => "iteration cap".to_string(),
            TerminationReason::SolverExit(s) => s.clone(),
            other => other.text().to_string(),
        };
        let problem_ref = ResidualProblem {
            cal: self,
            data,
            start: *start,
            sd: &sd,
            shift: &shift,
        };
        let params = problem_ref.params_at(&theta)?;
        let report = self.report(ReportInput {
            start,
            theta: &theta,
            jac: &jac,
            sse,
            initial_sse: solver.initial_sse,
            iterations: state.get_iter(),
            evaluations: solver.evaluations,
            converged,
            termination,
            data,
            warm,
            species_factors,
            log_sd_sum: sd.iter().map(|v| v.ln()).sum(),
            wall_time: t0.elapsed(),
        })?;
        Ok(Calibration { params, report })
    }

    /// [`Calibrator::run`], and from the prior (`warm == false`) the test of each pathway
    /// switch of [`CalibrationConfig::pathways`] in turn: the calibration is run again
    /// from `start` with the switch flipped (and the flips kept so far), and the flip is
    /// kept when its profile deviance ([`CalibrationReport::deviance`]) is lower than that
    /// of the calibration kept so far by more than `ln n`. The tests are in
    /// [`CalibrationReport::pathways`]. A flipped calibration that fails is recorded with
    /// its reason and the switch kept; the calibration as started fails as
    /// [`Calibrator::run`] does.
    pub fn run_checked(
        &self,
        data: &CalibrationData,
        start: &KineticParams,
        warm: bool,
    ) -> Result<Calibration> {
        let t0 = Instant::now();
        let mut best = self.run(data, start, warm)?;
        if warm || self.pathways.is_empty() {
            return Ok(best);
        }
        let penalty = (data.residuals().max(1) as f64).ln();
        let mut from = *start;
        let mut tests = Vec::with_capacity(self.pathways.len());
        let mut evaluations = best.report.evaluations;
        for &name in &self.pathways {
            let Some(on) = from.switch(name) else {
                continue;
            };
            let mut flipped = from;
            flipped.set_switch(name, !on);
            let kept = best.report.deviance.unwrap_or(f64::INFINITY);
            let mut test = PathwayTest {
                name: name.to_string(),
                start: on,
                chosen: on,
                deviance_start: kept,
                deviance_flipped: None,
                penalty,
                failure: None,
            };
            match self.run(data, &flipped, warm) {
                Ok(alt) => {
                    evaluations += alt.report.evaluations;
                    let d = alt.report.deviance.unwrap_or(f64::INFINITY);
                    test.deviance_flipped = Some(d);
                    if d + penalty < kept {
                        test.chosen = !on;
                        from = flipped;
                        best = alt;
                    }
                }
                Err(e) => test.failure = Some(e.to_string()),
            }
            tests.push(test);
        }
        best.report.pathways = tests;
        best.report.evaluations = evaluations;
        best.report.wall_time = t0.elapsed();
        Ok(best)
    }

    /// Simulation–extrapolation (SIMEX; Cook & Stefanski 1994,
    /// doi:10.1080/01621459.1994.10476871) of a calibration `naive` on `data`: the inputs
    /// are measured with noise, and a least-squares fit on noisy inputs is biased (the
    /// sigma-point correction of [`Calibrator::residual_sd`] carries their variance and the
    /// second-order mean shift, not the attenuation of a noisy regressor). Refits on `data`
    /// with extra input noise of variance `λ` times the noise model's
    /// ([`CalibrationData::with_extra_input_noise`]), [`CalibrationConfig::simex_replicates`]
    /// each at `λ = 1` and `λ = 2`, warm-started from `naive`, show how the estimate moves with
    /// the input noise; the quadratic through `(0, θ̂)`, `(1, θ̄₁)`, `(2, θ̄₂)` in
    /// log-parameters extrapolated to `λ = −1` (no input noise) is `3θ̂ − 3θ̄₁ + θ̄₂`, clamped
    /// to the bounds. The standard errors, correlations and flags stay those of the naive
    /// fit (the relative standard error carried to the corrected value). Returns `naive`
    /// unchanged with 0 replicates.
    pub fn simex(
        &self,
        data: &CalibrationData,
        naive: &Calibration,
        seed: u64,
    ) -> Result<Calibration> {
        let b = self.config.simex_replicates;
        if b == 0 {
            return Ok(naive.clone());
        }
        let p = self.names.len();
        let logs = |c: &Calibration| -> Vec<f64> {
            c.report
                .parameters
                .iter()
                .map(|q| q.estimate.ln())
                .collect()
        };
        // λ = 0 with the weights and corrections of the refits (those at `naive`)
        let base = self.run(data, &naive.params, false)?;
        let theta0 = logs(&base);
        let mut means = [vec![0.0; p], vec![0.0; p]];
        let mut converged = true;
        for (level, mean) in means.iter_mut().enumerate() {
            let lambda = (level + 1) as f64;
            for r in 0..b {
                let s = seed ^ ((level as u64 + 1) << 32) ^ r as u64;
                let c = self.run(
                    &data.with_extra_input_noise(lambda, s),
                    &naive.params,
                    false,
                )?;
                converged &= c.report.converged;
                for (m, v) in mean.iter_mut().zip(logs(&c)) {
                    *m += v / b as f64;
                }
            }
        }
        let converged = converged && base.report.converged;
        let mut params = base.params;
        let mut report = base.report.clone();
        report.warm_start = naive.report.warm_start;
        report.pathways.clone_from(&naive.report.pathways);
        for (j, (name, q)) in self
            .names
            .iter()
            .zip(report.parameters.iter_mut())
            .enumerate()
        {
            let theta = 3.0 * theta0[j] - 3.0 * means[0][j] + means[1][j];
            let (lo, hi) = (q.lower, q.upper);
            let estimate = theta.exp().clamp(lo, hi);
            params.set(name, estimate)?;
            q.std_error = q.std_error.map(|se| se / q.estimate * estimate);
            q.at_bound = estimate <= lo * (1.0 + 1e-9) || estimate >= hi * (1.0 - 1e-9);
            q.estimate = estimate;
        }
        report.simex = Some(SimexReport {
            replicates: b,
            naive: theta0.iter().map(|v| v.exp()).collect(),
            extra_1: means[0].iter().map(|v| v.exp()).collect(),
            extra_2: means[1].iter().map(|v| v.exp()).collect(),
            converged,
        });
        Ok(Calibration { params, report })
    }

    fn report(&self, r: ReportInput<'_>) -> Result<CalibrationReport> {
        let p = self.names.len();
        let n = r.data.residuals();
        let s2 = r.sse / (n.saturating_sub(p).max(1) as f64);
        let a = jtj(r.jac, p);
        let cov_theta = scaled_pinv(&a).map(|c| {
            c.iter()
                .map(|row| row.iter().map(|v| v.map(|x| x * s2)).collect())
                .collect::<Vec<Vec<Option<f64>>>>()
        })?;
        let se_theta: Vec<Option<f64>> = (0..p)
            .map(|j| cov_theta[j][j].map(|v| v.max(0.0).sqrt()))
            .collect();
        let correlation: Vec<Vec<Option<f64>>> = (0..p)
            .map(|i| {
                (0..p)
                    .map(|j| match (cov_theta[i][j], se_theta[i], se_theta[j]) {
                        (Some(c), Some(a), Some(b)) if a > 0.0 && b > 0.0 => {
                            Some((c / (a * b)).clamp(-1.0, 1.0))
                        }
                        (_, Some(_), Some(_)) if i == j => Some(1.0),
                        _ => None,
                    })
                    .collect()
            })
            .collect();
        let mut parameters = Vec::with_capacity(p);
        for (j, name) in self.names.iter().enumerate() {
            let prior = self.prior.get(name).unwrap_or(f64::NAN);
            let estimate = (prior * r.theta[j].exp())
                .clamp(prior * self.lower[j].exp(), prior * self.upper[j].exp());
            let std_error = se_theta[j].map(|s| s * estimate);
            let eps = 1e-9;
            let at_bound = r.theta[j] <= self.lower[j] + eps || r.theta[j] >= self.upper[j] - eps;
            let most_correlated = (0..p)
                .filter(|&i| i != j)
                .filter_map(|i| correlation[j][i].map(|c| (i, c)))
                .max_by(|x, y| x.1.abs().total_cmp(&y.1.abs()))
                .map(|(i, c)| (self.names[i].to_string(), c));
            let reason = match (std_error, &most_correlated) {
                (None, _) => Some(
                    "no standard error: the data do not constrain it (its Jacobian column is \
                     zero or collinear with others)"
                        .to_string(),
                ),
                (Some(se), _) if se > estimate.abs() => Some(format!(
                    "standard error {se:.3e} exceeds the value {estimate:.3e}"
                )),
                (_, Some((partner, c))) if c.abs() > NOT_IDENTIFIABLE_CORRELATION => {
                    Some(format!("correlation {c:.3} with {partner}"))
                }
                _ => None,
            };
            parameters.push(CalibratedParameter {
                name: name.to_string(),
                prior,
                start: r.start.get(name).unwrap_or(f64::NAN),
                estimate,
                std_error,
                lower: prior * self.lower[j].exp(),
                upper: prior * self.upper[j].exp(),
                at_bound,
                most_correlated,
                not_identifiable: reason.is_some(),
                reason,
            });
        }
        Ok(CalibrationReport {
            parameters,
            correlation,
            iterations: r.iterations,
            rounds: 1,
            evaluations: r.evaluations,
            converged: r.converged,
            termination: r.termination,
            initial_sse: r.initial_sse,
            sse: r.sse,
            residual_variance: s2,
            deviance: Some(n as f64 * (r.sse / n.max(1) as f64).ln() + 2.0 * r.log_sd_sum),
            pathways: Vec::new(),
            species_factors: r.species_factors,
            simex: None,
            residuals: n,
            transitions: r.data.transitions(),
            warm_start: r.warm,
            wall_time: r.wall_time,
        })
    }

    /// The sd and the mean correction of every residual with the mechanism at `params`.
    /// The sd is the measurement sd of the observed value ([`residual_sd`]); with
    /// [`CalibrationConfig::input_noise`] on, the noise of the day-`t` inputs (sd `σ_j` of
    /// input species `j`, the noise model at the input's value) is carried through the
    /// one-day step by sigma points `m(z ± σ_j e_j)`: it adds
    /// `Σ_j ((m(z + σ_j e_j) − m(z − σ_j e_j)) / 2)²` to the variance (the
    /// effective-variance method, Orear 1982, doi:10.1119/1.12972) and shifts the predicted
    /// mean by `Σ_j ((m(z + σ_j e_j) + m(z − σ_j e_j)) / 2 − m(z))`, the second-order
    /// difference between the expected next state of a noisy input and the step from it
    /// (without it, concave uptake kinetics near depletion bias the growth rate upwards).
    /// Both are fixed at the start of a calibration and refreshed each offline round.
    pub fn residual_sd(
        &self,
        data: &CalibrationData,
        params: &KineticParams,
    ) -> Result<(Vec<f64>, Vec<f64>)> {
        let mean = MechanisticMean::new(
            *params,
            self.transform,
            &self.design_space,
            self.config.integrator,
        );
        let mean = self.config.input_noise.then_some(&mean);
        let n = data.transitions();
        let threads = self.config.threads.clamp(1, n.max(1));
        let chunk = n.div_ceil(threads);
        let parts: Vec<Result<Vec<(f64, f64)>>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (lo, hi) = ((t * chunk).min(n), ((t + 1) * chunk).min(n));
                    s.spawn(move || residual_sds(data, mean, lo, hi))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(HybridError::Calibration("a worker thread panicked".into()))
                    })
                })
                .collect()
        });
        let mut sd = Vec::with_capacity(data.residuals());
        let mut shift = Vec::with_capacity(data.residuals());
        for p in parts {
            for (a, b) in p? {
                sd.push(a);
                shift.push(b);
            }
        }
        Ok((sd, shift))
    }

    /// The weighted residuals at `params` (every transition, every observed next-day
    /// species, in dataset order): `(y − m(params)) / σ` in `z`.
    pub fn residuals(&self, data: &CalibrationData, params: &KineticParams) -> Result<Vec<f64>> {
        self.with_problem(data, params, |problem| problem.residuals_of(*params))
    }

    /// The Jacobian of the weighted residuals with respect to the log-parameters
    /// `θ_j = ln(p_j / p⁰_j)` at `params`, by the forward differences the solver uses
    /// (row-major: one row per residual, one column per calibrated parameter).
    pub fn jacobian(
        &self,
        data: &CalibrationData,
        params: &KineticParams,
    ) -> Result<Vec<Vec<f64>>> {
        let theta: Vec<f64> = self
            .names
            .iter()
            .map(|n| {
                let v = params.get(n).unwrap_or(1.0);
                let p0 = self.prior.get(n).unwrap_or(1.0);
                (v / p0).ln()
            })
            .collect();
        self.with_problem(data, params, |problem| {
            let r0 = problem.residuals_of(*params)?;
            problem.jacobian_from(&theta, &r0)
        })
    }

    /// Runs `f` on the least-squares problem at `params` (its residual sds and input-noise
    /// shifts evaluated there).
    fn with_problem<T>(
        &self,
        data: &CalibrationData,
        params: &KineticParams,
        f: impl FnOnce(&ResidualProblem<'_>) -> Result<T>,
    ) -> Result<T> {
        let (sd, shift) = self.residual_sd(data, params)?;
        f(&ResidualProblem {
            cal: self,
            data,
            start: *params,
            sd: &sd,
            shift: &shift,
        })
    }
}

struct ReportInput<'a> {
    start: &'a KineticParams,
    theta: &'a [f64],
    jac: &'a [Vec<f64>],
    sse: f64,
    initial_sse: f64,
    iterations: u64,
    evaluations: u64,
    converged: bool,
    termination: String,
    data: &'a CalibrationData,
    warm: bool,
    species_factors: SpeciesArray<f64>,
    log_sd_sum: f64,
    wall_time: Duration,
}

fn from_argmin(e: argmin::core::Error) -> HybridError {
    match e.downcast::<HybridError>() {
        Ok(h) => h,
        Err(other) => HybridError::Calibration(other.to_string()),
    }
}

fn to_argmin(e: HybridError) -> argmin::core::Error {
    argmin::core::Error::new(e)
}

fn step_error(i: usize, x: &[f64; N_BASE], e: &perfusio_gp::MeanError) -> HybridError {
    HybridError::Calibration(format!(
        "the mechanism cannot step transition {i} (day {}): {e}",
        x[N_BASE - 1]
    ))
}

/// The sd of every residual of the transitions `lo..hi`: the measurement sd of the target
/// and, when `mean` is given, the input noise carried through the one-day step by central
/// differences of ± one input sd per species (the effective-variance method).
fn residual_sds(
    data: &CalibrationData,
    mean: Option<&MechanisticMean>,
    lo: usize,
    hi: usize,
) -> Result<Vec<(f64, f64)>> {
    let mut out = Vec::new();
    for i in lo..hi {
        let x = &data.inputs[i];
        let mut prop = [0.0; N_SPECIES];
        let mut shift = [0.0; N_SPECIES];
        if let Some(m) = mean {
            let z0 = m.step_z(x).map_err(|e| step_error(i, x, &e))?;
            for j in 0..N_SPECIES {
                let h = data.input_sd[i][j];
                let (mut xp, mut xm) = (*x, *x);
                xp[j] += h;
                xm[j] -= h;
                let zp = m.step_z(&xp).map_err(|e| step_error(i, x, &e))?;
                let zm = m.step_z(&xm).map_err(|e| step_error(i, x, &e))?;
                for k in 0..N_SPECIES {
                    let d = 0.5 * (zp[k] - zm[k]);
                    prop[k] += d * d;
                    shift[k] += 0.5 * (zp[k] + zm[k]) - z0[k];
                }
            }
        }
        for k in 0..N_SPECIES {
            if let Some(tg) = data.targets[i][k] {
                out.push(((tg.sd * tg.sd + prop[k]).sqrt(), shift[k]));
            }
        }
    }
    Ok(out)
}

/// The least-squares problem in log-parameters, as argmin sees it: [`Operator`] gives the
/// weighted residuals, [`Jacobian`] their forward-difference Jacobian.
struct ResidualProblem<'a> {
    cal: &'a Calibrator,
    data: &'a CalibrationData,
    start: KineticParams,
    /// The sd of every residual (measurement noise, and input noise when on).
    sd: &'a [f64],
    /// The input-noise correction of every residual's mean (0 when off).
    shift: &'a [f64],
}

impl ResidualProblem<'_> {
    /// Per species, the mean squared weighted residual at `params` where it exceeds 1,
    /// else 1 (see [`CalibrationConfig::species_weights`]).
    fn species_factors(&self, params: KineticParams) -> Result<SpeciesArray<f64>> {
        let r = self.residuals_of(params)?;
        let mut sum = [0.0; N_SPECIES];
        let mut count = [0usize; N_SPECIES];
        for (v, &k) in r.iter().zip(self.data.residual_species()) {
            sum[k] += v * v;
            count[k] += 1;
        }
        Ok(std::array::from_fn(|k| {
            if count[k] == 0 {
                1.0
            } else {
                (sum[k] / count[k] as f64).max(1.0)
            }
        }))
    }

    /// The weighted residuals at `params`.
    fn residuals_of(&self, params: KineticParams) -> Result<Vec<f64>> {
        self.evaluate(&[self.mean(params)])?
            .pop()
            .ok_or_else(|| HybridError::Calibration("no residuals evaluated".into()))
    }

    fn params_at(&self, theta: &[f64]) -> Result<KineticParams> {
        let mut p = self.start;
        for (j, n) in self.cal.names.iter().enumerate() {
            let p0 = self.cal.prior.get(n).ok_or_else(|| unknown_parameter(n))?;
            let t = theta[j].clamp(self.cal.lower[j], self.cal.upper[j]);
            let v =
                (p0 * t.exp()).clamp(p0 * self.cal.lower[j].exp(), p0 * self.cal.upper[j].exp());
            let (lo, hi) = KineticParams::range(n).ok_or_else(|| unknown_parameter(n))?;
            p.set(n, v.clamp(lo, hi))?;
        }
        Ok(p)
    }

    fn mean(&self, params: KineticParams) -> MechanisticMean {
        MechanisticMean::new(
            params,
            self.cal.transform,
            &self.cal.design_space,
            self.cal.config.integrator,
        )
    }

    /// Weighted residuals of the transitions `lo..hi` under each mean, appended per mean.
    fn block(&self, means: &[MechanisticMean], lo: usize, hi: usize) -> Result<Vec<Vec<f64>>> {
        let mut out: Vec<Vec<f64>> = means.iter().map(|_| Vec::new()).collect();
        for i in lo..hi {
            let x = &self.data.inputs[i];
            let t = &self.data.targets[i];
            for (m, o) in means.iter().zip(out.iter_mut()) {
                let z = m.step_z(x).map_err(|e| step_error(i, x, &e))?;
                let mut idx = self.data.first[i];
                for k in 0..N_SPECIES {
                    if let Some(tg) = t[k] {
                        o.push((tg.z - z[k] - self.shift[idx]) / self.sd[idx]);
                        idx += 1;
                    }
                }
            }
        }
        Ok(out)
    }

    /// Weighted residuals of every transition under each mean, on the configured threads.
    fn evaluate(&self, means: &[MechanisticMean]) -> Result<Vec<Vec<f64>>> {
        let n = self.data.transitions();
        let threads = self.cal.config.threads.clamp(1, n.max(1));
        if threads == 1 {
            return self.block(means, 0, n);
        }
        let chunk = n.div_ceil(threads);
        let parts: Vec<Result<Vec<Vec<f64>>>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (lo, hi) = ((t * chunk).min(n), ((t + 1) * chunk).min(n));
                    s.spawn(move || self.block(means, lo, hi))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(HybridError::Calibration(
                            "a residual worker thread panicked".into(),
                        ))
                    })
                })
                .collect()
        });
        let mut out: Vec<Vec<f64>> = means
            .iter()
            .map(|_| Vec::with_capacity(self.data.residuals()))
            .collect();
        for part in parts {
            for (o, p) in out.iter_mut().zip(part?) {
                o.extend(p);
            }
        }
        Ok(out)
    }

    fn residuals_at(&self, theta: &[f64]) -> Result<Vec<f64>> {
        self.residuals_of(self.params_at(theta)?)
    }

    /// Forward-difference Jacobian at `theta` with the residuals `r0` there; each step goes
    /// inward from a bound.
    fn jacobian_from(&self, theta: &[f64], r0: &[f64]) -> Result<Vec<Vec<f64>>> {
        let h = self.cal.config.fd_step;
        let p = theta.len();
        let mut steps = Vec::with_capacity(p);
        let mut means = Vec::with_capacity(p);
        for j in 0..p {
            let sign = if theta[j] + h > self.cal.upper[j] {
                -1.0
            } else {
                1.0
            };
            let mut t = theta.to_vec();
            t[j] += sign * h;
            // the perturbed value itself, unclamped: a step may leave the box by round-off
            let mut params = self.params_at(theta)?;
            let n = self.cal.names[j];
            let p0 = self.cal.prior.get(n).ok_or_else(|| unknown_parameter(n))?;
            let (lo, hi) = KineticParams::range(n).ok_or_else(|| unknown_parameter(n))?;
            params.set(n, (p0 * t[j].exp()).clamp(lo, hi))?;
            steps.push(sign * h);
            means.push(self.mean(params));
        }
        let rs = self.evaluate(&means)?;
        let n = r0.len();
        let mut jac = vec![vec![0.0; p]; n];
        for (j, rj) in rs.iter().enumerate() {
            for i in 0..n {
                jac[i][j] = (rj[i] - r0[i]) / steps[j];
            }
        }
        Ok(jac)
    }
}

impl Operator for ResidualProblem<'_> {
    type Param = Vec<f64>;
    type Output = Vec<f64>;

    fn apply(&self, theta: &Vec<f64>) -> std::result::Result<Vec<f64>, argmin::core::Error> {
        self.residuals_at(theta).map_err(to_argmin)
    }
}

impl Jacobian for ResidualProblem<'_> {
    type Param = Vec<f64>;
    type Jacobian = Vec<Vec<f64>>;

    fn jacobian(
        &self,
        theta: &Vec<f64>,
    ) -> std::result::Result<Vec<Vec<f64>>, argmin::core::Error> {
        let r0 = self.residuals_at(theta).map_err(to_argmin)?;
        self.jacobian_from(theta, &r0).map_err(to_argmin)
    }
}

/// State of the bounded Levenberg–Marquardt solver: parameters, gradient `Jᵀr`, Jacobian,
/// residuals, cost = weighted SSE.
type LmState = IterState<Vec<f64>, Vec<f64>, Vec<Vec<f64>>, (), Vec<f64>, f64>;

/// Projected Levenberg–Marquardt on a box, as an argmin [`Solver`] (see the module docs).
#[derive(Debug, Clone)]
struct BoundedLm {
    lower: Vec<f64>,
    upper: Vec<f64>,
    rel_cost_tol: f64,
    step_tol: f64,
    lambda: f64,
    evaluations: u64,
    initial_sse: f64,
    converged: bool,
    /// No decrease could be found; `stationary` says whether the point is stationary to the
    /// accuracy of the residuals.
    stalled: bool,
    stationary: bool,
    why: &'static str,
}

/// Largest cosine between the residual vector and a free Jacobian column below which the
/// point is stationary (MINPACK's `gtol` test).
const GTOL: f64 = 1e-6;
/// The same test, looser, that decides whether a stalled fit counts as converged (the
/// Jacobian is by finite differences).
const STALL_GTOL: f64 = 1e-3;

impl BoundedLm {
    fn new(lower: Vec<f64>, upper: Vec<f64>, rel_cost_tol: f64, step_tol: f64) -> Self {
        Self {
            lower,
            upper,
            rel_cost_tol,
            step_tol,
            lambda: 1e-3,
            evaluations: 0,
            initial_sse: f64::NAN,
            converged: false,
            stalled: false,
            stationary: false,
            why: "",
        }
    }

    /// Indices of the parameters free to move: not at a bound with the gradient of the SSE
    /// pushing outward.
    fn free(&self, theta: &[f64], g: &[f64]) -> Vec<usize> {
        (0..theta.len())
            .filter(|&j| {
                let at_lo = theta[j] <= self.lower[j] + 1e-12 && g[j] > 0.0;
                let at_hi = theta[j] >= self.upper[j] - 1e-12 && g[j] < 0.0;
                !(at_lo || at_hi)
            })
            .collect()
    }

    /// MINPACK's scaled gradient: the largest cosine between the residuals and a free column.
    fn gradient_cosine(free: &[usize], a: &[Vec<f64>], g: &[f64], sse: f64) -> f64 {
        free.iter()
            .map(|&j| {
                let d = (a[j][j] * sse).sqrt();
                if d > 0.0 { g[j].abs() / d } else { 0.0 }
            })
            .fold(0.0, f64::max)
    }
}

fn jtj(jac: &[Vec<f64>], p: usize) -> Vec<Vec<f64>> {
    let mut a = vec![vec![0.0; p]; p];
    for row in jac {
        for i in 0..p {
            for j in i..p {
                a[i][j] += row[i] * row[j];
            }
        }
    }
    for i in 0..p {
        for j in 0..i {
            a[i][j] = a[j][i];
        }
    }
    a
}

fn jtr(jac: &[Vec<f64>], r: &[f64], p: usize) -> Vec<f64> {
    let mut g = vec![0.0; p];
    for (row, ri) in jac.iter().zip(r) {
        for j in 0..p {
            g[j] += row[j] * ri;
        }
    }
    g
}

fn sse_of(r: &[f64]) -> f64 {
    r.iter().map(|v| v * v).sum()
}

/// Solves `m x = b` for a symmetric positive-definite `m` by Cholesky; `None` if it is not.
fn cholesky_solve(m: &[Vec<f64>], b: &[f64]) -> Option<Vec<f64>> {
    let n = b.len();
    let mut l = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = m[i][j] - (0..j).map(|k| l[i][k] * l[j][k]).sum::<f64>();
            if i == j {
                if !(s > 0.0 && s.is_finite()) {
                    return None;
                }
                l[i][i] = s.sqrt();
            } else {
                l[i][j] = s / l[j][j];
            }
        }
    }
    let mut y = vec![0.0; n];
    for i in 0..n {
        y[i] = (b[i] - (0..i).map(|k| l[i][k] * y[k]).sum::<f64>()) / l[i][i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        x[i] = (y[i] - (i + 1..n).map(|k| l[k][i] * x[k]).sum::<f64>()) / l[i][i];
    }
    Some(x)
}

/// Eigen-decomposition of a small symmetric matrix by cyclic Jacobi rotations: eigenvalues
/// and eigenvectors as columns of `v`.
fn sym_eigen(a: &[Vec<f64>]) -> (Vec<f64>, Vec<Vec<f64>>) {
    let n = a.len();
    let mut m: Vec<Vec<f64>> = a.to_vec();
    let mut v = vec![vec![0.0; n]; n];
    for (i, row) in v.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    let norm: f64 = m.iter().flatten().map(|x| x * x).sum::<f64>().sqrt();
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m[i][j] * m[i][j])
            .sum::<f64>()
            .sqrt();
        if off <= 1e-15 * norm.max(f64::MIN_POSITIVE) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                if m[p][q].abs() <= f64::MIN_POSITIVE {
                    continue;
                }
                let theta = (m[q][q] - m[p][p]) / (2.0 * m[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta.abs() > 1e150 { 0.5 / theta } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (mkp, mkq) = (m[k][p], m[k][q]);
                    m[k][p] = c * mkp - s * mkq;
                    m[k][q] = s * mkp + c * mkq;
                }
                for k in 0..n {
                    let (mpk, mqk) = (m[p][k], m[q][k]);
                    m[p][k] = c * mpk - s * mqk;
                    m[q][k] = s * mpk + c * mqk;
                }
                for row in v.iter_mut() {
                    let (vp, vq) = (row[p], row[q]);
                    row[p] = c * vp - s * vq;
                    row[q] = s * vp + c * vq;
                }
            }
        }
    }
    ((0..n).map(|i| m[i][i]).collect(), v)
}

/// Pseudo-inverse of the Gauss–Newton Hessian `a` after scaling to unit diagonal. Entries
/// of parameters with a zero column, or with weight in a direction whose eigenvalue is
/// below [`NULL_SPACE_RTOL`] of the largest, are `None` (no finite variance).
fn scaled_pinv(a: &[Vec<f64>]) -> Result<Vec<Vec<Option<f64>>>> {
    let p = a.len();
    if a.iter().flatten().any(|v| !v.is_finite()) {
        return Err(HybridError::Calibration(
            "the Gauss–Newton Hessian is not finite".into(),
        ));
    }
    let dmax = (0..p).map(|i| a[i][i]).fold(0.0, f64::max);
    let live: Vec<usize> = (0..p)
        .filter(|&i| a[i][i] > 1e-14 * dmax && a[i][i] > 0.0)
        .collect();
    let d: Vec<f64> = live.iter().map(|&i| a[i][i].sqrt()).collect();
    let c: Vec<Vec<f64>> = live
        .iter()
        .enumerate()
        .map(|(x, &i)| {
            live.iter()
                .enumerate()
                .map(|(y, &j)| a[i][j] / (d[x] * d[y]))
                .collect()
        })
        .collect();
    let (ev, vecs) = sym_eigen(&c);
    let emax = ev.iter().copied().fold(0.0, f64::max);
    let m = live.len();
    let mut null = vec![false; m];
    for (k, &e) in ev.iter().enumerate() {
        if e <= NULL_SPACE_RTOL * emax {
            for (x, flag) in null.iter_mut().enumerate() {
                if vecs[x][k].abs() > 1e-6 {
                    *flag = true;
                }
            }
        }
    }
    let mut out = vec![vec![None; p]; p];
    for x in 0..m {
        for y in 0..m {
            if null[x] || null[y] {
                continue;
            }
            let v: f64 = (0..m)
                .filter(|&k| ev[k] > NULL_SPACE_RTOL * emax)
                .map(|k| vecs[x][k] * vecs[y][k] / ev[k])
                .sum();
            out[live[x]][live[y]] = Some(v / (d[x] * d[y]));
        }
    }
    Ok(out)
}

impl<'a> Solver<ResidualProblem<'a>, LmState> for BoundedLm {
    fn name(&self) -> &str {
        "bounded Levenberg-Marquardt"
    }

    fn init(
        &mut self,
        problem: &mut Problem<ResidualProblem<'a>>,
        mut state: LmState,
    ) -> std::result::Result<(LmState, Option<KV>), argmin::core::Error> {
        let theta = state
            .take_param()
            .ok_or_else(|| to_argmin(HybridError::Calibration("no starting parameters".into())))?;
        let pr = problem
            .problem
            .as_ref()
            .ok_or_else(|| to_argmin(HybridError::Calibration("no problem".into())))?;
        let r = pr.residuals_at(&theta).map_err(|e| {
            to_argmin(match e {
                HybridError::Calibration(m) => {
                    HybridError::Calibration(format!("at the starting parameters: {m}"))
                }
                other => other,
            })
        })?;
        let jac = pr.jacobian_from(&theta, &r).map_err(to_argmin)?;
        self.evaluations += 1 + theta.len() as u64;
        let sse = sse_of(&r);
        if !sse.is_finite() {
            return Err(to_argmin(HybridError::Calibration(
                "the weighted SSE at the starting parameters is not finite".into(),
            )));
        }
        self.initial_sse = sse;
        let g = jtr(&jac, &r, theta.len());
        Ok((
            state
                .param(theta)
                .gradient(g)
                .jacobian(jac)
                .residuals(r)
                .cost(sse),
            None,
        ))
    }

    fn next_iter(
        &mut self,
        problem: &mut Problem<ResidualProblem<'a>>,
        mut state: LmState,
    ) -> std::result::Result<(LmState, Option<KV>), argmin::core::Error> {
        let missing = || to_argmin(HybridError::Calibration("solver state incomplete".into()));
        let theta = state.take_param().ok_or_else(missing)?;
        let jac = state.take_jacobian().ok_or_else(missing)?;
        let r = state.take_residuals().ok_or_else(missing)?;
        let g = state.take_gradient().ok_or_else(missing)?;
        let sse = state.get_cost();
        let pr = problem.problem.as_ref().ok_or_else(missing)?;
        let p = theta.len();
        let a = jtj(&jac, p);
        let free = self.free(&theta, &g);
        let keep = |state: LmState, theta, g, jac, r| {
            state.param(theta).gradient(g).jacobian(jac).residuals(r)
        };
        if sse <= f64::MIN_POSITIVE
            || free.is_empty()
            || Self::gradient_cosine(&free, &a, &g, sse) <= GTOL
        {
            self.converged = true;
            self.why = "stationary (gradient test)";
            return Ok((keep(state, theta, g, jac, r).cost(sse), None));
        }
        let dmax = free.iter().map(|&j| a[j][j]).fold(0.0, f64::max);
        let mut tries = 0;
        loop {
            let m: Vec<Vec<f64>> = free
                .iter()
                .map(|&i| {
                    free.iter()
                        .map(|&j| {
                            if i == j {
                                a[i][i] + self.lambda * a[i][i].max(1e-12 * dmax)
                            } else {
                                a[i][j]
                            }
                        })
                        .collect()
                })
                .collect();
            let rhs: Vec<f64> = free.iter().map(|&j| -g[j]).collect();
            if let Some(delta) = cholesky_solve(&m, &rhs) {
                let mut trial = theta.clone();
                for (x, &j) in free.iter().enumerate() {
                    trial[j] = (theta[j] + delta[x]).clamp(self.lower[j], self.upper[j]);
                }
                let step = trial
                    .iter()
                    .zip(&theta)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f64::max);
                // a trial the mechanism cannot integrate counts as no decrease
                let r_new = pr.residuals_at(&trial).ok();
                self.evaluations += 1;
                let sse_new = r_new.as_deref().map_or(f64::INFINITY, sse_of);
                if sse_new.is_finite() && sse_new < sse {
                    let jac_new = pr.jacobian_from(&trial, r_new.as_deref().unwrap_or(&[]));
                    let jac_new = jac_new.map_err(to_argmin)?;
                    self.evaluations += p as u64;
                    let rel = (sse - sse_new) / sse;
                    if (tries == 0 && rel <= self.rel_cost_tol) || step <= self.step_tol {
                        self.converged = true;
                        self.why = if step <= self.step_tol {
                            "step tolerance"
                        } else {
                            "cost tolerance"
                        };
                    }
                    self.lambda = (self.lambda / 3.0).max(1e-12);
                    let r_new = r_new.unwrap_or_default();
                    let g_new = jtr(&jac_new, &r_new, p);
                    return Ok((
                        state
                            .param(trial)
                            .gradient(g_new)
                            .jacobian(jac_new)
                            .residuals(r_new)
                            .cost(sse_new),
                        None,
                    ));
                }
                if step <= self.step_tol {
                    // the step is already below the tolerance and does not decrease the SSE
                    self.converged = true;
                    self.why = "step tolerance";
                    return Ok((keep(state, theta, g, jac, r).cost(sse), None));
                }
            }
            tries += 1;
            self.lambda *= 4.0;
            if self.lambda > MAX_LAMBDA {
                self.stalled = true;
                self.stationary = Self::gradient_cosine(&free, &a, &g, sse) <= STALL_GTOL;
                self.lambda = 1e-3;
                return Ok((keep(state, theta, g, jac, r).cost(sse), None));
            }
        }
    }

    fn terminate(&mut self, _state: &LmState) -> TerminationStatus {
        if self.converged {
            TerminationStatus::Terminated(TerminationReason::SolverConverged)
        } else if self.stalled {
            TerminationStatus::Terminated(TerminationReason::SolverExit(
                "no decrease found (stationary to the accuracy of the residuals)".into(),
            ))
        } else {
            TerminationStatus::NotTerminated
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn cholesky_and_jacobi_agree_with_known_values() {
        let m = vec![vec![4.0, 2.0], vec![2.0, 3.0]];
        let x = cholesky_solve(&m, &[2.0, 1.0]).unwrap();
        // 4x + 2y = 2, 2x + 3y = 1 → x = 0.5, y = 0
        assert_relative_eq!(x[0], 0.5, epsilon = 1e-14);
        assert_relative_eq!(x[1], 0.0, epsilon = 1e-14);
        assert!(cholesky_solve(&[vec![1.0, 2.0], vec![2.0, 1.0]], &[1.0, 1.0]).is_none());
        let (mut ev, _) = sym_eigen(&[
            vec![2.0, 1.0, 0.0],
            vec![1.0, 2.0, 0.0],
            vec![0.0, 0.0, 5.0],
        ]);
        ev.sort_by(f64::total_cmp);
        for (a, b) in ev.iter().zip([1.0, 3.0, 5.0]) {
            assert_relative_eq!(*a, b, epsilon = 1e-12);
        }
    }

    #[test]
    fn pinv_marks_zero_and_collinear_columns() {
        // columns: x, 2x (collinear), y, 0
        let jac: Vec<Vec<f64>> = (0..20)
            .map(|i| {
                let x = f64::from(i).sin();
                let y = f64::from(i).cos();
                vec![x, 2.0 * x, y, 0.0]
            })
            .collect();
        let a = jtj(&jac, 4);
        let c = scaled_pinv(&a).unwrap();
        assert!(c[0][0].is_none() && c[1][1].is_none() && c[3][3].is_none());
        // y's variance with the x direction as a regressor: 1 / (y·y − (x·y)² / x·x)
        let dot = |a: usize, b: usize| jac.iter().map(|r| r[a] * r[b]).sum::<f64>();
        let want = 1.0 / (dot(2, 2) - dot(0, 2).powi(2) / dot(0, 0));
        assert_relative_eq!(c[2][2].unwrap(), want, max_relative = 1e-10);
    }
}
