//! [`BedPolicy`]: tomorrow's setpoints from the hybrid model's forecast.
//!
//! One decision, for a reactor whose state the filter estimates on day `t`:
//!
//! 1. **Candidates** are points of the [`DecisionSpace`] (unit cube over the free controls;
//!    bleed as a fraction of perfusion; ramp limits; fixed controls stay). A candidate's
//!    setpoints are held over the decision horizon (default 3 days).
//! 2. **Screening and refinement on a linearised forecast.** For a candidate, the mean path
//!    is propagated through the hybrid one-day step (mechanism + GP mean) and its covariance
//!    through `Σ' = J Σ Jᵀ + C(u)`, with `C(u)` the model's latent transition covariance at
//!    the candidate's own inputs and `J` the state Jacobians of the path under the current
//!    setpoints (computed once per decision; the Jacobian changes little across candidates,
//!    the transition covariance — where the model is unsure — is what matters). The stacked
//!    Gaussian of the path's states over the horizon gives the objective's mean and sd
//!    (analytic acquisitions: objective at the mean path, variance `gᵀ Σ g`) or is sampled
//!    with fixed quasi-random base samples (Monte-Carlo acquisitions), so the acquisition is
//!    a deterministic, smooth function of the controls. The `raw_samples` space-filling
//!    candidates are scored this way in one batched model call per day
//!    ([`Screening::MonteCarlo`] scores them on Monte-Carlo paths instead, for comparison).
//! 3. **Refinement** of the best `restarts` by a trust-region method on a model of the
//!    linearised forecast (restarts spread over `threads`): each round of a restart
//!    costs `dim + 2` linearised forecasts, and the model — the acquisition of the
//!    forecast interpolated linearly in the controls, objective, constraints and acquisition
//!    kept exact — is maximised without model calls. A finite-difference quasi-Newton method
//!    on the acquisition itself needed about 6× (LogEI) and 1.5× (qLogEI) more forecasts
//!    on the online model of the benches, for the same decisions. Every
//!    restart's stop is reported ([`RestartReport`]).
//! 4. **Final choice on the full Monte-Carlo forecast.** The best [`FINAL_CHECK_MAX`]
//!    distinct refined candidates and the current setpoints are scored with `mc_samples`
//!    seeded Monte-Carlo paths of the hybrid model (common random numbers), and the decision
//!    is the best of them by the acquisition; the chosen course's forecast is the reported
//!    one. Holding course is always a candidate: a recommendation is never worse than staying
//!    the course by the acquisition's own measure. A caller that already has a Monte-Carlo
//!    forecast under the setpoints in force (the twin's daily forecast) hands it to
//!    [`BedPolicy::decide_sharing`]: its first days are the holding course, and the other
//!    courses are drawn with its seed.
//!
//! # Where the time goes
//! Nearly all of it is the hybrid model's one-day transition (the mechanism's ODE step,
//! then the GP): one per candidate and day while screening and refining, one per path and
//! day in the final check. [`Decision::timings`] splits a decision's wall time into
//! linearisation, screening, refinement and the final check. On the benches' online model
//! (one 28-day run, day 14, 3-day horizon, 512 raw candidates, 10 restarts, release build)
//! a LogEI decision makes about 1 540 transitions screening, 1 200 refining and 1 280 in the
//! final check (3 courses × 128 paths × 3 days, plus the start draws), and takes about
//! 165 ms of CPU time (`examples/decide_profile.rs`); the three phases take roughly equal
//! shares. qLogEI takes 2.6× longer: its screening and refinement score 64 scenario paths per
//! candidate instead of two moments. `decide_batch` for 24 reactors takes about 330 ms of
//! CPU time, 75 % of it screening 65 candidates per reactor.
//!
//! The incumbent of improvement-based acquisitions is the objective predicted when the
//! current setpoints are held: "improvement" means better than staying the course. Outcome
//! constraints (viability ≥ 95 % by default) enter as a probability of feasibility (analytic
//! acquisitions) or as sigmoid-weighted slacks (Monte-Carlo acquisitions); a candidate more
//! likely infeasible than feasible is never recommended.

use std::time::{Duration, Instant};

use perfusio_core::{
    Acquisition, Control, ControlArray, DesignSpace, N_SPECIES, Setpoints, SpeciesArray,
};
use perfusio_hybrid::{
    Forecast, ForecastJob, ForecastMethod, ForecastOptions, HybridModel, LogTransform, Mat9,
    StateEstimate,
};
use serde::{Deserialize, Serialize};

use crate::analytic::{self, Predictive};
use crate::error::{BedError, Result};
use crate::mc::{self, McParams, SampleMatrix};
use crate::multi::{self, ChebyshevScalarization, ObjectiveSamples};
use crate::objective::{Objective, OutcomeConstraint};
use crate::optimize::{LbfgsbOptions, minimize_box};
use crate::qmc::{BaseSamples, uniform_points};
use crate::space::DecisionSpace;

mod front_batch;

/// Forward-difference step in `z` of the linearised objective's gradient.
pub const GAUSS_FD_STEP: f64 = 1e-5;

/// Local refinement of the acquisition: an acquisition that changes by less than a relative
/// 1e-7 between iterations, or whose projected gradient is below 1e-5 per unit of the cube,
/// has converged for any decision purpose.
pub const REFINE_OPTIONS: LbfgsbOptions = LbfgsbOptions {
    memory: 10,
    max_iters: 200,
    pg_tol: 1e-5,
    f_rel_tol: 1e-7,
    max_line_search: 20,
};

/// Secant step of the refinement's model, in unit-cube coordinates (a thousandth of each
/// control's range: below anything an operator would set, above the integrator's noise).
pub const MODEL_STEP: f64 = 1e-3;

/// Forward-difference step of the refinement's inner maximisation (on the model, which
/// makes no model call and has no integrator noise).
pub const INNER_FD_STEP: f64 = 1e-7;

/// Initial trust-region radius (sup-norm, unit cube).
pub const TR_INITIAL_RADIUS: f64 = 0.2;

/// Smallest trust-region radius at which a model that predicts no gain means convergence
/// (5 % of every control's range).
pub const TR_STATIONARY_RADIUS: f64 = 0.05;

/// Largest trust-region radius.
pub const TR_MAX_RADIUS: f64 = 0.5;

/// Relative gain (of `max(|acquisition|, 1)`) below which a refinement has converged.
pub const TR_GAIN_TOL: f64 = 1e-4;

/// Most trust-region rounds of one refinement (reported as not converged when reached).
pub const TR_MAX_ROUNDS: usize = 30;

/// Options of the inner maximisation on the refinement's model.
pub const INNER_OPTIONS: LbfgsbOptions = LbfgsbOptions {
    memory: 10,
    max_iters: 50,
    pg_tol: 1e-7,
    f_rel_tol: 1e-10,
    max_line_search: 20,
};

/// Temperature of the max over the batch in the greedy batch choice (standardised
/// objective units): small enough that a copy of a member adds nothing.
pub const BATCH_TAU_MAX: f64 = 1e-8;

/// A batch candidate whose objective, given the members already chosen, keeps less than
/// this fraction of its standard deviation is a copy of a member and is not chosen again
/// (holding course excepted).
pub const BATCH_MIN_NEW_SD: f64 = 1e-3;

/// Joint acquisition values of a greedy batch step closer than this (relative) are equal.
pub const BATCH_TIE_TOL: f64 = 1e-9;

/// Most refined candidates checked on the Monte-Carlo forecast (besides holding course).
pub const FINAL_CHECK_MAX: usize = 2;

/// Refined points closer than this in every unit-cube coordinate are one finalist.
pub const FINALIST_TOL: f64 = 1e-3;

/// Smallest probability of feasibility a recommendation may have.
pub const MIN_FEASIBILITY: f64 = 0.5;

/// Temperature of the sigmoid that smooths outcome-constraint slacks (in units of the
/// constrained variable's plausible range).
pub const SLACK_TAU: f64 = 1e-3;

/// How [`BedPolicy::decide`] scores its raw candidates. Refinement is always on the
/// linearised forecast and the final choice always on the Monte-Carlo forecast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Screening {
    /// Linearised (moment-matching) forecasts, batched: one model transition per candidate
    /// and day.
    #[default]
    Linearised,
    /// `screening_samples` Monte-Carlo paths per candidate with common random numbers:
    /// `screening_samples` times the model calls (for comparisons).
    MonteCarlo,
}

/// Settings of a [`BedPolicy`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyConfig {
    /// Acquisition function (default LogEI).
    pub acquisition: Acquisition,
    /// Days the objective looks ahead; the candidate's setpoints are held over them.
    pub horizon_days: u32,
    /// Last culture day of the run the decisions are for (`None`: open-ended). The horizon
    /// of a decision on day `t` stops there: it is `min(horizon_days, end_day − t)` days,
    /// at least one ([`PolicyConfig::horizon_at`]), so no decision is scored on days the
    /// run does not have (a final titer is the titer at the run's end, a harvest stops
    /// with the run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_day: Option<u32>,
    /// Space-filling raw candidates scored first.
    pub raw_samples: usize,
    /// Best raw candidates refined by the local optimiser.
    pub restarts: usize,
    /// Space-filling candidates per reactor of a batch decision ([`BedPolicy::decide_batch`]).
    pub batch_raw_samples: usize,
    /// How the raw candidates are scored (default: on their linearised forecasts).
    pub screening: Screening,
    /// Scenarios used while screening and refining (of the linearised forecast, or Monte-Carlo
    /// paths with [`Screening::MonteCarlo`]).
    pub screening_samples: usize,
    /// Monte-Carlo paths of the final choice.
    pub mc_samples: usize,
    /// Master seed (base samples, raw candidates, Monte-Carlo paths).
    pub seed: u64,
    /// UCB exploration weight β (value `μ + √β σ`).
    pub ucb_beta: f64,
    /// Outcome constraints over the horizon (default: viability ≥ the design space's floor).
    pub constraints: Vec<OutcomeConstraint>,
    /// Largest change per day of each control (`None`: no limit).
    pub ramp_limits: ControlArray<Option<f64>>,
    /// Controls that stay at their current value.
    pub fixed: Vec<Control>,
    /// Threads for the Monte-Carlo forecasts.
    pub threads: usize,
}

impl PolicyConfig {
    /// Defaults for a design space: LogEI, 3-day horizon, 512 raw candidates, 10 restarts,
    /// 64 candidates per reactor of a batch, 64 screening scenarios, 128 Monte-Carlo paths, seed 0, β = 1, viability ≥ the design
    /// space's floor, no ramp limits, nothing fixed, 2 threads.
    pub fn new(design: &DesignSpace) -> Self {
        Self {
            acquisition: Acquisition::LogEI,
            horizon_days: 3,
            end_day: None,
            raw_samples: 512,
            restarts: 10,
            batch_raw_samples: 64,
            screening: Screening::Linearised,
            screening_samples: 64,
            mc_samples: 128,
            seed: 0,
            ucb_beta: 1.0,
            constraints: OutcomeConstraint::defaults(design),
            ramp_limits: [None; 6],
            fixed: Vec::new(),
            threads: 2,
        }
    }

    /// Days a decision on culture day `day` looks ahead: [`PolicyConfig::horizon_days`],
    /// cut at [`PolicyConfig::end_day`], at least one.
    ///
    /// ```
    /// use perfusio_bed::PolicyConfig;
    /// use perfusio_core::DEFAULT_AMBR250_DESIGN_SPACE;
    ///
    /// let mut c = PolicyConfig::new(&DEFAULT_AMBR250_DESIGN_SPACE);
    /// c.horizon_days = 14;
    /// assert_eq!(c.horizon_at(20), 14);
    /// c.end_day = Some(28);
    /// assert_eq!(c.horizon_at(10), 14);
    /// assert_eq!(c.horizon_at(20), 8);
    /// assert_eq!(c.horizon_at(27), 1);
    /// assert_eq!(c.horizon_at(30), 1);
    /// ```
    pub fn horizon_at(&self, day: u32) -> usize {
        let h = match self.end_day {
            Some(end) => self.horizon_days.min(end.saturating_sub(day)),
            None => self.horizon_days,
        };
        h.max(1) as usize
    }

    /// Checks the values; the error names the field.
    pub fn check(&self) -> Result<()> {
        let bad =
            |name: &'static str, reason: String| Err(BedError::InvalidParameter { name, reason });
        if self.horizon_days == 0 || self.horizon_days > 28 {
            return bad(
                "horizon_days",
                format!("{} must be between 1 and 28 days", self.horizon_days),
            );
        }
        if self.restarts == 0 || self.raw_samples < self.restarts {
            return bad(
                "raw_samples",
                format!(
                    "need raw_samples ({}) >= restarts ({}) >= 1",
                    self.raw_samples, self.restarts
                ),
            );
        }
        if self.batch_raw_samples == 0 {
            return bad(
                "batch_raw_samples",
                "need at least one candidate per reactor of a batch".into(),
            );
        }
        if self.screening_samples < 8 || self.mc_samples < 8 {
            return bad(
                "mc_samples",
                "screening_samples and mc_samples must be at least 8".into(),
            );
        }
        if !(self.ucb_beta.is_finite() && self.ucb_beta >= 0.0) {
            return bad(
                "ucb_beta",
                format!("{} must be finite and >= 0", self.ucb_beta),
            );
        }
        for c in &self.constraints {
            c.check()?;
        }
        Ok(())
    }
}

