//! The model's coordinates: shifted logarithms of the species.
//!
//! Every species is modelled as `z = ln(s + c)` with a small per-species offset `c`. Three
//! reasons:
//!
//! * **Measurement noise is multiplicative** (a constant CV per assay), so in `z` it is close
//!   to homoscedastic: `sd(z) ≈ cv · s/(s + c)`. The GP's per-task noise model (one variance
//!   per species) is then right, instead of being dominated by the largest values of a run.
//! * **Mechanistic errors are relative.** A growth rate that is 10 % off gives errors that
//!   grow with the cell density; in `z` they are a near-constant shift that a GP learns from
//!   few points, so its prior variance (and the forecast band) is not set by the largest
//!   residual of the run.
//! * **Positivity comes free.** `s = e^z − c ≥ −c` is clipped at 0, and viability at 100 %.
//!
//! The offsets sit near the resolution of the assays (well below the values a culture
//! shows), so that a species at zero (titer on day 0, pyruvate without feed) stays finite.

use perfusio_core::{Species, SpeciesArray};
use serde::{Deserialize, Serialize};

/// Default offsets `c` of `z = ln(s + c)`, canonical species order, in each species' unit:
/// VCD 0.2e6 cells/mL, Via 1 %, Glc 0.02 g/L, Gln 0.05, Glu 0.02, Lac 1, Amm 0.1, Pyr 0.05
/// mmol/L, Titer 5 mg/L. Each is a few per cent of the values the species shows in culture,
/// except glucose, whose depletion range (below 0.1 g/L) drives the lactate switch and must
/// stay resolved. Below its offset a species' differences stop mattering: lactate at 0.01 or
/// 0.1 mmol/L is the same culture.
pub const DEFAULT_OFFSETS: SpeciesArray<f64> = [0.2, 1.0, 0.02, 0.05, 0.02, 1.0, 0.1, 0.05, 5.0];

/// Default upper ends of the species: their plausible measurement ranges
/// (`Species::bounds`). A state beyond them is physically implausible, so forecasts and the
/// filter never go there: it keeps an unobserved species from drifting without limit where a
/// model extrapolates.
pub fn default_upper() -> SpeciesArray<f64> {
    Species::ALL.map(|s| s.bounds().upper)
}

/// The species transform `z = ln(s + c)` and its inverse.
///
/// ```
/// use perfusio_hybrid::LogTransform;
/// let t = LogTransform::default();
/// let s = [10.0, 95.0, 3.0, 2.0, 1.0, 20.0, 4.0, 0.0, 400.0];
/// let back = t.to_species(&t.to_z(&s));
/// for (a, b) in back.iter().zip(&s) {
///     assert!((a - b).abs() < 1e-9 * b.max(1.0));
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LogTransform {
    /// Offset of each species (positive).
    pub offsets: SpeciesArray<f64>,
    /// Largest value of each species (default: the plausible measurement range,
    /// [`default_upper`]).
    pub upper: SpeciesArray<f64>,
}

impl Default for LogTransform {
    fn default() -> Self {
        Self {
            offsets: DEFAULT_OFFSETS,
            upper: default_upper(),
        }
    }
}

impl LogTransform {
    /// `z` of one species value (negative values count as 0).
    pub fn z(&self, species: usize, s: f64) -> f64 {
        (s.max(0.0) + self.offsets[species]).ln()
    }

    /// Species value of one `z`, clipped to `[0, upper]` (viability at most 100 %).
    pub fn s(&self, species: usize, z: f64) -> f64 {
        (z.exp() - self.offsets[species]).clamp(0.0, self.upper[species])
    }

    /// `∂s/∂z = e^z` (before clipping).
    pub fn ds_dz(&self, z: f64) -> f64 {
        z.exp()
    }

    /// Transforms a whole state.
    pub fn to_z(&self, s: &SpeciesArray<f64>) -> SpeciesArray<f64> {
        std::array::from_fn(|k| self.z(k, s[k]))
    }

