//! The fitted multi-task Gaussian process: the model type, its fit report, accessors and
//! fingerprint. Fitting lives in [`fit`](self) (`GpValidParams::fit`), predictions in
//! `predict`, online updates in `online`.

mod fit;
pub(crate) mod gapcols;
pub(crate) mod lowrank;
mod online;
mod predict;

pub use fit::Pause;

/// A value derived from a posterior on first use (not serialised: a function of the
/// posterior, rebuilt after a load, so equality ignores it). `None` when building it did not
/// apply or would not pay.
#[derive(Debug)]
pub(crate) struct Derived<T>(std::sync::OnceLock<Option<Arc<T>>>);

impl<T> Default for Derived<T> {
    fn default() -> Self {
        Self(std::sync::OnceLock::new())
    }
}

impl<T> Clone for Derived<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> PartialEq for Derived<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<T> Derived<T> {
    /// The value, built by `build` on the first call.
    pub(crate) fn get_or_build(&self, build: impl FnOnce() -> Option<T>) -> Option<Arc<T>> {
        self.0.get_or_init(|| build().map(Arc::new)).clone()
    }
}
pub use predict::{JointPrediction, Prediction, TaskPrediction, TaskPredictionGrad};

use crate::engine::{Layout, Normaliser, Posterior, SolverPath, Standardiser, TrainSet};
use crate::error::{GpError, Result};
use crate::kernel::{Kernel, KernelSpec};
use crate::mean::{ConstantMean, PriorMean};
use crate::optim::Termination;
use crate::params::{FitOptions, GpParams, GpValidParams, TaskInit};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Outcome of a hyperparameter fit.
///
/// `converged` is `true` only when a tolerance stopped the optimiser
/// ([`Termination::converged`]); a fit stopped by an iteration or evaluation limit, or by a
/// failed line search, says so in `termination`, logs a warning, and makes
/// [`FitReport::check_converged`] return an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitReport {
    /// Negative log marginal likelihood at the final hyperparameters (standardised units,
    /// priors excluded).
    pub nlml: f64,
    /// Objective actually minimised: NLML plus the prior penalty `−ln p(θ)`.
    pub objective: f64,
    /// Optimiser iterations over all starts.
    pub iterations: u64,
    /// Objective evaluations (value + gradient) over all starts.
    pub evaluations: u64,
    /// Evaluations of the subset fit that a large fit starts from (0 when none; see
    /// [`crate::params::SUBSET_START_MIN_INPUTS`]). Each costs a small fraction of a full
    /// evaluation.
    #[serde(default)]
    pub subset_evaluations: u64,
    /// Wall-clock time of the fit, including data preparation and the final factorisation.
    pub wall_time: Duration,
    /// Whether the winning start stopped on a tolerance (not on a limit or a failure).
    pub converged: bool,
    /// Why the winning start stopped.
    pub termination: Termination,
    /// Projected-gradient ∞-norm of the per-observation objective at the result (the
    /// quantity compared with `grad_tol`).
    pub projected_grad_norm: f64,
    /// Largest absolute jitter added to a diagonal during the fit (0 if none).
    pub jitter: f64,
    /// `jitter > 0`.
    pub jitter_added: bool,
    /// Number of starts run.
    pub n_starts: usize,
    /// Index of the start that won.
    pub best_start: usize,
    /// Path used for the final factorisation.
    pub path: SolverPath,
    /// Path used to evaluate the likelihood during optimisation.
    pub objective_path: SolverPath,
}

impl FitReport {
    /// `Ok(())` if the fit converged, otherwise [`GpError::NotConverged`] saying why it
    /// stopped: for callers that must not use an unconverged fit silently.
    pub fn check_converged(&self) -> Result<()> {
        if self.converged {
            Ok(())
        } else {
            Err(GpError::NotConverged {
                termination: self.termination,
                iterations: self.iterations,
                evaluations: self.evaluations,
            })
        }
    }
}

impl fmt::Display for FitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): nlml {:.4}, objective {:.4}, {} iterations, {} evaluations, {} start(s), {:?} path, {:.1} ms",
            if self.converged {
                "converged"
            } else {
                "NOT CONVERGED"
            },
            self.termination,
            self.nlml,
            self.objective,
            self.iterations,
            self.evaluations,
            self.n_starts,
            self.path,
            self.wall_time.as_secs_f64() * 1e3
        )
    }
}

