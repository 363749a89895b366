//! The optimiser's decision space over the six controls.
//!
//! The optimiser works in the unit cube `[0, 1]^D`, one coordinate per **free** control (in
//! canonical control order). [`DecisionSpace`] maps a point of the cube to setpoints that
//! satisfy every process rule **by construction**, so no candidate the optimiser proposes
//! can leave the design space:
//!
//! * **Box.** Each control stays in its design range, intersected with an optional **ramp
//!   window** `[current − r, current + r]` (at most `r` change per day from the current
//!   setpoint).
//! * **Fixed controls** keep their value: a design range with `lower == upper`, a control
//!   named fixed ([`DecisionSpaceBuilder::fix`], which keeps the *current* value), or a ramp
//!   window of width zero. They get no coordinate.
//! * **bleed ≤ perfusion.** The bleed coordinate is a *fraction of its admissible interval
//!   given the perfusion*: with `B = [B_lo, B_hi]` the bleed's window and `p` the perfusion,
//!   `bleed = B_lo + u_b·(min(B_hi, p) − B_lo)`, i.e. the bleed fraction `bleed/p` runs over
//!   `[B_lo/p, min(B_hi/p, 1)]`. The perfusion's own lower end is raised to `B_lo` so that
//!   the interval is never empty. The map is continuous, onto the feasible set, and smooth
//!   inside it.

use perfusio_core::{Control, ControlArray, DesignSpace, N_CONTROLS};
use serde::Serialize;

use crate::error::{BedError, Result};

/// Tolerance of [`DecisionSpace::to_unit`] for values just outside an interval, relative to
/// `max(width, |lower|, |upper|, 1)`.
pub const EDGE_TOLERANCE: f64 = 1e-9;

/// Builder of a [`DecisionSpace`]: the design space, the current setpoints, fixed controls
/// and ramp limits.
///
/// ```
/// use perfusio_bed::space::DecisionSpace;
/// use perfusio_core::{Control, DEFAULT_AMBR250_DESIGN_SPACE as DS};
/// let space = DecisionSpace::builder(&DS, Control::defaults())
///     .fix(Control::Agitation)
///     .ramp_limit(Control::Temperature, 0.5)
///     .build()
///     .unwrap();
/// assert_eq!(space.dim(), 5);
/// let c = space.to_controls(&[1.0; 5]).unwrap();
/// assert!((c[Control::Temperature.index()] - 37.5).abs() < 1e-12); // 37 + 0.5, inside 35–37.5
/// assert!((c[Control::Agitation.index()] - 850.0).abs() < 1e-12); // fixed where it was
/// assert!(c[Control::BleedRate.index()] <= c[Control::PerfusionRate.index()]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionSpaceBuilder {
    design: DesignSpace,
    current: ControlArray<f64>,
    fixed: [bool; N_CONTROLS],
    ramp: ControlArray<Option<f64>>,
}

impl DecisionSpaceBuilder {
    /// Keeps `control` at its current value (a fixed feature).
    #[must_use]
    pub fn fix(mut self, control: Control) -> Self {
        self.fixed[control.index()] = true;
        self
    }

    /// Limits the change of `control` to `max_change_per_day` (≥ 0, in its unit) from its
    /// current value.
    #[must_use]
    pub fn ramp_limit(mut self, control: Control, max_change_per_day: f64) -> Self {
        self.ramp[control.index()] = Some(max_change_per_day);
        self
    }

    /// Sets all ramp limits at once (`None`: unlimited).
    #[must_use]
    pub fn ramp_limits(mut self, limits: ControlArray<Option<f64>>) -> Self {
        self.ramp = limits;
        self
    }

