//! Forecast scores: rRMSE against the noise-free truth, coverage, sharpness and CRPS against
//! the noisy measurements.
//!
//! * **rRMSE** of species `k` at a horizon: RMSE of the forecast mean of the *state* against
//!   the reference (the simulator's noise-free state; on real data the observations, and the
//!   report says so), divided by the mean reference value of `k` over the scored forecasts,
//!   in %. The headline is the mean over the species whose mean reference value exceeds 1 %
//!   of their upper measurement bound (so pyruvate without feed is excluded).
//! * **Coverage** of the 90 % and 80 % bands of the *measured value*: the fraction of
//!   measurements inside `[q05, q95]` and `[q10, q90]`, pooled over the headline species.
//! * **Sharpness** (90 %): mean band width divided by `3.29 × RMSE` of the forecast mean
//!   against the measurements, per species, averaged over the headline species. A calibrated
//!   Gaussian forecast gives 1.0; above 1.5 the bands are too wide for their errors.
//! * **CRPS**: the fair (unbiased) ensemble estimator (Gneiting & Raftery 2007; Ferro 2014),
//!   `mean|X − y| − Σ_{i≠j}|X_i − X_j| / (2 m (m − 1))`, over the measured-value ensemble,
//!   divided (like the rRMSE) by the species' mean reference value, in %, averaged over the
//!   headline species.

use perfusio_core::{N_SPECIES, Species, SpeciesArray};
use serde::{Deserialize, Serialize};

/// Width of a central 90 % Gaussian interval in standard deviations (`2 × 1.645`).
pub const WIDTH90_SD: f64 = 3.289_707_253_902_944;

/// Scores of one model at one horizon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HorizonScore {
    /// rRMSE per species, % (`None` when nothing was scored for it).
    pub rrmse: SpeciesArray<Option<f64>>,
    /// Mean rRMSE over the headline species, %.
    pub rrmse_mean: f64,
    /// Species in the headline.
    pub headline: Vec<Species>,
    /// Coverage of the 90 % band (fraction).
    pub coverage90: f64,
    /// Coverage of the 80 % band (fraction).
    pub coverage80: f64,
    /// Sharpness of the 90 % band (1.0 = calibrated Gaussian).
    pub sharpness90: f64,
    /// Relative fair CRPS, %.
    pub crps: f64,
    /// Per species: coverage of the 90 % band (`None` without measurements).
    pub coverage90_by_species: SpeciesArray<Option<f64>>,
    /// Per species: sharpness of the 90 % band.
    pub sharpness90_by_species: SpeciesArray<Option<f64>>,
    /// Per species: relative fair CRPS, %.
    pub crps_by_species: SpeciesArray<Option<f64>>,
    /// Forecasts scored.
    pub n_forecasts: usize,
    /// Measurements scored (coverage, sharpness, CRPS).
    pub n_measurements: usize,
}

/// Accumulates forecasts of one model at one horizon.
#[derive(Debug, Clone, Default)]
pub struct ScoreAccumulator {
    ref_sq_err: [f64; N_SPECIES],
    ref_sum: [f64; N_SPECIES],
    ref_n: [usize; N_SPECIES],
    meas_n: [usize; N_SPECIES],
    meas_sq_err: [f64; N_SPECIES],
    in90: [usize; N_SPECIES],
    in80: [usize; N_SPECIES],
    width90: [f64; N_SPECIES],
    crps: [f64; N_SPECIES],
    forecasts: usize,
}

/// One forecast day of one species, as scored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredPoint<'a> {
    /// Forecast mean of the state.
    pub state_mean: f64,
    /// Forecast mean of the measured value.
    pub measured_mean: f64,
    /// Measured-value quantiles at 5, 10, 50, 90, 95 %.
    pub quantiles: [f64; 5],
    /// Measured-value ensemble (for the CRPS); may be empty.
    pub ensemble: &'a [f64],
}