/// Mean and standard deviation of an objective under one course of action.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ObjectiveSummary {
    /// Predicted mean.
    pub mean: f64,
    /// Predicted standard deviation.
    pub sd: f64,
}

/// A Monte-Carlo forecast under the setpoints in force that a caller already has, for
/// [`BedPolicy::decide_sharing`]: the final check uses its first days as the holding
/// course's paths.
#[derive(Debug, Clone, Copy)]
pub struct HoldForecast<'a> {
    /// The forecast (Monte Carlo with its paths kept, from the decision's state, under the
    /// setpoints in force on every day).
    pub forecast: &'a Forecast,
    /// The seed it was drawn with.
    pub seed: u64,
}

impl HoldForecast<'_> {
    /// Whether the forecast can stand for the holding course of a decision from `state`
    /// looking `h` days ahead with `n` paths under `hold`.
    fn is_holding(
        &self,
        state: &StateEstimate,
        hold: &ControlArray<f64>,
        h: usize,
        n: usize,
    ) -> bool {
        let f = self.forecast;
        let kept = |p: &Option<Vec<Vec<SpeciesArray<f64>>>>| {
            p.as_ref()
                .is_some_and(|ps| ps.len() == n && ps.iter().all(|p| p.len() >= h))
        };
        f.method == ForecastMethod::MonteCarlo
            && f.start_day == state.day
            && f.horizon() >= h
            && f.schedule.len() >= h
            && f.schedule[..h].iter().all(|u| same(u, hold))
            && kept(&f.paths)
            && kept(&f.measured_paths)
    }
}

/// What the policy recommends for one reactor, and why.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Day the setpoints act from.
    pub day: u32,
    /// The recommendation.
    pub setpoints: Setpoints,
    /// The setpoints in force when the decision was made.
    pub current: ControlArray<f64>,
    /// Whether the recommendation is to hold the current setpoints.
    pub hold: bool,
    /// Acquisition used.
    pub acquisition: Acquisition,
    /// Its value at the recommendation (Monte-Carlo scoring).
    pub acquisition_value: f64,
    /// Objective names (one, or two/three for the multi-objective acquisitions).
    pub objectives: Vec<String>,
    /// Objectives under the recommendation (first = the primary objective).
    pub recommended: Vec<ObjectiveSummary>,
    /// Objectives when holding the current setpoints.
    pub holding: Vec<ObjectiveSummary>,
    /// Probability that the recommendation satisfies every outcome constraint.
    pub probability_feasible: f64,
    /// The forecast under the recommendation over the decision horizon (Monte Carlo).
    pub forecast: Forecast,
    /// Wall time of the decision.
    pub elapsed: Duration,
    /// One line for the operator.
    pub reason: String,
    /// Candidates scored on the linearised forecast.
    pub screened: usize,
    /// Candidates scored on the Monte-Carlo forecast.
    pub finalists: usize,
    /// Where the time went.
    pub timings: DecisionTimings,
    /// How each local refinement ended (empty for batch members that were not refined).
    pub restarts: Vec<RestartReport>,
}

/// Wall time of the phases of a decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct DecisionTimings {
    /// Linearisation along the holding course (Jacobians).
    pub linearise: Duration,
    /// Scoring the raw candidates.
    pub screen: Duration,
    /// Local refinement of the best raw candidates.
    pub refine: Duration,
    /// Monte-Carlo check of the finalists against holding course.
    pub final_check: Duration,
    /// The reported forecast under the recommendation.
    pub forecast: Duration,
}

/// How one local refinement of the acquisition ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestartReport {
    /// Acquisition at the start (the raw candidate).
    pub start_value: f64,
    /// Acquisition at the end.
    pub value: f64,
    /// Iterations taken.
    pub iterations: usize,
    /// Acquisition evaluations (gradient evaluations included).
    pub evaluations: usize,
    /// Whether it stopped on a tolerance (not on its iteration cap or a failed line search).
    pub converged: bool,
    /// Why it stopped.
    pub stop: String,
}

/// The design policy: objectives, constraints and acquisition over a design space.
#[derive(Debug)]
pub struct BedPolicy {
    design: DesignSpace,
    objectives: Vec<Box<dyn Objective>>,
    config: PolicyConfig,
    /// The species the objectives and the outcome constraints read: all of them when an
    /// objective does not say ([`Objective::species_read`]).
    needed: [bool; N_SPECIES],
}

/// A candidate's objective (and constraint slack) values per scenario, or the moments of a
/// linearised forecast.
struct Scored {
    /// `values[s * m + k]`: objective `k` in scenario `s`.
    values: Vec<f64>,
    /// `slacks[c][s]`: smooth slack of constraint `c` in scenario `s` (≥ 0 feasible).
    slacks: Vec<Vec<f64>>,
    /// Fraction of scenarios satisfying every constraint (hard check).
    feasible: f64,
    n: usize,
    /// Linearised moments (mean, sd per objective) and probability of feasibility, when the
    /// candidate was scored without scenarios.
    gaussian: Option<(Vec<ObjectiveSummary>, f64)>,
}

impl Scored {
    fn summary(&self, k: usize, m: usize) -> ObjectiveSummary {
        if let Some((g, _)) = &self.gaussian {
            return g[k];
        }
        let v: Vec<f64> = (0..self.n).map(|s| self.values[s * m + k]).collect();
        let mean = v.iter().sum::<f64>() / self.n as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (self.n.max(2) - 1) as f64;
        ObjectiveSummary {
            mean,
            sd: var.sqrt(),
        }
    }
}

