//! The measurement-noise model of the virtual reactor.

use perfusio_core::{
    CultureDay, Derived, N_DERIVED, N_SPECIES, Sample, Species, SpeciesArray,
    mean_cell_diameter_um, viable_cell_volume_percent,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use crate::error::{MechError, Result};

/// Multiplicative Gaussian measurement noise with random missing values:
/// `y = max(x + N(0, (cv·x)²), 0)`, viability also capped at 100 %, and each
/// (variable, day) missing with probability `missing_prob`.
///
/// Draws are deterministic for `(seed, day)`: the stream is a ChaCha8 generator seeded with
/// `seed` on stream number `day`, and every variable consumes the same two draws whether or
/// not it ends up missing, so reading a day twice returns identical values.
///
/// ```
/// use perfusio_core::Species;
/// use perfusio_mechanistic::{initial_state, NoiseModel};
/// let noise = NoiseModel::default();
/// let a = noise.sample(3, &initial_state(), 7);
/// assert_eq!(a, noise.sample(3, &initial_state(), 7));        // same (seed, day)
/// let clean = NoiseModel::none().sample(3, &initial_state(), 7);
/// assert_eq!(clean.get(Species::VCD), Some(1.0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NoiseModel {
    /// Coefficient of variation of each species, canonical order.
    pub cv: SpeciesArray<f64>,
    /// Coefficients of variation of the derived variables `[VCV, Diam]`.
    pub derived_cv: [f64; N_DERIVED],
    /// Probability that a value is missing.
    pub missing_prob: f64,
}

impl Default for NoiseModel {
    /// The noise of `docs/plant-model.md`: CV 5 % VCD, 2 % Via, 7 % metabolites, 8 % titer,
    /// 5 % VCV, 3 % Diam; 5 % missing.
    fn default() -> Self {
        Self {
            cv: [0.05, 0.02, 0.07, 0.07, 0.07, 0.07, 0.07, 0.07, 0.08],
            derived_cv: [0.05, 0.03],
            missing_prob: 0.05,
        }
    }
}

impl NoiseModel {
    /// No noise and nothing missing: samples are the clean state.
    pub fn none() -> Self {
        Self {
            cv: [0.0; N_SPECIES],
            derived_cv: [0.0; N_DERIVED],
            missing_prob: 0.0,
        }
    }

    /// `true` when samples equal the clean state.
    pub fn is_none(&self) -> bool {
        self.missing_prob <= 0.0 && self.cv.iter().chain(&self.derived_cv).all(|c| *c <= 0.0)
    }

    /// Checks that CVs are finite and non-negative and the missing probability is in [0, 1].
    pub fn check(&self) -> Result<()> {
        if let Some(cv) = self
            .cv
            .iter()
            .chain(&self.derived_cv)
            .find(|c| !(c.is_finite() && **c >= 0.0))
        {
            return Err(MechError::arg("noise cv", cv, "must be finite and >= 0"));
        }
        if !(0.0..=1.0).contains(&self.missing_prob) {
            return Err(MechError::arg(
                "missing_prob",
                self.missing_prob,
                "must be a probability in [0, 1]",
            ));
        }
        Ok(())
    }

    /// A noisy [`Sample`] of the clean state `clean` on `day`, with VCV and Diam in
    /// `Sample::derived` (computed from the clean state, then noised with their own CVs).
    /// Deterministic for `(seed, day)`.
    pub fn sample(&self, day: CultureDay, clean: &SpeciesArray<f64>, seed: u64) -> Sample {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(u64::from(day));
        let mut s = Sample::new(day);
        for sp in Species::ALL {
            let x = clean[sp.index()];
            let cap = if sp == Species::Via {
                100.0
            } else {
                f64::INFINITY
            };
            s.species[sp.index()] = self.draw(&mut rng, x, self.cv[sp.index()], cap);
        }
        let via = clean[Species::Via.index()];
        let derived_clean = [
            viable_cell_volume_percent(clean[Species::VCD.index()], via),
            mean_cell_diameter_um(via),
        ];
        for d in Derived::ALL {
            let i = d.index();
            s.derived[i] = self.draw(
                &mut rng,
                derived_clean[i],
                self.derived_cv[i],
                f64::INFINITY,
            );
        }
        s
    }