/// An exact multi-task Gaussian process in indexed format, fitted by
/// [`GpValidParams::fit`].
///
/// Rows of `X` are `[base inputs..., task id]`; the covariance of two rows is
/// `k_x(x, x')·B[t, t']` with `B = W Wᵀ + diag(κ)`, plus per-task Gaussian noise
/// `σ²_t ≥ NOISE_FLOOR` (standardised units) on the diagonal. Targets are modelled as
/// `y = m(x)[t] + μ_t + s_t·f(x, t)`, where `m` is the prior mean, `μ_t`, `s_t` are the
/// per-task mean and standard deviation of the residuals (`μ_t = 0` and `s_t` their root
/// mean square without [`FitOptions::centre_targets`]) and `f` is the GP; base inputs are
/// mapped onto the unit cube first (see [`GpParams::input_bounds`]). All outputs are in
/// original units (Bonilla, Chai & Williams 2008, "Multi-task Gaussian process prediction",
/// NeurIPS; Rasmussen & Williams 2006, algorithm 2.1).
///
/// Persisted with serde (hyperparameters, training data, input scaling, the prior mean's
/// fingerprint and the cached factorisation, so a round trip gives bit-identical
/// predictions). The prior mean itself is not serialised: see [`PriorMean`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MultiTaskGp<K: Kernel = KernelSpec> {
    pub(crate) kernel: K,
    pub(crate) lay: Layout,
    pub(crate) theta: Vec<f64>,
    pub(crate) opts: FitOptions,
    pub(crate) n_cols: usize,
    pub(crate) x: Vec<f64>,
    pub(crate) y: Vec<f64>,
    pub(crate) norm: Normaliser,
    pub(crate) st: Standardiser,
    pub(crate) ts: TrainSet,
    pub(crate) post: Posterior,
    pub(crate) path: SolverPath,
    pub(crate) report: FitReport,
    /// Fingerprint of the prior mean the model was fitted with.
    pub(crate) mean_fingerprint: String,
    /// `Some(c)` when that mean is the constant `c` (restored automatically).
    pub(crate) mean_constant: Option<f64>,
    #[serde(skip)]
    pub(crate) mean: Option<Arc<dyn PriorMean>>,
    /// The optimiser's final curvature, which warm-starts the next refit (not part of
    /// what determines predictions).
    #[serde(default)]
    pub(crate) curvature: Option<Curvature>,
}

/// Dense BFGS approximation of the objective's Hessian over the active hyperparameters at
/// the end of a fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Curvature {
    /// Indices into θ of the optimised hyperparameters.
    pub(crate) active: Vec<usize>,
    /// `active.len()²` values, row-major.
    pub(crate) hessian: Vec<f64>,
}

impl<K: Kernel + Clone> MultiTaskGp<K> {
    /// Number of columns of X (base inputs + task id).
    pub fn n_cols(&self) -> usize {
        self.n_cols
    }
    /// Number of base input columns (`n_cols − 1`).
    pub fn n_base_cols(&self) -> usize {
        self.n_cols - 1
    }
    /// Number of tasks.
    pub fn n_tasks(&self) -> usize {
        self.lay.t
    }
    /// Rank of the task covariance's low-rank part (`B = W Wᵀ + diag(κ)`).
    pub fn rank(&self) -> usize {
        self.lay.r
    }
    /// Number of training rows.
    pub fn n_train(&self) -> usize {
        self.ts.n()
    }
    /// Report of the last fit.
    pub fn report(&self) -> &FitReport {
        &self.report
    }
    /// Path of the current factorisation.
    pub fn path(&self) -> SolverPath {
        self.path
    }
    /// The fitted base kernel.
    pub fn kernel(&self) -> &K {
        &self.kernel
    }
    /// Full hyperparameter vector `[kernel (log) | W | ln κ | ln σ²]`.
    pub fn hyperparameters(&self) -> &[f64] {
        &self.theta
    }
    /// Task covariance `B` (standardised units), T×T row-major.
    pub fn task_covariance(&self) -> Vec<f64> {
        let b = crate::engine::task_matrix(&self.theta, &self.lay);
        (0..self.lay.t)
            .flat_map(|i| (0..self.lay.t).map(move |j| (i, j)))
            .map(|(i, j)| b[(i, j)])
            .collect()
    }
    /// Per-task noise variances in original units.
    pub fn noise_variances(&self) -> Vec<f64> {
        self.post
            .noise
            .iter()
            .zip(&self.st.std)
            .map(|(n, s)| n * s * s)
            .collect()
    }
    /// Options the model was fitted with.
    pub fn options(&self) -> &FitOptions {
        &self.opts
    }
    /// Sets [`FitOptions::predict_rel_tol`] of a fitted model (`0` computes batched task
    /// covariances in full); means are unaffected. An error for a value outside
    /// `[0, MAX_PREDICT_REL_TOL]`.
    ///
    /// [`MAX_PREDICT_REL_TOL`]: crate::params::MAX_PREDICT_REL_TOL
    pub fn set_predict_rel_tol(&mut self, tol: f64) -> Result<()> {
        if !(0.0..=crate::params::MAX_PREDICT_REL_TOL).contains(&tol) {
            return Err(GpError::InvalidParameter {
                name: "predict_rel_tol",
                reason: format!(
                    "need 0 ≤ predict_rel_tol ≤ {}, got {tol}",
                    crate::params::MAX_PREDICT_REL_TOL
                ),
            });
        }
        self.opts.predict_rel_tol = tol;
        // whether truncation pays is decided for the tolerance in force
        self.post.trunc = Default::default();
        Ok(())
    }
    /// The unit-cube map of the base inputs: `(lo, hi)` per column, mapped onto `[0, 1]`.
    pub fn input_scaling(&self) -> Vec<(f64, f64)> {
        self.norm.bounds()
    }
    /// `true` when the caller fixed the input bounds ([`GpParams::input_bounds`]),
    /// `false` when they were derived from the data.
    pub fn input_bounds_fixed(&self) -> bool {
        self.norm.fixed
    }
    /// Fingerprint of the prior mean the model was fitted with.
    pub fn prior_mean_fingerprint(&self) -> &str {
        &self.mean_fingerprint
    }