impl BedPolicy {
    /// A policy maximising `objectives[0]` (single-objective acquisitions) or all of them
    /// (qEHVI, qNEHVI, qNParEGO need two or three).
    pub fn new(
        design: DesignSpace,
        objectives: Vec<Box<dyn Objective>>,
        config: PolicyConfig,
    ) -> Result<Self> {
        config.check()?;
        design.check()?;
        let m = objectives.len();
        if m == 0 {
            return Err(BedError::InvalidParameter {
                name: "objectives",
                reason: "give at least one objective".into(),
            });
        }
        if config.acquisition.is_multi_objective() && !(2..=3).contains(&m) {
            return Err(BedError::InvalidParameter {
                name: "objectives",
                reason: format!(
                    "{} needs two or three objectives, got {m}",
                    config.acquisition
                ),
            });
        }
        if !config.acquisition.is_multi_objective() && m > 1 {
            return Err(BedError::InvalidParameter {
                name: "objectives",
                reason: format!(
                    "{} optimises one objective, got {m}; use qEHVI, qNEHVI or qNParEGO for several",
                    config.acquisition
                ),
            });
        }
        let needed = species_needed_by(&objectives, &config.constraints);
        Ok(Self {
            design,
            objectives,
            config,
            needed,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// The design space.
    pub fn design_space(&self) -> &DesignSpace {
        &self.design
    }

    /// Name of the primary objective.
    pub fn objective_name(&self) -> String {
        self.objectives[0].name()
    }

    fn decision_space(&self, current: &ControlArray<f64>) -> Result<DecisionSpace> {
        let mut b = DecisionSpace::builder(&self.design, self.design.clamp(current))
            .ramp_limits(self.config.ramp_limits);
        for c in &self.config.fixed {
            b = b.fix(*c);
        }
        b.build()
    }

    /// Objective and slack values of scenarios given as state paths (`states[s][d]`, d = 0
    /// today, original units).
    fn score_paths(
        &self,
        paths: &[Vec<SpeciesArray<f64>>],
        schedule: &[ControlArray<f64>],
    ) -> Scored {
        let m = self.objectives.len();
        let n = paths.len();
        let mut values = Vec::with_capacity(n * m);
        let mut slacks = vec![Vec::with_capacity(n); self.config.constraints.len()];
        let mut ok = 0usize;
        for p in paths {
            for o in &self.objectives {
                let v = o.value(p, schedule);
                values.push(if v.is_finite() { v } else { f64::MIN / 4.0 });
            }
            let mut all = true;
            for (c, con) in self.config.constraints.iter().enumerate() {
                slacks[c].push(con.smooth_slack(p, SLACK_TAU));
                all &= con.is_satisfied(p);
            }
            ok += usize::from(all);
        }
        Scored {
            values,
            slacks,
            feasible: ok as f64 / n.max(1) as f64,
            n,
            gaussian: None,
        }
    }

    /// Linearised moments of every objective and the probability of feasibility of one
    /// linearised forecast: objective mean at the mean path, variance `gᵀ Σ g` with `g` the
    /// forward-difference gradient of the objective with respect to the path in `z`;
    /// feasibility the product over days of the Gaussian probability that each constrained
    /// value (linearised the same way, over that day's species only) is inside its bounds.
    fn score_gaussian(
        &self,
        pg: &PathGaussian,
        schedule: &[ControlArray<f64>],
        tr: &LogTransform,
    ) -> Scored {
        let v = self.path_variances(pg, schedule, tr);
        self.score_moments(&pg.means, &v, schedule, tr)
    }

    /// Variances of the objectives and of each constrained value on each day (constraint
    /// major, days `1..=H`) under a linearised forecast. One objective call per path
    /// coordinate, no allocation per call.
    fn path_variances(
        &self,
        pg: &PathGaussian,
        schedule: &[ControlArray<f64>],
        tr: &LogTransform,
    ) -> Variances {
        self.path_variances_and_gradients(pg, schedule, tr).0
    }

    /// [`BedPolicy::path_variances`] and the objectives' gradients `g_k` with respect to
    /// the path in `z` (forward differences) that give their variances `g_kᵀ Σ g_k`.
    fn path_variances_and_gradients(
        &self,
        pg: &PathGaussian,
        schedule: &[ControlArray<f64>],
        tr: &LogTransform,
    ) -> (Variances, Vec<Vec<f64>>) {
        let dims = pg.dims();
        let mut states: Vec<SpeciesArray<f64>> =
            pg.means.iter().map(|z| tr.to_species(z)).collect();
        let grads: Vec<Vec<f64>> = self
            .objectives
            .iter()
            .map(|o| {
                let f0 = o.value(&states, schedule);
                (0..dims)
                    .map(|i| {
                        let (d, k) = (i / N_SPECIES, i % N_SPECIES);
                        let keep = states[d][k];
                        states[d][k] = tr.s(k, pg.means[d][k] + GAUSS_FD_STEP);
                        let gi = (o.value(&states, schedule) - f0) / GAUSS_FD_STEP;
                        states[d][k] = keep;
                        gi
                    })
                    .collect()
            })
            .collect();
        let objective = grads
            .iter()
            .map(|g| {
                let var = pg.linear_variance(g);
                if var.is_finite() { var.max(0.0) } else { 0.0 }
            })
            .collect();
        let mut constraint = Vec::new();
        let mut gd = [0.0; N_SPECIES];
        let marginals = if self.config.constraints.is_empty() {
            Vec::new()
        } else {
            pg.marginals()
        };
        for con in &self.config.constraints {
            for (day, (st, zm)) in states.iter_mut().zip(&pg.means).enumerate().skip(1) {
                let v = crate::objective::variable_value(con.variable, st);
                for (k, gk) in gd.iter_mut().enumerate() {
                    let keep = st[k];
                    st[k] = tr.s(k, zm[k] + GAUSS_FD_STEP);
                    *gk = (crate::objective::variable_value(con.variable, st) - v) / GAUSS_FD_STEP;
                    st[k] = keep;
                }
                let var = quad9(&marginals[day], &gd);
                constraint.push(if var.is_finite() { var.max(0.0) } else { 0.0 });
            }
        }
        (
            Variances {
                objective,
                constraint,
            },
            grads,
        )
    }

    /// The linearised covariance of the objectives (`m × m`, row-major) from their
    /// gradients and variances ([`BedPolicy::path_variances_and_gradients`]): cross terms
    /// `g_kᵀ Σ g_l` by polarisation, `(var(g_k + g_l) − var(g_k) − var(g_l)) / 2`, clamped
    /// to the Cauchy–Schwarz bound (0 when not finite).
    fn objective_covariance(pg: &PathGaussian, grads: &[Vec<f64>], var: &[f64]) -> Vec<f64> {
        let m = var.len();
        let mut cov = vec![0.0; m * m];
        for a in 0..m {
            cov[a * m + a] = var[a];
            for b in 0..a {
                let sum: Vec<f64> = grads[a].iter().zip(&grads[b]).map(|(x, y)| x + y).collect();
                let c = 0.5 * (pg.linear_variance(&sum) - var[a] - var[b]);
                let lim = (var[a] * var[b]).sqrt();
                let c = if c.is_finite() {
                    c.clamp(-lim, lim)
                } else {
                    0.0
                };
                cov[a * m + b] = c;
                cov[b * m + a] = c;
            }
        }
        cov
    }

    /// Scores a mean path (in `z`) with given variances: objective means and constrained
    /// values are exact functions of the mean path, the variances are taken as given.
    fn score_moments(
        &self,
        means: &[SpeciesArray<f64>],
        var: &Variances,
        schedule: &[ControlArray<f64>],
        tr: &LogTransform,
    ) -> Scored {
        let states: Vec<SpeciesArray<f64>> = means.iter().map(|z| tr.to_species(z)).collect();
        let summaries: Vec<ObjectiveSummary> = self
            .objectives
            .iter()
            .zip(&var.objective)
            .map(|(o, v)| {
                let f0 = o.value(&states, schedule);
                ObjectiveSummary {
                    mean: if f0.is_finite() { f0 } else { f64::MIN / 4.0 },
                    sd: v.max(0.0).sqrt(),
                }
            })
            .collect();
        let mut p_feas = 1.0;
        let mut cv = var.constraint.iter();
        for con in &self.config.constraints {
            for st in states.iter().skip(1) {
                let v = crate::objective::variable_value(con.variable, st);
                let sd = cv.next().copied().unwrap_or(0.0).max(0.0).sqrt().max(1e-12);
                let mut p = 1.0;
                if let Some(lo) = con.lower {
                    p -= crate::special::norm_cdf((lo - v) / sd);
                }
                if let Some(hi) = con.upper {
                    p -= crate::special::norm_cdf((v - hi) / sd);
                }
                p_feas *= if p.is_finite() {
                    p.clamp(0.0, 1.0)
                } else {
                    0.0
                };
            }
        }
        Scored {
            values: summaries.iter().map(|s| s.mean).collect(),
            slacks: Vec::new(),
            feasible: p_feas,
            n: 1,
            gaussian: Some((summaries, p_feas)),
        }
    }

    /// What the refinement needs to know exactly at one point: the mean path and the
    /// variances (analytic acquisitions) or the scenario paths in `z` (Monte Carlo).
    fn local_info(
        &self,
        pg: &PathGaussian,
        schedule: &[ControlArray<f64>],
        base: &BaseSamples,
        tr: &LogTransform,
    ) -> Result<LocalInfo> {
        if self.config.acquisition.is_monte_carlo() {
            Ok(LocalInfo {
                means: pg.means.clone(),
                var: None,
                scenarios: Some(pg.scenarios_z(base, &self.needed)?),
            })
        } else {
            Ok(LocalInfo {
                means: pg.means.clone(),
                var: Some(self.path_variances(pg, schedule, tr)),
                scenarios: None,
            })
        }
    }

    /// The acquisition of a point from its [`LocalInfo`] (exact, or interpolated by the
    /// refinement's model).
    fn local_value(
        &self,
        info: &LocalInfo,
        schedule: &[ControlArray<f64>],
        tr: &LogTransform,
        hold: &Scored,
        hold_summary: &[ObjectiveSummary],
    ) -> f64 {
        let scored = match (&info.var, &info.scenarios) {
            (Some(v), _) => self.score_moments(&info.means, v, schedule, tr),
            (None, Some(sc)) => {
                let mean_species = species_path(&info.means, tr);
                let paths: Vec<Vec<SpeciesArray<f64>>> = sc
                    .iter()
                    .map(|p| species_needed(p, &mean_species, &self.needed, tr))
                    .collect();
                self.score_paths(&paths, schedule)
            }
            (None, None) => return f64::NEG_INFINITY,
        };
        self.acquisition_value(&scored, hold, hold_summary)
    }

    /// Trust-region refinement of one start on the linearised forecast.
    ///
    /// Each round evaluates the linearised forecast exactly at the centre and at one
    /// secant point per coordinate ([`MODEL_STEP`]); the model is the acquisition of the
    /// forecast interpolated linearly in the controls (mean path and variances, or every
    /// scenario path), with the objective, the constraints and the acquisition themselves
    /// kept exact. The model is maximised inside the box and the trust region without any
    /// model call; the step is accepted when the exact acquisition improves by at least a
    /// tenth of the predicted gain. The refinement has converged when the model predicts a
    /// gain below [`TR_GAIN_TOL`] (relative) anywhere in a trust region of radius at least
    /// [`TR_STATIONARY_RADIUS`] (`model_stationary`), or an accepted step gained less than
    /// that (`relative_gain`). It stops unconverged when the trust region shrinks below
    /// [`MODEL_STEP`] while the model still predicts a gain, or the wider region's predicted
    /// gain does not materialise while the smaller one predicts none
    /// (`below_secant_resolution`: a kink, such as a species reaching its bound or the
    /// mechanism switching branch, that the linear model cannot resolve), or after
    /// [`TR_MAX_ROUNDS`] rounds (`round_cap`).
    #[allow(clippy::too_many_arguments)]
    fn refine_trust_region(
        &self,
        x0: &[f64],
        f0: f64,
        space: &DecisionSpace,
        paths_at: &PathsAt<'_>,
        base: &BaseSamples,
        tr: &LogTransform,
        hold: &Scored,
        hold_summary: &[ObjectiveSummary],
        h: usize,
    ) -> Result<(Vec<f64>, RestartReport)> {
        let dim = x0.len();
        let schedule_of =
            |x: &[f64]| -> Result<Vec<ControlArray<f64>>> { Ok(vec![space.to_controls(x)?; h]) };
        let mut xc = x0.to_vec();
        let mut fc = f0;
        let mut radius = TR_INITIAL_RADIUS;
        let mut evaluations = 0usize;
        let mut iterations = 0usize;
        let mut stop = "round_cap";
        let mut converged = false;
        let mut widened = false;
        // exact information at the centre and its secant points
        let mut centre: Option<(LocalInfo, Vec<LocalInfo>, Vec<f64>)> = None;
        while iterations < TR_MAX_ROUNDS {
            if centre.is_none() {
                let mut pts = vec![xc.clone()];
                let mut steps = Vec::with_capacity(dim);
                for j in 0..dim {
                    let mut y = xc.clone();
                    let st = if xc[j] + MODEL_STEP <= 1.0 {
                        MODEL_STEP
                    } else {
                        -MODEL_STEP
                    };
                    y[j] += st;
                    steps.push(st);
                    pts.push(y);
                }
                evaluations += pts.len();
                let pgs = paths_at(&pts)?;
                let mut infos = Vec::with_capacity(pts.len());
                for (pg, x) in pgs.iter().zip(&pts) {
                    infos.push(self.local_info(pg, &schedule_of(x)?, base, tr)?);
                }
                let c = infos.remove(0);
                fc = self.local_value(&c, &schedule_of(&xc)?, tr, hold, hold_summary);
                if !fc.is_finite() {
                    stop = "non_finite";
                    break;
                }
                centre = Some((c, infos, steps));
            }
            let Some((c, nbrs, steps)) = &centre else {
                break;
            };
            iterations += 1;
            let model = |x: &[f64]| -> f64 {
                let delta: Vec<f64> = (0..dim).map(|j| (x[j] - xc[j]) / steps[j]).collect();
                let info = c.interpolate(nbrs, &delta);
                match schedule_of(x) {
                    Ok(sch) => self.local_value(&info, &sch, tr, hold, hold_summary),
                    Err(_) => f64::NEG_INFINITY,
                }
            };
            let lower: Vec<f64> = xc.iter().map(|v| (v - radius).max(0.0)).collect();
            let upper: Vec<f64> = xc.iter().map(|v| (v + radius).min(1.0)).collect();
            let mut neg = |x: &[f64], g: &mut [f64]| -> f64 {
                let v = model(x);
                let mut y = x.to_vec();
                for j in 0..dim {
                    let st = if x[j] + INNER_FD_STEP <= upper[j] {
                        INNER_FD_STEP
                    } else {
                        -INNER_FD_STEP
                    };
                    y[j] = x[j] + st;
                    let d = (model(&y) - v) / st;
                    g[j] = if d.is_finite() { -d } else { 0.0 };
                    y[j] = x[j];
                }
                if v.is_finite() { -v } else { f64::INFINITY }
            };
            let inner = minimize_box(&mut neg, &xc, &lower, &upper, &INNER_OPTIONS)?;
            let predicted = -inner.value - fc;
            let scale = fc.abs().max(1.0);
            // (a NaN prediction counts as no gain)
            if predicted.is_nan() || predicted <= TR_GAIN_TOL * scale {
                if radius >= TR_STATIONARY_RADIUS {
                    converged = true;
                    stop = "model_stationary";
                    break;
                }
                if !widened {
                    // no gain in a small region says little: look again in a wider one
                    // (the model is unchanged, so this costs no model call)
                    radius = TR_STATIONARY_RADIUS;
                    widened = true;
                    continue;
                }
                // the wider region's predicted gain did not materialise, the small one
                // predicts none: a kink the secant model cannot resolve
                stop = "below_secant_resolution";
                break;
            }
            // the exact acquisition at the model's maximiser
            evaluations += 1;
            let xn = inner.x;
            let pg = paths_at(std::slice::from_ref(&xn))?;
            let sch = schedule_of(&xn)?;
            let fnew = match pg.first() {
                Some(pg) => {
                    let info = self.local_info(pg, &sch, base, tr)?;
                    self.local_value(&info, &sch, tr, hold, hold_summary)
                }
                None => f64::NEG_INFINITY,
            };
            let rho = (fnew - fc) / predicted;
            let step = xn
                .iter()
                .zip(&xc)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            if fnew.is_finite() && rho >= 0.1 {
                let rel = (fnew - fc) / scale;
                xc = xn;
                fc = fnew;
                centre = None;
                widened = false;
                if rho >= 0.75 && step >= 0.99 * radius {
                    radius = (2.0 * radius).min(TR_MAX_RADIUS);
                }
                if rel <= TR_GAIN_TOL {
                    converged = true;
                    stop = "relative_gain";
                    break;
                }
            } else {
                radius = 0.25 * step.max(radius * 0.25).min(radius);
                if radius < MODEL_STEP {
                    // the model still predicts a gain that the acquisition does not give at
                    // the secants' own scale: a kink (e.g. a species reaching its bound or
                    // the mechanism switching branch) the linear model cannot resolve
                    stop = "below_secant_resolution";
                    break;
                }
            }
        }
        Ok((
            xc,
            RestartReport {
                start_value: f0,
                value: fc,
                iterations,
                evaluations,
                converged,
                stop: stop.to_string(),
            },
        ))
    }

    /// Acquisition value of a candidate's scenarios against the holding-course scenarios.
    fn acquisition_value(
        &self,
        cand: &Scored,
        hold: &Scored,
        hold_summary: &[ObjectiveSummary],
    ) -> f64 {
        let m = self.objectives.len();
        let n = cand.n;
        let params = McParams {
            beta: self.config.ucb_beta,
            ..McParams::default()
        };
        let acq = self.config.acquisition;
        let p_feas = match &cand.gaussian {
            Some((_, p)) => *p,
            None => smooth_feasibility(&cand.slacks, n),
        };
        let value = if acq.is_multi_objective() {
            let reference: Vec<f64> = hold_summary
                .iter()
                .map(|h| h.mean - (0.1 * h.mean.abs()).max(2.0 * h.sd).max(1e-9))
                .collect();
            let front: Vec<f64> = hold_summary.iter().map(|h| h.mean).collect();
            let Ok(samples) = ObjectiveSamples::new(&cand.values, n, 1, m) else {
                return f64::NEG_INFINITY;
            };
            let r = match acq {
                Acquisition::QEHVI => {
                    multi::q_expected_hypervolume_improvement(samples, &front, &reference)
                }
                Acquisition::QNEHVI => match ObjectiveSamples::new(&hold.values, n, 1, m) {
                    Ok(base) => {
                        multi::q_noisy_expected_hypervolume_improvement(samples, base, &reference)
                    }
                    Err(e) => Err(e),
                },
                _ => match (
                    ChebyshevScalarization::random(m, &front, self.config.seed),
                    ObjectiveSamples::new(&hold.values, n, 1, m),
                ) {
                    (Ok(ch), Ok(base)) => {
                        let cons: Vec<SampleMatrix<'_>> = cand
                            .slacks
                            .iter()
                            .filter_map(|s| SampleMatrix::new(s, n, 1).ok())
                            .collect();
                        multi::q_log_nparego(samples, base, &ch, &cons, &params)
                    }
                    (Err(e), _) | (_, Err(e)) => Err(e),
                },
            };
            let v = r.unwrap_or(f64::NEG_INFINITY);
            // hypervolume improvements are weighted by the probability of feasibility
            if acq == Acquisition::QNParEGO {
                v
            } else {
                v * p_feas
            }
        } else if acq.is_monte_carlo() {
            let f: Vec<f64> = (0..n).map(|s| cand.values[s * m]).collect();
            let Ok(samples) = SampleMatrix::new(&f, n, 1) else {
                return f64::NEG_INFINITY;
            };
            let cons: Vec<SampleMatrix<'_>> = cand
                .slacks
                .iter()
                .filter_map(|s| SampleMatrix::new(s, n, 1).ok())
                .collect();
            // standardise so the smoothing temperatures act on a unit scale
            let scale = hold_summary[0]
                .sd
                .max(1e-6 * hold_summary[0].mean.abs())
                .max(1e-12);
            let fs: Vec<f64> = f.iter().map(|v| v / scale).collect();
            let best = hold_summary[0].mean / scale;
            match SampleMatrix::new(&fs, n, 1) {
                Ok(std) => {
                    mc::evaluate(acq, std, best, &cons, &params).unwrap_or(f64::NEG_INFINITY)
                }
                Err(_) => {
                    let _ = samples;
                    f64::NEG_INFINITY
                }
            }
        } else {
            let s = cand.summary(0, m);
            let Ok(pred) = Predictive::new(s.mean, s.sd.max(1e-12)) else {
                return f64::NEG_INFINITY;
            };
            let best = hold_summary[0].mean;
            match analytic::evaluate(acq, pred, best, self.config.ucb_beta) {
                Ok(v) => match acq {
                    Acquisition::LogEI => v.value + p_feas.max(1e-300).ln(),
                    Acquisition::UCB => v.value,
                    _ => v.value * p_feas,
                },
                Err(_) => f64::NEG_INFINITY,
            }
        };
        if value.is_nan() {
            f64::NEG_INFINITY
        } else {
            value
        }
    }

    /// Scores of candidates held over the horizon, by the configured
    /// [`PolicyConfig::screening`]: on their linearised forecasts (batched model calls per
    /// day; Gaussian moments for analytic acquisitions, scenarios from the fixed base
    /// samples for Monte-Carlo ones) or on `screening_samples` Monte-Carlo paths of the
    /// hybrid model with common random numbers.
    fn score_candidates(
        &self,
        model: &HybridModel,
        state: &StateEstimate,
        jac: &[Mat9],
        base: &BaseSamples,
        cands: &[ControlArray<f64>],
        threads: usize,
    ) -> Result<Vec<Scored>> {
        let h = self.config.horizon_at(state.day);
        let tr = model.config().transform;
        match self.config.screening {
            Screening::Linearised => {
                let pgs = linearised_paths(model, state, cands, jac, threads)?;
                pgs.iter()
                    .zip(cands)
                    .map(|(pg, u)| {
                        let schedule = vec![*u; h];
                        if self.config.acquisition.is_monte_carlo() {
                            Ok(
                                self.score_paths(
                                    &pg.scenarios(base, &tr, &self.needed)?,
                                    &schedule,
                                ),
                            )
                        } else {
                            Ok(self.score_gaussian(pg, &schedule, &tr))
                        }
                    })
                    .collect()
            }
            Screening::MonteCarlo => cands
                .iter()
                .map(|u| {
                    let schedule = vec![*u; h];
                    let sc = model
                        .sample_paths(
                            state,
                            &schedule,
                            self.config.screening_samples,
                            self.config.seed ^ 0x7363_7265_656e,
                            threads,
                        )
                        .map_err(hybrid_err)?;
                    let paths: Vec<Vec<SpeciesArray<f64>>> = sc
                        .initial
                        .iter()
                        .zip(&sc.latent)
                        .map(|(s0, rest)| {
                            std::iter::once(*s0).chain(rest.iter().copied()).collect()
                        })
                        .collect();
                    Ok(self.score_paths(&paths, &schedule))
                })
                .collect(),
        }
    }

    /// The acquisition of each candidate (setpoints held over the horizon) against holding
    /// `current`, as the screening step of [`BedPolicy::decide`] computes it (candidates are
    /// used as given: project them into the decision space first if needed).
    pub fn screen(
        &self,
        model: &HybridModel,
        state: &StateEstimate,
        current: &ControlArray<f64>,
        candidates: &[ControlArray<f64>],
    ) -> Result<Vec<f64>> {
        let h = self.config.horizon_at(state.day);
        let space = self.decision_space(current)?;
        let jac = self.holding_jacobians(model, state, space.current())?;
        let base = BaseSamples::new(
            self.config.screening_samples,
            N_SPECIES * (h + 1),
            self.config.seed,
        )?;
        let hold = self
            .score_candidates(
                model,
                state,
                &jac,
                &base,
                std::slice::from_ref(space.current()),
                1,
            )?
            .pop()
            .ok_or_else(|| BedError::ShapeMismatch("no holding-course scenarios".into()))?;
        let m = self.objectives.len();
        let hold_summary: Vec<ObjectiveSummary> = (0..m).map(|k| hold.summary(k, m)).collect();
        Ok(self
            .score_candidates(model, state, &jac, &base, candidates, self.config.threads)?
            .iter()
            .map(|c| self.acquisition_value(c, &hold, &hold_summary))
            .collect())
    }

    /// State Jacobians of the one-day step along the holding-course mean path.
    fn holding_jacobians(
        &self,
        model: &HybridModel,
        state: &StateEstimate,
        hold: &ControlArray<f64>,
    ) -> Result<Vec<Mat9>> {
        let h = self.config.horizon_at(state.day);
        let tr = model.config().transform;
        let mut jac: Vec<Mat9> = Vec::with_capacity(h);
        let mut mu = state.z;
        for d in 0..h {
            let x = HybridModel::z_input(&mu, hold, state.day + d as u32);
            let lt = model.linearised_transition(&x).map_err(hybrid_err)?;
            jac.push(lt.jacobian);
            mu = lt.transition.mean;
            tr.clamp_z(&mut mu);
        }
        Ok(jac)
    }

    /// Chooses tomorrow's setpoints for one reactor: `state` is the filtered estimate of day
    /// `state.day`, `current` the setpoints in force. See the module docs.
    pub fn decide(
        &self,
        model: &HybridModel,
        state: &StateEstimate,
        current: &ControlArray<f64>,
    ) -> Result<Decision> {
        self.decide_sharing(model, state, current, None)
    }

    /// [`BedPolicy::decide`] with a Monte-Carlo forecast the caller already has under the
    /// setpoints in force (the daily loop's published forecast): the final check takes the
    /// holding course's paths from its first days instead of recomputing them, and draws the
    /// other courses with its seed (common random numbers). The decision is then the one
    /// [`BedPolicy::decide`] makes when its final check uses that seed: bit for bit (tested).
    ///
    /// The forecast must come from this `model` and `state`; one that cannot be the
    /// holding course (another method, start day, path count or schedule, no kept paths,
    /// fewer days than the decision looks ahead) is not used, and the final check draws its
    /// own paths with the policy's seed, as [`BedPolicy::decide`] does.
    pub fn decide_sharing(
        &self,
        model: &HybridModel,
        state: &StateEstimate,
        current: &ControlArray<f64>,
        hold: Option<HoldForecast<'_>>,
    ) -> Result<Decision> {
        let t0 = Instant::now();
        let h = self.config.horizon_at(state.day);
        let space = self.decision_space(current)?;
        let hold_controls = space.current().to_owned();
        let tr = model.config().transform;
        // 1. linearisation along the holding-course mean path (one set of Jacobians)
        let jac = self.holding_jacobians(model, state, &hold_controls)?;
        let mut timings = DecisionTimings {
            linearise: t0.elapsed(),
            ..DecisionTimings::default()
        };
        let dims = N_SPECIES * (h + 1);
        let base = BaseSamples::new(self.config.screening_samples, dims, self.config.seed)?;
        let screen = |cands: &[ControlArray<f64>], threads: usize| -> Result<Vec<Scored>> {
            self.score_candidates(model, state, &jac, &base, cands, threads)
        };
        let hold_lin = screen(std::slice::from_ref(&hold_controls), 1)?
            .pop()
            .ok_or_else(|| BedError::ShapeMismatch("no holding-course scenarios".into()))?;
        let m = self.objectives.len();
        let hold_lin_summary: Vec<ObjectiveSummary> =
            (0..m).map(|k| hold_lin.summary(k, m)).collect();
        // 2. screening + refinement on the linearised forecast
        let dim = space.dim();
        let mut screened = 0usize;
        let mut finalists_unit: Vec<(f64, Vec<f64>)> = Vec::new();
        let mut restarts = Vec::new();
        let t_screen = Instant::now();
        if dim > 0 {
            let acq_many = |xs: &[Vec<f64>], threads: usize| -> Result<Vec<f64>> {
                let us: Vec<ControlArray<f64>> = xs
                    .iter()
                    .map(|x| space.to_controls(x))
                    .collect::<Result<_>>()?;
                Ok(screen(&us, threads)?
                    .iter()
                    .map(|c| self.acquisition_value(c, &hold_lin, &hold_lin_summary))
                    .collect())
            };
            let raw = uniform_points(self.config.raw_samples, dim, self.config.seed)?;
            let mut starts: Vec<Vec<f64>> = raw.chunks_exact(dim).map(<[f64]>::to_vec).collect();
            starts.push(space.to_unit(&hold_controls)?);
            let values = acq_many(&starts, self.config.threads)?;
            screened += starts.len();
            let mut order: Vec<usize> = (0..starts.len())
                .filter(|&i| values[i].is_finite())
                .collect();
            order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
            timings.screen = t_screen.elapsed();
            let t_refine = Instant::now();
            let chosen: Vec<(Vec<f64>, f64)> = order
                .iter()
                .take(self.config.restarts)
                .map(|&i| (starts[i].clone(), values[i]))
                .collect();
            let paths_at = |xs: &[Vec<f64>]| -> Result<Vec<PathGaussian>> {
                let us: Vec<ControlArray<f64>> = xs
                    .iter()
                    .map(|x| space.to_controls(x))
                    .collect::<Result<_>>()?;
                linearised_paths(model, state, &us, &jac, 1)
            };
            let refined = refine_parallel(&chosen, dim, self.config.threads, &|x0, v0| {
                self.refine_trust_region(
                    x0,
                    v0,
                    &space,
                    &paths_at,
                    &base,
                    &tr,
                    &hold_lin,
                    &hold_lin_summary,
                    h,
                )
            })?;
            for (x, r) in refined {
                tracing::debug!(start = r.start_value, value = r.value, iterations = r.iterations, evaluations = r.evaluations, stop = %r.stop, "acquisition restart");
                screened += r.evaluations;
                finalists_unit.push((r.value, x));
                restarts.push(r);
            }
            timings.refine = t_refine.elapsed();
        }
        // 3. final choice on the Monte-Carlo forecast (common random numbers)
        let t_final = Instant::now();
        // distinct refined points, best (linearised acquisition) first, at most
        // `FINAL_CHECK_MAX`; restarts that met at one optimum are one finalist
        finalists_unit.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut finalists: Vec<ControlArray<f64>> = vec![hold_controls];
        let mut kept: Vec<&Vec<f64>> = Vec::new();
        for (_, x) in &finalists_unit {
            if kept.len() >= FINAL_CHECK_MAX {
                break;
            }
            let near = kept.iter().any(|k| {
                k.iter()
                    .zip(x)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f64::max)
                    <= FINALIST_TOL
            });
            let u = space.to_controls(x)?;
            if !near && !finalists.iter().any(|f| same(f, &u)) {
                kept.push(x);
                finalists.push(u);
            }
        }
        let shared =
            hold.filter(|hf| hf.is_holding(state, &hold_controls, h, self.config.mc_samples));
        if hold.is_some() && shared.is_none() {
            tracing::debug!(
                day = state.day,
                "the shared forecast cannot be the holding course; the final check draws its own"
            );
        }
        let mc_seed = shared.map_or(self.final_check_seed(), |hf| hf.seed);
        let (scored, mut forecasts) = self.monte_carlo_forecasts(
            model,
            state,
            &finalists,
            mc_seed,
            shared.map(|hf| hf.forecast),
        )?;
        let hold_summary: Vec<ObjectiveSummary> = (0..m).map(|k| scored[0].summary(k, m)).collect();
        let values: Vec<f64> = scored
            .iter()
            .map(|s| self.acquisition_value(s, &scored[0], &hold_summary))
            .collect();
        let mut pick = 0;
        for i in 1..finalists.len() {
            let feasible_enough =
                scored[i].feasible >= MIN_FEASIBILITY || scored[i].feasible >= scored[0].feasible;
            if feasible_enough && values[i] > values[pick] {
                pick = i;
            }
        }
        let chosen = finalists[pick];
        let forecast = forecasts.swap_remove(pick);
        timings.final_check = t_final.elapsed();
        let recommended: Vec<ObjectiveSummary> =
            (0..m).map(|k| scored[pick].summary(k, m)).collect();
        let reason = self.reason(
            pick == 0,
            values[pick],
            &recommended,
            &hold_summary,
            scored[pick].feasible,
        );
        Ok(Decision {
            day: state.day,
            setpoints: Setpoints::new(state.day, chosen),
            current: *current,
            hold: pick == 0,
            acquisition: self.config.acquisition,
            acquisition_value: values[pick],
            objectives: self.objectives.iter().map(|o| o.name()).collect(),
            recommended,
            holding: hold_summary,
            probability_feasible: scored[pick].feasible,
            forecast,
            elapsed: t0.elapsed(),
            reason,
            screened,
            finalists: finalists.len(),
            timings,
            restarts,
        })
    }

    /// Decisions for several reactors that share one model, as one q-batch.
    ///
    /// Each reactor's candidates — its holding course and [`PolicyConfig::batch_raw_samples`]
    /// space-filling points of its own decision space — are scored on its own linearised
    /// forecast (see [`BedPolicy::decide`]; reactors are spread over
    /// [`PolicyConfig::threads`]). The batch is then chosen greedily, reactor by reactor, by
    /// the joint Monte-Carlo acquisition (qLogEI unless another Monte-Carlo acquisition is
    /// configured) of the batch so far plus the candidate: the reactors' objectives are
    /// jointly normal with the linearised means and sds, and correlated through the model
    /// (two candidates whose first-day inputs are close share the model's error there,
    /// [`HybridModel::input_correlation`]); fixed quasi-random base samples; each member
    /// weighted by its probability of feasibility. A candidate next to one already in the
    /// batch therefore adds little joint improvement and the batch spreads over the design
    /// space. The incumbent is the best holding-course objective over the reactors (they run
    /// the same process). Adding a member only appends a row to the Cholesky factor of the
    /// batch covariance, so each greedy step costs `O(q²)` per candidate.
    ///
    /// With two or three objectives and qNEHVI or qEHVI, the greedy choice maximises the
    /// expected hypervolume that each member adds to the front of the reactors' holding
    /// courses and the members so far (sampled jointly with them for qNEHVI), with the
    /// objectives' linearised covariance per candidate and the same model correlations
    /// between candidates; the decision's `acquisition_value` is the batch's expected
    /// hypervolume improvement in units of the largest holding-course sd of each objective.
    /// qNParEGO is refused for batches.
    ///
    /// Batch members are not refined locally, and their forecasts and objective summaries
    /// are the linearised (moment-matching) ones: the Monte-Carlo check of
    /// [`BedPolicy::decide`] for every reactor would cost more than the whole batch budget.
    pub fn decide_batch(
        &self,
        model: &HybridModel,
        reactors: &[(StateEstimate, ControlArray<f64>)],
    ) -> Result<Vec<Decision>> {
        let t0 = Instant::now();
        if reactors.is_empty() {
            return Ok(Vec::new());
        }
        let acq = self.config.acquisition;
        if acq == Acquisition::QNParEGO {
            return Err(BedError::InvalidParameter {
                name: "acquisition",
                reason: "batch decisions over several objectives take qNEHVI or qEHVI".into(),
            });
        }
        let mut timings = DecisionTimings::default();
        // 1. every reactor's candidates on its own linearised forecast: the reactors' spaces
        // and holding courses in parallel, every candidate's path a day at a time as one batch
        // over all reactors (split over the threads: the shared model's factors are read once
        // per thread and day, not once per reactor), then the candidates' scores
        let q = reactors.len();
        let threads = self.config.threads.clamp(1, q);
        let setups = per_index(q, threads, &|j| {
            let (state, current) = &reactors[j];
            self.batch_setup(model, state, current)
        })?;
        let groups: Vec<PathGroup<'_>> = setups
            .iter()
            .zip(reactors)
            .map(|((r, controls), (state, _))| PathGroup {
                state,
                cands: controls,
                jac: &r.jac,
            })
            .collect();
        let paths = linearised_paths_many(model, &groups, self.config.threads, true)?;
        let scored = per_index(q, threads, &|j| {
            let (pgs, first) = &paths[j];
            self.batch_candidates(model, &reactors[j].0, &setups[j].1, pgs, first.as_deref())
        })?;
        drop(groups);
        let rs: Vec<BatchReactor> = setups
            .into_iter()
            .zip(scored)
            .map(|((r, _), cands)| BatchReactor { cands, ..r })
            .collect();
        let screened: usize = rs.iter().map(|r| r.cands.len()).sum();
        timings.screen = t0.elapsed();
        // 2. greedy joint choice
        let t_greedy = Instant::now();
        let (chosen, joint_value) = if acq.is_multi_objective() {
            front_batch::choose(self, model, &rs, q, acq == Acquisition::QNEHVI)?
        } else {
            self.choose_batch(model, &rs, q)?
        };
        timings.refine = t_greedy.elapsed();
        // 3. the members' forecasts (moment matching) and decisions
        let t_forecast = Instant::now();
        let mm = ForecastOptions {
            method: ForecastMethod::MomentMatching,
            paths: self.config.mc_samples,
            seed: self.config.seed ^ 0x6d63_5f70_6174_6873,
            keep_paths: false,
            threads: self.config.threads,
        };
        // the members' forecasts as one batch (the shared model's factors read once a day)
        let schedules: Vec<Vec<ControlArray<f64>>> = (0..q)
            .map(|j| {
                let h = self.config.horizon_at(reactors[j].0.day);
                vec![rs[j].cands[chosen[j]].controls; h]
            })
            .collect();
        let jobs: Vec<ForecastJob<'_>> = reactors
            .iter()
            .zip(&schedules)
            .map(|((state, _), schedule)| ForecastJob {
                start: state,
                schedule,
                seed: mm.seed,
            })
            .collect();
        let mut forecasts = model.forecast_many(&jobs, &mm).into_iter();
        let mut out = Vec::with_capacity(q);
        for (j, (state, current)) in reactors.iter().enumerate() {
            let c = &rs[j].cands[chosen[j]];
            let hold_c = &rs[j].cands[0];
            let hold_u = *rs[j].space.current();
            let is_hold = chosen[j] == 0 || same(&c.controls, &hold_u);
            let forecast = forecasts
                .next()
                .ok_or_else(|| BedError::Model("a member's forecast is missing".into()))?
                .map_err(hybrid_err)?;
            let rec = c.summaries.clone();
            let holding = hold_c.summaries.clone();
            out.push(Decision {
                day: state.day,
                setpoints: Setpoints::new(state.day, c.controls),
                current: *current,
                hold: is_hold,
                acquisition: self.batch_acquisition(),
                acquisition_value: joint_value,
                objectives: self.objectives.iter().map(|o| o.name()).collect(),
                reason: self.reason(is_hold, joint_value, &rec, &holding, c.feasible),
                recommended: rec,
                holding,
                probability_feasible: c.feasible,
                forecast,
                elapsed: Duration::ZERO,
                screened,
                finalists: 0,
                timings: DecisionTimings::default(),
                restarts: Vec::new(),
            });
        }
        timings.forecast = t_forecast.elapsed();
        let elapsed = t0.elapsed();
        for d in &mut out {
            d.elapsed = elapsed;
            d.timings = timings;
        }
        Ok(out)
    }

    /// The greedy single-objective batch choice: each reactor's candidate index and the
    /// batch's joint acquisition.
    fn choose_batch(
        &self,
        model: &HybridModel,
        rs: &[BatchReactor],
        q: usize,
    ) -> Result<(Vec<usize>, f64)> {
        let best = rs
            .iter()
            .map(|r| r.cands[0].mean)
            .fold(f64::NEG_INFINITY, f64::max);
        let scale = rs
            .iter()
            .map(|r| r.cands[0].sd)
            .fold(0.0f64, f64::max)
            .max(1e-6 * best.abs())
            .max(1e-12);
        let base = BaseSamples::new(
            self.config.screening_samples.max(64),
            q,
            self.config.seed ^ 0x6261_7463_6821,
        )?;
        let mut batch = JointBatch::new(base.n_samples(), q);
        if self.batch_acquisition() == Acquisition::QLogEI {
            batch = batch.with_log_ei(best / scale, self.batch_mc_params());
        }
        let mut chosen: Vec<usize> = Vec::with_capacity(q);
        let mut joint_value = f64::NEG_INFINITY;
        for (j, r) in rs.iter().enumerate() {
            let (mut best_i, mut best_v) = (0, f64::NEG_INFINITY);
            for (i, c) in r.cands.iter().enumerate() {
                if i != 0 && c.feasible < MIN_FEASIBILITY {
                    continue;
                }
                // holding course may be repeated; other copies of a member may not
                let v = batch.value_with(self, model, c, &base, best, scale, i == 0);
                // equal joint values (the batch is indifferent, e.g. when no candidate can
                // beat its members): the candidate with the higher predicted objective
                // (no tolerance before a first finite value: `∞ · tol` would make every
                // comparison with the holding course's value false)
                let tol = if best_v.is_finite() {
                    BATCH_TIE_TOL * best_v.abs().max(1.0)
                } else {
                    0.0
                };
                let better = v > best_v + tol
                    || (v >= best_v - tol && c.mean > r.cands[best_i].mean && v.is_finite());
                if better {
                    best_v = best_v.max(v);
                    best_i = i;
                }
            }
            batch.push(model, &r.cands[best_i], &base, j, scale)?;
            chosen.push(best_i);
            joint_value = best_v;
        }
        Ok((chosen, joint_value))
    }

    /// The Monte-Carlo parameters of batch decisions. The choice is discrete: no smoothing
    /// of the max over the batch is needed, and a smoothed max would reward a second copy of
    /// a member (by τ ln 2).
    fn batch_mc_params(&self) -> McParams {
        McParams {
            beta: self.config.ucb_beta,
            tau_max: BATCH_TAU_MAX,
            ..McParams::default()
        }
    }

    /// The Monte-Carlo acquisition of batch decisions: the configured one when it is a
    /// Monte-Carlo acquisition, qLogEI otherwise.
    fn batch_acquisition(&self) -> Acquisition {
        if self.config.acquisition.is_monte_carlo() {
            self.config.acquisition
        } else {
            Acquisition::QLogEI
        }
    }

    /// One reactor of a batch: its decision space and holding-course Jacobians (candidates
    /// still to come) and its candidates' controls (index 0 = holding course).
    fn batch_setup(
        &self,
        model: &HybridModel,
        state: &StateEstimate,
        current: &ControlArray<f64>,
    ) -> Result<(BatchReactor, Vec<ControlArray<f64>>)> {
        let space = self.decision_space(current)?;
        let hold = *space.current();
        let jac = self.holding_jacobians(model, state, &hold)?;
        let dim = space.dim();
        let mut units: Vec<Vec<f64>> = vec![space.to_unit(&hold)?];
        if dim > 0 {
            units.extend(
                uniform_points(self.config.batch_raw_samples, dim, self.config.seed)?
                    .chunks_exact(dim)
                    .map(<[f64]>::to_vec),
            );
        }
        let controls = units
            .iter()
            .map(|u| space.to_controls(u))
            .collect::<Result<_>>()?;
        Ok((
            BatchReactor {
                space,
                jac,
                cands: Vec::new(),
            },
            controls,
        ))
    }

    /// A reactor's candidates scored on their linearised paths (`first`: each candidate's
    /// first-day GP input, when computed with the paths).
    fn batch_candidates(
        &self,
        model: &HybridModel,
        state: &StateEstimate,
        controls: &[ControlArray<f64>],
        pgs: &[PathGaussian],
        first: Option<&[Vec<f64>]>,
    ) -> Result<Vec<BatchCandidate>> {
        let h = self.config.horizon_at(state.day);
        let tr = model.config().transform;
        let m = self.objectives.len();
        let mut first = first.unwrap_or_default().iter();
        pgs.iter()
            .zip(controls.iter().copied())
            .map(|(pg, u)| {
                let schedule = vec![u; h];
                let (v, grads) = self.path_variances_and_gradients(pg, &schedule, &tr);
                let sc = self.score_moments(&pg.means, &v, &schedule, &tr);
                let g = sc.summary(0, m);
                let summaries: Vec<ObjectiveSummary> = (0..m).map(|k| sc.summary(k, m)).collect();
                let chol = if m > 1 {
                    let cov = Self::objective_covariance(pg, &grads, &v.objective);
                    cholesky_psd(&cov, m)
                } else {
                    vec![g.sd.max(1e-12)]
                };
                Ok(BatchCandidate {
                    controls: u,
                    mean: g.mean,
                    sd: g.sd.max(1e-12),
                    summaries,
                    chol,
                    feasible: sc.feasible,
                    input: match first.next() {
                        Some(x) => x.clone(),
                        None => model
                            .gp_input(&HybridModel::z_input(&state.z, &u, state.day))
                            .map_err(hybrid_err)?,
                    },
                })
            })
            .collect()
    }

    /// The seed of the final check's Monte-Carlo paths when no forecast is shared
    /// ([`BedPolicy::decide`]): derived from [`PolicyConfig::seed`], the same every day.
    pub fn final_check_seed(&self) -> u64 {
        self.config.seed ^ 0x6d63_5f70_6174_6873
    }

    /// Scores and Monte-Carlo forecasts of several courses of action held over the horizon,
    /// with common random numbers: the same start draws and innovations for every course
    /// ([`HybridModel::sample_paths`] draws depend only on the seed). The start draws are the
    /// first of the seeded stream (drawn without stepping a day), the paths come from the
    /// forecasts themselves, so each course costs one forecast; with `first_course` the
    /// first course's forecast is that one, cut to the horizon (drawn with `seed`).
    fn monte_carlo_forecasts(
        &self,
        model: &HybridModel,
        state: &StateEstimate,
        courses: &[ControlArray<f64>],
        seed: u64,
        first_course: Option<&Forecast>,
    ) -> Result<(Vec<Scored>, Vec<Forecast>)> {
        let h = self.config.horizon_at(state.day);
        let n = self.config.mc_samples;
        if courses.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        // the start draws alone (no day to step: they come first in the seeded stream)
        let initial = model
            .sample_paths(state, &[], n, seed, self.config.threads)
            .map_err(hybrid_err)?
            .initial;
        let mut scored = Vec::with_capacity(courses.len());
        let mut forecasts = Vec::with_capacity(courses.len());
        for (i, u) in courses.iter().enumerate() {
            let schedule = vec![*u; h];
            let f = match first_course.filter(|_| i == 0) {
                Some(known) => known.truncated(h),
                None => model
                    .forecast(
                        state,
                        &schedule,
                        &ForecastOptions {
                            method: ForecastMethod::MonteCarlo,
                            paths: n,
                            seed,
                            keep_paths: true,
                            threads: self.config.threads,
                        },
                    )
                    .map_err(hybrid_err)?,
            };
            let latent = f
                .paths
                .as_ref()
                .ok_or_else(|| BedError::Model("the forecast kept no paths".into()))?;
            let paths: Vec<Vec<SpeciesArray<f64>>> = initial
                .iter()
                .zip(latent)
                .map(|(s0, rest)| std::iter::once(*s0).chain(rest.iter().copied()).collect())
                .collect();
            scored.push(self.score_paths(&paths, &schedule));
            forecasts.push(f);
        }
        Ok((scored, forecasts))
    }

    fn reason(
        &self,
        hold: bool,
        value: f64,
        rec: &[ObjectiveSummary],
        holding: &[ObjectiveSummary],
        p_feas: f64,
    ) -> String {
        let acq = self.config.acquisition;
        let name = self.objectives[0].name();
        let change = if holding[0].mean.abs() > 0.0 {
            100.0 * (rec[0].mean - holding[0].mean) / holding[0].mean.abs()
        } else {
            0.0
        };
        let cons = if self.config.constraints.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = self
                .config
                .constraints
                .iter()
                .map(|c| c.to_string())
                .collect();
            format!("; P({}) = {p_feas:.2}", list.join(", "))
        };
        if acq.is_multi_objective() && self.objectives.len() > 1 {
            let changes: Vec<String> = self
                .objectives
                .iter()
                .zip(rec.iter().zip(holding))
                .map(|(o, (r, h))| {
                    let pct = if h.mean.abs() > 0.0 {
                        100.0 * (r.mean - h.mean) / h.mean.abs()
                    } else {
                        0.0
                    };
                    format!("{pct:+.1} % {}", o.name())
                })
                .collect();
            return if hold {
                format!(
                    "{acq}: holding course (no candidate extends the front enough; acquisition \
                     {value:.3}){cons}"
                )
            } else {
                format!("{acq}: {} over holding course{cons}", changes.join(", "))
            };
        }
        if hold {
            format!(
                "{acq}: holding course (no candidate improves {name} enough; acquisition {value:.3}){cons}"
            )
        } else {
            format!("{acq}: {change:+.1} % {name} over holding course{cons}")
        }
    }
}

/// The new last row (`k + 1` values) of a lower Cholesky factor `l` (`k × k`, rows of
/// `stride`) when a member with variance `var` and covariances `cov(a)` with members
/// `a < k` is appended; a zero pivot gives a zero entry (a copy of a member). `None` when
/// the row is not finite.
fn cholesky_append_row(
    l: &[f64],
    stride: usize,
    k: usize,
    var: f64,
    cov: impl Fn(usize) -> f64,
) -> Option<Vec<f64>> {
    let mut row = vec![0.0; k + 1];
    let mut sq = 0.0;
    for a in 0..k {
        let v = cov(a)
            - l[a * stride..a * stride + a]
                .iter()
                .zip(&row)
                .map(|(l, r)| l * r)
                .sum::<f64>();
        let d = l[a * stride + a];
        row[a] = if d > 0.0 { v / d } else { 0.0 };
        sq += row[a] * row[a];
    }
    let diag = var - sq;
    row[k] = if diag > 0.0 { diag.sqrt() } else { 0.0 };
    row.iter().all(|v| v.is_finite()).then_some(row)
}

/// Lower Cholesky factor (row-major) of a positive semi-definite `m × m` matrix; a pivot
/// that is not positive (a perfectly correlated or zero-variance objective) gives a zero
/// column.
fn cholesky_psd(a: &[f64], m: usize) -> Vec<f64> {
    let mut l = vec![0.0; m * m];
    for i in 0..m {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i * m + k] * l[j * m + k]).sum();
            if i == j {
                let d = a[i * m + i] - s;
                l[i * m + i] = if d > 0.0 { d.sqrt() } else { 0.0 };
            } else {
                let d = l[j * m + j];
                l[i * m + j] = if d > 0.0 { (a[i * m + j] - s) / d } else { 0.0 };
            }
        }
    }
    l
}

