//! Multi-day forecasts from the filtered state of the real current day, under a daily
//! control schedule (the setpoints of day `d` act over `d → d + 1`).
//!
//! * **Monte Carlo** ([`ForecastMethod::MonteCarlo`]): `S` seeded paths. Each path starts
//!   from a draw of the filtered state; each day it draws the next state jointly across the
//!   nine species from the model's latent transition (mean and 9×9 covariance at that path's
//!   state), so the next step is conditioned on the drawn state. Independent draws per step
//!   treat the GP's uncertainty as independent from day to day (the usual approximation of
//!   iterated GP forecasts).
//! * **Moment matching** ([`ForecastMethod::MomentMatching`]): the Gaussian in `z` is
//!   propagated through the linearised transition, `μ' = m(μ)`,
//!   `Σ' = J Σ Jᵀ + C(μ)`, with `J` the Jacobian of mechanism + GP mean with respect to the
//!   state and `C(μ)` the latent transition covariance at the mean. This is the first-order
//!   (Taylor) approximation of Girard et al. (2003, NeurIPS, "Gaussian process priors with
//!   uncertain inputs — application to multiple-step ahead time series forecasting"): the
//!   mean ignores the curvature of the transition and the GP's variance is taken at the
//!   mean input, without the expected-variance correction of the exact moments.
//!
//! Both keep every state non-negative and viability at most 100 % (the log coordinates
//! guarantee the first, clamping the second), and derive VCV and Diam as `perfusio-core`
//! defines them. Bands are reported twice: for the latent state (what the objective of the
//! design policy uses) and for the measured value (measurement noise added: what a sample
//! will show, and what coverage is scored against).

use std::borrow::Cow;

use perfusio_core::{ControlArray, Derived, N_SPECIES, SpeciesArray};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use crate::dataset::N_BASE;
use crate::error::{HybridError, Result};
use crate::filter::StateEstimate;
use crate::model::{HybridModel, Transition, lognormal_summary};
use crate::stats::{
    Mat9, Q_LEVELS, cholesky9, lower_mul, mean_sd, quantile_sorted, sandwich, symmetrise,
};

/// How a forecast propagates uncertainty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForecastMethod {
    /// Seeded Monte-Carlo paths (returns the paths).
    #[default]
    MonteCarlo,
    /// Linearised moment propagation.
    MomentMatching,
}

impl std::str::FromStr for ForecastMethod {
    type Err = HybridError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "mc" | "monte_carlo" | "monte-carlo" => Ok(Self::MonteCarlo),
            "mm" | "moment_matching" | "moment-matching" => Ok(Self::MomentMatching),
            other => Err(HybridError::Config(format!(
                "unknown forecast method {other:?}; use mc or mm"
            ))),
        }
    }
}

impl ForecastMethod {
    /// Name used in reports and audit records.
    pub fn name(self) -> &'static str {
        match self {
            Self::MonteCarlo => "monte_carlo",
            Self::MomentMatching => "moment_matching",
        }
    }
}

/// Options of [`HybridModel::forecast`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecastOptions {
    /// Propagation method.
    pub method: ForecastMethod,
    /// Monte-Carlo paths (also the draws used to derive VCV and Diam bands under moment
    /// matching).
    pub paths: usize,
    /// Seed of every random draw.
    pub seed: u64,
    /// Keep the Monte-Carlo paths in the result.
    pub keep_paths: bool,
    /// Threads for the transitions: Monte Carlo's (results do not depend on it) and each
    /// day's batch of [`HybridModel::forecast_many`] under moment matching (results equal
    /// up to the summation order of the batched products).
    pub threads: usize,
}

impl Default for ForecastOptions {
    fn default() -> Self {
        Self {
            method: ForecastMethod::MonteCarlo,
            paths: 256,
            seed: 0,
            keep_paths: true,
            threads: 2,
        }
    }
}

/// Monte-Carlo scenarios from [`HybridModel::sample_paths`], original units.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenarios {
    /// The drawn state of the start day, one per path.
    pub initial: Vec<SpeciesArray<f64>>,
    /// Latent state paths, `latent[p][h]` on day `start + 1 + h`.
    pub latent: Vec<Vec<SpeciesArray<f64>>>,
    /// Measured-value paths (latent plus measurement noise), same layout.
    pub measured: Vec<Vec<SpeciesArray<f64>>>,
}