    /// Validates and builds the space.
    ///
    /// Errors: a non-finite current setpoint; a negative or non-finite ramp limit; a fixed
    /// control whose current value is outside its design range; a ramp window that misses
    /// the design range; a bleed window whose lower end exceeds every admissible perfusion.
    pub fn build(self) -> Result<DecisionSpace> {
        let mut interval = [(0.0, 0.0); N_CONTROLS];
        let mut free = [false; N_CONTROLS];
        for spec in self.design.controls() {
            let c = spec.control;
            let i = c.index();
            let cur = self.current[i];
            if !cur.is_finite() {
                return Err(BedError::NonFinite {
                    what: "current setpoint",
                    value: cur,
                });
            }
            let (lo, hi) = (spec.lower, spec.upper);
            if self.fixed[i] {
                if cur < lo || cur > hi {
                    return Err(BedError::InfeasibleControl {
                        control: c,
                        reason: format!(
                            "it is fixed at its current value {cur}, outside the design range \
                             [{lo}, {hi}]; widen the design range or set it inside first"
                        ),
                    });
                }
                interval[i] = (cur, cur);
                continue;
            }
            let (mut a, mut b) = (lo, hi);
            if let Some(r) = self.ramp[i] {
                if !(r.is_finite() && r >= 0.0) {
                    return Err(BedError::InvalidParameter {
                        name: "ramp_limit",
                        reason: format!("the ramp limit of {c} must be finite and >= 0, got {r}"),
                    });
                }
                a = a.max(cur - r);
                b = b.min(cur + r);
                if a > b {
                    return Err(BedError::InfeasibleControl {
                        control: c,
                        reason: format!(
                            "the ramp window {cur} ± {r} does not meet the design range \
                             [{lo}, {hi}]; raise the ramp limit or move the setpoint first"
                        ),
                    });
                }
            }
            interval[i] = (a, b);
            free[i] = b > a;
        }
        // bleed ≤ perfusion: the perfusion must reach the smallest bleed
        let (p, bl) = (Control::PerfusionRate.index(), Control::BleedRate.index());
        let b_lo = interval[bl].0;
        if b_lo > interval[p].1 {
            return Err(BedError::InfeasibleControl {
                control: Control::BleedRate,
                reason: format!(
                    "its smallest admissible value {b_lo} exceeds the largest admissible \
                     perfusion rate {}",
                    interval[p].1
                ),
            });
        }
        interval[p].0 = interval[p].0.max(b_lo);
        free[p] = interval[p].1 > interval[p].0;
        let coords = Control::ALL
            .into_iter()
            .filter(|c| free[c.index()])
            .collect();
        Ok(DecisionSpace {
            current: self.current,
            interval,
            free,
            coords,
        })
    }
}

/// The decision space: unit-cube coordinates for the free controls, mapped both ways.
/// See the module documentation for the construction. Serialisable for logs; built only
/// through [`DecisionSpaceBuilder::build`], which validates it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionSpace {
    current: ControlArray<f64>,
    /// Admissible interval of each control (for the bleed: before the `≤ perfusion` cap).
    interval: ControlArray<(f64, f64)>,
    free: [bool; N_CONTROLS],
    coords: Vec<Control>,
}

impl DecisionSpace {
    /// Starts a builder from the design space and the current setpoints.
    pub fn builder(design: &DesignSpace, current: ControlArray<f64>) -> DecisionSpaceBuilder {
        DecisionSpaceBuilder {
            design: design.clone(),
            current,
            fixed: [false; N_CONTROLS],
            ramp: [None; N_CONTROLS],
        }
    }

    /// The space of the whole design box around `current` (no fixed controls, no ramps).
    pub fn new(design: &DesignSpace, current: ControlArray<f64>) -> Result<Self> {
        Self::builder(design, current).build()
    }

    /// Number of coordinates `D` (free controls).
    pub fn dim(&self) -> usize {
        self.coords.len()
    }

    /// The free controls, in coordinate order.
    pub fn free_controls(&self) -> &[Control] {
        &self.coords
    }

    /// `true` when `control` has a coordinate.
    pub fn is_free(&self, control: Control) -> bool {
        self.free[control.index()]
    }

    /// The admissible interval of a control (for the bleed, before the cap at the
    /// perfusion rate); a fixed control's interval is a single point.
    pub fn interval(&self, control: Control) -> (f64, f64) {
        self.interval[control.index()]
    }

    /// The current setpoints the space was built around.
    pub fn current(&self) -> &ControlArray<f64> {
        &self.current
    }

