//! [`Sample`]: one culture day's measurements, and their validation against plausible
//! ranges. Nothing is dropped silently: every rejected value is returned as a
//! [`Rejection`] with its reason.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::controls::{Control, ControlArray, N_CONTROLS};
use crate::design_space::DesignSpace;
use crate::species::{Derived, N_DERIVED, N_SPECIES, Species, SpeciesArray, Variable};

/// A culture day's measurements; every value may be missing.
///
/// ```
/// use perfusio_core::{DEFAULT_AMBR250_DESIGN_SPACE as DS, RejectionReason, Sample, Species};
/// let s = Sample::new(3)
///     .with(Species::VCD, 5.2)
///     .with(Species::Via, 101.0)       // above 100 %: rejected
///     .with(Species::Glc, f64::NAN);   // not a number: rejected
/// let checked = s.validate(&DS);
/// assert_eq!(checked.sample.get(Species::VCD), Some(5.2));
/// assert_eq!(checked.sample.get(Species::Via), None);
/// assert_eq!(checked.rejections.len(), 2);
/// assert_eq!(checked.rejections[0].reason, RejectionReason::AboveBound { bound: 100.0 });
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Culture day of the measurement.
    pub day: u32,
    /// Species values in canonical order (`None` = not measured).
    pub species: SpeciesArray<Option<f64>>,
    /// Measured derived variables `[VCV, Diam]`, if the instrument reports them.
    pub derived: [Option<f64>; N_DERIVED],
    /// Controls the source reports as applied on this day, if any.
    pub controls: ControlArray<Option<f64>>,
    /// When the sample was taken.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub timestamp: Option<OffsetDateTime>,
    /// Reactor the sample comes from.
    #[serde(default)]
    pub reactor_id: Option<String>,
}

impl Sample {
    /// An empty sample (all values missing) for `day`.
    pub fn new(day: u32) -> Self {
        Self {
            day,
            species: [None; N_SPECIES],
            derived: [None; N_DERIVED],
            controls: [None; N_CONTROLS],
            timestamp: None,
            reactor_id: None,
        }
    }

    /// A sample with every species present.
    pub fn from_state(day: u32, state: &SpeciesArray<f64>) -> Self {
        let mut s = Self::new(day);
        s.species = state.map(Some);
        s
    }

    /// Returns a copy with one species value set.
    #[must_use]
    pub fn with(mut self, species: Species, value: f64) -> Self {
        self.species[species.index()] = Some(value);
        self
    }

    /// Value of one species.
    pub fn get(&self, species: Species) -> Option<f64> {
        self.species[species.index()]
    }

    /// Value of any variable (species or derived).
    pub fn get_variable(&self, variable: Variable) -> Option<f64> {
        match variable {
            Variable::Species(s) => self.species[s.index()],
            Variable::Derived(d) => self.derived[d.index()],
        }
    }

    /// Sets (or clears with `None`) any variable.
    pub fn set_variable(&mut self, variable: Variable, value: Option<f64>) {
        match variable {
            Variable::Species(s) => self.species[s.index()] = value,
            Variable::Derived(d) => self.derived[d.index()] = value,
        }
    }

    /// Control value reported as applied on this day.
    pub fn control(&self, control: Control) -> Option<f64> {
        self.controls[control.index()]
    }

    /// Number of species present.
    pub fn n_present(&self) -> usize {
        self.species.iter().filter(|v| v.is_some()).count()
    }

    /// `true` when all nine species are present.
    pub fn is_complete(&self) -> bool {
        self.n_present() == N_SPECIES
    }

    /// Checks every present value against the design space's plausible ranges. Accepted
    /// values are kept; each rejected value is removed from the returned sample and listed
    /// with its reason, in variable order (species, then VCV, Diam).
    pub fn validate(&self, design_space: &DesignSpace) -> ValidatedSample {
        let mut sample = self.clone();
        let mut rejections = Vec::new();
        let vars = Species::ALL
            .into_iter()
            .map(Variable::Species)
            .chain(Derived::ALL.into_iter().map(Variable::Derived));
        for var in vars {
            if let Some(value) = self.get_variable(var)
                && let Some(reason) = RejectionReason::classify(value, design_space, var)
            {
                sample.set_variable(var, None);
                rejections.push(Rejection {
                    variable: var,
                    value,
                    reason,
                });
            }
        }
        ValidatedSample { sample, rejections }
    }
}

