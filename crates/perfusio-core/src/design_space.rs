//! The design space: bounds of every control, plausible ranges of every measured variable,
//! and the process constraints the design policy respects.
//!
//! Each control has two ranges:
//! * the **design range** `[lower, upper]`, the box the optimiser searches, and
//! * the **limits** `[limits.lower, limits.upper]`, the absolute range that any write to the
//!   reactor must respect.
//!
//! A **hard** control has limits equal to its design range (the ambr250 agitation, for
//! example: below 700 rpm oxygen transfer fails, above 1050 rpm shear kills cells). A
//! **soft** control may be set outside its design range by an operator, within its limits;
//! [`DesignSpace::check`] reports that as a soft violation and [`DesignSpace::validate`]
//! accepts it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::controls::{Control, ControlArray, N_CONTROLS};
use crate::error::CoreError;
use crate::reading::Quantity;
use crate::species::{Bounds, Derived, N_DERIVED, N_SPECIES, Species, SpeciesArray, Variable};

/// Bounds and metadata of one control inside a [`DesignSpace`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ControlSpec {
    /// Which control.
    pub control: Control,
    /// Lower end of the design range (searched by the optimiser).
    pub lower: f64,
    /// Upper end of the design range.
    pub upper: f64,
    /// Absolute limits for any write; equal to the design range when `hard`.
    pub limits: Bounds,
    /// Whether the design range is also the absolute limit.
    pub hard: bool,
}

impl ControlSpec {
    /// A hard control: limits equal the design range.
    pub const fn hard(control: Control, lower: f64, upper: f64) -> Self {
        Self {
            control,
            lower,
            upper,
            limits: Bounds::new(lower, upper),
            hard: true,
        }
    }

    /// A soft control with wider absolute limits.
    pub const fn soft(control: Control, lower: f64, upper: f64, limits: Bounds) -> Self {
        Self {
            control,
            lower,
            upper,
            limits,
            hard: false,
        }
    }

    /// The design range as [`Bounds`].
    pub fn design_range(&self) -> Bounds {
        Bounds::new(self.lower, self.upper)
    }

    /// `true` when the design range is a single point (the control is not optimised).
    pub fn is_fixed(&self) -> bool {
        self.upper - self.lower <= 0.0
    }

    fn check_spec(&self) -> Result<(), CoreError> {
        let name = self.control.name();
        self.design_range().check(name)?;
        self.limits.check(name)?;
        if self.lower < self.limits.lower || self.upper > self.limits.upper {
            return Err(CoreError::InvalidConfig {
                field: "controls",
                value: format!("{name} [{}, {}]", self.lower, self.upper),
                reason: format!(
                    "the design range must lie inside the limits [{}, {}]",
                    self.limits.lower, self.limits.upper
                ),
            });
        }
        if self.hard
            && ((self.limits.lower - self.lower).abs() > 0.0
                || (self.limits.upper - self.upper).abs() > 0.0)
        {
            return Err(CoreError::InvalidConfig {
                field: "controls",
                value: name.to_string(),
                reason: "a hard control's limits must equal its design range".to_string(),
            });
        }
        Ok(())
    }
}

/// Why a setpoint value is not acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ViolationKind {
    /// NaN or infinite.
    NonFinite,
    /// Below the lower end of the design range (soft) or of the limits (hard).
    BelowLower {
        /// The bound that was crossed.
        bound: f64,
    },
    /// Above the upper end of the design range (soft) or of the limits (hard).
    AboveUpper {
        /// The bound that was crossed.
        bound: f64,
    },
    /// The bleed rate exceeds the perfusion rate (the harvest flow would be negative).
    BleedExceedsPerfusion {
        /// Perfusion rate it was compared with.
        perfusion_rate: f64,
    },
}