    /// Back-transforms a whole state.
    pub fn to_species(&self, z: &SpeciesArray<f64>) -> SpeciesArray<f64> {
        std::array::from_fn(|k| self.s(k, z[k]))
    }

    /// Largest `z` a species can take, `ln(upper + c)` (viability: 100 %).
    pub fn z_max(&self, species: usize) -> f64 {
        (self.upper[species] + self.offsets[species]).ln()
    }

    /// Smallest `z` a species can take, `ln c` (the species at 0).
    pub fn z_min(&self, species: usize) -> f64 {
        self.offsets[species].ln()
    }

    /// Largest variance a `z` clamped to `[z_min, z_max]` can have, `((z_max − z_min)/2)²`
    /// (Popoviciu's inequality).
    pub fn max_var_z(&self, species: usize) -> f64 {
        (0.5 * (self.z_max(species) - self.z_min(species))).powi(2)
    }

    /// Clamps a state in `z` to the physical range `[0, upper]` of every species.
    pub fn clamp_z(&self, z: &mut SpeciesArray<f64>) {
        for (k, v) in z.iter_mut().enumerate() {
            *v = v.clamp(self.z_min(k), self.z_max(k));
        }
    }

    /// Standard deviation in `z` of a measurement with coefficient of variation `cv` of a
    /// species whose true value is `s`: `cv · s / (s + c)` (first order), floored at
    /// `1e-3` so that a species at zero is not treated as exactly known.
    pub fn measurement_sd_z(&self, species: usize, s: f64, cv: f64) -> f64 {
        let s = s.max(0.0);
        (cv * s / (s + self.offsets[species])).max(1e-3)
    }

    /// `(lo, hi)` of `z` over a species' plausible measurement range `[lower, upper]`.
    pub fn z_bounds(&self, species: usize, lower: f64, upper: f64) -> (f64, f64) {
        (self.z(species, lower), self.z(species, upper))
    }

    /// Checks that every offset is finite and positive, every upper end finite and positive,
    /// and viability's upper end at most 100 %.
    pub fn check(&self) -> Result<(), crate::HybridError> {
        for (k, (c, u)) in self.offsets.iter().zip(&self.upper).enumerate() {
            if !(c.is_finite() && *c > 0.0) {
                return Err(crate::HybridError::Config(format!(
                    "offset of {} must be finite and > 0, got {c}",
                    Species::ALL[k]
                )));
            }
            if !(u.is_finite() && *u > 0.0) || (k == Species::Via.index() && *u > 100.0) {
                return Err(crate::HybridError::Config(format!(
                    "upper end of {} must be finite and > 0 (viability at most 100), got {u}",
                    Species::ALL[k]
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use perfusio_core::N_SPECIES;

    #[test]
    fn clipping_and_caps() {
        let t = LogTransform::default();
        assert_relative_eq!(t.s(0, t.z(0, -5.0)), 0.0);
        assert_relative_eq!(t.s(1, 10.0), 100.0);
        let mut z = [50.0; N_SPECIES];
        t.clamp_z(&mut z);
        assert_relative_eq!(t.s(1, z[1]), 100.0, max_relative = 1e-12);
        let mut z = [-50.0; N_SPECIES];
        t.clamp_z(&mut z);
        for k in 0..N_SPECIES {
            assert_relative_eq!(t.s(k, z[k]), 0.0);
        }
    }

    #[test]
    fn measurement_sd_matches_delta_method() {
        let t = LogTransform::default();
        // far above the offset the log-sd equals the CV
        assert_relative_eq!(t.measurement_sd_z(8, 500.0, 0.08), 0.08 * 500.0 / 505.0);
        // at zero the floor applies
        assert_relative_eq!(t.measurement_sd_z(7, 0.0, 0.07), 1e-3);
    }
}
