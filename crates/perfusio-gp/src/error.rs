//! The crate's error type.

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
    /// An eigendecomposition did not converge.
    #[error("eigendecomposition of the {what} matrix failed to converge")]
    Eigen {
        /// Which matrix.
        what: &'static str,
    },
    /// The model was deserialised and fitted with a non-constant prior mean that has not
    /// been handed back yet.
    #[error(
        "the model was fitted with prior mean `{0}`, which is not serialised; call `set_prior_mean` after loading"
    )]
    PriorMeanMissing(String),
    /// Every start of the hyperparameter optimiser failed.
    #[error("hyperparameter optimisation failed on every start: {0}")]
    Optimisation(String),
}