/// One problem with one control value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Violation {
    /// The control concerned.
    pub control: Control,
    /// The offending value.
    pub value: f64,
    /// What is wrong.
    pub kind: ViolationKind,
    /// `true` when the value must not be applied; `false` for a value outside the design
    /// range of a soft control but inside its limits.
    pub hard: bool,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.control;
        let sev = if self.hard {
            ""
        } else {
            " (soft: outside the design range)"
        };
        match self.kind {
            ViolationKind::NonFinite => write!(f, "{c} = {} is not a finite number", self.value),
            ViolationKind::BelowLower { bound } => {
                write!(f, "{c} = {} {} is below {bound}{sev}", self.value, c.unit())
            }
            ViolationKind::AboveUpper { bound } => {
                write!(f, "{c} = {} {} is above {bound}{sev}", self.value, c.unit())
            }
            ViolationKind::BleedExceedsPerfusion { perfusion_rate } => write!(
                f,
                "bleed_rate = {} vvd exceeds perfusion_rate = {perfusion_rate} vvd \
                 (the harvest flow would be negative)",
                self.value
            ),
        }
    }
}

/// The searchable control box, measurement plausibility ranges and process constraints.
///
/// ```
/// use perfusio_core::{Control, DEFAULT_AMBR250_DESIGN_SPACE as DS, Setpoints};
/// let sp = Setpoints::defaults(0).with(Control::Agitation, 1200.0);
/// let err = DS.validate(&sp.values).unwrap_err();
/// assert!(err.to_string().contains("agitation = 1200 rpm is above 1050"));
/// let u = DS.to_unit(&Setpoints::defaults(0).values);
/// assert!((u[0] - 1.0 / 3.0).abs() < 1e-12); // 1.0 vvd in [0.5, 2.0]
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "DesignSpaceRepr", into = "DesignSpaceRepr")]
pub struct DesignSpace {
    controls: ControlArray<ControlSpec>,
    species_bounds: SpeciesArray<Bounds>,
    derived_bounds: [Bounds; N_DERIVED],
    viability_min: f64,
    vcv_target: f64,
}

/// The rule every perfusion reactor obeys whatever its design space: the bleed rate must not
/// exceed the perfusion rate, or the harvest flow `perfusion − bleed` would be negative.
/// Returns the (hard) violation, or `None` when the rule holds or when either rate is not a
/// finite number (a non-finite value is reported on its own by the checks that see it).
///
/// This is the one home of the rule: [`DesignSpace::check_setpoints`], [`DesignSpace::clamp`]
/// and the physics of `perfusio-mechanistic` all call it.
///
/// ```
/// use perfusio_core::{Control, Setpoints, ViolationKind, bleed_violation};
/// let ok = Setpoints::defaults(0);
/// assert!(bleed_violation(&ok.values).is_none());
/// let bad = ok.with(Control::BleedRate, 1.2); // perfusion is 1.0 vvd
/// let v = bleed_violation(&bad.values).unwrap();
/// assert_eq!(v.kind, ViolationKind::BleedExceedsPerfusion { perfusion_rate: 1.0 });
/// assert!(v.hard);
/// ```
pub fn bleed_violation(values: &ControlArray<f64>) -> Option<Violation> {
    let perf = values[Control::PerfusionRate.index()];
    let bleed = values[Control::BleedRate.index()];
    (perf.is_finite() && bleed.is_finite() && bleed > perf).then_some(Violation {
        control: Control::BleedRate,
        value: bleed,
        kind: ViolationKind::BleedExceedsPerfusion {
            perfusion_rate: perf,
        },
        hard: true,
    })
}

/// The ambr250 design space of `docs/plant-model.md`: perfusion 0.5–2.0 vvd, bleed 0.05–0.30 vvd,
/// medium glucose 2–8 g/L, temperature 35–37.5 °C, agitation 700–1050 rpm (hard), medium
/// pyruvate 0–5 mmol/L; viability floor 95 %, VCV target 30 %. The plausible ranges of the
/// measured variables are those of the species registry ([`Species::bounds`],
/// [`Derived::bounds`]).
pub const DEFAULT_AMBR250_DESIGN_SPACE: DesignSpace = DesignSpace {
    controls: [
        ControlSpec::soft(Control::PerfusionRate, 0.5, 2.0, Bounds::new(0.0, 3.0)),
        ControlSpec::soft(Control::BleedRate, 0.05, 0.30, Bounds::new(0.0, 1.0)),
        ControlSpec::soft(Control::GlucoseSetpoint, 2.0, 8.0, Bounds::new(0.0, 20.0)),
        ControlSpec::soft(Control::Temperature, 35.0, 37.5, Bounds::new(30.0, 39.0)),
        ControlSpec::hard(Control::Agitation, 700.0, 1050.0),
        ControlSpec::soft(Control::PyruvateFeed, 0.0, 5.0, Bounds::new(0.0, 10.0)),
    ],
    species_bounds: Species::all_bounds(),
    derived_bounds: Derived::all_bounds(),
    viability_min: 95.0,
    vcv_target: 30.0,
};