/// The fair CRPS of an ensemble against an observation.
///
/// ```
/// // one member: the absolute error
/// assert!((perfusio_hybrid::metrics::crps_fair(&[2.0, 2.0], 3.0) - 1.0).abs() < 1e-12);
/// ```
pub fn crps_fair(ensemble: &[f64], y: f64) -> f64 {
    let m = ensemble.len();
    if m < 2 {
        return ensemble.first().map_or(f64::NAN, |x| (x - y).abs());
    }
    let mut sorted = ensemble.to_vec();
    sorted.sort_by(f64::total_cmp);
    let term1 = sorted.iter().map(|x| (x - y).abs()).sum::<f64>() / m as f64;
    // Σ_{i<j} (x_j − x_i) for sorted data = Σ_i x_i (2i − m + 1)
    let pair_sum: f64 = sorted
        .iter()
        .enumerate()
        .map(|(i, x)| x * (2.0 * i as f64 - m as f64 + 1.0))
        .sum();
    term1 - pair_sum / (m as f64 * (m as f64 - 1.0))
}

impl ScoreAccumulator {
    /// Adds one forecast: per species the scored point, the reference value (noise-free
    /// truth, or the observation on real data) and the measurement (if one was taken).
    pub fn add(
        &mut self,
        points: &SpeciesArray<ScoredPoint<'_>>,
        reference: &SpeciesArray<Option<f64>>,
        measured: &SpeciesArray<Option<f64>>,
    ) {
        self.forecasts += 1;
        for k in 0..N_SPECIES {
            let p = &points[k];
            if let Some(r) = reference[k] {
                self.ref_sq_err[k] += (p.state_mean - r).powi(2);
                self.ref_sum[k] += r;
                self.ref_n[k] += 1;
            }
            if let Some(y) = measured[k] {
                self.meas_n[k] += 1;
                self.meas_sq_err[k] += (p.measured_mean - y).powi(2);
                let q = p.quantiles;
                if y >= q[0] && y <= q[4] {
                    self.in90[k] += 1;
                }
                if y >= q[1] && y <= q[3] {
                    self.in80[k] += 1;
                }
                self.width90[k] += q[4] - q[0];
                if !p.ensemble.is_empty() {
                    self.crps[k] += crps_fair(p.ensemble, y);
                }
            }
        }
    }

