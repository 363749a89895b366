//! The control registry (the six manipulated variables) and [`Setpoints`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::CultureDay;
use crate::error::CoreError;
use crate::species::normalise_name;

/// Number of manipulated variables.
pub const N_CONTROLS: usize = 6;

/// A value per control, in canonical order (see [`Control::ALL`]).
pub type ControlArray<T> = [T; N_CONTROLS];

/// One of the six manipulated variables of an ambr250-class perfusion reactor.
///
/// ```
/// use perfusio_core::Control;
/// let c: Control = "Perfusion-Rate".parse().unwrap();
/// assert_eq!(c, Control::PerfusionRate);
/// assert_eq!(c.name(), "perfusion_rate");
/// assert_eq!(c.unit(), "vvd");
/// assert!((c.default_value() - 1.0).abs() < 1e-12);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Control {
    /// Perfusion (medium exchange) rate, vessel volumes per day.
    PerfusionRate,
    /// Cell bleed rate, vessel volumes per day (must not exceed the perfusion rate).
    BleedRate,
    /// Glucose concentration of the perfusion medium, g/L.
    GlucoseSetpoint,
    /// Culture temperature, °C.
    Temperature,
    /// Impeller speed, rpm.
    Agitation,
    /// Pyruvate concentration of the perfusion medium, mmol/L.
    PyruvateFeed,
}

struct ControlInfo {
    name: &'static str,
    unit: &'static str,
    description: &'static str,
    default: f64,
    aliases: &'static [&'static str],
}

const CONTROL_INFO: [ControlInfo; N_CONTROLS] = [
    ControlInfo {
        name: "perfusion_rate",
        unit: "vvd",
        description: "perfusion rate (vessel volumes per day)",
        default: 1.0,
        aliases: &["perfusion", "perf", "perfusion_vvd"],
    },
    ControlInfo {
        name: "bleed_rate",
        unit: "vvd",
        description: "cell bleed rate (vessel volumes per day)",
        default: 0.15,
        aliases: &["bleed", "bleed_vvd"],
    },
    ControlInfo {
        name: "glucose_setpoint",
        unit: "g/L",
        description: "glucose concentration of the perfusion medium",
        default: 5.0,
        aliases: &[
            "glucose_feed",
            "glucose_feed_conc",
            "glc_feed",
            "glc_setpoint",
        ],
    },
    ControlInfo {
        name: "temperature",
        unit: "°C",
        description: "culture temperature",
        default: 37.0,
        aliases: &["temp"],
    },
    ControlInfo {
        name: "agitation",
        unit: "rpm",
        description: "impeller speed",
        default: 850.0,
        aliases: &["rpm", "stirrer", "stirrer_speed"],
    },
    ControlInfo {
        name: "pyruvate_feed",
        unit: "mmol/L",
        description: "pyruvate concentration of the perfusion medium",
        default: 0.0,
        aliases: &["pyr_feed", "pyr_feed_conc", "pyruvate_feed_conc"],
    },
];

impl Control {
    /// All controls in canonical order; `Control::ALL[c.index()] == c`.
    pub const ALL: [Control; N_CONTROLS] = [
        Control::PerfusionRate,
        Control::BleedRate,
        Control::GlucoseSetpoint,
        Control::Temperature,
        Control::Agitation,
        Control::PyruvateFeed,
    ];

    /// Position in the canonical order (0..6).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The control at canonical position `index`, if any.
    pub fn from_index(index: usize) -> Option<Control> {
        Self::ALL.get(index).copied()
    }

    fn info(self) -> &'static ControlInfo {
        &CONTROL_INFO[self.index()]
    }

    /// Canonical snake-case name (`"perfusion_rate"`, …).
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// Unit.
    pub fn unit(self) -> &'static str {
        self.info().unit
    }

    /// Human-readable description.
    pub fn description(self) -> &'static str {
        self.info().description
    }

    /// Default operating value (docs/plant-model.md).
    pub fn default_value(self) -> f64 {
        self.info().default
    }

    /// The default value of every control, in canonical order.
    pub fn defaults() -> ControlArray<f64> {
        Self::ALL.map(Control::default_value)
    }

    /// Comma-separated canonical names, for error messages.
    pub fn valid_names() -> String {
        Self::ALL
            .iter()
            .map(|c| c.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Case-insensitive lookup by canonical name or alias (spaces and dashes count as `_`).
    pub fn lookup(name: &str) -> Option<Control> {
        let key = normalise_name(name);
        Self::ALL
            .into_iter()
            .find(|c| c.name() == key || c.info().aliases.iter().any(|a| *a == key))
    }
}

impl fmt::Display for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Control {
    type Err = CoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Control::lookup(s).ok_or_else(|| CoreError::UnknownControl {
            name: s.to_string(),
            valid: Control::valid_names(),
        })
    }
}

