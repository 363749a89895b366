//! The crate's error type.

use perfusio_core::{Control, CoreError};

/// Result type of every fallible operation in this crate.
pub type Result<T> = std::result::Result<T, BedError>;

/// Everything that can go wrong when configuring or evaluating the design machinery.
///
/// Messages say what was wrong and what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BedError {
    /// A configuration value is out of its valid range.
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter {
        /// Name of the parameter.
        name: &'static str,
        /// What is wrong and what to change.
        reason: String,
    },
    /// Array lengths do not agree with each other.
    #[error("shape mismatch: {0}")]
    ShapeMismatch(String),
    /// A NaN or infinite value where a finite one is required.
    #[error("non-finite value in {what}: {value}; remove or replace it before calling")]
    NonFinite {
        /// Which input.
        what: &'static str,
        /// The offending value.
        value: f64,
    },
    /// An objective specification (`--objective`) could not be parsed.
    #[error("invalid objective '{spec}': {reason}; valid forms: {valid}")]
    InvalidObjective {
        /// The specification as given.
        spec: String,
        /// What is wrong.
        reason: String,
        /// The accepted forms.
        valid: &'static str,
    },
    /// The forecast model failed (e.g. the mechanism could not integrate from a state).
    #[error("forecast model: {0}")]
    Model(String),
    /// Exact hypervolume is implemented for 1, 2 and 3 objectives only.
    #[error(
        "exact hypervolume supports 1 to 3 objectives, got {m}; \
         scalarise with qNParEGO for more objectives"
    )]
    UnsupportedObjectiveCount {
        /// Number of objectives requested.
        m: usize,
    },
    /// The decision space is empty for a control (ramp window and design range do not
    /// intersect, or the bleed cannot stay below the perfusion rate).
    #[error("no admissible value for {control}: {reason}")]
    InfeasibleControl {
        /// The control concerned.
        control: Control,
        /// Why, and what to change.
        reason: String,
    },
    /// A point handed to the decision-space map lies outside the unit cube.
    #[error("decision coordinate {index} = {value} is outside [0, 1]")]
    OutsideUnitCube {
        /// Coordinate index.
        index: usize,
        /// The offending value.
        value: f64,
    },
    /// Setpoints handed to the inverse map lie outside the decision space.
    #[error("{control} = {value} lies outside the decision space [{lower}, {upper}]")]
    OutsideDecisionSpace {
        /// The control concerned.
        control: Control,
        /// The offending value.
        value: f64,
        /// Lower end of its admissible interval.
        lower: f64,
        /// Upper end of its admissible interval.
        upper: f64,
    },
    /// The acquisition was not finite at any raw candidate.
    #[error(
        "the acquisition is not finite at any of the {raw_samples} raw candidates; \
         check the forecast model and the incumbent"
    )]
    NoFiniteAcquisition {
        /// Number of raw candidates evaluated.
        raw_samples: usize,
    },
    /// An error from the domain layer (`perfusio-core`).
    #[error(transparent)]
    Core(#[from] CoreError),
}
