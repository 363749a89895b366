//! Fit configuration: params → [`GpParams::check`] → [`GpValidParams::fit`].

use crate::error::{GpError, Result};
use crate::kernel::{Kernel, KernelSpec, Matern, Nu};
use crate::mean::{ConstantMean, PriorMean};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Default seed of the multistart generator.
pub const DEFAULT_SEED: u64 = 42;
/// Default number of optimiser starts: the data-informed start only. Further starts are
/// drawn around it from a `ChaCha8Rng` seeded with the fit's seed.
pub const DEFAULT_N_STARTS: usize = 1;
/// Default iteration limit per start for a fit from scratch. A limit, not a budget: fits
/// stop on their tolerance long before it (about 30–100 iterations on the benchmark data),
/// and a fit that reaches it reports `converged = false`.
pub const DEFAULT_MAX_ITERS: u64 = 1000;
/// Default iteration limit of a warm-started refit (single start).
pub const DEFAULT_WARM_ITERS: u64 = 1000;
/// Default projected-gradient tolerance: the ∞-norm of the projected gradient of the
/// objective divided by the number of observations (the mean negative log marginal
/// likelihood per observation, plus priors, as GPyTorch and BoTorch minimise it). SciPy's
/// L-BFGS-B default `gtol`.
pub const DEFAULT_GRAD_TOL: f64 = crate::optim::DEFAULT_GRAD_TOL;
/// Default relative-decrease tolerance of the same per-observation objective:
/// `(f_{k−1} − f_k) / max(|f_{k−1}|, |f_k|, 1) ≤ 1e7·ε ≈ 2.2e-9` (SciPy's L-BFGS-B default
/// `ftol`).
pub const DEFAULT_COST_TOL: f64 = crate::optim::DEFAULT_REL_COST_TOL;
/// Default number of L-BFGS-B correction pairs.
pub const DEFAULT_LBFGS_MEMORY: usize = crate::optim::DEFAULT_MEMORY;
/// A fit from scratch on at least this many distinct base inputs first fits the
/// hyperparameters on an evenly spread subset of [`SUBSET_START_INPUTS`] of them (all their
/// rows, the full data's input map and standardisation) and starts from that optimum: an
/// evaluation on the subset costs a few per cent of one on the full data, and the full fit
/// then needs far fewer of its expensive evaluations. With at least four times
/// [`SUBSET_START_INPUTS`] inputs a second subset of half of them follows, and its
/// quasi-Newton curvature (the objective is per observation, so subset and full data have
/// comparable curvature) is the full fit's first Hessian. On the 27-run design (756
/// inputs) this halves the full fit's evaluations (5 seeds: 14–36 instead of 51–107).
pub const SUBSET_START_MIN_INPUTS: usize = 400;
/// Number of distinct base inputs of the subset fit (see [`SUBSET_START_MIN_INPUTS`]).
pub const SUBSET_START_INPUTS: usize = 150;
/// First jitter tried when a Cholesky factorisation fails, relative to the mean diagonal.
pub const DEFAULT_JITTER_START: f64 = 1e-10;
/// Largest jitter tried before [`GpError::NotPositiveDefinite`], relative to the mean diagonal.
pub const DEFAULT_MAX_JITTER: f64 = 1e-4;
/// Default [`FitOptions::predict_rel_tol`]: batched Kronecker predictions may work in the
/// leading eigenvectors of the input kernel when their certified error on every entry of
/// the task covariance is at most this fraction (0.1 %) of that entry's scale.
pub const DEFAULT_PREDICT_REL_TOL: f64 = 1e-3;
/// Largest accepted [`FitOptions::predict_rel_tol`].
pub const MAX_PREDICT_REL_TOL: f64 = 0.1;
/// Initial noise variance (standardised units) when no [`GpParams::task_init`] is given.
pub const DEFAULT_NOISE_INIT: f64 = 0.05;
/// Smallest lower bound allowed for a per-task noise variance, in standardised units.
pub const NOISE_FLOOR: f64 = 1e-6;
/// Default lower bound of each per-task noise variance, in standardised units: a noise
/// standard deviation of at least 10 % of the task's residual spread. It keeps the
/// covariance matrix well conditioned and the fit honest about measurement error. A task
/// that is exactly 0 over stretches of a run (lactate once consumed: multiplicative noise
/// vanishes at 0) otherwise drives its noise to the bound and the GP interpolates its
/// spikes: on the 27-run hybrid training design, held-out one-day lactate rRMSE was 73 %
/// with a bound of 1e-4 (BoTorch's `MIN_INFERRED_NOISE_LEVEL`), 65 % with 1e-3 and 37 %
/// with 1e-2 (mean over species 13.9 → 12.8 → 9.1 %); one-run fits lose about 3 %.
pub const DEFAULT_NOISE_LOWER: f64 = 1e-2;
/// Noise variance (standardised units) given to a task whose training residuals are all
/// equal (see [`FitOptions`]): such a task carries no information about the
/// hyperparameters, and a noise far above its latent variance keeps it from pulling on the
/// kernel.
pub const CONSTANT_TASK_NOISE: f64 = 1.0;
/// Default upper bound of the per-task noise variance (standardised units).
pub const NOISE_CEIL: f64 = 10.0;