/// A full set of control setpoints to apply from culture day `day` onward.
///
/// Values are in canonical control order. Construct from defaults and override by name:
///
/// ```
/// use perfusio_core::{Control, Setpoints};
/// let sp = Setpoints::defaults(3).with(Control::PerfusionRate, 2.0);
/// assert!((sp.get(Control::PerfusionRate) - 2.0).abs() < 1e-12);
/// assert!((sp.get(Control::BleedRate) - 0.15).abs() < 1e-12);
/// assert_eq!(sp.day, 3);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Setpoints {
    /// Culture day from which the setpoints act.
    pub day: CultureDay,
    /// Values in canonical control order.
    pub values: ControlArray<f64>,
}

impl Setpoints {
    /// Setpoints with explicit values.
    pub fn new(day: CultureDay, values: ControlArray<f64>) -> Self {
        Self { day, values }
    }

    /// The default operating point (docs/plant-model.md) from `day` onward.
    pub fn defaults(day: CultureDay) -> Self {
        Self::new(day, Control::defaults())
    }

    /// Value of one control.
    pub fn get(&self, control: Control) -> f64 {
        self.values[control.index()]
    }

    /// Sets one control in place.
    pub fn set(&mut self, control: Control, value: f64) {
        self.values[control.index()] = value;
    }

    /// Returns a copy with one control changed.
    #[must_use]
    pub fn with(mut self, control: Control, value: f64) -> Self {
        self.set(control, value);
        self
    }

    /// Iterates `(control, value)` pairs in canonical order.
    pub fn iter(&self) -> impl Iterator<Item = (Control, f64)> + '_ {
        Control::ALL
            .iter()
            .map(move |c| (*c, self.values[c.index()]))
    }

    /// Parses `name=value` assignments (e.g. from a command line) on top of these setpoints.
    ///
    /// ```
    /// # use perfusio_core::{Control, Setpoints};
    /// let sp = Setpoints::defaults(0).with_assignment("temperature=36.5").unwrap();
    /// assert!((sp.get(Control::Temperature) - 36.5).abs() < 1e-12);
    /// assert!(Setpoints::defaults(0).with_assignment("speed=3").is_err());
    /// ```
    pub fn with_assignment(mut self, assignment: &str) -> Result<Self, CoreError> {
        let (name, value) = assignment
            .split_once('=')
            .ok_or_else(|| CoreError::InvalidConfig {
                field: "setpoint",
                value: assignment.to_string(),
                reason: "expected NAME=VALUE, e.g. perfusion_rate=2.0".to_string(),
            })?;
        let control: Control = name.parse()?;
        let v: f64 = value.trim().parse().map_err(|_| CoreError::InvalidConfig {
            field: "setpoint",
            value: assignment.to_string(),
            reason: format!("'{}' is not a number", value.trim()),
        })?;
        self.set(control, v);
        Ok(self)
    }
}

impl Default for Setpoints {
    fn default() -> Self {
        Self::defaults(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_order_and_defaults() {
        let names: Vec<_> = Control::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(
            names,
            [
                "perfusion_rate",
                "bleed_rate",
                "glucose_setpoint",
                "temperature",
                "agitation",
                "pyruvate_feed"
            ]
        );
        assert_eq!(
            Control::defaults().map(f64::to_bits),
            [1.0, 0.15, 5.0, 37.0, 850.0, 0.0].map(f64::to_bits)
        );
        for (i, c) in Control::ALL.iter().enumerate() {
            assert_eq!(Control::from_index(i), Some(*c));
        }
    }

    #[test]
    fn control_lookup_and_error() {
        assert_eq!("BLEED".parse::<Control>().unwrap(), Control::BleedRate);
        assert_eq!(
            "glucose feed".parse::<Control>().unwrap(),
            Control::GlucoseSetpoint
        );
        assert_eq!(
            "pyr_feed_conc".parse::<Control>().unwrap(),
            Control::PyruvateFeed
        );
        assert_eq!("Temp".parse::<Control>().unwrap(), Control::Temperature);
        // `t` is a time column in most exports: it must not read as a temperature
        assert_eq!(Control::lookup("t"), None);
        let e = "speed".parse::<Control>().unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown control 'speed'; valid names: perfusion_rate, bleed_rate, glucose_setpoint, \
             temperature, agitation, pyruvate_feed"
        );
    }

    #[test]
    fn assignment_errors_are_specific() {
        let e = Setpoints::default()
            .with_assignment("temperature")
            .unwrap_err();
        assert!(e.to_string().contains("expected NAME=VALUE"), "{e}");
        let e = Setpoints::default()
            .with_assignment("temperature=warm")
            .unwrap_err();
        assert!(e.to_string().contains("'warm' is not a number"), "{e}");
    }

    #[test]
    fn setpoints_serde_round_trip() {
        let sp = Setpoints::defaults(5).with(Control::Agitation, 900.0);
        let json = serde_json::to_string(&sp).unwrap();
        let back: Setpoints = serde_json::from_str(&json).unwrap();
        assert_eq!(back, sp);
    }
}