impl Default for DesignSpace {
    fn default() -> Self {
        DEFAULT_AMBR250_DESIGN_SPACE
    }
}

impl DesignSpace {
    /// Builds and validates a design space.
    pub fn new(
        controls: ControlArray<ControlSpec>,
        species_bounds: SpeciesArray<Bounds>,
        derived_bounds: [Bounds; N_DERIVED],
        viability_min: f64,
        vcv_target: f64,
    ) -> Result<Self, CoreError> {
        let ds = Self {
            controls,
            species_bounds,
            derived_bounds,
            viability_min,
            vcv_target,
        };
        ds.check()?;
        Ok(ds)
    }

    /// Validates all cross-field rules (ordered finite bounds, canonical control order,
    /// design ranges inside limits, viability floor and VCV target inside their ranges).
    pub fn check(&self) -> Result<(), CoreError> {
        for (i, spec) in self.controls.iter().enumerate() {
            if spec.control.index() != i {
                return Err(CoreError::InvalidConfig {
                    field: "controls",
                    value: spec.control.name().to_string(),
                    reason: format!("expected {} at position {i}", Control::ALL[i]),
                });
            }
            spec.check_spec()?;
        }
        for s in Species::ALL {
            self.species_bounds[s.index()].check(s.name())?;
        }
        for d in Derived::ALL {
            self.derived_bounds[d.index()].check(d.name())?;
        }
        if !(0.0..=100.0).contains(&self.viability_min) {
            return Err(CoreError::InvalidConfig {
                field: "viability_min",
                value: self.viability_min.to_string(),
                reason: "must be a percentage in [0, 100]".to_string(),
            });
        }
        if !self.derived_bounds[Derived::VCV.index()].contains(self.vcv_target) {
            return Err(CoreError::InvalidConfig {
                field: "vcv_target",
                value: self.vcv_target.to_string(),
                reason: "must lie inside the VCV bounds".to_string(),
            });
        }
        Ok(())
    }

    /// Specification of one control.
    pub fn control(&self, control: Control) -> &ControlSpec {
        &self.controls[control.index()]
    }

    /// All control specifications in canonical order.
    pub fn controls(&self) -> &ControlArray<ControlSpec> {
        &self.controls
    }

    /// Replaces the design range of one control (e.g. to fix it: `lower == upper`).
    pub fn with_control_range(
        mut self,
        control: Control,
        lower: f64,
        upper: f64,
    ) -> Result<Self, CoreError> {
        let spec = &mut self.controls[control.index()];
        spec.lower = lower;
        spec.upper = upper;
        if spec.hard {
            spec.limits = Bounds::new(lower, upper);
        }
        self.check()?;
        Ok(self)
    }

    /// Plausible range of a measured variable.
    pub fn bounds(&self, variable: Variable) -> Bounds {
        match variable {
            Variable::Species(s) => self.species_bounds[s.index()],
            Variable::Derived(d) => self.derived_bounds[d.index()],
        }
    }

    /// The range a reported value of `quantity` must lie in to be accepted by
    /// [`RawReading::validate`](crate::RawReading::validate): the plausible range of a
    /// measured variable, or the absolute limits of a control reported as applied.
    pub fn plausible_range(&self, quantity: Quantity) -> Bounds {
        match quantity {
            Quantity::Species(s) => self.species_bounds[s.index()],
            Quantity::Derived(d) => self.derived_bounds[d.index()],
            Quantity::Control(c) => self.controls[c.index()].limits,
        }
    }

    /// Plausible ranges of the nine species.
    pub fn species_bounds(&self) -> &SpeciesArray<Bounds> {
        &self.species_bounds
    }

    /// Minimum acceptable viability, % (the design policy's constraint).
    pub fn viability_min(&self) -> f64 {
        self.viability_min
    }

    /// Target viable cell volume, % (the paper's single-objective campaigns track 30 %).
    pub fn vcv_target(&self) -> f64 {
        self.vcv_target
    }