fn same(a: &ControlArray<f64>, b: &ControlArray<f64>) -> bool {
    a.iter()
        .zip(b)
        .all(|(x, y)| (x - y).abs() <= 1e-12 * x.abs().max(1.0))
}

fn hybrid_err(e: perfusio_hybrid::HybridError) -> BedError {
    BedError::Model(e.to_string())
}

/// Smooth probability of feasibility: the mean over scenarios of the product of the
/// constraints' sigmoid-weighted slacks.
fn smooth_feasibility(slacks: &[Vec<f64>], n: usize) -> f64 {
    if slacks.is_empty() {
        return 1.0;
    }
    let mut total = 0.0;
    for s in 0..n {
        let mut p = 1.0;
        for c in slacks {
            p *= crate::special::sigmoid(c[s] / SLACK_TAU);
        }
        total += p;
    }
    total / n.max(1) as f64
}

/// One reactor of a batch decision: its decision space, holding-course Jacobians and the
/// candidates scored so far (index 0 = holding course).
struct BatchReactor {
    space: DecisionSpace,
    jac: Vec<Mat9>,
    cands: Vec<BatchCandidate>,
}

/// A candidate of a batch decision on its linearised forecast.
struct BatchCandidate {
    controls: ControlArray<f64>,
    /// Objective 0's linearised mean and sd.
    mean: f64,
    sd: f64,
    /// Every objective's linearised mean and sd.
    summaries: Vec<ObjectiveSummary>,
    /// Lower Cholesky factor (`m × m`, row-major) of the objectives' linearised covariance.
    chol: Vec<f64>,
    feasible: f64,
    /// The first day's GP input, for the model's correlations.
    input: Vec<f64>,
}

