//! The crate's error type.

use crate::mean::MeanError;
use crate::optim::Termination;

/// Result type of every fallible operation in this crate.
pub type Result<T> = std::result::Result<T, GpError>;

/// Everything that can go wrong when configuring, fitting or querying a Gaussian process.
///
/// Messages say what was wrong and what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum GpError {
    /// A configuration value is out of its valid range.
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter {
        /// Name of the parameter.
        name: &'static str,
        /// What is wrong and what to change.
        reason: String,
    },
    /// Array lengths do not agree with each other or with the model.
    #[error("shape mismatch: {0}")]
    ShapeMismatch(String),
    /// A NaN or infinite value was found in the inputs or targets.
    #[error(
        "non-finite value in {what} at row {row}, column {col}: remove or impute it before fitting"
    )]
    NonFinite {
        /// `"X"` or `"y"`.
        what: &'static str,
        /// Row index.
        row: usize,
        /// Column index (0 for `y`).
        col: usize,
    },
    /// The task-id column holds a value that is not an integer in `0..n_tasks`.
    #[error(
        "task id {value} at row {row} is not an integer in 0..{n_tasks}; the task id must be the last column of X"
    )]
    TaskOutOfRange {
        /// Row index.
        row: usize,
        /// The offending value.
        value: f64,
        /// Number of tasks the model was configured with.
        n_tasks: usize,
    },
    /// Not enough training rows.
    #[error("too few training points: got {got}, need at least {need}")]
    TooFewPoints {
        /// Rows supplied.
        got: usize,
        /// Minimum required.
        need: usize,
    },
    /// A kernel was given a parameter vector of the wrong length.
    #[error(
        "the kernel has {expected} log-parameters but {got} were given; pass one value per entry of `param_info()`"
    )]
    KernelParamCount {
        /// Parameters the kernel has.
        expected: usize,
        /// Parameters given.
        got: usize,
    },
    /// The covariance matrix stayed indefinite after the largest allowed jitter.
    #[error(
        "covariance matrix is not positive definite even with jitter {jitter:e} (max_jitter); \
         raise `max_jitter`, raise the noise lower bound, or remove duplicated inputs"
    )]
    NotPositiveDefinite {
        /// Largest jitter tried.
        jitter: f64,
    },
    /// A matrix that must be positive definite is not, and no jitter is applied to it (so
    /// raising `max_jitter` would not help).
    #[error("the {what} is not positive definite (no jitter is tried for it); {advice}")]
    Indefinite {
        /// Which matrix.
        what: &'static str,
        /// What to change.
        advice: &'static str,
    },
    /// An eigendecomposition did not converge.
    #[error("eigendecomposition of the {what} matrix failed to converge")]
    Eigen {
        /// Which matrix.
        what: &'static str,
    },
    /// The model was deserialised and fitted with a non-constant prior mean that has not
    /// been handed back yet (the fingerprint of the mean it was fitted with).
    #[error(
        "the model was fitted with prior mean `{0}`, which is not serialised; call `set_prior_mean` with that mean after loading"
    )]
    PriorMeanMissing(String),
    /// The prior mean failed (e.g. a mechanistic model could not integrate from an input).
    #[error(
        "the prior mean failed: {0}; check that the inputs lie in the mean's domain, or fix the mean"
    )]
    PriorMean(#[from] MeanError),
    /// `set_prior_mean` was given a mean whose fingerprint differs from the one the model
    /// was fitted with.
    #[error(
        "the model was fitted with prior mean `{fitted_with}` but `{given}` was given; hand back the mean (mechanism and parameters) the model was fitted with, or refit"
    )]
    PriorMeanMismatch {
        /// Fingerprint stored with the model.
        fitted_with: String,
        /// Fingerprint of the mean given.
        given: String,
    },
    /// A fit stopped before its tolerance was met (see [`FitReport::check_converged`]).
    ///
    /// [`FitReport::check_converged`]: crate::FitReport::check_converged
    #[error(
        "the hyperparameter fit did not converge ({termination}) after {iterations} iterations and {evaluations} evaluations; raise `max_iters` or accept the unconverged fit explicitly"
    )]
    NotConverged {
        /// Why it stopped.
        termination: Termination,
        /// Iterations done (best start).
        iterations: u64,
        /// Objective evaluations done (all starts).
        evaluations: u64,
    },
    /// Every start of the hyperparameter optimiser failed.
    #[error("hyperparameter optimisation failed on every start: {0}")]
    Optimisation(String),
}