    /// Returns a copy with another viability floor and VCV target (validated).
    pub fn with_targets(mut self, viability_min: f64, vcv_target: f64) -> Result<Self, CoreError> {
        self.viability_min = viability_min;
        self.vcv_target = vcv_target;
        self.check()?;
        Ok(self)
    }

    /// Every problem with a setpoint vector: non-finite values, values outside the design
    /// range (soft) or limits (hard), and bleed exceeding perfusion (hard). Empty when the
    /// vector is inside the design box.
    pub fn check_setpoints(&self, values: &ControlArray<f64>) -> Vec<Violation> {
        let mut out = Vec::new();
        for spec in &self.controls {
            let v = values[spec.control.index()];
            let viol = |kind, hard| Violation {
                control: spec.control,
                value: v,
                kind,
                hard,
            };
            if !v.is_finite() {
                out.push(viol(ViolationKind::NonFinite, true));
            } else if v < spec.limits.lower {
                out.push(viol(
                    ViolationKind::BelowLower {
                        bound: spec.limits.lower,
                    },
                    true,
                ));
            } else if v > spec.limits.upper {
                out.push(viol(
                    ViolationKind::AboveUpper {
                        bound: spec.limits.upper,
                    },
                    true,
                ));
            } else if v < spec.lower {
                out.push(viol(
                    ViolationKind::BelowLower { bound: spec.lower },
                    spec.hard,
                ));
            } else if v > spec.upper {
                out.push(viol(
                    ViolationKind::AboveUpper { bound: spec.upper },
                    spec.hard,
                ));
            }
        }
        out.extend(bleed_violation(values));
        out
    }

    /// Accepts a setpoint vector unless it has a hard violation; returns the soft ones
    /// (values outside the design range of soft controls, within their limits).
    pub fn validate(&self, values: &ControlArray<f64>) -> Result<Vec<Violation>, CoreError> {
        let (hard, soft): (Vec<_>, Vec<_>) = self
            .check_setpoints(values)
            .into_iter()
            .partition(|v| v.hard);
        if hard.is_empty() {
            Ok(soft)
        } else {
            Err(CoreError::InvalidSetpoints(hard))
        }
    }

    /// Clamps every value into its design range (NaN becomes the lower end) and then the
    /// bleed rate to at most the perfusion rate.
    pub fn clamp(&self, values: &ControlArray<f64>) -> ControlArray<f64> {
        let mut out = *values;
        for spec in &self.controls {
            let v = &mut out[spec.control.index()];
            *v = if v.is_nan() {
                spec.lower
            } else {
                v.clamp(spec.lower, spec.upper)
            };
        }
        if bleed_violation(&out).is_some() {
            out[Control::BleedRate.index()] = out[Control::PerfusionRate.index()];
        }
        out
    }

    /// Maps physical values to the unit cube of the design ranges: `(x - lower)/(upper - lower)`
    /// (0 for a fixed control). Values outside the range map outside `[0, 1]`.
    pub fn to_unit(&self, values: &ControlArray<f64>) -> ControlArray<f64> {
        let mut out = [0.0; N_CONTROLS];
        for (o, spec) in out.iter_mut().zip(&self.controls) {
            let w = spec.upper - spec.lower;
            *o = if w > 0.0 {
                (values[spec.control.index()] - spec.lower) / w
            } else {
                0.0
            };
        }
        out
    }

    /// Maps a point of the unit cube back to physical values; errors outside `[0, 1]`.
    pub fn from_unit(&self, unit: &ControlArray<f64>) -> Result<ControlArray<f64>, CoreError> {
        for (index, &value) in unit.iter().enumerate() {
            if !(0.0..=1.0).contains(&value) {
                return Err(CoreError::OutsideUnitCube { index, value });
            }
        }
        Ok(self.from_unit_unchecked(unit))
    }

    /// Maps unit-cube coordinates to physical values without range checks
    /// (`lower + u * (upper - lower)`).
    pub fn from_unit_unchecked(&self, unit: &ControlArray<f64>) -> ControlArray<f64> {
        let mut out = [0.0; N_CONTROLS];
        for (o, spec) in out.iter_mut().zip(&self.controls) {
            *o = spec.lower + unit[spec.control.index()] * (spec.upper - spec.lower);
        }
        out
    }