/// Variances of a linearised forecast: of each objective, and of each constrained value
/// on each day (constraint major, days `1..=H`).
#[derive(Debug, Clone)]
struct Variances {
    objective: Vec<f64>,
    constraint: Vec<f64>,
}

/// What the refinement knows at one point: the mean path in `z`, and the variances
/// (analytic acquisitions) or the scenario paths in `z` (Monte-Carlo acquisitions).
#[derive(Debug, Clone)]
struct LocalInfo {
    means: Vec<SpeciesArray<f64>>,
    var: Option<Variances>,
    scenarios: Option<Vec<Vec<SpeciesArray<f64>>>>,
}

impl LocalInfo {
    /// `self + Σ_j delta_j (nbrs_j − self)`: the linear interpolation through the secant
    /// points (`delta_j` in units of secant step `j`).
    fn interpolate(&self, nbrs: &[LocalInfo], delta: &[f64]) -> LocalInfo {
        let lin = |c: f64, get: &dyn Fn(&LocalInfo) -> f64| -> f64 {
            c + nbrs
                .iter()
                .zip(delta)
                .map(|(n, d)| d * (get(n) - c))
                .sum::<f64>()
        };
        let others: Vec<&[SpeciesArray<f64>]> = nbrs.iter().map(|n| n.means.as_slice()).collect();
        let means = interpolate_path(&self.means, &others, delta);
        let var = self.var.as_ref().map(|v| Variances {
            objective: (0..v.objective.len())
                .map(|i| {
                    lin(v.objective[i], &|n| {
                        n.var.as_ref().map_or(v.objective[i], |w| w.objective[i])
                    })
                })
                .collect(),
            constraint: (0..v.constraint.len())
                .map(|i| {
                    lin(v.constraint[i], &|n| {
                        n.var.as_ref().map_or(v.constraint[i], |w| w.constraint[i])
                    })
                })
                .collect(),
        });
        let scenarios = self.scenarios.as_ref().map(|sc| {
            sc.iter()
                .enumerate()
                .map(|(s, p)| {
                    let others: Vec<&[SpeciesArray<f64>]> = nbrs
                        .iter()
                        .map(|n| {
                            n.scenarios
                                .as_ref()
                                .map_or(p.as_slice(), |x| x[s].as_slice())
                        })
                        .collect();
                    interpolate_path(p, &others, delta)
                })
                .collect()
        });
        LocalInfo {
            means,
            var,
            scenarios,
        }
    }
}