/// Whether a group of hyperparameters is optimised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Tune {
    /// Held at its configured value.
    Fixed,
    /// Optimised within its bounds (log space for positive parameters); the bounds are
    /// handled by the L-BFGS-B optimiser ([`crate::optim`]), not by a squashing transform.
    #[default]
    Bounded,
}

/// Which hyperparameter groups are optimised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Tuning {
    /// Base-kernel hyperparameters.
    pub kernel: Tune,
    /// Task covariance `B = W Wᵀ + diag(κ)`.
    pub task_covariance: Tune,
    /// Per-task noise variances.
    pub noise: Tune,
}

impl Tuning {
    /// Nothing optimised: condition on the data with the configured hyperparameters.
    pub fn fixed() -> Self {
        Self {
            kernel: Tune::Fixed,
            task_covariance: Tune::Fixed,
            noise: Tune::Fixed,
        }
    }
}

/// Hyperparameter priors added to the negative log marginal likelihood (MAP fit).
///
/// With 10–30 points per task the marginal likelihood is flat in many directions and
/// maximum likelihood readily returns length-scales at a bound, a noise of zero, or a task
/// covariance far larger than the data. The defaults are weak:
/// * length-scales (unit-cube units): log-normal with `μ = √2 + ½ ln d`, `σ = √3`, where
///   `d` is the number of base input columns. Scaling the location with `√d` keeps the
///   prior volume sensible as the dimension grows (Hvarfner, Hellsten & Nardi 2024,
///   "Vanilla Bayesian optimization performs great in high dimensions", ICML,
///   arXiv:2402.02229); its mode `e^{μ−σ²}` is ≈ 0.2·√d.
/// * noise variance (standardised units): Gamma(shape 1.1, rate 0.05), which is almost flat
///   but stops the noise from running to large values and, with shape > 1, vanishes at 0.
/// * signal variance of each task, `B_tt = Σ_k W_tk² + κ_t` (standardised units):
///   Gamma(shape 2, rate 1), mode 1, mean 2, 95 % of its mass below 4.7. Outputs are
///   standardised per task, so a signal variance far above 1 only buys a steep,
///   long-length-scale trend that extrapolates badly. Without it, 28-point × 9-task fits
///   on 16 inputs (one simulated run each) reach `max diag(B)` of
///   18–41; with it at most 4.8, at the same or slightly better held-out accuracy.
///
/// Each prior density is evaluated on the natural parameter (ℓ, σ² or `B_tt`) and added to
/// the NLML as `−ln p`, without a log-space Jacobian.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HyperPriors {
    /// `(μ, σ)` of the log-normal on length-scales; `None` for no prior. `μ = None` inside
    /// means "use the dimension-scaled default".
    pub lengthscale: Option<(Option<f64>, f64)>,
    /// `(shape, rate)` of the gamma prior on each noise variance; `None` for no prior.
    pub noise: Option<(f64, f64)>,
    /// `(shape, rate)` of the gamma prior on each task's signal variance `B_tt`; `None` for
    /// no prior.
    #[serde(default)]
    pub signal: Option<(f64, f64)>,
}

/// Default `(shape, rate)` of the gamma prior on each task's signal variance `B_tt`.
pub const DEFAULT_SIGNAL_PRIOR: (f64, f64) = (2.0, 1.0);

impl Default for HyperPriors {
    fn default() -> Self {
        Self {
            lengthscale: Some((None, 3f64.sqrt())),
            noise: Some((1.1, 0.05)),
            signal: Some(DEFAULT_SIGNAL_PRIOR),
        }
    }
}

