//! Exact multi-task Gaussian-process regression on [faer], with analytic gradients, a
//! Kronecker fast path, online updates and serde persistence.
//!
//! The crate knows nothing about bioprocesses. It fits `y = m(x, t) + μ_t + s_t·f(x, t)`
//! where rows are in *indexed multi-task format* — `[base inputs..., task id]` with the task
//! id (an integer-valued `f64` in `0..n_tasks`) in the last column — and
//! `f ~ GP(0, k_x(x, x')·B[t, t'])`, `B = W Wᵀ + diag(κ)` of configurable rank, with
//! independent Gaussian noise per task.
//!
//! # Why two solvers
//! When every task is observed at every distinct base input, the training covariance is
//! `K_x ⊗ B + I ⊗ D`. Whitening by `D^{-1/2}` keeps it Kronecker, so the marginal likelihood,
//! its gradient and the posterior follow from eigendecompositions of `K_x` (N×N) and a T×T
//! matrix: O(N³ + N²T) instead of O((NT)³), and no NT×NT matrix is ever formed (Saatçi 2012,
//! PhD thesis, Cambridge, ch. 5; Stegle et al. 2011, NeurIPS). Rows with missing targets
//! fall back automatically to a dense Cholesky path, which still builds `K_x` once on the N
//! distinct base inputs and contracts every base-kernel gradient at N×N level. Both paths
//! agree to round-off on complete data (tested).
//!
//! | feature | where |
//! |---|---|
//! | kernels with analytic log-parameter gradients (RBF, Matérn ½ ³⁄₂ ⁵⁄₂ ARD, linear, scale, sum, product, active dims) | [`kernel`] |
//! | prior mean as a trait, constant by default | [`mean`] |
//! | params → `check()` → `fit()`, explicit tuning, priors, L-BFGS multistart | [`params`], [`model`] |
//! | posterior mean/variance/joint/samples, rank-k conditioning, warm refit | [`model::MultiTaskGp`] |
//! | object-safe facade | [`surrogate::Surrogate`] |
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
//! let gp = GpParams::new(1, 2).check()?.fit(&x, 2, &y)?;
//! assert_eq!(gp.report().path, perfusio_gp::SolverPath::Kronecker);
//! let model: Box<dyn Surrogate> = Box::new(gp);
//! let p = model.predict(&[0.5, 1.0])?;
//! assert!((p.mean[0] - ((1.5f64).sin() + 0.5)).abs() < 0.05);
//! assert!(p.variance[0] >= 0.0 && p.variance[0] < 0.01);
//! # Ok(()) }
//! ```
//!
//! # Persistence and the prior mean
//! A fitted model serialises with serde (hyperparameters, training data, normalisation and
//! the cached factorisation; predictions after a round trip are bit-identical). The prior
//! mean is *not* serialised — it is typically code (a mechanistic model). A constant mean is
//! restored automatically; any other mean must be handed back with
//! [`MultiTaskGp::set_prior_mean`] after loading, or prediction fails with
//! [`GpError::PriorMeanMissing`].
//!
//! # If you are a library author
//! Implement [`kernel::Kernel`] to add a kernel (the model is generic over it, default
//! [`kernel::KernelSpec`]) and [`mean::PriorMean`] to plug in a mean. Hold fitted models as
//! `Box<dyn Surrogate>`. Randomness (multistart, samples) comes only from `u64` seeds.
//! This crate does no I/O.
#![deny(clippy::float_cmp)]

pub(crate) mod engine;
pub mod error;
pub mod kernel;
pub mod mean;
pub mod model;
pub mod optim;
pub mod params;
pub mod surrogate;

pub use engine::{MAX_GAP_FRACTION, SolverPath};
pub use error::{GpError, Result};
pub use kernel::{Kernel, KernelSpec, Linear, Matern, Nu, Rbf};
pub use mean::{ConstantMean, FnMean, PriorMean};
pub use model::{FitReport, JointPrediction, MultiTaskGp, Prediction};
pub use params::{FitOptions, GpParams, GpValidParams, HyperPriors, Tune, Tuning};
pub use surrogate::{Surrogate, SurrogateExt};