/// One forecast of a batch ([`HybridModel::forecast_many`]).
#[derive(Debug, Clone, Copy)]
pub struct ForecastJob<'a> {
    /// The filtered estimate to start from.
    pub start: &'a StateEstimate,
    /// The daily controls (`schedule[h]` over `start + h → start + h + 1`).
    pub schedule: &'a [ControlArray<f64>],
    /// Seed of this forecast's draws (replaces [`ForecastOptions::seed`]).
    pub seed: u64,
}

/// Distribution of every species (and VCV, Diam) on one forecast day, original units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DayBand {
    /// Culture day.
    pub day: u32,
    /// Mean.
    pub mean: SpeciesArray<f64>,
    /// Standard deviation.
    pub sd: SpeciesArray<f64>,
    /// Quantiles at [`crate::Q_LEVELS`] (5, 10, 50, 90, 95 %), one array per level.
    pub quantiles: [SpeciesArray<f64>; 5],
    /// Quantiles of the derived variables `[VCV, Diam]` at the same levels.
    pub derived: [[f64; 5]; 2],
}

/// A multi-day forecast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    /// Day the forecast starts from (the filtered state's day).
    pub start_day: u32,
    /// Method used.
    pub method: ForecastMethod,
    /// Controls of each forecast day (`schedule[h]` over `start + h → start + h + 1`).
    pub schedule: Vec<ControlArray<f64>>,
    /// The latent (true) state on days `start + 1 ..= start + H`.
    pub state: Vec<DayBand>,
    /// The measured value on the same days (measurement noise included).
    pub measured: Vec<DayBand>,
    /// Monte-Carlo paths of the latent state, `paths[p][h]` on day `start + 1 + h`
    /// (original units), when kept.
    pub paths: Option<Vec<Vec<SpeciesArray<f64>>>>,
    /// Monte-Carlo paths of the measured value (same layout), when kept.
    pub measured_paths: Option<Vec<Vec<SpeciesArray<f64>>>>,
    /// Moment matching: mean and covariance of the latent `z` on each day.
    pub moments: Option<Vec<(SpeciesArray<f64>, Mat9)>>,
    /// Moment matching: mean and covariance of the measured `z` on each day.
    pub measured_moments: Option<Vec<(SpeciesArray<f64>, Mat9)>>,
    /// The model's species coordinates.
    pub transform: crate::LogTransform,
}

impl Forecast {
    /// Forecast horizon in days.
    pub fn horizon(&self) -> usize {
        self.state.len()
    }

    /// An ensemble of the measured value of every species on forecast day index `h`
    /// (day `start + 1 + h`): the Monte-Carlo measured paths, or `n` seeded draws from the
    /// moment-matched Gaussian (`n` = 256). Empty when neither was kept.
    pub fn measured_ensemble(&self, h: usize, seed: u64) -> SpeciesArray<Vec<f64>> {
        if let Some(paths) = &self.measured_paths {
            return std::array::from_fn(|k| {
                paths
                    .iter()
                    .filter_map(|p| p.get(h).map(|s| s[k]))
                    .collect()
            });
        }
        let Some((mu, cov)) = self.measured_moments.as_ref().and_then(|m| m.get(h)) else {
            return std::array::from_fn(|_| Vec::new());
        };
        let Some(l) = cholesky9(cov) else {
            return std::array::from_fn(|_| Vec::new());
        };
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut out: SpeciesArray<Vec<f64>> = std::array::from_fn(|_| Vec::with_capacity(256));
        for _ in 0..256 {
            let e = lower_mul(&l, &normal9(&mut rng));
            for k in 0..N_SPECIES {
                out[k].push(self.transform.s(k, mu[k] + e[k]));
            }
        }
        out
    }