impl HyperPriors {
    /// No priors: plain maximum marginal likelihood.
    pub fn none() -> Self {
        Self {
            lengthscale: None,
            noise: None,
            signal: None,
        }
    }
}

/// Optimiser and numerical options (serialised with the model so refits reuse them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitOptions {
    /// Which groups are optimised.
    pub tuning: Tuning,
    /// Number of optimiser starts (≥ 1); the first is the configured (or data-informed)
    /// initial point, the others are drawn around it from a `ChaCha8Rng` seeded with `seed`.
    pub n_starts: usize,
    /// Seed of the multistart draws.
    pub seed: u64,
    /// Iteration limit per start.
    pub max_iters: u64,
    /// Iteration limit of a warm-started refit (single start).
    pub warm_iters: u64,
    /// Projected-gradient tolerance on the per-observation objective (see
    /// [`DEFAULT_GRAD_TOL`]).
    pub grad_tol: f64,
    /// Relative-decrease tolerance on the per-observation objective (see
    /// [`DEFAULT_COST_TOL`]; 0 disables the rule).
    pub cost_tol: f64,
    /// L-BFGS-B memory (correction pairs).
    pub lbfgs_memory: usize,
    /// Fits with at most this many free hyperparameters keep the dense self-scaling BFGS
    /// matrix instead of the limited memory (see
    /// [`crate::optim::LbfgsbOptions::dense_max_vars`]; default 200, so every usual fit).
    #[serde(default = "default_dense_max_vars")]
    pub dense_max_vars: usize,
    /// First jitter tried (relative to the mean diagonal).
    pub jitter_start: f64,
    /// Largest jitter tried (relative to the mean diagonal).
    pub max_jitter: f64,
    /// Bounds `(lo, hi)` of each per-task noise variance, standardised units; `lo ≥ NOISE_FLOOR`.
    ///
    /// A task whose training residuals are all equal (a species that stays at 0 in every
    /// training run, or a task observed once) is not fitted: its shared factor `W_t` is 0,
    /// its κ_t the lower bound, its noise [`CONSTANT_TASK_NOISE`] (clamped into these
    /// bounds), and none of them is optimised. Otherwise the likelihood of such a task
    /// grows without bound as its signal and noise go to 0, and the optimiser spends its
    /// iterations on that degenerate direction. Its predictions are the prior mean plus
    /// the constant residual, with the latent variance of κ's lower bound.
    pub noise_bounds: (f64, f64),
    /// Hyperparameter priors.
    pub priors: HyperPriors,
    /// Use the dense path even on complete data (for checking and benchmarking).
    pub force_dense: bool,
    /// Certified relative accuracy of the task covariances of batched predictions on the
    /// Kronecker path (`0` computes them in full). On a training set of at least
    /// 256 base inputs whose input kernel has a fast-decaying spectrum, the covariances
    /// are computed in the eigenvectors that carry all but `1e-8` of its trace; a query
    /// whose error bound (see `docs/architecture.md`, "Predictions on large training
    /// sets") exceeds this fraction of `√(σ²_t σ²_t')` for any entry is recomputed in
    /// full. Means are always exact. Default [`DEFAULT_PREDICT_REL_TOL`].
    #[serde(default = "default_predict_rel_tol")]
    pub predict_rel_tol: f64,
    /// Subtract each task's mean residual `y − m(x)` before the fit and add it back to the
    /// predictions (default `true`). Centred, the GP's effective prior mean is `m(x)` plus
    /// a constant per task, and far from the data a prediction returns to that sum. Off,
    /// the prior mean is `m(x)` alone: the residuals are only scaled (by their root mean
    /// square about 0), an offset shared by the data has to be carried by the kernel, and
    /// far from the data a prediction returns to `m(x)` with the full signal variance. A
    /// task whose residuals are all equal keeps its constant either way.
    #[serde(default = "default_centre_targets")]
    pub centre_targets: bool,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            tuning: Tuning::default(),
            n_starts: DEFAULT_N_STARTS,
            seed: DEFAULT_SEED,
            max_iters: DEFAULT_MAX_ITERS,
            warm_iters: DEFAULT_WARM_ITERS,
            grad_tol: DEFAULT_GRAD_TOL,
            cost_tol: DEFAULT_COST_TOL,
            lbfgs_memory: DEFAULT_LBFGS_MEMORY,
            dense_max_vars: crate::optim::DEFAULT_DENSE_MAX_VARS,
            jitter_start: DEFAULT_JITTER_START,
            max_jitter: DEFAULT_MAX_JITTER,
            noise_bounds: (DEFAULT_NOISE_LOWER, NOISE_CEIL),
            priors: HyperPriors::default(),
            force_dense: false,
            predict_rel_tol: DEFAULT_PREDICT_REL_TOL,
            centre_targets: true,
        }
    }
}