/// Why a measured value was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RejectionReason {
    /// NaN or infinite.
    NonFinite,
    /// Below the variable's plausible range.
    BelowBound {
        /// The lower bound.
        bound: f64,
    },
    /// Above the variable's plausible range.
    AboveBound {
        /// The upper bound.
        bound: f64,
    },
}

impl RejectionReason {
    /// The reason `value` is implausible for `variable`, or `None` if it is acceptable.
    pub fn classify(value: f64, ds: &DesignSpace, variable: Variable) -> Option<Self> {
        let b = ds.bounds(variable);
        if !value.is_finite() {
            Some(Self::NonFinite)
        } else if value < b.lower {
            Some(Self::BelowBound { bound: b.lower })
        } else if value > b.upper {
            Some(Self::AboveBound { bound: b.upper })
        } else {
            None
        }
    }

    /// Short machine-readable code (`non_finite`, `below_bound`, `above_bound`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::NonFinite => "non_finite",
            Self::BelowBound { .. } => "below_bound",
            Self::AboveBound { .. } => "above_bound",
        }
    }
}

/// A measured value that was not accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    /// The variable concerned.
    pub variable: Variable,
    /// The value as read (may be non-finite; serialised as a string then).
    #[serde(with = "crate::serde_util::f64_any")]
    pub value: f64,
    /// Why it was rejected.
    pub reason: RejectionReason,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.variable;
        match self.reason {
            RejectionReason::NonFinite => write!(f, "{v} = {} is not a finite number", self.value),
            RejectionReason::BelowBound { bound } => {
                write!(f, "{v} = {} {} is below {bound}", self.value, v.unit())
            }
            RejectionReason::AboveBound { bound } => {
                write!(f, "{v} = {} {} is above {bound}", self.value, v.unit())
            }
        }
    }
}

/// The result of [`Sample::validate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidatedSample {
    /// The sample with only accepted values present.
    pub sample: Sample,
    /// Every rejected value, with its reason.
    pub rejections: Vec<Rejection>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::design_space::DEFAULT_AMBR250_DESIGN_SPACE as DS;

    #[test]
    fn every_reason_code_is_produced() {
        let mut s = Sample::new(1)
            .with(Species::VCD, -0.1)
            .with(Species::Via, 99.0)
            .with(Species::Glc, f64::INFINITY)
            .with(Species::Titer, 6000.0)
            .with(Species::Lac, 40.0); // on the bound: accepted
        s.derived = [Some(61.0), Some(13.0)];
        let v = s.validate(&DS);
        let codes: Vec<_> = v
            .rejections
            .iter()
            .map(|r| (r.variable.name(), r.reason.code()))
            .collect();
        assert_eq!(
            codes,
            [
                ("VCD", "below_bound"),
                ("Glc", "non_finite"),
                ("Titer", "above_bound"),
                ("VCV", "above_bound"),
                ("Diam", "below_bound"),
            ]
        );
        assert_eq!(v.sample.get(Species::Via), Some(99.0));
        assert_eq!(v.sample.get(Species::Lac), Some(40.0));
        assert_eq!(v.sample.get(Species::VCD), None);
        assert_eq!(v.sample.derived, [None, None]);
        assert_eq!(v.sample.n_present(), 2);
        assert_eq!(
            v.rejections[0].to_string(),
            "VCD = -0.1 1e6 cells/mL is below 0"
        );
        // nothing is lost: accepted + rejected = present
        assert_eq!(v.sample.n_present() + 3, s.n_present());
    }

    #[test]
    fn rejection_serialises_non_finite_values() {
        let s = Sample::new(2).with(Species::Gln, f64::NAN);
        let v = s.validate(&DS);
        let json = serde_json::to_string(&v.rejections[0]).unwrap();
        assert_eq!(
            json,
            r#"{"variable":"Gln","value":"NaN","reason":{"code":"non_finite"}}"#
        );
        let back: Rejection = serde_json::from_str(&json).unwrap();
        assert!(back.value.is_nan());
    }

    #[test]
    fn sample_serde_round_trip_with_timestamp() {
        let mut s = Sample::from_state(4, &[1.0, 99.0, 5.0, 4.0, 0.5, 2.0, 0.5, 0.0, 10.0]);
        s.timestamp = Some(time::macros::datetime!(2026-11-25 12:00:00.123456 UTC));
        s.reactor_id = Some("R01".into());
        s.controls[Control::Temperature.index()] = Some(36.5);
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("2026-11-25T12:00:00.123456Z"), "{json}");
        assert_eq!(serde_json::from_str::<Sample>(&json).unwrap(), s);
        assert!(s.is_complete());
        assert_eq!(s.control(Control::Temperature), Some(36.5));
    }
}