    /// Hand back the prior mean after deserialisation. Refused with
    /// [`GpError::PriorMeanMismatch`] when its fingerprint differs from the one the model
    /// was fitted with (the model's standardisation and residuals belong to that mean), and
    /// with [`GpError::InvalidParameter`] when it returns another number of tasks.
    pub fn set_prior_mean(&mut self, mean: Arc<dyn PriorMean>) -> Result<()> {
        let given = mean.fingerprint();
        if given != self.mean_fingerprint {
            return Err(GpError::PriorMeanMismatch {
                fitted_with: self.mean_fingerprint.clone(),
                given,
            });
        }
        check_mean_tasks(mean.as_ref(), self.lay.t)?;
        self.mean = Some(mean);
        Ok(())
    }

    pub(crate) fn mean_fn(&self) -> Result<Arc<dyn PriorMean>> {
        match (&self.mean, self.mean_constant) {
            (Some(m), _) => Ok(m.clone()),
            (None, Some(c)) => Ok(Arc::new(ConstantMean(c))),
            (None, None) => Err(GpError::PriorMeanMissing(self.mean_fingerprint.clone())),
        }
    }

    /// Parameters that refit this model warm (its hyperparameters as the start).
    pub(crate) fn params(&self) -> Result<GpValidParams<K>> {
        let (lay, th) = (&self.lay, &self.theta);
        let mut kernel = self.kernel.clone();
        kernel.set_params(&th[..lay.nk])?;
        GpParams {
            kernel,
            n_tasks: lay.t,
            rank: lay.r,
            init: Some(TaskInit {
                w: th[lay.w()].to_vec(),
                kappa: th[lay.kappa()].iter().map(|v| v.exp()).collect(),
                noise: th[lay.noise()]
                    .iter()
                    .map(|v| {
                        v.exp()
                            .clamp(self.opts.noise_bounds.0, self.opts.noise_bounds.1)
                    })
                    .collect(),
            }),
            prior_mean: self.mean_fn()?,
            // `fit_warm` keeps this model's input map exactly
            input_bounds: None,
            opts: self.opts.clone(),
        }
        .check()
    }
}

impl<K: Kernel + Clone + Serialize> MultiTaskGp<K> {
    /// SHA-256 (lower-case hex) of everything that determines the model's predictions: the
    /// kernel and all hyperparameters, the training data, the input scaling, the
    /// standardisation, the prior mean's fingerprint, the solver path and the numerical
    /// options of the factorisation. Not the fit report (wall time, iteration counts):
    /// two identical fits hash the same, and so does a model after a serde round trip.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        let mut put = |tag: &str, bytes: &[u8]| {
            h.update(tag.as_bytes());
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        let floats = |v: &[f64]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        put("perfusio-gp", env!("CARGO_PKG_VERSION").as_bytes());
        put("n_cols", &(self.n_cols as u64).to_le_bytes());
        put(
            "layout",
            &[self.lay.nk as u64, self.lay.t as u64, self.lay.r as u64]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<_>>(),
        );
        // serde_json of a kernel cannot fail (no maps with non-string keys); an error
        // would only weaken the hash to the hyperparameters, which follow anyway
        let kernel = serde_json::to_vec(&self.kernel).unwrap_or_default();
        put("kernel", &kernel);
        put("theta", &floats(&self.theta));
        put("x", &floats(&self.x));
        put("y", &floats(&self.y));
        put("norm.lo", &floats(&self.norm.lo));
        put("norm.inv_range", &floats(&self.norm.inv_range));
        put("st.mean", &floats(&self.st.mean));
        put("st.std", &floats(&self.st.std));
        put("prior_mean", self.mean_fingerprint.as_bytes());
        put("path", format!("{:?}", self.path).as_bytes());
        put(
            "numerics",
            &floats(&[
                self.opts.jitter_start,
                self.opts.max_jitter,
                f64::from(u8::from(self.opts.force_dense)),
            ]),
        );
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A non-constant mean must return the model's number of tasks.
pub(crate) fn check_mean_tasks(mean: &dyn PriorMean, n_tasks: usize) -> Result<()> {
    let mt = mean.n_tasks();
    if mean.as_constant().is_none() && mt != 0 && mt != n_tasks {
        return Err(GpError::InvalidParameter {
            name: "prior_mean",
            reason: format!(
                "the mean returns {mt} tasks but the model has {n_tasks}; give a mean with n_tasks() = {n_tasks}"
            ),
        });
    }
    Ok(())
}