    fn draw(&self, rng: &mut ChaCha8Rng, x: f64, cv: f64, cap: f64) -> Option<f64> {
        let u: f64 = rng.random();
        let z: f64 = rng.sample(StandardNormal);
        if u < self.missing_prob {
            return None;
        }
        Some((x + z * cv * x.abs()).max(0.0).min(cap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state far from the bounds (viability 80 % so that the 100 % cap is 10 sd away).
    const STATE: SpeciesArray<f64> = [12.0, 80.0, 3.0, 2.0, 1.0, 15.0, 4.0, 1.5, 500.0];

    #[test]
    fn empirical_cv_and_missing_rate_match_the_spec() {
        let noise = NoiseModel::default();
        let n_draws = 6000u32;
        let mut sum = [0.0; 11];
        let mut sum2 = [0.0; 11];
        let mut count = [0usize; 11];
        let mut missing = 0usize;
        let via = STATE[1];
        let clean_derived = [
            viable_cell_volume_percent(STATE[0], via),
            mean_cell_diameter_um(via),
        ];
        for k in 0..n_draws {
            // vary both the seed and the day
            let s = noise.sample(k % 40, &STATE, 1000 + u64::from(k / 40));
            let vals = s.species.iter().chain(s.derived.iter());
            for (i, v) in vals.enumerate() {
                let x = if i < 9 {
                    STATE[i]
                } else {
                    clean_derived[i - 9]
                };
                match v {
                    Some(y) => {
                        let r = y / x - 1.0;
                        sum[i] += r;
                        sum2[i] += r * r;
                        count[i] += 1;
                    }
                    None => missing += 1,
                }
            }
        }
        let cvs: Vec<f64> = noise.cv.iter().chain(&noise.derived_cv).copied().collect();
        for i in 0..11 {
            let n = count[i] as f64;
            let mean = sum[i] / n;
            let sd = (sum2[i] / n - mean * mean).sqrt();
            assert!(
                (sd / cvs[i] - 1.0).abs() < 0.10,
                "variable {i}: empirical cv {sd} vs {}",
                cvs[i]
            );
            assert!(
                mean.abs() < 4.0 * cvs[i] / n.sqrt() + 1e-12,
                "variable {i}: bias {mean}"
            );
        }
        let rate = missing as f64 / (11.0 * f64::from(n_draws));
        assert!((rate - 0.05).abs() < 0.01, "missing rate {rate}");
    }

    #[test]
    fn clipping_and_viability_cap() {
        let noise = NoiseModel {
            cv: [3.0; 9],
            derived_cv: [3.0; 2],
            missing_prob: 0.0,
        };
        let mut zeros = 0;
        for day in 0..200 {
            let s = noise.sample(day, &[1.0, 99.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], 3);
            for v in s.species.iter().flatten() {
                assert!(*v >= 0.0);
                if *v == 0.0 {
                    zeros += 1;
                }
            }
            assert!(s.get(Species::Via).unwrap() <= 100.0);
        }
        assert!(
            zeros > 100,
            "with cv 3 many draws are clipped at 0 ({zeros})"
        );
    }

    #[test]
    fn determinism_and_independence() {
        let noise = NoiseModel::default();
        let a = noise.sample(5, &STATE, 11);
        assert_eq!(a, noise.sample(5, &STATE, 11));
        assert_ne!(a, noise.sample(6, &STATE, 11));
        assert_ne!(a, noise.sample(5, &STATE, 12));
        assert!(NoiseModel::default().check().is_ok());
        assert!(
            NoiseModel {
                missing_prob: 1.5,
                ..NoiseModel::default()
            }
            .check()
            .is_err()
        );
        assert!(NoiseModel::none().is_none());
        assert!(!NoiseModel::default().is_none());
    }
}