    /// Maps a point of `[0, 1]^D` to setpoints (errors outside the cube or for a wrong
    /// length). The result lies in every admissible interval and has bleed ≤ perfusion.
    pub fn to_controls(&self, unit: &[f64]) -> Result<ControlArray<f64>> {
        if unit.len() != self.dim() {
            return Err(BedError::ShapeMismatch(format!(
                "the decision space has {} coordinates ({}), got {}",
                self.dim(),
                self.coords
                    .iter()
                    .map(|c| c.name())
                    .collect::<Vec<_>>()
                    .join(", "),
                unit.len()
            )));
        }
        if let Some((index, &value)) = unit
            .iter()
            .enumerate()
            .find(|(_, v)| !(0.0..=1.0).contains(*v))
        {
            return Err(BedError::OutsideUnitCube { index, value });
        }
        let mut out = [0.0; N_CONTROLS];
        let mut coord = unit.iter();
        for c in Control::ALL {
            let i = c.index();
            let (lo, hi) = self.effective(c, &out);
            out[i] = if self.free[i] {
                let u = coord.next().copied().unwrap_or(0.0);
                (lo + u * (hi - lo)).clamp(lo, hi)
            } else {
                lo
            };
        }
        Ok(out)
    }

    /// Maps a q-batch `[u_1, …, u_q]` (flat, `q·D` values) to `q` setpoint vectors.
    pub fn to_controls_batch(&self, unit: &[f64], q: usize) -> Result<Vec<ControlArray<f64>>> {
        if unit.len() != q * self.dim() {
            return Err(BedError::ShapeMismatch(format!(
                "a batch of {q} needs {} coordinates, got {}",
                q * self.dim(),
                unit.len()
            )));
        }
        if self.dim() == 0 {
            return (0..q).map(|_| self.to_controls(&[])).collect();
        }
        unit.chunks_exact(self.dim())
            .map(|u| self.to_controls(u))
            .collect()
    }

    /// Maps setpoints back to the unit cube. Values within [`EDGE_TOLERANCE`] (relative to
    /// the interval width) outside an interval are clamped; values further out, or a fixed
    /// control away from its value, are errors — use [`project`](Self::project) first.
    pub fn to_unit(&self, controls: &ControlArray<f64>) -> Result<Vec<f64>> {
        let mut out = Vec::with_capacity(self.dim());
        for c in Control::ALL {
            let i = c.index();
            let (lo, hi) = self.effective(c, controls);
            let x = controls[i];
            let tol = EDGE_TOLERANCE * (hi - lo).max(lo.abs()).max(hi.abs()).max(1.0);
            if !(x.is_finite() && x >= lo - tol && x <= hi + tol) {
                return Err(BedError::OutsideDecisionSpace {
                    control: c,
                    value: x,
                    lower: lo,
                    upper: hi,
                });
            }
            if self.free[i] {
                out.push(if hi > lo {
                    ((x - lo) / (hi - lo)).clamp(0.0, 1.0)
                } else {
                    0.0
                });
            }
        }
        Ok(out)
    }

    /// The nearest admissible setpoints: each control clamped into its interval (fixed ones
    /// set to their value), then the bleed into `[B_lo, min(B_hi, perfusion)]`.
    pub fn project(&self, controls: &ControlArray<f64>) -> ControlArray<f64> {
        let mut out = [0.0; N_CONTROLS];
        for c in Control::ALL {
            let i = c.index();
            let (lo, hi) = self.effective(c, &out);
            let x = controls[i];
            out[i] = if x.is_nan() { lo } else { x.clamp(lo, hi) };
        }
        out
    }