    /// The scores; `None` when no forecast was added.
    pub fn finish(&self) -> Option<HorizonScore> {
        if self.forecasts == 0 {
            return None;
        }
        let rrmse: SpeciesArray<Option<f64>> = std::array::from_fn(|k| {
            let n = self.ref_n[k];
            let mean = self.ref_sum[k] / n as f64;
            (n > 0 && mean > 0.0).then(|| 100.0 * (self.ref_sq_err[k] / n as f64).sqrt() / mean)
        });
        let headline: Vec<Species> = Species::ALL
            .into_iter()
            .filter(|s| {
                let k = s.index();
                self.ref_n[k] > 0
                    && self.ref_sum[k] / self.ref_n[k] as f64 > 0.01 * s.bounds().upper
            })
            .collect();
        let sharp_k = |k: usize| {
            let m = self.meas_n[k];
            let rmse = (self.meas_sq_err[k] / m as f64).sqrt();
            (m > 0 && rmse > 0.0).then(|| self.width90[k] / m as f64 / (WIDTH90_SD * rmse))
        };
        let crps_k = |k: usize| {
            let m = self.meas_n[k];
            let mean = self.ref_sum[k] / self.ref_n[k] as f64;
            (m > 0 && self.ref_n[k] > 0 && mean > 0.0)
                .then(|| 100.0 * self.crps[k] / m as f64 / mean)
        };
        let avg = |f: &dyn Fn(usize) -> Option<f64>| {
            let v: Vec<f64> = headline.iter().filter_map(|s| f(s.index())).collect();
            if v.is_empty() {
                f64::NAN
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        let rrmse_mean = avg(&|k| rrmse[k]);
        let (mut n, mut c90, mut c80) = (0usize, 0usize, 0usize);
        for s in &headline {
            let k = s.index();
            n += self.meas_n[k];
            c90 += self.in90[k];
            c80 += self.in80[k];
        }
        let frac = |c: usize| {
            if n == 0 {
                f64::NAN
            } else {
                c as f64 / n as f64
            }
        };
        let sharpness90 = avg(&sharp_k);
        let crps = avg(&crps_k);
        Some(HorizonScore {
            rrmse,
            rrmse_mean,
            headline,
            coverage90: frac(c90),
            coverage80: frac(c80),
            sharpness90,
            crps,
            coverage90_by_species: std::array::from_fn(|k| {
                (self.meas_n[k] > 0).then(|| self.in90[k] as f64 / self.meas_n[k] as f64)
            }),
            sharpness90_by_species: std::array::from_fn(sharp_k),
            crps_by_species: std::array::from_fn(crps_k),
            n_forecasts: self.forecasts,
            n_measurements: n,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use rand_distr::StandardNormal;

    #[test]
    fn crps_fair_matches_the_pairwise_definition() {
        let e: [f64; 5] = [0.3, -1.2, 2.5, 0.0, 0.7];
        let y: f64 = 0.4;
        let m = e.len() as f64;
        let t1: f64 = e.iter().map(|x| (x - y).abs()).sum::<f64>() / m;
        let mut t2 = 0.0;
        for a in &e {
            for b in &e {
                t2 += (a - b).abs();
            }
        }
        let want = t1 - t2 / (2.0 * m * (m - 1.0));
        assert_relative_eq!(crps_fair(&e, y), want, epsilon = 1e-14);
    }

    #[test]
    fn crps_of_a_large_gaussian_ensemble_approaches_the_closed_form() {
        // CRPS(N(0,1), 0) = 2φ(0) − 1/√π = (√2 − 1)/√π
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let e: Vec<f64> = (0..20_000).map(|_| rng.sample(StandardNormal)).collect();
        let want = (2f64.sqrt() - 1.0) / std::f64::consts::PI.sqrt();
        assert_relative_eq!(crps_fair(&e, 0.0), want, max_relative = 0.02);
    }

    #[test]
    fn calibrated_gaussian_forecasts_score_as_calibrated() {
        // forecasts N(μ, σ²) of observations y ~ N(μ, σ²): coverage ≈ nominal, sharpness ≈ 1
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut acc = ScoreAccumulator::default();
        let sigma = 2.0;
        let z = crate::stats::Z_QUANTILES;
        for _ in 0..4000 {
            let mu = 100.0;
            let q = z.map(|zq| mu + zq * sigma);
            let pts: SpeciesArray<ScoredPoint<'_>> = std::array::from_fn(|_| ScoredPoint {
                state_mean: mu,
                measured_mean: mu,
                quantiles: q,
                ensemble: &[],
            });
            let meas: SpeciesArray<Option<f64>> = std::array::from_fn(|k| {
                let e: f64 = rng.sample(StandardNormal);
                (k == 0 || k == 8).then_some(mu + sigma * e)
            });
            let truth: SpeciesArray<Option<f64>> =
                std::array::from_fn(|k| (k == 0 || k == 8).then_some(mu));
            acc.add(&pts, &truth, &meas);
        }
        let s = acc.finish().unwrap();
        assert_eq!(s.headline, vec![Species::VCD, Species::Titer]);
        assert!((s.coverage90 - 0.90).abs() < 0.015, "{}", s.coverage90);
        assert!((s.coverage80 - 0.80).abs() < 0.02, "{}", s.coverage80);
        assert!((s.sharpness90 - 1.0).abs() < 0.03, "{}", s.sharpness90);
        assert_relative_eq!(s.rrmse_mean, 0.0);
    }

    #[test]
    fn rrmse_is_relative_to_the_mean_truth() {
        let mut acc = ScoreAccumulator::default();
        let q = [0.0; 5];
        for (f, t) in [(11.0, 10.0), (9.0, 10.0), (21.0, 20.0), (19.0, 20.0)] {
            let pts: SpeciesArray<ScoredPoint<'_>> = std::array::from_fn(|_| ScoredPoint {
                state_mean: f,
                measured_mean: f,
                quantiles: q,
                ensemble: &[],
            });
            let truth: SpeciesArray<Option<f64>> = std::array::from_fn(|k| (k == 0).then_some(t));
            acc.add(&pts, &truth, &[None; N_SPECIES]);
        }
        let s = acc.finish().unwrap();
        // RMSE 1 over mean truth 15
        assert_relative_eq!(s.rrmse[0].unwrap(), 100.0 / 15.0, epsilon = 1e-12);
        assert_eq!(s.headline, vec![Species::VCD]);
    }
}