    /// Serialises to TOML.
    pub fn to_toml_string(&self) -> Result<String, CoreError> {
        toml::to_string(self).map_err(|e| CoreError::ConfigParse {
            format: "TOML",
            message: e.to_string(),
        })
    }

    /// Parses and validates a TOML design space.
    pub fn from_toml_str(s: &str) -> Result<Self, CoreError> {
        toml::from_str(s).map_err(|e| CoreError::ConfigParse {
            format: "TOML",
            message: e.to_string(),
        })
    }
}

/// Human-editable serialised form of a [`DesignSpace`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DesignSpaceRepr {
    viability_min: f64,
    vcv_target: f64,
    controls: Vec<ControlSpec>,
    variable_bounds: BTreeMap<String, Bounds>,
}

impl From<DesignSpace> for DesignSpaceRepr {
    fn from(ds: DesignSpace) -> Self {
        let mut variable_bounds = BTreeMap::new();
        for s in Species::ALL {
            variable_bounds.insert(s.name().to_string(), ds.species_bounds[s.index()]);
        }
        for d in Derived::ALL {
            variable_bounds.insert(d.name().to_string(), ds.derived_bounds[d.index()]);
        }
        Self {
            viability_min: ds.viability_min,
            vcv_target: ds.vcv_target,
            controls: ds.controls.to_vec(),
            variable_bounds,
        }
    }
}

impl TryFrom<DesignSpaceRepr> for DesignSpace {
    type Error = CoreError;

