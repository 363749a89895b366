//! The error type of `perfusio-core`.

use thiserror::Error;

/// Errors raised by the domain types (name lookup, validation, configuration).
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum CoreError {
    /// A species or variable name is not in the registry.
    #[error(
        "unknown species '{name}'; valid names: {valid} \
         (common aliases such as 'viability' or 'glucose' are accepted too)"
    )]
    UnknownSpecies {
        /// The name as given.
        name: String,
        /// Comma-separated canonical names.
        valid: String,
    },
    /// A control name is not in the registry.
    #[error("unknown control '{name}'; valid names: {valid}")]
    UnknownControl {
        /// The name as given.
        name: String,
        /// Comma-separated canonical names.
        valid: String,
    },
    /// An acquisition-function name is not supported.
    #[error("unknown acquisition function '{name}'; valid names (case-insensitive): {valid}")]
    UnknownAcquisition {
        /// The name as given.
        name: String,
        /// Comma-separated supported names.
        valid: String,
    },
    /// An unknown enumerated option (e.g. pacing).
    #[error("unknown {what} '{name}'; valid values: {valid}")]
    UnknownOption {
        /// Which option.
        what: &'static str,
        /// The value as given.
        name: String,
        /// Comma-separated valid values.
        valid: String,
    },
    /// Bounds that are non-finite or reversed.
    #[error("invalid bounds for {what}: [{lower}, {upper}] (need finite lower <= upper)")]
    InvalidBounds {
        /// What the bounds belong to.
        what: String,
        /// Given lower end.
        lower: f64,
        /// Given upper end.
        upper: f64,
    },
    /// A configuration field has an invalid value.
    #[error("invalid configuration: {field} = {value}: {reason}")]
    InvalidConfig {
        /// Field name as in the TOML/JSON file.
        field: &'static str,
        /// The offending value, formatted.
        value: String,
        /// Why it is invalid and what to use instead.
        reason: String,
    },
    /// A configuration file could not be parsed.
    #[error("cannot parse {format} configuration: {message}")]
    ConfigParse {
        /// "TOML" or "JSON".
        format: &'static str,
        /// The parser's message (with line/column where available).
        message: String,
    },
    /// A setpoint vector violates the design space's hard limits or a cross-control rule.
    #[error("invalid setpoints: {}", display_violations(.0))]
    InvalidSetpoints(Vec<crate::design_space::Violation>),
    /// A point of the unit cube lies outside `[0, 1]` or is not finite.
    #[error("unit-cube coordinate {index} = {value} is outside [0, 1]")]
    OutsideUnitCube {
        /// Coordinate index (control order).
        index: usize,
        /// Offending value.
        value: f64,
    },
    /// Sequence data is inconsistent (e.g. days not increasing, length mismatch).
    #[error("inconsistent data: {0}")]
    Inconsistent(String),
}

fn display_violations(v: &[crate::design_space::Violation]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Result alias of `perfusio-core`.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;