fn default_dense_max_vars() -> usize {
    crate::optim::DEFAULT_DENSE_MAX_VARS
}

fn default_predict_rel_tol() -> f64 {
    DEFAULT_PREDICT_REL_TOL
}

fn default_centre_targets() -> bool {
    true
}

/// Initial task covariance and noise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TaskInit {
    pub(crate) w: Vec<f64>,
    pub(crate) kappa: Vec<f64>,
    pub(crate) noise: Vec<f64>,
}

/// Unchecked configuration of a multi-task GP (setters consume `self`; call
/// [`GpParams::check`] to validate).
#[derive(Debug, Clone)]
pub struct GpParams<K: Kernel = KernelSpec> {
    pub(crate) kernel: K,
    pub(crate) n_tasks: usize,
    pub(crate) rank: usize,
    pub(crate) init: Option<TaskInit>,
    pub(crate) prior_mean: Arc<dyn PriorMean>,
    pub(crate) input_bounds: Option<Vec<(f64, f64)>>,
    pub(crate) opts: FitOptions,
}

/// Validated configuration; [`GpValidParams::fit`] fits a model.
#[derive(Debug, Clone)]
pub struct GpValidParams<K: Kernel = KernelSpec>(pub(crate) GpParams<K>);

/// The default kernel for `d` base inputs: Matérn-5/2 with ARD length-scales started at the
/// mode of the default length-scale prior (≈ 0.2·√d in unit-cube units).
pub fn default_kernel(d: usize) -> KernelSpec {
    KernelSpec::Matern(Matern::new(Nu::FiveHalves, d, default_lengthscale(d)))
}

/// Mode of the default log-normal length-scale prior for `d` inputs, `exp(√2 − 3 + ½ ln d)`.
pub fn default_lengthscale(d: usize) -> f64 {
    (2f64.sqrt() - 3.0 + 0.5 * (d.max(1) as f64).ln()).exp()
}

impl GpParams<KernelSpec> {
    /// Defaults for `d` base input columns and `n_tasks` tasks: [`default_kernel`], rank 1.
    pub fn new(d: usize, n_tasks: usize) -> Self {
        Self::with_kernel(default_kernel(d), n_tasks)
    }
}