    /// Draws of the latent state on every forecast day, `draws[p][h]` on day
    /// `start + 1 + h` (original units): the Monte-Carlo paths when kept, else `n` seeded
    /// draws from each day's moment-matched Gaussian. A moment-matched forecast has no joint
    /// law across days, so its draws are per-day marginals (each day drawn independently):
    /// use them for what looks at one day at a time (bands, alarm probabilities), never as
    /// trajectories. Empty when the forecast kept neither. The kept paths are borrowed,
    /// not copied.
    pub fn latent_draws(&self, n: usize, seed: u64) -> Cow<'_, [Vec<SpeciesArray<f64>>]> {
        if let Some(paths) = self.paths.as_ref().filter(|p| !p.is_empty()) {
            return Cow::Borrowed(paths.as_slice());
        }
        let Some(moments) = &self.moments else {
            return Cow::Owned(Vec::new());
        };
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut out: Vec<Vec<SpeciesArray<f64>>> = vec![Vec::with_capacity(moments.len()); n];
        for (mu, cov) in moments {
            let Some(l) = cholesky9(cov) else {
                return Cow::Owned(Vec::new());
            };
            for path in &mut out {
                let e = lower_mul(&l, &normal9(&mut rng));
                let z: SpeciesArray<f64> = std::array::from_fn(|k| mu[k] + e[k]);
                path.push(self.transform.to_species(&z));
            }
        }
        Cow::Owned(out)
    }

    /// The first `days` days of this forecast (all of it when `days` is not shorter). A
    /// Monte-Carlo forecast draws its paths day by day from one seeded stream, so the first
    /// `days` days of a longer forecast are, bit for bit, the forecast over `days` days with
    /// the same seed and schedule: a caller holding the long one need not compute the short
    /// one (the design policy's final check under the setpoints in force does not).
    pub fn truncated(&self, days: usize) -> Forecast {
        let d = days.min(self.horizon());
        let cut = |paths: &Option<Vec<Vec<SpeciesArray<f64>>>>| {
            paths.as_ref().map(|ps| {
                ps.iter()
                    .map(|p| p[..d.min(p.len())].to_vec())
                    .collect::<Vec<_>>()
            })
        };
        let cut_moments = |m: &Option<Vec<(SpeciesArray<f64>, Mat9)>>| {
            m.as_ref().map(|v| v[..d.min(v.len())].to_vec())
        };
        Forecast {
            start_day: self.start_day,
            method: self.method,
            schedule: self.schedule[..d.min(self.schedule.len())].to_vec(),
            state: self.state[..d].to_vec(),
            measured: self.measured[..d.min(self.measured.len())].to_vec(),
            paths: cut(&self.paths),
            measured_paths: cut(&self.measured_paths),
            moments: cut_moments(&self.moments),
            measured_moments: cut_moments(&self.measured_moments),
            transform: self.transform,
        }
    }
}

fn normal9(rng: &mut ChaCha8Rng) -> [f64; N_SPECIES] {
    std::array::from_fn(|_| rng.sample(StandardNormal))
}

impl HybridModel {
    /// Forecasts `schedule.len()` days from `start` (the filtered estimate of the current
    /// day). See the module docs for the two methods.
    pub fn forecast(
        &self,
        start: &StateEstimate,
        schedule: &[ControlArray<f64>],
        opts: &ForecastOptions,
    ) -> Result<Forecast> {
        check_forecast(schedule, opts)?;
        match opts.method {
            ForecastMethod::MonteCarlo => self.forecast_mc(start, schedule, opts),
            ForecastMethod::MomentMatching => {
                let job = ForecastJob {
                    start,
                    schedule,
                    seed: opts.seed,
                };
                let mut out = self.forecast_mm(&[job], opts)?;
                out.pop()
                    .ok_or_else(|| HybridError::Data("no forecast".into()))
            }
        }
    }

