//! The error type of `perfusio-mechanistic`.

use perfusio_core::{CoreError, Species, Violation};
use thiserror::Error;

/// Errors raised by the plant model, the integrator, the virtual reactor and the designs.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum MechError {
    /// A control vector violates a hard limit (non-finite, negative flow, outside the design
    /// space's limits, or bleed above perfusion). Each violation names its control.
    #[error("invalid setpoints: {}", display_violations(.0))]
    InvalidSetpoints(Vec<Violation>),
    /// A state vector holds a value that the model cannot start from.
    #[error("invalid state: {species} = {value} ({reason})")]
    InvalidState {
        /// The offending species.
        species: Species,
        /// The value given.
        value: f64,
        /// What is wrong and what is accepted.
        reason: &'static str,
    },
    /// The ODE integrator could not reach the end of the interval.
    #[error(
        "integration failed at t = {t} h with step {h} h: {reason}; \
         check the state and controls for extreme values"
    )]
    Integration {
        /// Time (hours from the start of the call) where integration stopped.
        t: f64,
        /// Last attempted step size, hours.
        h: f64,
        /// Why it stopped.
        reason: String,
    },
    /// A requested culture day has not been simulated yet.
    #[error(
        "day {requested} has not been simulated yet (the reactor is on day {current}); call advance_to({requested}) first"
    )]
    DayNotSimulated {
        /// Day asked for.
        requested: u32,
        /// Current culture day.
        current: u32,
    },
    /// An argument is outside its accepted range.
    #[error("invalid argument {name} = {value}: {reason}")]
    InvalidArgument {
        /// Argument name.
        name: &'static str,
        /// Value given, formatted.
        value: String,
        /// What is accepted.
        reason: String,
    },
    /// A plant file (or plant argument) could not be used.
    #[error("{origin}: {message}")]
    PlantFile {
        /// The file path or argument.
        origin: String,
        /// What is wrong, naming the field.
        message: String,
    },
    /// An error from `perfusio-core` (name lookup, design-space validation).
    #[error(transparent)]
    Core(#[from] CoreError),
}

fn display_violations(v: &[Violation]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl MechError {
    /// Maps a core validation error to [`MechError::InvalidSetpoints`] when it is one, so that
    /// callers can match setpoint violations in one place.
    pub(crate) fn from_core_validation(e: CoreError) -> Self {
        match e {
            CoreError::InvalidSetpoints(v) => MechError::InvalidSetpoints(v),
            other => MechError::Core(other),
        }
    }

    pub(crate) fn arg(name: &'static str, value: impl ToString, reason: impl Into<String>) -> Self {
        MechError::InvalidArgument {
            name,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// Result alias of `perfusio-mechanistic`.
pub type Result<T, E = MechError> = std::result::Result<T, E>;
