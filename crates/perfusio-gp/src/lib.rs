//! Exact multi-task Gaussian-process regression on [faer], with analytic gradients, a
//! Kronecker fast path, a box-constrained L-BFGS-B fit, online updates and serde
//! persistence.
//!
//! The crate knows nothing about bioprocesses. It fits `y = m(x)[t] + μ_t + s_t·f(x, t)`
//! where rows are in *indexed multi-task format* — `[base inputs..., task id]` with the task
//! id (an integer-valued `f64` in `0..n_tasks`) in the last column — and
//! `f ~ GP(0, k_x(x, x')·B[t, t'])`, `B = W Wᵀ + diag(κ)` of configurable rank, with
//! independent Gaussian noise per task. `m` is a [`PriorMean`] evaluated once per base input
//! for all tasks (for the hybrid model, a mechanistic one-day step).
//!
//! # Why two solvers
//! When every task is observed at every distinct base input, the training covariance is
//! `K_x ⊗ B + I ⊗ D`. Whitening by `D^{-1/2}` keeps it Kronecker, so the marginal likelihood,
//! its gradient and the posterior follow from eigendecompositions of `K_x` (N×N) and a T×T
//! matrix: O(N³ + N²T) instead of O((NT)³), and no NT×NT matrix is ever formed (Saatçi 2012,
//! PhD thesis, Cambridge, ch. 5; Stegle et al. 2011, NeurIPS). A few empty cells (up to
//! [`MAX_GAP_FRACTION`]) stay on the Kronecker grid with a Schur-complement correction, in
//! the likelihood, its gradient and the posterior. Other data (duplicated cells, many
//! gaps) take a dense Cholesky path, which still builds `K_x` once on the N distinct base
//! inputs and contracts every base-kernel gradient at N×N level. The paths agree to
//! round-off (tested).
//!
//! # Why the fit converges
//! Hyperparameters are fitted by MAP with a box-constrained quasi-Newton method
//! ([`optim`]: generalised Cauchy point, subspace minimisation and a Moré–Thuente line
//! search, with a dense self-scaling BFGS matrix for up to 200 parameters). Log
//! length-scales, `W`, log κ and log noise are optimised directly inside their bounds, which
//! the optimiser handles (a variable at a bound is held there while its gradient pushes
//! outward), instead of through a logistic squashing whose vanishing gradient near a bound
//! made parameters crawl for thousands of iterations. A task whose training residuals are
//! all equal (a species never fed) is held out of the optimisation, since its likelihood
//! grows without bound as its signal and noise go to 0. The fit starts from the prior mode
//! of the length-scales and a task covariance estimated from the residuals' cross-task
//! correlation (a large fit from a fit on a subset of its inputs, a warm refit from the
//! previous optimum and its curvature), minimises the objective per observation, and stops
//! on a projected-gradient or relative-decrease tolerance (SciPy's defaults). A weak prior
//! on each task's signal variance `B_tt` removes the steep-trend optimum that predicts
//! badly, and a noise floor of 1 % of the residual variance keeps the GP from interpolating
//! noise-free stretches ([`HyperPriors`], [`FitOptions`]). [`FitReport::converged`] is
//! `true` only when a tolerance stopped the fit; [`FitReport::termination`] says why it
//! stopped otherwise. README.md quotes the measured iteration counts, timings and held-out
//! accuracy.
//!
//! | feature | where |
//! |---|---|
//! | kernels with analytic log-parameter and input gradients (RBF, Matérn ½ ³⁄₂ ⁵⁄₂ ARD, linear, scale, sum, product, active dims) | [`kernel`] |
//! | batched, fallible, optionally differentiable prior mean with a fingerprint | [`mean`] |
//! | params → `check()` → `fit()`, fixed input bounds, explicit tuning, priors | [`params`], [`model`] |
//! | L-BFGS-B box-constrained minimiser with a typed termination reason | [`optim`] |
//! | posterior per row, jointly, per base input for all tasks (batched) with input gradients; samples; rank-k conditioning; warm refit | [`model::MultiTaskGp`] |
//! | object-safe facades | [`surrogate::Surrogate`], [`surrogate::OnlineSurrogate`] |
//!
//! # Example
//! ```
//! use perfusio_gp::{GpParams, Surrogate};
//! # fn main() -> Result<(), perfusio_gp::GpError> {
//! // one base input, two tasks; rows are [x, task]
//! let mut x = Vec::new();
//! let mut y = Vec::new();
//! for i in 0..12 {
//!     let xi = i as f64 / 11.0;
//!     for t in 0..2 {
//!         x.extend([xi, t as f64]);
//!         y.push((3.0 * xi).sin() + 0.5 * t as f64);
//!     }
//! }
//! let gp = GpParams::new(1, 2).input_bounds(vec![(0.0, 1.0)]).check()?.fit(&x, 2, &y)?;
//! assert_eq!(gp.report().path, perfusio_gp::SolverPath::Kronecker);
//! assert!(gp.report().converged);
//! let model: Box<dyn Surrogate> = Box::new(gp);
//! let p = model.predict(&[0.5, 1.0])?;
//! assert!((p.mean[0] - ((1.5f64).sin() + 0.5)).abs() < 0.05);
//! assert!(p.variance[0] >= 0.0 && p.variance[0] < 0.01);
//! // both tasks at once: joint 2×2 covariance at one base input
//! let both = model.predict_tasks(&[0.5], false)?;
//! assert_eq!(both[0].covariance.len(), 4);
//! # Ok(()) }
//! ```
//!
//! # Persistence and the prior mean
//! A fitted model serialises with serde (hyperparameters, training data, input scaling,
//! standardisation, the prior mean's fingerprint and the cached factorisation; predictions
//! after a round trip are bit-identical). The prior mean is code and is *not* serialised.
//! A constant mean is restored automatically; any other mean must be handed back with
//! [`MultiTaskGp::set_prior_mean`] after loading, which refuses a mean whose
//! [`PriorMean::fingerprint`] differs from the one the model was fitted with
//! ([`GpError::PriorMeanMismatch`]); until then prediction fails with
//! [`GpError::PriorMeanMissing`]. [`MultiTaskGp::fingerprint`] identifies a model by what
//! determines its predictions (not its wall time).
//!
//! # If you are a library author
//! Implement [`kernel::Kernel`] to add a kernel (the model is generic over it, default
//! [`kernel::KernelSpec`]) and [`mean::PriorMean`] to plug in a mean. Hold fitted models as
//! `Box<dyn Surrogate>` or `Box<dyn OnlineSurrogate>`. Reuse [`optim::minimize`] for any
//! smooth box-constrained problem (acquisition optimisation). Randomness (multistart,
//! samples) comes only from `u64` seeds. This crate does no I/O.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::print_stdout,
        clippy::print_stderr
    )
)]
#![deny(clippy::float_cmp)]

pub(crate) mod engine;
pub mod error;
pub mod kernel;
pub mod mean;
pub mod model;
pub mod optim;
pub mod params;
pub mod simd;
pub mod special;
pub mod surrogate;

pub use engine::{MAX_GAP_FRACTION, SolverPath};
pub use error::{GpError, Result};
pub use kernel::{Kernel, KernelSpec, LevelEmbedding, Linear, Matern, Nu, Rbf};
pub use mean::{ConstantMean, FnMean, MeanError, PriorMean};
pub use model::{
    FitReport, JointPrediction, MultiTaskGp, Pause, Prediction, TaskPrediction, TaskPredictionGrad,
};
pub use optim::Termination;
pub use params::{FitOptions, GpParams, GpValidParams, HyperPriors, Tune, Tuning};
#[allow(deprecated)]
pub use surrogate::SurrogateExt;
pub use surrogate::{OnlineSurrogate, Surrogate};