    /// Several forecasts with one model, e.g. every reactor of a campaign: each job's result
    /// as [`HybridModel::forecast`] would give it with the job's seed (a job's error is its
    /// own). Moment matching advances all jobs a day at a time and linearises each day's
    /// steps as one batch ([`HybridModel::linearised_transitions`]), split over
    /// [`ForecastOptions::threads`]; the results equal single forecasts up to the summation
    /// order of the batched products. Monte Carlo runs the jobs one after another.
    pub fn forecast_many(
        &self,
        jobs: &[ForecastJob<'_>],
        opts: &ForecastOptions,
    ) -> Vec<Result<Forecast>> {
        let single = |j: &ForecastJob<'_>| {
            self.forecast(
                j.start,
                j.schedule,
                &ForecastOptions {
                    seed: j.seed,
                    ..opts.clone()
                },
            )
        };
        if opts.method == ForecastMethod::MonteCarlo {
            return jobs.iter().map(single).collect();
        }
        let mut out: Vec<Option<Result<Forecast>>> = jobs
            .iter()
            .map(|j| check_forecast(j.schedule, opts).err().map(Err))
            .collect();
        let valid: Vec<usize> = (0..jobs.len()).filter(|&i| out[i].is_none()).collect();
        let batch: Vec<ForecastJob<'_>> = valid.iter().map(|&i| jobs[i]).collect();
        match self.forecast_mm(&batch, opts) {
            Ok(fs) => {
                for (i, f) in valid.into_iter().zip(fs) {
                    out[i] = Some(Ok(f));
                }
            }
            // one job's failure must not fail the others: each on its own
            Err(_) => {
                for i in valid {
                    out[i] = Some(single(&jobs[i]));
                }
            }
        }
        out.into_iter()
            .map(|f| f.unwrap_or_else(|| Err(HybridError::Data("no forecast".into()))))
            .collect()
    }

    /// Transitions at many inputs on up to `threads` threads (same result for any count).
    pub fn transitions_par(
        &self,
        inputs: &[[f64; N_BASE]],
        threads: usize,
    ) -> Result<Vec<Transition>> {
        if inputs.len() < 16 {
            return self.transitions(inputs);
        }
        in_chunks(inputs, threads, |c| self.transitions(c))
    }

    /// [`HybridModel::transitions_and_inputs`] on up to `threads` threads (results in input
    /// order).
    pub fn transitions_and_inputs_par(
        &self,
        inputs: &[[f64; N_BASE]],
        threads: usize,
    ) -> Result<(Vec<Transition>, Vec<Vec<f64>>)> {
        let pairs = in_chunks(inputs, threads, |c| {
            let (t, x) = self.transitions_and_inputs(c)?;
            Ok(t.into_iter().zip(x).collect::<Vec<_>>())
        })?;
        Ok(pairs.into_iter().unzip())
    }

    /// Monte-Carlo scenarios of the latent state (and the measured value) from `start` under
    /// `schedule`: `n` seeded paths, each started from a draw of the filtered state. The draws
    /// depend only on `seed` and `n`, never on the controls, so two schedules evaluated with
    /// the same seed use common random numbers (what a design policy needs to compare them).
    pub fn sample_paths(
        &self,
        start: &StateEstimate,
        schedule: &[ControlArray<f64>],
        n: usize,
        seed: u64,
        threads: usize,
    ) -> Result<Scenarios> {
        let tr = self.config().transform;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let l0 = cholesky9(&start.cov)
            .ok_or(HybridError::NotPositiveDefinite("initial state covariance"))?;
        let mut z: Vec<SpeciesArray<f64>> = (0..n)
            .map(|_| {
                let e = lower_mul(&l0, &normal9(&mut rng));
                let mut zi: SpeciesArray<f64> = std::array::from_fn(|k| start.z[k] + e[k]);
                tr.clamp_z(&mut zi);
                zi
            })
            .collect();
        let initial = z.iter().map(|zi| tr.to_species(zi)).collect();
        let h_days = schedule.len();
        let mut latent: Vec<Vec<SpeciesArray<f64>>> = vec![Vec::with_capacity(h_days); n];
        let mut measured: Vec<Vec<SpeciesArray<f64>>> = vec![Vec::with_capacity(h_days); n];
        for (h, u) in schedule.iter().enumerate() {
            let day = start.day + h as u32;
            let inputs: Vec<[f64; N_BASE]> = z.iter().map(|zi| Self::z_input(zi, u, day)).collect();
            let trans = self.transitions_par(&inputs, threads)?;
            for (p, t) in trans.iter().enumerate() {
                let l = cholesky9(&t.cov)
                    .ok_or(HybridError::NotPositiveDefinite("transition covariance"))?;
                let e = lower_mul(&l, &normal9(&mut rng));
                let mut zn: SpeciesArray<f64> = std::array::from_fn(|k| t.mean[k] + e[k]);
                tr.clamp_z(&mut zn);
                let s = tr.to_species(&zn);
                let noise = normal9(&mut rng);
                let m: SpeciesArray<f64> = std::array::from_fn(|k| {
                    let sd = self.measurement_var_z(k, s[k]).sqrt();
                    tr.s(k, zn[k] + sd * noise[k])
                });
                latent[p].push(s);
                measured[p].push(m);
                z[p] = zn;
            }
        }
        Ok(Scenarios {
            initial,
            latent,
            measured,
        })
    }

