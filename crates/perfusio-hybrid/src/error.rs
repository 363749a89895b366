//! The error type of `perfusio-hybrid`.

use thiserror::Error;

/// Everything that can go wrong when building data, training, filtering or forecasting.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum HybridError {
    /// An invalid configuration value; the message names it and says what is accepted.
    #[error("invalid hybrid-model configuration: {0}")]
    Config(String),
    /// A cell line the model was not trained on was required
    /// ([`crate::HybridModel::require_line`]).
    #[error("cell line `{label}` is not in the model's training data (known: {})", known.join(", "))]
    UnknownLine {
        /// The label asked for.
        label: String,
        /// The lines the model knows.
        known: Vec<String>,
    },
    /// Input data that cannot be used (wrong length, non-finite value, day out of order…).
    #[error("invalid data: {0}")]
    Data(String),
    /// The same (run, day) was given twice with different values.
    #[error(
        "run {run}, day {day}: {what} already recorded with different values; \
         a day's data cannot be rewritten (give the run a new id if it is a different run)"
    )]
    Conflict {
        /// Run id.
        run: String,
        /// Culture day.
        day: u32,
        /// What differs (`"measurements"`, `"applied controls"`).
        what: &'static str,
    },
    /// Not enough one-day transitions to train on.
    #[error("too few one-day transitions to train on: {got} (need at least {need})")]
    TooFewTransitions {
        /// Transitions available.
        got: usize,
        /// Transitions needed.
        need: usize,
    },
    /// The Gaussian process failed (fit, prediction, or a prior-mean evaluation).
    #[error("Gaussian process: {0}")]
    Gp(#[from] perfusio_gp::GpError),
    /// The mechanistic model failed (e.g. it cannot integrate from a state).
    #[error("mechanistic model: {0}")]
    Mechanistic(#[from] perfusio_mechanistic::MechError),
    /// A model file could not be read or written.
    #[error("model file {path}: {message}")]
    ModelFile {
        /// File path.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A kinetic parameter name that [`perfusio_mechanistic::KineticParams`] does not have.
    #[error("unknown kinetic parameter {name:?}; valid names: {valid}")]
    UnknownParameter {
        /// The name given.
        name: String,
        /// Every valid name, comma-separated.
        valid: String,
    },
    /// The calibration of the mechanism failed (the message says where).
    #[error("calibration of the mechanism: {0}")]
    Calibration(String),
    /// A covariance matrix was not positive definite even after jitter.
    #[error("{0}: covariance is not positive definite")]
    NotPositiveDefinite(&'static str),
}

/// Result alias of `perfusio-hybrid`.
pub type Result<T, E = HybridError> = std::result::Result<T, E>;