    fn try_from(r: DesignSpaceRepr) -> Result<Self, CoreError> {
        let mut controls: [Option<ControlSpec>; N_CONTROLS] = [None; N_CONTROLS];
        for spec in r.controls {
            let slot = &mut controls[spec.control.index()];
            if slot.is_some() {
                return Err(CoreError::InvalidConfig {
                    field: "controls",
                    value: spec.control.name().to_string(),
                    reason: "listed more than once".to_string(),
                });
            }
            *slot = Some(spec);
        }
        let mut full = DEFAULT_AMBR250_DESIGN_SPACE.controls;
        for (i, c) in controls.into_iter().enumerate() {
            full[i] = c.ok_or_else(|| CoreError::InvalidConfig {
                field: "controls",
                value: Control::ALL[i].name().to_string(),
                reason: "missing; every control must be listed (fix one with lower = upper)"
                    .to_string(),
            })?;
        }
        let mut species_bounds = [Bounds::new(0.0, 0.0); N_SPECIES];
        let mut derived_bounds = [Bounds::new(0.0, 0.0); N_DERIVED];
        let mut seen = [false; N_SPECIES + N_DERIVED];
        for (name, b) in r.variable_bounds {
            match Variable::lookup(&name) {
                Some(Variable::Species(s)) => {
                    species_bounds[s.index()] = b;
                    seen[s.index()] = true;
                }
                Some(Variable::Derived(d)) => {
                    derived_bounds[d.index()] = b;
                    seen[N_SPECIES + d.index()] = true;
                }
                None => {
                    return Err(CoreError::UnknownSpecies {
                        name,
                        valid: format!("{}, VCV, Diam", Species::valid_names()),
                    });
                }
            }
        }
        if let Some(i) = seen.iter().position(|s| !s) {
            let name = Species::from_index(i)
                .map(Species::name)
                .or_else(|| Derived::from_index(i - N_SPECIES).map(Derived::name))
                .unwrap_or_default();
            return Err(CoreError::InvalidConfig {
                field: "variable_bounds",
                value: name.to_string(),
                reason: "missing bounds for this variable".to_string(),
            });
        }
        DesignSpace::new(
            full,
            species_bounds,
            derived_bounds,
            r.viability_min,
            r.vcv_target,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controls::Setpoints;
    use approx::assert_relative_eq;
    use proptest::prelude::*;

    const DS: DesignSpace = DEFAULT_AMBR250_DESIGN_SPACE;

    #[test]
    fn default_matches_plant_model() {
        DS.check().unwrap();
        let expected = [
            (0.5, 2.0),
            (0.05, 0.30),
            (2.0, 8.0),
            (35.0, 37.5),
            (700.0, 1050.0),
            (0.0, 5.0),
        ];
        for (spec, (lo, hi)) in DS.controls().iter().zip(expected) {
            assert_relative_eq!(spec.lower, lo);
            assert_relative_eq!(spec.upper, hi);
        }
        assert!(DS.control(Control::Agitation).hard);
        assert!(!DS.control(Control::PerfusionRate).hard);
        assert_relative_eq!(DS.viability_min(), 95.0);
        assert_relative_eq!(DS.vcv_target(), 30.0);
        // the default operating point is inside the box
        assert!(DS.check_setpoints(&Control::defaults()).is_empty());
        // the plausible ranges are the species registry's (one table)
        for s in Species::ALL {
            assert_eq!(DS.bounds(Variable::Species(s)), s.bounds());
            assert_eq!(DS.plausible_range(Quantity::Species(s)), s.bounds());
        }
        for d in Derived::ALL {
            assert_eq!(DS.bounds(Variable::Derived(d)), d.bounds());
        }
        assert_eq!(
            DS.plausible_range(Quantity::Control(Control::Agitation)),
            Bounds::new(700.0, 1050.0)
        );
    }

    #[test]
    fn every_violation_kind_is_reported() {
        let sp = Setpoints::defaults(0)
            .with(Control::Temperature, f64::NAN)
            .with(Control::Agitation, 650.0)
            .with(Control::GlucoseSetpoint, 25.0)
            .with(Control::PyruvateFeed, 7.0)
            .with(Control::PerfusionRate, 0.4);
        let v = DS.check_setpoints(&sp.values);
        let find = |c| v.iter().find(|x| x.control == c).copied().unwrap();
        assert_eq!(find(Control::Temperature).kind, ViolationKind::NonFinite);
        assert!(find(Control::Temperature).hard);
        assert_eq!(
            find(Control::Agitation).kind,
            ViolationKind::BelowLower { bound: 700.0 }
        );
        assert!(find(Control::Agitation).hard);
        assert_eq!(
            find(Control::GlucoseSetpoint).kind,
            ViolationKind::AboveUpper { bound: 20.0 }
        );
        assert!(find(Control::GlucoseSetpoint).hard);
        // soft: outside design range, inside limits
        let pyr = find(Control::PyruvateFeed);
        assert_eq!(pyr.kind, ViolationKind::AboveUpper { bound: 5.0 });
        assert!(!pyr.hard);
        let perf = find(Control::PerfusionRate);
        assert_eq!(perf.kind, ViolationKind::BelowLower { bound: 0.5 });
        assert!(!perf.hard);
        assert_eq!(v.len(), 5);

        let bleed = Setpoints::defaults(0)
            .with(Control::PerfusionRate, 0.5)
            .with(Control::BleedRate, 0.6);
        let err = DS.validate(&bleed.values).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid setpoints: bleed_rate = 0.6 vvd exceeds perfusion_rate = 0.5 vvd \
             (the harvest flow would be negative)"
        );
    }

    #[test]
    fn validate_accepts_soft_and_rejects_hard() {
        let soft = Setpoints::defaults(0).with(Control::PerfusionRate, 2.5);
        let warnings = DS.validate(&soft.values).unwrap();
        assert_eq!(warnings.len(), 1);
        assert_eq!(
            warnings[0].to_string(),
            "perfusion_rate = 2.5 vvd is above 2 (soft: outside the design range)"
        );
        let hard = Setpoints::defaults(0).with(Control::PerfusionRate, 3.5);
        assert!(matches!(
            DS.validate(&hard.values),
            Err(CoreError::InvalidSetpoints(v)) if v.len() == 1
        ));
    }

    #[test]
    fn clamp_projects_into_box_and_bleed_rule() {
        let v = [5.0, 0.9, f64::NAN, 20.0, 2000.0, -1.0];
        let c = DS.clamp(&v);
        assert_eq!(
            c.map(f64::to_bits),
            [2.0, 0.30, 2.0, 35.0, 1050.0, 0.0].map(f64::to_bits)
        );
        assert!(DS.check_setpoints(&c).is_empty());
        let narrow = DS
            .clone()
            .with_control_range(Control::PerfusionRate, 0.1, 0.2)
            .unwrap();
        let c = narrow.clamp(&[0.15, 0.3, 5.0, 37.0, 850.0, 0.0]);
        assert_relative_eq!(c[1], 0.15);
    }

    #[test]
    fn from_unit_rejects_outside_cube() {
        let e = DS.from_unit(&[0.0, 0.5, 1.2, 0.0, 0.0, 0.0]).unwrap_err();
        assert_eq!(
            e,
            CoreError::OutsideUnitCube {
                index: 2,
                value: 1.2
            }
        );
        assert!(DS.from_unit(&[f64::NAN; 6]).is_err());
    }

    #[test]
    fn fixed_control_maps_to_zero_and_back() {
        let ds = DS
            .clone()
            .with_control_range(Control::Temperature, 36.0, 36.0)
            .unwrap();
        assert!(ds.control(Control::Temperature).is_fixed());
        let u = ds.to_unit(&[1.0, 0.1, 5.0, 36.0, 850.0, 0.0]);
        assert_relative_eq!(u[3], 0.0);
        assert_relative_eq!(ds.from_unit(&u).unwrap()[3], 36.0);
    }

    #[test]
    fn invalid_design_spaces_are_rejected() {
        let e = DS
            .clone()
            .with_control_range(Control::Agitation, 900.0, 800.0);
        assert!(matches!(e, Err(CoreError::InvalidBounds { .. })));
        let e = DS
            .clone()
            .with_control_range(Control::PerfusionRate, 0.5, 4.0)
            .unwrap_err();
        assert!(e.to_string().contains("inside the limits [0, 3]"), "{e}");
        let e = DS.clone().with_targets(120.0, 30.0).unwrap_err();
        assert!(e.to_string().contains("viability_min"), "{e}");
        let e = DS.clone().with_targets(95.0, 70.0).unwrap_err();
        assert!(e.to_string().contains("vcv_target"), "{e}");
    }

    #[test]
    fn serde_round_trip_toml_and_json() {
        let ds = DS
            .clone()
            .with_control_range(Control::Temperature, 36.0, 37.0)
            .unwrap();
        let toml = ds.to_toml_string().unwrap();
        assert_eq!(DesignSpace::from_toml_str(&toml).unwrap(), ds);
        let json = serde_json::to_string(&ds).unwrap();
        assert_eq!(serde_json::from_str::<DesignSpace>(&json).unwrap(), ds);
    }

    #[test]
    fn serde_rejects_missing_or_duplicate_controls() {
        let mut v: serde_json::Value = serde_json::to_value(&DS).unwrap();
        let ctrls = v["controls"].as_array_mut().unwrap();
        let first = ctrls[0].clone();
        ctrls.push(first);
        let e = serde_json::from_value::<DesignSpace>(v.clone()).unwrap_err();
        assert!(e.to_string().contains("listed more than once"), "{e}");
        v["controls"].as_array_mut().unwrap().truncate(5);
        let e = serde_json::from_value::<DesignSpace>(v).unwrap_err();
        assert!(e.to_string().contains("pyruvate_feed"), "{e}");
    }

    fn point_in_box() -> impl Strategy<Value = [f64; N_CONTROLS]> {
        let s = DS.controls().map(|c| c.lower..=c.upper);
        (
            s[0].clone(),
            s[1].clone(),
            s[2].clone(),
            s[3].clone(),
            s[4].clone(),
            s[5].clone(),
        )
            .prop_map(|(a, b, c, d, e, f)| [a, b, c, d, e, f])
    }

    proptest! {
        #[test]
        fn unit_cube_round_trip(x in point_in_box()) {
            let u = DS.to_unit(&x);
            for ui in u {
                prop_assert!((0.0..=1.0).contains(&ui));
            }
            let back = DS.from_unit(&u).unwrap();
            for (a, b) in back.iter().zip(x) {
                prop_assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{a} vs {b}");
            }
        }

        #[test]
        fn clamp_is_idempotent_and_inside(x in proptest::array::uniform6(-2000.0f64..2000.0)) {
            let c = DS.clamp(&x);
            prop_assert!(DS.check_setpoints(&c).is_empty());
            prop_assert_eq!(DS.clamp(&c).map(f64::to_bits), c.map(f64::to_bits));
        }
    }
}