    fn forecast_mc(
        &self,
        start: &StateEstimate,
        schedule: &[ControlArray<f64>],
        opts: &ForecastOptions,
    ) -> Result<Forecast> {
        let tr = self.config().transform;
        let sc = self.sample_paths(start, schedule, opts.paths, opts.seed, opts.threads)?;
        let state = bands_from_paths(start.day, &sc.latent);
        let meas = bands_from_paths(start.day, &sc.measured);
        Ok(Forecast {
            start_day: start.day,
            method: ForecastMethod::MonteCarlo,
            schedule: schedule.to_vec(),
            state,
            measured: meas,
            paths: opts.keep_paths.then_some(sc.latent),
            measured_paths: opts.keep_paths.then_some(sc.measured),
            moments: None,
            measured_moments: None,
            transform: tr,
        })
    }

    /// Moment-matched forecasts of `jobs` (validated), advanced a day at a time with each
    /// day's linearisations batched.
    fn forecast_mm(
        &self,
        jobs: &[ForecastJob<'_>],
        opts: &ForecastOptions,
    ) -> Result<Vec<Forecast>> {
        let tr = self.config().transform;
        struct Run {
            mu: SpeciesArray<f64>,
            cov: Mat9,
            rng: ChaCha8Rng,
            moments: Vec<(SpeciesArray<f64>, Mat9)>,
            measured_moments: Vec<(SpeciesArray<f64>, Mat9)>,
            state: Vec<DayBand>,
            meas: Vec<DayBand>,
        }
        let mut runs: Vec<Run> = jobs
            .iter()
            .map(|j| Run {
                mu: j.start.z,
                cov: j.start.cov,
                rng: ChaCha8Rng::seed_from_u64(j.seed),
                moments: Vec::with_capacity(j.schedule.len()),
                measured_moments: Vec::with_capacity(j.schedule.len()),
                state: Vec::with_capacity(j.schedule.len()),
                meas: Vec::with_capacity(j.schedule.len()),
            })
            .collect();
        let horizon = jobs.iter().map(|j| j.schedule.len()).max().unwrap_or(0);
        for h in 0..horizon {
            let active: Vec<usize> = (0..jobs.len())
                .filter(|&i| h < jobs[i].schedule.len())
                .collect();
            let inputs: Vec<[f64; N_BASE]> = active
                .iter()
                .map(|&i| {
                    let j = &jobs[i];
                    Self::z_input(&runs[i].mu, &j.schedule[h], j.start.day + h as u32)
                })
                .collect();
            let lts = in_chunks(&inputs, opts.threads, |c| self.linearised_transitions(c))?;
            for (&i, lt) in active.iter().zip(lts) {
                let r = &mut runs[i];
                let mut c = sandwich(&lt.jacobian, &r.cov);
                for a in 0..N_SPECIES {
                    for b in 0..N_SPECIES {
                        c[a][b] += lt.transition.cov[a][b];
                    }
                }
                symmetrise(&mut c);
                bound_covariance(&tr, &mut c);
                r.mu = lt.transition.mean;
                tr.clamp_z(&mut r.mu);
                r.cov = c;
                let mut cov_meas = r.cov;
                for k in 0..N_SPECIES {
                    cov_meas[k][k] += self.measurement_var_z(k, tr.s(k, r.mu[k]));
                }
                let d = jobs[i].start.day + h as u32 + 1;
                r.state.push(gaussian_band(
                    &tr, d, &r.mu, &r.cov, opts.paths, &mut r.rng,
                )?);
                r.meas.push(gaussian_band(
                    &tr, d, &r.mu, &cov_meas, opts.paths, &mut r.rng,
                )?);
                r.moments.push((r.mu, r.cov));
                r.measured_moments.push((r.mu, cov_meas));
            }
        }
        Ok(jobs
            .iter()
            .zip(runs)
            .map(|(j, r)| Forecast {
                start_day: j.start.day,
                method: ForecastMethod::MomentMatching,
                schedule: j.schedule.to_vec(),
                state: r.state,
                measured: r.meas,
                paths: None,
                measured_paths: None,
                moments: Some(r.moments),
                measured_moments: Some(r.measured_moments),
                transform: tr,
            })
            .collect())
    }
}

/// `f` over up to `threads` chunks of `inputs` on their own threads (one chunk: this
/// thread), the results in input order.
fn in_chunks<T: Send>(
    inputs: &[[f64; N_BASE]],
    threads: usize,
    f: impl Fn(&[[f64; N_BASE]]) -> Result<Vec<T>> + Sync,
) -> Result<Vec<T>> {
    let threads = threads.clamp(1, 8).min(inputs.len().max(1));
    if threads == 1 {
        return f(inputs);
    }
    let chunk = inputs.len().div_ceil(threads);
    let f = &f;
    let parts: Vec<Result<Vec<T>>> = std::thread::scope(|s| {
        let handles: Vec<_> = inputs
            .chunks(chunk)
            .map(|c| s.spawn(move || f(c)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(HybridError::Data("forecast worker panicked".into())))
            })
            .collect()
    });
    let mut out = Vec::with_capacity(inputs.len());
    for p in parts {
        out.extend(p?);
    }
    Ok(out)
}