impl<K: Kernel + Clone> GpParams<K> {
    /// Configuration with a given base kernel (its current parameters are the initial values).
    pub fn with_kernel(kernel: K, n_tasks: usize) -> Self {
        Self {
            kernel,
            n_tasks,
            rank: 1,
            init: None,
            prior_mean: Arc::new(ConstantMean(0.0)),
            input_bounds: None,
            opts: FitOptions::default(),
        }
    }
    /// Rank of `W` in `B = W Wᵀ + diag(κ)` (default 1; `0` gives independent tasks).
    pub fn rank(mut self, rank: usize) -> Self {
        self.rank = rank;
        self
    }
    /// Prior mean (default `ConstantMean(0.0)`); it must return `n_tasks` values.
    pub fn prior_mean(mut self, m: Arc<dyn PriorMean>) -> Self {
        self.prior_mean = m;
        self
    }
    /// Fix the map of the base inputs onto the unit cube: column `j` maps `bounds[j].0 → 0`
    /// and `bounds[j].1 → 1` (one `(lo, hi)` per base column, `lo < hi`; the task id is
    /// not a base column). Give design-space bounds for controls, plausible ranges for
    /// states, the culture length for the day.
    ///
    /// With fixed bounds, `fit`, `fit_warm`, `append_and_refit`, `condition_on` and
    /// prediction all use the same map, so warm-started length-scales keep their meaning
    /// when data arrive, and an input beyond the bounds (tomorrow's day) maps just outside
    /// `[0, 1]`, where the kernel is still well defined.
    ///
    /// Without bounds, `fit` derives the map from the training data: `[min, max] → [0, 1]`
    /// per column, and a column whose training values all equal `c` is mapped with width
    /// `max(|c|, 1)` centred on `c` (a constant column is never left in raw units, where a
    /// 25 rpm change would count as 25 length units). `fit_warm`, `append_and_refit` and
    /// `condition_on` keep the previous model's map.
    pub fn input_bounds(mut self, bounds: Vec<(f64, f64)>) -> Self {
        self.input_bounds = Some(bounds);
        self
    }
    /// Which hyperparameter groups are optimised.
    pub fn tuning(mut self, t: Tuning) -> Self {
        self.opts.tuning = t;
        self
    }
    /// Number of optimiser starts (default [`DEFAULT_N_STARTS`]).
    pub fn n_starts(mut self, n: usize) -> Self {
        self.opts.n_starts = n;
        self
    }
    /// Seed for the multistart draws (default [`DEFAULT_SEED`]).
    pub fn seed(mut self, seed: u64) -> Self {
        self.opts.seed = seed;
        self
    }
    /// Iteration limit per start (default [`DEFAULT_MAX_ITERS`]).
    pub fn max_iters(mut self, n: u64) -> Self {
        self.opts.max_iters = n;
        self
    }
    /// Iteration limit of warm-started refits (default [`DEFAULT_WARM_ITERS`]).
    pub fn warm_iters(mut self, n: u64) -> Self {
        self.opts.warm_iters = n;
        self
    }
    /// Projected-gradient and relative-decrease tolerances of L-BFGS-B, on the
    /// per-observation objective (defaults [`DEFAULT_GRAD_TOL`], [`DEFAULT_COST_TOL`]).
    pub fn tolerance(mut self, grad_tol: f64, cost_tol: f64) -> Self {
        self.opts.grad_tol = grad_tol;
        self.opts.cost_tol = cost_tol;
        self
    }
    /// Largest relative jitter tried before giving up (default [`DEFAULT_MAX_JITTER`]).
    pub fn max_jitter(mut self, j: f64) -> Self {
        self.opts.max_jitter = j;
        self
    }
    /// Noise-variance bounds in standardised units (default `(DEFAULT_NOISE_LOWER, NOISE_CEIL)`).
    pub fn noise_bounds(mut self, lo: f64, hi: f64) -> Self {
        self.opts.noise_bounds = (lo, hi);
        self
    }
    /// Hyperparameter priors (default [`HyperPriors::default`]).
    pub fn priors(mut self, p: HyperPriors) -> Self {
        self.opts.priors = p;
        self
    }
    /// Force the dense path even when the data is complete.
    pub fn force_dense(mut self, yes: bool) -> Self {
        self.opts.force_dense = yes;
        self
    }
    /// Certified relative accuracy of batched task covariances (default
    /// [`DEFAULT_PREDICT_REL_TOL`]; `0` computes them in full). See
    /// [`FitOptions::predict_rel_tol`].
    pub fn predict_rel_tol(mut self, tol: f64) -> Self {
        self.opts.predict_rel_tol = tol;
        self
    }
    /// Whether the targets are centred per task before the fit (default `true`; see
    /// [`FitOptions::centre_targets`]).
    pub fn centre_targets(mut self, yes: bool) -> Self {
        self.opts.centre_targets = yes;
        self
    }
    /// Initial (or, with fixed tuning, final) task covariance and noise:
    /// `w` is `n_tasks × rank` row-major, `kappa` and `noise` have one value per task.
    pub fn task_init(mut self, w: Vec<f64>, kappa: Vec<f64>, noise: Vec<f64>) -> Self {
        self.init = Some(TaskInit { w, kappa, noise });
        self
    }
    /// Replace all options at once.
    pub fn options(mut self, opts: FitOptions) -> Self {
        self.opts = opts;
        self
    }

