//! [`Sample`]: one culture day's accepted measurements (and the controls reported as
//! applied). Samples come out of the one validation step, [`RawReading::validate`]; see
//! [`crate::RawReading`].

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::CultureDay;
use crate::controls::{Control, ControlArray, N_CONTROLS};
use crate::design_space::DesignSpace;
use crate::reading::{Origin, Quantity, RawReading, ValidatedSample};
use crate::species::{N_DERIVED, N_SPECIES, Species, SpeciesArray, Variable};

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
/// assert_eq!(checked.rejections[1].reason.code(), "non_finite");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Culture day of the measurement.
    pub day: CultureDay,
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
    pub fn new(day: CultureDay) -> Self {
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
    pub fn from_state(day: CultureDay, state: &SpeciesArray<f64>) -> Self {
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
        self.quantity(variable.into())
    }

    /// Sets (or clears with `None`) any variable.
    pub fn set_variable(&mut self, variable: Variable, value: Option<f64>) {
        self.set_quantity(variable.into(), value);
    }

    /// Value of any quantity (species, derived variable or control reported as applied).
    pub fn quantity(&self, quantity: Quantity) -> Option<f64> {
        match quantity {
            Quantity::Species(s) => self.species[s.index()],
            Quantity::Derived(d) => self.derived[d.index()],
            Quantity::Control(c) => self.controls[c.index()],
        }
    }

    /// Sets (or clears with `None`) any quantity.
    pub fn set_quantity(&mut self, quantity: Quantity, value: Option<f64>) {
        match quantity {
            Quantity::Species(s) => self.species[s.index()] = value,
            Quantity::Derived(d) => self.derived[d.index()] = value,
            Quantity::Control(c) => self.controls[c.index()] = value,
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

    /// Validates an in-memory sample: the same step as every connector's reading goes
    /// through ([`RawReading::from_sample`] then [`RawReading::validate`]), with the
    /// sample's reactor (or `in-memory sample`) as the origin of every value.
    pub fn validate(&self, design_space: &DesignSpace) -> ValidatedSample {
        let origin = Origin::Source {
            name: self
                .reactor_id
                .clone()
                .unwrap_or_else(|| "in-memory sample".to_string()),
        };
        RawReading::from_sample(self, &origin).validate(design_space)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::design_space::DEFAULT_AMBR250_DESIGN_SPACE as DS;

    #[test]
    fn sample_validation_is_the_raw_reading_step() {
        let mut s = Sample::new(1)
            .with(Species::VCD, -0.1)
            .with(Species::Via, 99.0)
            .with(Species::Glc, f64::INFINITY)
            .with(Species::Titer, 6000.0)
            .with(Species::Lac, 100.0); // on the bound: accepted
        s.derived = [Some(61.0), Some(13.0)];
        s.controls[Control::Temperature.index()] = Some(45.0); // above the 39 °C limit
        s.reactor_id = Some("R07".into());
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
                ("temperature", "above_bound"),
            ]
        );
        assert_eq!(v.sample.get(Species::Via), Some(99.0));
        assert_eq!(v.sample.get(Species::Lac), Some(100.0));
        assert_eq!(v.sample.get(Species::VCD), None);
        assert_eq!(v.sample.derived, [None, None]);
        assert_eq!(v.sample.controls, [None; N_CONTROLS]);
        assert_eq!(v.sample.n_present(), 2);
        assert_eq!(v.sample.reactor_id.as_deref(), Some("R07"));
        assert_eq!(
            v.rejections[0].to_string(),
            "VCD = -0.1 1e6 cells/mL is below 0 (R07)"
        );
        // the same as going through the raw reading explicitly
        let origin = Origin::Source { name: "R07".into() };
        assert_eq!(RawReading::from_sample(&s, &origin).validate(&DS), v);
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