/// `c + Σ_j delta_j (others_j − c)` for paths of species arrays.
fn interpolate_path(
    c: &[SpeciesArray<f64>],
    others: &[&[SpeciesArray<f64>]],
    delta: &[f64],
) -> Vec<SpeciesArray<f64>> {
    let mut out = c.to_vec();
    for (n, d) in others.iter().zip(delta) {
        if *d == 0.0 {
            continue;
        }
        for (o, (p, q)) in out.iter_mut().zip(n.iter().zip(c)) {
            for k in 0..N_SPECIES {
                o[k] += d * (p[k] - q[k]);
            }
        }
    }
    out
}

/// The members chosen so far in a greedy batch: the Cholesky factor of their objectives'
/// covariance (standardised), their scenario values and feasibility slacks under the fixed
/// base samples. Adding a member appends one row to each.
struct JointBatch {
    n: usize,
    /// Lower Cholesky factor, `k × k` in a `q × q` buffer.
    l: Vec<f64>,
    q: usize,
    /// The members' GP inputs and sds (standardised).
    inputs: Vec<Vec<f64>>,
    sds: Vec<f64>,
    /// `samples[s * q + a]`, `slacks[s * q + a]`.
    samples: Vec<f64>,
    slacks: Vec<f64>,
    k: usize,
    /// With qLogEI: the standardised incumbent and the parameters, and each member's term
    /// per scenario (`terms[s * q + a]`, [`mc::LogEiTerm`]). The members' terms do not
    /// change while candidates for the next member are compared, so each is computed once
    /// (the values are those of [`mc::q_log_expected_improvement`] on the whole batch).
    log_ei: Option<(f64, mc::LogEiTerm)>,
    terms: Vec<f64>,
}

impl JointBatch {
    fn new(n: usize, q: usize) -> Self {
        Self {
            n,
            l: vec![0.0; q * q],
            q,
            inputs: Vec::with_capacity(q),
            sds: Vec::with_capacity(q),
            samples: vec![0.0; n * q],
            slacks: vec![0.0; n * q],
            k: 0,
            log_ei: None,
            terms: Vec::new(),
        }
    }

    /// Keeps the members' qLogEI terms for incumbent `best` (standardised, finite).
    fn with_log_ei(mut self, best: f64, params: McParams) -> Self {
        if best.is_finite() && params.check().is_ok() {
            self.log_ei = Some((best, mc::LogEiTerm::new(&params)));
            self.terms = vec![0.0; self.n * self.q];
        }
        self
    }

    /// The new member's row of the Cholesky factor (`k + 1` values), or `None` when the
    /// batch covariance would not be positive definite.
    fn new_row(&self, model: &HybridModel, c: &BatchCandidate, scale: f64) -> Option<Vec<f64>> {
        let sd = c.sd / scale;
        cholesky_append_row(&self.l, self.q, self.k, sd * sd, |a| {
            let rho = model
                .input_correlation(&self.inputs[a], &c.input)
                .clamp(-1.0, 1.0);
            rho * self.sds[a] * sd
        })
    }

    fn member_slack(c: &BatchCandidate) -> f64 {
        // feasibility as a deterministic slack: logit of the member's probability
        let p = c.feasible.clamp(1e-12, 1.0 - 1e-12);
        (p / (1.0 - p)).ln() * McParams::default().eta
    }

    /// The batch's joint acquisition with `c` added (`-∞` for a copy of a member unless
    /// `allow_copy`).
    #[allow(clippy::too_many_arguments)]
    fn value_with(
        &self,
        policy: &BedPolicy,
        model: &HybridModel,
        c: &BatchCandidate,
        base: &BaseSamples,
        best: f64,
        scale: f64,
        allow_copy: bool,
    ) -> f64 {
        let Some(row) = self.new_row(model, c, scale) else {
            return f64::NEG_INFINITY;
        };
        let (k, n) = (self.k + 1, self.n);
        if !allow_copy && row[k - 1] < BATCH_MIN_NEW_SD * c.sd / scale {
            // (nearly) a copy of a member: it adds nothing the batch does not know
            return f64::NEG_INFINITY;
        }
        let slack = Self::member_slack(c);
        if let Some((best_z, term)) = &self.log_ei {
            // qLogEI from the members' kept terms and the candidate's own
            let mut li = vec![0.0; k];
            let mut per_sample = Vec::with_capacity(n);
            for (s, eps) in base.rows().enumerate() {
                li[..k - 1].copy_from_slice(&self.terms[s * self.q..s * self.q + k - 1]);
                let mut v = c.mean / scale;
                for b in 0..k {
                    v += row[b] * eps[b];
                }
                li[k - 1] = term.value(v, *best_z, std::iter::once(slack));
                per_sample.push(term.reduce(&li));
            }
            return mc::logmeanexp(&per_sample);
        }
        let mut samples = vec![0.0; n * k];
        let mut slacks = vec![0.0; n * k];
        for (s, eps) in base.rows().enumerate() {
            samples[s * k..s * k + k - 1]
                .copy_from_slice(&self.samples[s * self.q..s * self.q + k - 1]);
            slacks[s * k..s * k + k - 1]
                .copy_from_slice(&self.slacks[s * self.q..s * self.q + k - 1]);
            let mut v = c.mean / scale;
            for b in 0..k {
                v += row[b] * eps[b];
            }
            samples[s * k + k - 1] = v;
            slacks[s * k + k - 1] = slack;
        }
        let (Ok(sm), Ok(cm)) = (
            SampleMatrix::new(&samples, n, k),
            SampleMatrix::new(&slacks, n, k),
        ) else {
            return f64::NEG_INFINITY;
        };
        mc::evaluate(
            policy.batch_acquisition(),
            sm,
            best / scale,
            &[cm],
            &policy.batch_mc_params(),
        )
        .unwrap_or(f64::NEG_INFINITY)
    }