    /// Validate every field and their combinations.
    pub fn check(self) -> Result<GpValidParams<K>> {
        let o = &self.opts;
        let bad =
            |name: &'static str, reason: String| Err(GpError::InvalidParameter { name, reason });
        if self.n_tasks == 0 {
            return bad("n_tasks", "must be at least 1".into());
        }
        if self.rank > self.n_tasks {
            return bad(
                "rank",
                format!(
                    "{} exceeds n_tasks = {}; use rank ≤ n_tasks",
                    self.rank, self.n_tasks
                ),
            );
        }
        if o.n_starts == 0 {
            return bad("n_starts", "must be at least 1".into());
        }
        if o.lbfgs_memory == 0 {
            return bad("lbfgs_memory", "must be at least 1".into());
        }
        if !(o.grad_tol.is_finite()
            && o.grad_tol > 0.0
            && o.cost_tol.is_finite()
            && o.cost_tol >= 0.0)
        {
            return bad(
                "tolerance",
                "grad_tol must be finite and > 0, cost_tol finite and ≥ 0".into(),
            );
        }
        if !(o.jitter_start > 0.0 && o.max_jitter >= o.jitter_start && o.max_jitter.is_finite()) {
            return bad(
                "max_jitter",
                format!(
                    "need 0 < jitter_start ({}) ≤ max_jitter ({}) < ∞",
                    o.jitter_start, o.max_jitter
                ),
            );
        }
        if !(0.0..=MAX_PREDICT_REL_TOL).contains(&o.predict_rel_tol) {
            return bad(
                "predict_rel_tol",
                format!(
                    "need 0 ≤ predict_rel_tol ≤ {MAX_PREDICT_REL_TOL}, got {}",
                    o.predict_rel_tol
                ),
            );
        }
        let (lo, hi) = o.noise_bounds;
        if !(lo >= NOISE_FLOOR && hi > lo && hi.is_finite()) {
            return bad(
                "noise_bounds",
                format!("need {NOISE_FLOOR:e} ≤ lo < hi < ∞, got ({lo}, {hi})"),
            );
        }
        if let Some((mu, s)) = o.priors.lengthscale
            && !(s.is_finite() && s > 0.0 && mu.is_none_or(f64::is_finite))
        {
            return bad(
                "priors.lengthscale",
                "σ must be finite and > 0, μ finite".into(),
            );
        }
        if let Some((a, b)) = o.priors.noise
            && !(a.is_finite() && a > 0.0 && b.is_finite() && b > 0.0)
        {
            return bad(
                "priors.noise",
                "shape and rate must be finite and > 0".into(),
            );
        }
        if let Some((a, b)) = o.priors.signal
            && !(a.is_finite() && a > 0.0 && b.is_finite() && b > 0.0)
        {
            return bad(
                "priors.signal",
                "shape and rate must be finite and > 0".into(),
            );
        }
        if let Some(bounds) = &self.input_bounds
            && let Some((j, (l, h))) = bounds
                .iter()
                .enumerate()
                .find(|(_, (l, h))| !(l.is_finite() && h.is_finite() && h > l))
        {
            return bad(
                "input_bounds",
                format!("column {j}: need finite lo < hi, got ({l}, {h})"),
            );
        }
        crate::model::check_mean_tasks(self.prior_mean.as_ref(), self.n_tasks)?;
        let p = self.kernel.params();
        if p.len() != self.kernel.n_params() || p.iter().any(|v| !v.is_finite()) {
            return bad(
                "kernel",
                "initial kernel parameters must be finite (positive before the log)".into(),
            );
        }
        for (v, info) in p.iter().zip(self.kernel.param_info()) {
            if *v < info.bounds.0 - 1e-12 || *v > info.bounds.1 + 1e-12 {
                return bad(
                    "kernel",
                    format!(
                        "initial {} = {v} is outside its log bounds {:?}",
                        info.name, info.bounds
                    ),
                );
            }
        }
        if let Some(init) = &self.init {
            let t = self.n_tasks;
            if init.w.len() != t * self.rank || init.kappa.len() != t || init.noise.len() != t {
                return bad(
                    "task_init",
                    format!(
                        "need w of length n_tasks·rank = {}, kappa and noise of length {t}",
                        t * self.rank
                    ),
                );
            }
            if init.w.iter().any(|v| !v.is_finite())
                || init.kappa.iter().any(|v| !(v.is_finite() && *v > 0.0))
            {
                return bad(
                    "task_init",
                    "w must be finite and kappa finite and > 0".into(),
                );
            }
            if init.noise.iter().any(|v| !(*v >= lo && *v <= hi)) {
                return bad(
                    "task_init",
                    format!("every noise variance must lie within noise_bounds ({lo}, {hi})"),
                );
            }
        }
        Ok(GpValidParams(self))
    }
}

impl<K: Kernel + Clone> GpValidParams<K> {
    /// The validated options.
    pub fn options(&self) -> &FitOptions {
        &self.0.opts
    }
}