    /// The admissible interval of `control` given the controls before it in canonical
    /// order (only the bleed depends on another control: it is capped at the perfusion).
    fn effective(&self, control: Control, before: &ControlArray<f64>) -> (f64, f64) {
        let (lo, hi) = self.interval[control.index()];
        if control == Control::BleedRate {
            let p = before[Control::PerfusionRate.index()];
            (lo, hi.min(p).max(lo))
        } else {
            (lo, hi)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use perfusio_core::DEFAULT_AMBR250_DESIGN_SPACE as DS;
    use proptest::prelude::*;

    const P: usize = 0;
    const B: usize = 1;

    #[test]
    fn default_space_has_six_coordinates_and_respects_bleed() {
        let s = DecisionSpace::new(&DS, Control::defaults()).unwrap();
        assert_eq!(s.dim(), 6);
        // perfusion at its lower end 0.5, bleed asked for its top: capped at 0.3 ≤ 0.5
        let c = s.to_controls(&[0.0, 1.0, 0.5, 0.5, 0.5, 0.5]).unwrap();
        assert!((c[P] - 0.5).abs() < 1e-15 && (c[B] - 0.3).abs() < 1e-15);
        let round = s.to_unit(&c).unwrap();
        assert!((round[1] - 1.0).abs() < 1e-12);
        assert!(DS.check_setpoints(&c).is_empty());
    }

    #[test]
    fn bleed_is_a_fraction_of_its_interval_below_the_perfusion() {
        // perfusion may go below the bleed range: its lower end is raised to 0.05
        let ds = DS
            .clone()
            .with_control_range(Control::PerfusionRate, 0.01, 0.2)
            .unwrap();
        let s = DecisionSpace::new(&ds, [0.1, 0.05, 5.0, 37.0, 850.0, 0.0]).unwrap();
        assert_eq!(s.interval(Control::PerfusionRate), (0.05, 0.2));
        let c = s.to_controls(&[0.0, 1.0, 0.0, 0.0, 0.0, 0.0]).unwrap();
        assert!((c[P] - 0.05).abs() < 1e-15 && (c[B] - 0.05).abs() < 1e-15);
        let c = s.to_controls(&[1.0, 0.5, 0.0, 0.0, 0.0, 0.0]).unwrap();
        assert!((c[P] - 0.2).abs() < 1e-15 && (c[B] - 0.125).abs() < 1e-15); // 0.05 + ½(0.2 − 0.05)
    }

    #[test]
    fn errors_say_what_to_change() {
        let far = [2.5, 0.15, 5.0, 37.0, 850.0, 0.0];
        let e = DecisionSpace::builder(&DS, far)
            .ramp_limit(Control::PerfusionRate, 0.2)
            .build()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "no admissible value for perfusion_rate: the ramp window 2.5 ± 0.2 does not meet the \
             design range [0.5, 2]; raise the ramp limit or move the setpoint first"
        );
        let e = DecisionSpace::builder(&DS, far)
            .fix(Control::PerfusionRate)
            .build()
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("fixed at its current value 2.5, outside the design range")
        );
        let ds = DS
            .clone()
            .with_control_range(Control::PerfusionRate, 0.01, 0.04)
            .unwrap();
        let e = DecisionSpace::new(&ds, [0.02, 0.05, 5.0, 37.0, 850.0, 0.0]).unwrap_err();
        assert!(e.to_string().contains(
            "smallest admissible value 0.05 exceeds the largest admissible perfusion rate 0.04"
        ));
        assert!(
            DecisionSpace::builder(&DS, Control::defaults())
                .ramp_limit(Control::Agitation, -1.0)
                .build()
                .is_err()
        );
        let s = DecisionSpace::new(&DS, Control::defaults()).unwrap();
        assert!(matches!(
            s.to_controls(&[0.5; 5]),
            Err(BedError::ShapeMismatch(_))
        ));
        assert!(matches!(
            s.to_controls(&[0.5, 0.5, 0.5, 1.5, 0.5, 0.5]),
            Err(BedError::OutsideUnitCube { index: 3, .. })
        ));
        assert!(matches!(
            s.to_unit(&[3.0, 0.1, 5.0, 37.0, 850.0, 0.0]),
            Err(BedError::OutsideDecisionSpace {
                control: Control::PerfusionRate,
                ..
            })
        ));
        let p = s.project(&[3.0, 0.9, f64::NAN, 37.0, 850.0, 0.0]);
        assert!(
            (p[P] - 2.0).abs() < 1e-15 && (p[B] - 0.3).abs() < 1e-15 && (p[2] - 2.0).abs() < 1e-15
        );
    }