    /// Appends `c` as member `j` (= the current size).
    fn push(
        &mut self,
        model: &HybridModel,
        c: &BatchCandidate,
        base: &BaseSamples,
        j: usize,
        scale: f64,
    ) -> Result<()> {
        let row = self.new_row(model, c, scale).ok_or_else(|| {
            BedError::Model("the batch covariance is not positive definite".into())
        })?;
        let k = self.k;
        debug_assert_eq!(j, k);
        self.l[k * self.q..k * self.q + k + 1].copy_from_slice(&row);
        let slack = Self::member_slack(c);
        for (s, eps) in base.rows().enumerate() {
            let mut v = c.mean / scale;
            for b in 0..=k {
                v += row[b] * eps[b];
            }
            self.samples[s * self.q + k] = v;
            self.slacks[s * self.q + k] = slack;
            if let Some((best_z, term)) = &self.log_ei {
                self.terms[s * self.q + k] = term.value(v, *best_z, std::iter::once(slack));
            }
        }
        self.inputs.push(c.input.clone());
        self.sds.push(c.sd / scale);
        self.k += 1;
        Ok(())
    }
}

/// The linearised forecast of one candidate: the mean path in `z` (day 0 = today) and the
/// linear recursion of its deviations, `e_0 ~ N(0, P)`, `e_{d+1} = J_d e_d + w_d` with
/// `w_d ~ N(0, C_d)`. The stacked covariance of the path's states (`(9(H+1))²`) is built
/// only where scenarios need it ([`PathGaussian::cov`]); the variances that scoring needs come
/// from the recursion directly ([`PathGaussian::linear_variance`],
/// [`PathGaussian::marginals`]), `O(H)` instead of `O(H²)` 9 × 9 products.
struct PathGaussian {
    means: Vec<SpeciesArray<f64>>,
    /// `P`, the covariance of today's state.
    start: Mat9,
    /// `J_d`, `H` of them (shared by the candidates of one decision).
    jac: std::sync::Arc<Vec<Mat9>>,
    /// `C_d`, the candidate's latent transition covariances, `H` of them.
    noise: Vec<Mat9>,
}

impl PathGaussian {
    fn dims(&self) -> usize {
        N_SPECIES * self.means.len()
    }

    /// The stacked covariance, row-major `(9(H+1))²`: `Σ_00 = P`,
    /// `Σ_{d+1,d+1} = J_d Σ_dd J_dᵀ + C_d`, `Σ_{d+1,j} = J_d Σ_dj`.
    fn cov(&self) -> Vec<f64> {
        let t = N_SPECIES;
        let h = self.noise.len();
        let dims = self.dims();
        let mut big = vec![0.0; dims * dims];
        for i in 0..t {
            for j in 0..t {
                big[i * dims + j] = self.start[i][j];
            }
        }
        for d in 0..h {
            let jd = &self.jac[d];
            for blk in 0..=d {
                for i in 0..t {
                    for j in 0..t {
                        let mut v = 0.0;
                        for k in 0..t {
                            v += jd[i][k] * big[(d * t + k) * dims + blk * t + j];
                        }
                        big[((d + 1) * t + i) * dims + blk * t + j] = v;
                        big[(blk * t + j) * dims + (d + 1) * t + i] = v;
                    }
                }
            }
            for i in 0..t {
                for j in 0..t {
                    let mut v = 0.0;
                    for k in 0..t {
                        v += big[((d + 1) * t + i) * dims + d * t + k] * jd[j][k];
                    }
                    big[((d + 1) * t + i) * dims + (d + 1) * t + j] = v + self.noise[d][i][j];
                }
            }
        }
        big
    }

    /// `gᵀ Σ g` for a gradient `g` over the stacked path (`9(H+1)` values) by the adjoint
    /// recursion `λ_H = g_H`, `λ_d = g_d + J_dᵀ λ_{d+1}`:
    /// `gᵀ Σ g = λ_0ᵀ P λ_0 + Σ_d λ_{d+1}ᵀ C_d λ_{d+1}`.
    fn linear_variance(&self, g: &[f64]) -> f64 {
        let t = N_SPECIES;
        let h = self.noise.len();
        let block = |d: usize| -> SpeciesArray<f64> {
            std::array::from_fn(|k| g.get(d * t + k).copied().unwrap_or(0.0))
        };
        let mut lambda = block(h);
        let mut var = 0.0;
        for d in (0..h).rev() {
            var += quad9(&self.noise[d], &lambda);
            let jd = &self.jac[d];
            let gd = block(d);
            lambda =
                std::array::from_fn(|k| gd[k] + (0..t).map(|i| jd[i][k] * lambda[i]).sum::<f64>());
        }
        var + quad9(&self.start, &lambda)
    }

    /// The covariance of each day's state, days `0..=H`: `P_0 = P`,
    /// `P_{d+1} = J_d P_d J_dᵀ + C_d`.
    fn marginals(&self) -> Vec<Mat9> {
        let mut out = Vec::with_capacity(self.noise.len() + 1);
        let mut p = self.start;
        out.push(p);
        for (jd, c) in self.jac.iter().zip(&self.noise) {
            let mut next = sandwich9(jd, &p);
            for i in 0..N_SPECIES {
                for j in 0..N_SPECIES {
                    next[i][j] += c[i][j];
                }
            }
            p = next;
            out.push(p);
        }
        out
    }

    /// Scenarios `means + L ε_s` from the base samples, in original units: the species in
    /// `needed` drawn, the others at the mean path ([`scenarios_z`](Self::scenarios_z)).
    fn scenarios(
        &self,
        base: &BaseSamples,
        tr: &LogTransform,
        needed: &[bool; N_SPECIES],
    ) -> Result<Vec<Vec<SpeciesArray<f64>>>> {
        let mean_species = species_path(&self.means, tr);
        Ok(self
            .scenarios_z(base, needed)?
            .iter()
            .map(|p| species_needed(p, &mean_species, needed, tr))
            .collect())
    }

    /// Scenarios `means + L ε_s` from the base samples, in `z` (not clamped). Only the
    /// species in `needed` are drawn (the rows of `L` of the others are skipped: their
    /// values are the mean path), so the drawn ones are exactly those of a full draw.
    fn scenarios_z(
        &self,
        base: &BaseSamples,
        needed: &[bool; N_SPECIES],
    ) -> Result<Vec<Vec<SpeciesArray<f64>>>> {
        let dims = self.dims();
        let mut a = self.cov();
        let l = cholesky_jitter(&mut a, dims).ok_or_else(|| {
            BedError::Model("linearised forecast covariance is not positive definite".into())
        })?;
        let mut out = Vec::with_capacity(base.n_samples());
        let mut z = vec![0.0; dims];
        for row in base.rows() {
            for i in 0..dims {
                if !needed[i % N_SPECIES] {
                    continue;
                }
                let mut v = 0.0;
                for k in 0..=i {
                    v += l[i * dims + k] * row[k];
                }
                z[i] = v;
            }
            out.push(
                self.means
                    .iter()
                    .enumerate()
                    .map(|(d, m)| std::array::from_fn(|k| m[k] + z[d * N_SPECIES + k]))
                    .collect(),
            );
        }
        Ok(out)
    }
}

/// The species that `objectives` and `constraints` read, all of them when an objective does
/// not say ([`Objective::species_read`]).
fn species_needed_by(
    objectives: &[Box<dyn Objective>],
    constraints: &[OutcomeConstraint],
) -> [bool; N_SPECIES] {
    let mut needed = [false; N_SPECIES];
    for o in objectives {
        match o.species_read() {
            Some(list) => list.iter().for_each(|s| needed[s.index()] = true),
            None => return [true; N_SPECIES],
        }
    }
    for c in constraints {
        for s in c.species_read() {
            needed[s.index()] = true;
        }
    }
    needed
}

/// A path in `z` in original units.
fn species_path(path: &[SpeciesArray<f64>], tr: &LogTransform) -> Vec<SpeciesArray<f64>> {
    path.iter().map(|z| tr.to_species(z)).collect()
}

/// A scenario path in `z` in original units: the species in `needed` converted, the others
/// taken from `mean_species` (the mean path in original units), which saves the
/// exponentials of the species no objective or constraint reads.
fn species_needed(
    path: &[SpeciesArray<f64>],
    mean_species: &[SpeciesArray<f64>],
    needed: &[bool; N_SPECIES],
    tr: &LogTransform,
) -> Vec<SpeciesArray<f64>> {
    path.iter()
        .zip(mean_species)
        .map(|(z, m)| std::array::from_fn(|k| if needed[k] { tr.s(k, z[k]) } else { m[k] }))
        .collect()
}

/// Linearised forecast of each candidate: mean path through the hybrid step at the
/// candidate's own inputs (batched model calls per day), covariance through the
/// holding-course Jacobians `J_d` and the candidate's latent transition covariances `C_d`:
/// `Σ_00 = P`, `Σ_{d+1,d+1} = J_d Σ_dd J_dᵀ + C_d`, `Σ_{d+1,j} = J_d Σ_dj`.
fn linearised_paths(
    model: &HybridModel,
    state: &StateEstimate,
    cands: &[ControlArray<f64>],
    jac: &[Mat9],
    threads: usize,
) -> Result<Vec<PathGaussian>> {
    let group = PathGroup { state, cands, jac };
    linearised_paths_many(model, &[group], threads, false)?
        .pop()
        .map(|(paths, _)| paths)
        .ok_or_else(|| BedError::Model("no linearised paths".into()))
}

/// Linearised paths and, when asked for, the GP inputs of each candidate's first step.
type PathsAndInputs = (Vec<PathGaussian>, Option<Vec<Vec<f64>>>);

/// One reactor's candidates for [`linearised_paths_many`]: its state, the candidates'
/// controls and its holding-course Jacobians (one per day).
struct PathGroup<'a> {
    state: &'a StateEstimate,
    cands: &'a [ControlArray<f64>],
    jac: &'a [Mat9],
}

/// [`linearised_paths`] of several reactors at once, and with `want_inputs` the GP inputs of
/// each candidate's first step (`HybridModel::gp_input` of today's state under it, computed
/// with the step): each day's steps of every candidate of every group are one batch of model
/// calls (split over `threads`).
fn linearised_paths_many(
    model: &HybridModel,
    groups: &[PathGroup<'_>],
    threads: usize,
    want_inputs: bool,
) -> Result<Vec<PathsAndInputs>> {
    let tr = model.config().transform;
    // (group, candidate) of every flat index, groups contiguous
    let owner: Vec<(usize, usize)> = groups
        .iter()
        .enumerate()
        .flat_map(|(g, gr)| (0..gr.cands.len()).map(move |c| (g, c)))
        .collect();
    let mut means: Vec<Vec<SpeciesArray<f64>>> = owner
        .iter()
        .map(|&(g, _)| vec![groups[g].state.z])
        .collect();
    let mut covs: Vec<Vec<Mat9>> = owner
        .iter()
        .map(|&(g, _)| Vec::with_capacity(groups[g].jac.len()))
        .collect();
    let mut first: Vec<Option<Vec<f64>>> = vec![None; owner.len()];
    let h = groups.iter().map(|g| g.jac.len()).max().unwrap_or(0);
    for d in 0..h {
        let active: Vec<usize> = (0..owner.len())
            .filter(|&f| d < groups[owner[f].0].jac.len())
            .collect();
        let inputs: Vec<_> = active
            .iter()
            .map(|&f| {
                let (g, c) = owner[f];
                let gr = &groups[g];
                HybridModel::z_input(&means[f][d], &gr.cands[c], gr.state.day + d as u32)
            })
            .collect();
        let trans = if d == 0 && want_inputs {
            let (t, x) = model
                .transitions_and_inputs_par(&inputs, threads)
                .map_err(hybrid_err)?;
            for (&f, x) in active.iter().zip(x) {
                first[f] = Some(x);
            }
            t
        } else {
            model
                .transitions_par(&inputs, threads)
                .map_err(hybrid_err)?
        };
        for (&f, tr_c) in active.iter().zip(trans) {
            let mut m = tr_c.mean;
            tr.clamp_z(&mut m);
            means[f].push(m);
            covs[f].push(tr_c.cov);
        }
    }
    let mut out: Vec<PathsAndInputs> = groups
        .iter()
        .map(|g| {
            (
                Vec::with_capacity(g.cands.len()),
                want_inputs.then(Vec::new),
            )
        })
        .collect();
    let shared: Vec<_> = groups
        .iter()
        .map(|g| std::sync::Arc::new(g.jac.to_vec()))
        .collect();
    for (((g, _), (means, noise)), x) in owner
        .into_iter()
        .zip(means.into_iter().zip(covs))
        .zip(first)
    {
        out[g].0.push(PathGaussian {
            means,
            start: groups[g].state.cov,
            jac: std::sync::Arc::clone(&shared[g]),
            noise,
        });
        if let (Some(list), Some(x)) = (out[g].1.as_mut(), x) {
            list.push(x);
        }
    }
    Ok(out)
}

/// `f` of every index `0..n` on up to `threads` scoped threads (index `j` on thread
/// `j mod threads`), results in index order; the first error, or a worker's panic, fails it.
fn per_index<R: Send>(
    n: usize,
    threads: usize,
    f: &(dyn Fn(usize) -> Result<R> + Sync),
) -> Result<Vec<R>> {
    let threads = threads.clamp(1, n.max(1));
    if threads == 1 {
        return (0..n).map(f).collect();
    }
    let mut parts: Vec<(usize, Result<R>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t..n)
                        .step_by(threads)
                        .map(|j| (j, f(j)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join().unwrap_or_else(|_| {
                    vec![(0, Err(BedError::Model("a worker thread panicked".into())))]
                })
            })
            .collect()
    });
    parts.sort_by_key(|(j, _)| *j);
    parts.into_iter().map(|(_, r)| r).collect()
}