/// The checks every forecast makes of its schedule and options.
fn check_forecast(schedule: &[ControlArray<f64>], opts: &ForecastOptions) -> Result<()> {
    if schedule.is_empty() {
        return Err(HybridError::Config("the control schedule is empty".into()));
    }
    if opts.paths < 2 {
        return Err(HybridError::Config(format!(
            "forecast paths = {}: need at least 2",
            opts.paths
        )));
    }
    if let Some(u) = schedule.iter().flatten().find(|v| !v.is_finite()) {
        return Err(HybridError::Data(format!(
            "control value {u} is not finite"
        )));
    }
    Ok(())
}

/// Caps each variance of a moment-matched state covariance in `z` at the largest a
/// variable on the species' clamped range can have ([`crate::LogTransform::max_var_z`]),
/// scaling the row and column so that correlations are kept and
/// the matrix stays positive semi-definite (`D Σ D`, `D` diagonal). The Monte Carlo paths
/// are clamped to the same range at every step; a linearisation through a steep stretch of
/// the GP's mean can otherwise grow a variance geometrically, day after day, far past
/// anything the clamped dynamics can reach.
pub(crate) fn bound_covariance(tr: &crate::LogTransform, c: &mut Mat9) {
    // the scale of each row and column; `None` leaves it as it is
    let f: [Option<f64>; N_SPECIES] = std::array::from_fn(|k| {
        let v = c[k][k];
        if !v.is_finite() {
            Some(0.0)
        } else if v > tr.max_var_z(k) {
            Some((tr.max_var_z(k) / v).sqrt())
        } else {
            None
        }
    });
    if f.iter().all(Option::is_none) {
        return;
    }
    for (i, row) in c.iter_mut().enumerate() {
        for (j, x) in row.iter_mut().enumerate() {
            *x *= f[i].unwrap_or(1.0) * f[j].unwrap_or(1.0);
        }
    }
    // a variance that was not finite has no correlations left to keep: it takes the cap
    for (k, fk) in f.iter().enumerate() {
        if *fk == Some(0.0) {
            c[k][k] = tr.max_var_z(k);
        }
    }
}

/// Band of a Gaussian in `z`: species exactly (log-normal moments, transformed quantiles),
/// VCV and Diam from `n` seeded draws.
fn gaussian_band(
    tr: &crate::LogTransform,
    day: u32,
    mu: &SpeciesArray<f64>,
    cov: &Mat9,
    n: usize,
    rng: &mut ChaCha8Rng,
) -> Result<DayBand> {
    let mut mean = [0.0; N_SPECIES];
    let mut sd = [0.0; N_SPECIES];
    let mut quantiles = [[0.0; N_SPECIES]; 5];
    for k in 0..N_SPECIES {
        let p = lognormal_summary(tr, k, mu[k], cov[k][k]);
        mean[k] = p.mean;
        sd[k] = p.sd;
        for (q, v) in quantiles.iter_mut().zip(p.quantiles) {
            q[k] = v;
        }
    }
    let l = cholesky9(cov).ok_or(HybridError::NotPositiveDefinite("forecast covariance"))?;
    let mut vcv = Vec::with_capacity(n);
    let mut diam = Vec::with_capacity(n);
    for _ in 0..n {
        let e = lower_mul(&l, &normal9(rng));
        let zi: SpeciesArray<f64> = std::array::from_fn(|k| mu[k] + e[k]);
        let s = tr.to_species(&zi);
        vcv.push(Derived::VCV.compute(&s));
        diam.push(Derived::Diam.compute(&s));
    }
    Ok(DayBand {
        day,
        mean,
        sd,
        quantiles,
        derived: [sorted_quantiles(vcv), sorted_quantiles(diam)],
    })
}

