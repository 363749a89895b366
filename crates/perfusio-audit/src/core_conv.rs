//! Building payloads from `perfusio-core` domain types.

use std::collections::BTreeMap;

use perfusio_core::{Derived, Rejection, Sample, Setpoints, Species};

use crate::event::{SampleRead, SampleRejected, SetpointWithheld};

/// Setpoints as a map from canonical control name to value.
///
/// ```
/// let map = perfusio_audit::event::setpoint_map(&perfusio_core::Setpoints::defaults(3));
/// assert_eq!(map.len(), 6);
/// assert!((map["temperature"] - 37.0).abs() < 1e-12);
/// ```
pub fn setpoint_map(setpoints: &Setpoints) -> BTreeMap<String, f64> {
    setpoints
        .iter()
        .map(|(c, v)| (c.name().to_string(), v))
        .collect()
}

impl SampleRead {
    /// The payload for a sample read from `source`: every species by canonical name (`null`
    /// when not measured), plus the derived variables the instrument reported.
    ///
    /// ```
    /// use perfusio_core::{Sample, Species};
    /// let s = Sample::new(2).with(Species::Glc, 4.5);
    /// let p = perfusio_audit::event::SampleRead::from_sample(&s, "virtual");
    /// assert_eq!(p.values["Glc"], Some(4.5));
    /// assert_eq!(p.values["VCD"], None); // canonical species names, as in perfusio-core
    /// assert_eq!(p.values.len(), 9);
    /// ```
    pub fn from_sample(sample: &Sample, source: impl Into<String>) -> Self {
        let mut values: BTreeMap<String, Option<f64>> = Species::ALL
            .iter()
            .zip(sample.species)
            .map(|(s, v)| (s.name().to_string(), v))
            .collect();
        for (d, v) in Derived::ALL.iter().zip(sample.derived) {
            if v.is_some() {
                values.insert(d.name().to_string(), v);
            }
        }
        Self {
            source: source.into(),
            values,
        }
    }
}

impl From<&Rejection> for SampleRejected {
    fn from(r: &Rejection) -> Self {
        Self {
            species: r.variable.name().to_string(),
            raw: r.value.to_string(),
            reason: r.reason.code().to_string(),
            detail: r.to_string(),
            origin: Some(r.origin.to_string()),
        }
    }
}

impl SetpointWithheld {
    /// The payload for setpoints that were not written, and why.
    pub fn new(setpoints: &Setpoints, reason: impl Into<String>) -> Self {
        Self {
            setpoints: setpoint_map(setpoints),
            reason: reason.into(),
        }
    }
}