/// Exact linearised forecasts at points of the unit cube.
type PathsAt<'a> = dyn Fn(&[Vec<f64>]) -> Result<Vec<PathGaussian>> + Sync + 'a;

/// A refinement of one start: the refined point and its report.
type Refined = (Vec<f64>, RestartReport);

/// Runs `refine` on every `(start, value)` on up to `threads` threads (restart `i` on thread
/// `i mod threads`); the results, in the order of `starts`, do not depend on the count.
fn refine_parallel(
    starts: &[(Vec<f64>, f64)],
    dim: usize,
    threads: usize,
    refine: &(dyn Fn(&[f64], f64) -> Result<Refined> + Sync),
) -> Result<Vec<Refined>> {
    if dim == 0 {
        return Ok(Vec::new());
    }
    per_index(starts.len(), threads, &|i| {
        refine(&starts[i].0, starts[i].1)
    })
}

// Species values come from `LogTransform::to_species`, which clips every species to its
// physical range [0, upper]: clamping `z` first (`clamp_z`) would give the same values at
// the cost of two logarithms per species.

/// `gᵀ A g` over the block of the `n × n` row-major `a` that starts at row and column
/// `offset` (`g.len()` rows and columns), skipping zero entries of `g`.
/// `vᵀ A v` for a 9 × 9 `A`.
fn quad9(a: &Mat9, v: &SpeciesArray<f64>) -> f64 {
    (0..N_SPECIES)
        .map(|i| v[i] * (0..N_SPECIES).map(|j| a[i][j] * v[j]).sum::<f64>())
        .sum()
}

/// `J P Jᵀ` for 9 × 9 matrices.
fn sandwich9(j: &Mat9, p: &Mat9) -> Mat9 {
    let jp: Mat9 = std::array::from_fn(|a| {
        std::array::from_fn(|b| (0..N_SPECIES).map(|k| j[a][k] * p[k][b]).sum())
    });
    std::array::from_fn(|a| {
        std::array::from_fn(|b| (0..N_SPECIES).map(|k| jp[a][k] * j[b][k]).sum())
    })
}

#[cfg(test)]
fn quad_form(a: &[f64], n: usize, g: &[f64], offset: usize) -> f64 {
    let mut v = 0.0;
    for (i, gi) in g.iter().enumerate() {
        if *gi == 0.0 {
            continue;
        }
        let row = &a[(offset + i) * n + offset..(offset + i) * n + offset + g.len()];
        v += gi * row.iter().zip(g).map(|(x, y)| x * y).sum::<f64>();
    }
    v
}

/// In-place lower Cholesky of a symmetric PSD `n × n` matrix with escalating diagonal jitter.
fn cholesky_jitter(a: &mut [f64], n: usize) -> Option<Vec<f64>> {
    let mean_diag = (0..n).map(|i| a[i * n + i].abs()).sum::<f64>() / n as f64;
    let mut jitter = 0.0;
    for attempt in 0..8 {
        let mut l = vec![0.0; n * n];
        let mut ok = true;
        'outer: for i in 0..n {
            for j in 0..=i {
                let mut s = a[i * n + j];
                for k in 0..j {
                    s -= l[i * n + k] * l[j * n + k];
                }
                if i == j {
                    let d = s + jitter;
                    if !(d > 0.0 && d.is_finite()) {
                        if d.abs() <= 1e-300 {
                            l[i * n + i] = 0.0;
                            continue;
                        }
                        ok = false;
                        break 'outer;
                    }
                    l[i * n + i] = d.sqrt();
                } else {
                    l[i * n + j] = if l[j * n + j] > 0.0 {
                        s / l[j * n + j]
                    } else {
                        0.0
                    };
                }
            }
        }
        if ok {
            return Some(l);
        }
        jitter = mean_diag.max(1e-300) * 1e-12 * 100f64.powi(attempt);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A harvest policy with qLogEI on the default design space.
    fn qlogei_harvest_policy() -> BedPolicy {
        let ds = perfusio_core::DEFAULT_AMBR250_DESIGN_SPACE;
        let cfg = PolicyConfig {
            acquisition: Acquisition::QLogEI,
            ..PolicyConfig::new(&ds)
        };
        BedPolicy::new(
            ds,
            vec![Box::new(crate::objective::Harvest::default())],
            cfg,
        )
        .unwrap()
    }

    /// A batch candidate: the default controls at perfusion `rate`, one objective.
    fn candidate(rate: f64, mean: f64, sd: f64, feasible: f64, input: Vec<f64>) -> BatchCandidate {
        let mut u = Control::defaults();
        u[Control::PerfusionRate.index()] = rate;
        BatchCandidate {
            controls: u,
            mean,
            sd,
            summaries: vec![ObjectiveSummary { mean, sd }],
            chol: vec![sd],
            feasible,
            input,
        }
    }

    /// A one-reactor batch: the holding course (mean 10, sd 5) has the larger qLogEI, a
    /// candidate with a higher mean (10.5) and almost no uncertainty the smaller one. The
    /// greedy choice keeps the holding course; it once took the higher mean, because the
    /// holding course's value never entered the comparison.
    #[test]
    fn the_greedy_batch_compares_candidates_with_the_holding_course() {
        let ds = perfusio_core::DEFAULT_AMBR250_DESIGN_SPACE;
        let model = HybridModel::new(perfusio_hybrid::HybridConfig::online()).unwrap();
        let policy = qlogei_harvest_policy();
        let current = Control::defaults();
        let cand = |mean: f64, sd: f64, rate: f64| candidate(rate, mean, sd, 1.0, vec![rate]);
        let r = BatchReactor {
            space: DecisionSpace::new(&ds, current).unwrap(),
            jac: Vec::new(),
            cands: vec![cand(10.0, 5.0, 1.0), cand(10.5, 1e-3, 1.5)],
        };
        let (chosen, value) = policy.choose_batch(&model, &[r], 1).unwrap();
        assert_eq!(chosen, [0], "joint value {value}");
        assert!(value.is_finite());
    }

    /// The greedy batch's kept member terms give, bit for bit, the qLogEI of the whole
    /// batch evaluated from scratch, at every size and for every candidate.
    #[test]
    fn kept_log_ei_terms_give_the_whole_batch_value() {
        let model = HybridModel::new(perfusio_hybrid::HybridConfig::online()).unwrap();
        let policy = qlogei_harvest_policy();
        let mut next = numbers(3);
        let cands: Vec<BatchCandidate> = (0..8)
            .map(|i| {
                let (mean, sd) = (10.0 + 2.0 * next(), 1.0 + 0.5 * next().abs());
                let feasible = 0.5 + 0.45 * next();
                let input = (0..15).map(|_| 0.5 + 0.5 * next()).collect();
                candidate(0.5 + 0.2 * i as f64, mean, sd, feasible, input)
            })
            .collect();
        let (q, best, scale) = (4, 10.5, 2.0);
        let base = BaseSamples::new(128, q, 11).unwrap();
        let mut plain = JointBatch::new(base.n_samples(), q);
        let mut kept = JointBatch::new(base.n_samples(), q)
            .with_log_ei(best / scale, policy.batch_mc_params());
        assert!(kept.log_ei.is_some());
        for j in 0..q {
            for (i, c) in cands.iter().enumerate() {
                let a = plain.value_with(&policy, &model, c, &base, best, scale, true);
                let b = kept.value_with(&policy, &model, c, &base, best, scale, true);
                assert_eq!(
                    a.to_bits(),
                    b.to_bits(),
                    "member {j}, candidate {i}: {a} vs {b}"
                );
                assert!(a.is_finite());
            }
            plain.push(&model, &cands[2 * j], &base, j, scale).unwrap();
            kept.push(&model, &cands[2 * j], &base, j, scale).unwrap();
        }
    }

    /// The species an objective and the constraints read are drawn exactly as in a full
    /// draw; the others sit at the mean path.
    #[test]
    fn scenarios_of_the_species_read_are_those_of_a_full_draw() {
        let ds = perfusio_core::DEFAULT_AMBR250_DESIGN_SPACE;
        let via = OutcomeConstraint::new(
            perfusio_core::Variable::Species(perfusio_core::Species::Via),
            Some(95.0),
            None,
        )
        .unwrap();
        let harvest = BedPolicy::new(
            ds.clone(),
            vec![Box::new(crate::objective::Harvest::default())],
            PolicyConfig {
                constraints: vec![via],
                ..PolicyConfig::new(&ds)
            },
        )
        .unwrap();
        let needed = harvest.needed;
        let (t, v) = (
            perfusio_core::Species::Titer.index(),
            perfusio_core::Species::Via.index(),
        );
        assert!(
            (0..N_SPECIES).all(|k| needed[k] == (k == t || k == v)),
            "{needed:?}"
        );
        let closure = BedPolicy::new(
            ds.clone(),
            vec![Box::new(crate::objective::FnObjective::new(
                "any",
                |s, _| s[0][0],
            ))],
            PolicyConfig::new(&ds),
        )
        .unwrap();
        assert_eq!(closure.needed, [true; N_SPECIES]);

        let mut next = numbers(5);
        let h = 5;
        let pg = PathGaussian {
            means: (0..=h)
                .map(|_| std::array::from_fn(|_| 1.0 + next()))
                .collect(),
            start: psd(&mut next),
            jac: std::sync::Arc::new(
                (0..h)
                    .map(|_| std::array::from_fn(|_| std::array::from_fn(|_| 0.3 * next())))
                    .collect(),
            ),
            noise: (0..h).map(|_| psd(&mut next)).collect(),
        };
        let base = BaseSamples::new(64, pg.dims(), 9).unwrap();
        let tr = perfusio_hybrid::LogTransform::default();
        let full = pg.scenarios(&base, &tr, &[true; N_SPECIES]).unwrap();
        let part = pg.scenarios(&base, &tr, &needed).unwrap();
        let mean = species_path(&pg.means, &tr);
        for (f, p) in full.iter().zip(&part) {
            for d in 0..=h {
                for k in 0..N_SPECIES {
                    let want = if needed[k] { f[d][k] } else { mean[d][k] };
                    assert_eq!(p[d][k].to_bits(), want.to_bits(), "day {d}, species {k}");
                }
            }
        }
        // the full draw is a draw: the titer varies across scenarios
        assert!(full.iter().any(|p| (p[h][t] - full[0][h][t]).abs() > 0.0));
    }

    /// Deterministic numbers in (-1, 1).
    fn numbers(seed: u64) -> impl FnMut() -> f64 {
        let mut x = seed;
        move || {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((x >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        }
    }

    fn psd(next: &mut impl FnMut() -> f64) -> Mat9 {
        let a: Mat9 = std::array::from_fn(|_| std::array::from_fn(|_| next()));
        std::array::from_fn(|i| {
            std::array::from_fn(|j| {
                (0..N_SPECIES).map(|k| a[i][k] * a[j][k]).sum::<f64>()
                    + if i == j { 0.1 } else { 0.0 }
            })
        })
    }

    /// The recursions give what the stacked covariance gives, for a 6-day path.
    #[test]
    fn path_variances_from_the_recursion_match_the_stacked_covariance() {
        let mut next = numbers(7);
        let h = 6;
        let jac: Vec<Mat9> = (0..h)
            .map(|_| std::array::from_fn(|_| std::array::from_fn(|_| 0.5 * next())))
            .collect();
        let pg = PathGaussian {
            means: vec![[0.0; N_SPECIES]; h + 1],
            start: psd(&mut next),
            jac: std::sync::Arc::new(jac),
            noise: (0..h).map(|_| psd(&mut next)).collect(),
        };
        let dims = pg.dims();
        let big = pg.cov();
        for trial in 0..5 {
            let g: Vec<f64> = (0..dims)
                .map(|i| {
                    if trial == 0 && i < dims - 9 {
                        0.0
                    } else {
                        next()
                    }
                })
                .collect();
            let want = quad_form(&big, dims, &g, 0);
            let got = pg.linear_variance(&g);
            assert!(
                (got - want).abs() <= 1e-10 * want.abs(),
                "trial {trial}: {got} vs {want}"
            );
        }
        for (d, p) in pg.marginals().iter().enumerate() {
            for i in 0..N_SPECIES {
                for j in 0..N_SPECIES {
                    let want = big[(d * N_SPECIES + i) * dims + d * N_SPECIES + j];
                    assert!(
                        (p[i][j] - want).abs() <= 1e-10 * want.abs().max(1.0),
                        "day {d} [{i}][{j}]: {} vs {want}",
                        p[i][j]
                    );
                }
            }
        }
    }
}