fn sorted_quantiles(mut v: Vec<f64>) -> [f64; 5] {
    v.sort_by(f64::total_cmp);
    Q_LEVELS.map(|p| quantile_sorted(&v, p))
}

/// Per-day bands from paths `paths[p][h]` (day `start + 1 + h`).
pub(crate) fn bands_from_paths(start: u32, paths: &[Vec<SpeciesArray<f64>>]) -> Vec<DayBand> {
    let h_days = paths.first().map_or(0, Vec::len);
    let mut out = Vec::with_capacity(h_days);
    let mut col = Vec::with_capacity(paths.len());
    for h in 0..h_days {
        let mut mean = [0.0; N_SPECIES];
        let mut sd = [0.0; N_SPECIES];
        let mut quantiles = [[0.0; N_SPECIES]; 5];
        for k in 0..N_SPECIES {
            col.clear();
            col.extend(paths.iter().map(|p| p[h][k]));
            let (m, s) = mean_sd(&col);
            mean[k] = m;
            sd[k] = s;
            col.sort_by(f64::total_cmp);
            for (q, p) in quantiles.iter_mut().zip(Q_LEVELS) {
                q[k] = quantile_sorted(&col, p);
            }
        }
        let vcv = paths.iter().map(|p| Derived::VCV.compute(&p[h])).collect();
        let diam = paths.iter().map(|p| Derived::Diam.compute(&p[h])).collect();
        out.push(DayBand {
            day: start + 1 + h as u32,
            mean,
            sd,
            quantiles,
            derived: [sorted_quantiles(vcv), sorted_quantiles(diam)],
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::bound_covariance;
    use crate::LogTransform;
    use crate::stats::Mat9;
    use perfusio_core::N_SPECIES;

    #[test]
    fn bounded_covariances_keep_correlations_and_stay_positive_definite() {
        let tr = LogTransform::default();
        let cap = |k: usize| (0.5 * (tr.z_max(k) - tr.offsets[k].ln())).powi(2);
        // an AR(1)-correlated covariance with two exploded variances
        let mut sd = [0.1; N_SPECIES];
        sd[5] = 1e3;
        sd[8] = 40.0;
        let c0: Mat9 = std::array::from_fn(|i| {
            std::array::from_fn(|j| 0.6f64.powi((i as i32 - j as i32).abs()) * sd[i] * sd[j])
        });
        let mut c = c0;
        bound_covariance(&tr, &mut c);
        for k in 0..N_SPECIES {
            if k == 5 || k == 8 {
                assert!(
                    (c[k][k] - cap(k)).abs() <= 1e-12 * cap(k),
                    "{k}: {}",
                    c[k][k]
                );
            } else {
                assert_eq!(c[k][k].to_bits(), c0[k][k].to_bits());
            }
            for j in 0..N_SPECIES {
                let r0 = c0[k][j] / (c0[k][k] * c0[j][j]).sqrt();
                let r = c[k][j] / (c[k][k] * c[j][j]).sqrt();
                assert!((r - r0).abs() < 1e-12, "correlation {k},{j}: {r} vs {r0}");
            }
        }
        assert!(crate::stats::cholesky9(&c).is_some());
        // a covariance inside the caps is left as it is
        let mut small: Mat9 =
            std::array::from_fn(|i| std::array::from_fn(|j| if i == j { 0.04 } else { 0.01 }));
        let before = small;
        bound_covariance(&tr, &mut small);
        assert_eq!(small, before);
    }
}