    #[test]
    fn fixed_controls_have_no_coordinate() {
        let ds = DS
            .clone()
            .with_control_range(Control::Temperature, 36.5, 36.5)
            .unwrap();
        let s = DecisionSpace::builder(&ds, [1.2, 0.1, 5.0, 36.5, 900.0, 1.0])
            .fix(Control::PyruvateFeed)
            .ramp_limit(Control::GlucoseSetpoint, 0.0)
            .build()
            .unwrap();
        assert_eq!(
            s.free_controls(),
            &[
                Control::PerfusionRate,
                Control::BleedRate,
                Control::Agitation
            ]
        );
        let c = s.to_controls(&[0.3, 0.7, 0.9]).unwrap();
        assert!(
            (c[2] - 5.0).abs() < 1e-15 && (c[3] - 36.5).abs() < 1e-15 && (c[5] - 1.0).abs() < 1e-15
        );
        let b = s
            .to_controls_batch(&[0.3, 0.7, 0.9, 0.1, 0.2, 0.3], 2)
            .unwrap();
        assert_eq!(b.len(), 2);
        assert!(s.to_controls_batch(&[0.3; 4], 2).is_err());
    }

    /// A random design sub-box, current setpoints inside it, ramp limits, fixed flags and a
    /// point of the cube.
    type Scenario = (
        DesignSpace,
        ControlArray<f64>,
        ControlArray<Option<f64>>,
        [bool; 6],
        Vec<f64>,
    );

    fn scenario() -> impl Strategy<Value = Scenario> {
        let box_fracs = proptest::array::uniform6((0.0f64..0.5, 0.5f64..=1.0));
        let cur_fracs = proptest::array::uniform6(0.0f64..=1.0);
        let ramps = proptest::array::uniform6(proptest::option::of(0.0f64..0.5));
        let fixed = proptest::array::uniform6(proptest::bool::weighted(0.2));
        let unit = proptest::collection::vec(0.0f64..=1.0, 6);
        (box_fracs, cur_fracs, ramps, fixed, unit).prop_map(|(bf, cf, rf, fixed, unit)| {
            let mut ds = DS.clone();
            let mut current = [0.0; 6];
            let mut ramp = [None; 6];
            for (i, spec) in DS.controls().iter().enumerate() {
                let w = spec.upper - spec.lower;
                let (lo, hi) = (spec.lower + bf[i].0 * w, spec.lower + bf[i].1 * w);
                ds = ds.with_control_range(spec.control, lo, hi).unwrap();
                current[i] = lo + cf[i] * (hi - lo);
                ramp[i] = rf[i].map(|r| r * w);
            }
            if current[1] > current[0] {
                current[1] = current[0].max(ds.control(Control::BleedRate).lower);
            }
            (ds, current, ramp, fixed, unit)
        })
    }

    proptest! {
        #[test]
        fn every_cube_point_maps_inside_the_design_space((ds, current, ramp, fixed, unit) in scenario()) {
            // the current setpoints may violate bleed ≤ perfusion only when the boxes force it
            prop_assume!(current[B] <= current[P]);
            let mut builder = DecisionSpace::builder(&ds, current).ramp_limits(ramp);
            for (i, f) in fixed.iter().enumerate() {
                if *f {
                    builder = builder.fix(Control::ALL[i]);
                }
            }
            let space = builder.build().unwrap(); // the current setpoints are admissible
            let u = &unit[..space.dim()];
            let c = space.to_controls(u).unwrap();
            prop_assert!(ds.check_setpoints(&c).is_empty(), "{c:?} violates {:?}", ds.check_setpoints(&c));
            prop_assert!(c[B] <= c[P]);
            for i in 0..6 {
                if fixed[i] {
                    prop_assert!((c[i] - current[i]).abs() <= 0.0);
                }
                if let Some(r) = ramp[i] {
                    prop_assert!((c[i] - current[i]).abs() <= r * (1.0 + 1e-12) + 1e-12, "control {i}: {} vs {} ± {r}", c[i], current[i]);
                }
            }
            // round trip on the coordinates that move the setpoints
            let back = space.to_unit(&c).unwrap();
            prop_assert_eq!(back.len(), u.len());
            let back_c = space.to_controls(&back).unwrap();
            for i in 0..6 {
                prop_assert!((back_c[i] - c[i]).abs() <= 1e-12 * c[i].abs().max(1.0));
            }
            // the current setpoints are in the space
            prop_assert!(space.to_unit(&current).is_ok());
        }
    }
}
