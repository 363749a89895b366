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
//!    Gaussian of the path's states over the horizon is sampled with fixed quasi-random base
//!    samples, so objective and constraint values per scenario are deterministic, smooth
//!    functions of the controls. The `raw_samples` space-filling candidates are scored this
//!    way, and the best `restarts` are refined by the bounded quasi-Newton maximiser.
//! 3. **Final choice on the full Monte-Carlo forecast.** The refined candidates and the
//!    current setpoints are scored with `mc_samples` seeded Monte-Carlo paths of the hybrid
//!    model (common random numbers), and the decision is the best of them by the
//!    acquisition. Holding course is always a candidate: a recommendation is never worse
//!    than staying the course by the acquisition's own measure.
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
    Forecast, ForecastMethod, ForecastOptions, HybridModel, LogTransform, Mat9, StateEstimate,
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

/// Forward-difference step in `z` of the linearised objective's gradient.
pub const GAUSS_FD_STEP: f64 = 1e-5;

/// Forward-difference step of the refinement's gradient, in unit-cube coordinates.
pub const FD_STEP: f64 = 1e-6;

/// Local refinement of the acquisition: an acquisition that changes by less than a relative
/// 1e-7 between iterations, or whose projected gradient is below 1e-5 per unit of the cube,
/// has converged for any decision purpose.
pub const REFINE_OPTIONS: LbfgsbOptions = LbfgsbOptions {
    memory: 10,
    max_iters: 200,
    pg_tol: 1e-5,
    f_rel_tol: 1e-7,
    c1: 1e-4,
    max_line_search: 40,
    max_first_step: 0.25,
};

/// Iteration cap of a batch member's local refinement (the greedy choice already placed it
/// near a good point; the cap keeps 24 reactors within the batch budget and is reported by
/// the optimiser like any stop).
pub const BATCH_REFINE_ITERS: usize = 20;

/// Smallest probability of feasibility a recommendation may have.
pub const MIN_FEASIBILITY: f64 = 0.5;

/// Temperature of the sigmoid that smooths outcome-constraint slacks (in units of the
/// constrained variable's plausible range).
pub const SLACK_TAU: f64 = 1e-3;

/// Settings of a [`BedPolicy`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyConfig {
    /// Acquisition function (default LogEI).
    pub acquisition: Acquisition,
    /// Days the objective looks ahead; the candidate's setpoints are held over them.
    pub horizon_days: u32,
    /// Space-filling raw candidates scored first.
    pub raw_samples: usize,
    /// Best raw candidates refined by the local optimiser.
    pub restarts: usize,
    /// Scenarios of the linearised forecast used while screening and refining.
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
    /// 64 screening scenarios, 128 Monte-Carlo paths, seed 0, β = 1, viability ≥ the design
    /// space's floor, no ramp limits, nothing fixed, 2 threads.
    pub fn new(design: &DesignSpace) -> Self {
        Self {
            acquisition: Acquisition::LogEI,
            horizon_days: 3,
            raw_samples: 512,
            restarts: 10,
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
}

/// The design policy: objectives, constraints and acquisition over a design space.
#[derive(Debug)]
pub struct BedPolicy {
    design: DesignSpace,
    objectives: Vec<Box<dyn Objective>>,
    config: PolicyConfig,
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
        Ok(Self {
            design,
            objectives,
            config,
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
    /// value (linearised the same way) is inside its bounds.
    fn score_gaussian(
        &self,
        pg: &PathGaussian,
        schedule: &[ControlArray<f64>],
        tr: &LogTransform,
    ) -> Scored {
        let dims = pg.dims();
        let mean_states: Vec<SpeciesArray<f64>> =
            pg.means.iter().map(|z| tr.to_species(z)).collect();
        let eval_at = |f: &dyn Fn(&[SpeciesArray<f64>]) -> f64| -> (f64, Vec<f64>) {
            let f0 = f(&mean_states);
            let mut g = vec![0.0; dims];
            let mut zs = pg.means.clone();
            for (i, gi) in g.iter_mut().enumerate() {
                let (d, k) = (i / N_SPECIES, i % N_SPECIES);
                let keep = zs[d][k];
                zs[d][k] = keep + GAUSS_FD_STEP;
                let states: Vec<SpeciesArray<f64>> = zs.iter().map(|z| tr.to_species(z)).collect();
                *gi = (f(&states) - f0) / GAUSS_FD_STEP;
                zs[d][k] = keep;
            }
            (f0, g)
        };
        let quad = |g: &[f64]| -> f64 {
            let mut v = 0.0;
            for (i, &gi) in g.iter().enumerate().take(dims) {
                if gi == 0.0 {
                    continue;
                }
                let row = &pg.cov[i * dims..(i + 1) * dims];
                for (c, gj) in row.iter().zip(g) {
                    v += gi * c * gj;
                }
            }
            v.max(0.0)
        };
        let summaries: Vec<ObjectiveSummary> = self
            .objectives
            .iter()
            .map(|o| {
                let (m, g) = eval_at(&|st: &[SpeciesArray<f64>]| o.value(st, schedule));
                ObjectiveSummary {
                    mean: if m.is_finite() { m } else { f64::MIN / 4.0 },
                    sd: quad(&g).sqrt(),
                }
            })
            .collect();
        let mut p_feas = 1.0;
        for con in &self.config.constraints {
            for day in 1..pg.means.len() {
                let (v, g) = eval_at(&|st: &[SpeciesArray<f64>]| {
                    crate::objective::variable_value(con.variable, &st[day])
                });
                let sd = quad(&g).sqrt().max(1e-12);
                let mut p = 1.0;
                if let Some(lo) = con.lower {
                    p -= crate::special::norm_cdf((lo - v) / sd);
                }
                if let Some(hi) = con.upper {
                    p -= crate::special::norm_cdf((v - hi) / sd);
                }
                p_feas *= p.clamp(0.0, 1.0);
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

    /// Chooses tomorrow's setpoints for one reactor: `state` is the filtered estimate of day
    /// `state.day`, `current` the setpoints in force. See the module docs.
    pub fn decide(
        &self,
        model: &HybridModel,
        state: &StateEstimate,
        current: &ControlArray<f64>,
    ) -> Result<Decision> {
        let t0 = Instant::now();
        let h = self.config.horizon_days as usize;
        let space = self.decision_space(current)?;
        let hold_controls = space.current().to_owned();
        let tr = model.config().transform;
        // 1. linearisation along the holding-course mean path (one set of Jacobians)
        let mut jac: Vec<Mat9> = Vec::with_capacity(h);
        let mut mu = state.z;
        for d in 0..h {
            let x = HybridModel::z_input(&mu, &hold_controls, state.day + d as u32);
            let lt = model.linearised_transition(&x).map_err(hybrid_err)?;
            jac.push(lt.jacobian);
            mu = lt.transition.mean;
            tr.clamp_z(&mut mu);
        }
        let dims = N_SPECIES * (h + 1);
        let base = BaseSamples::new(self.config.screening_samples, dims, self.config.seed)?;
        let _ = dims;
        // linearised scenarios of many candidates at once (batched model calls per day)
        let analytic = !self.config.acquisition.is_monte_carlo();
        let screen = |cands: &[ControlArray<f64>]| -> Result<Vec<Scored>> {
            let pgs = linearised_paths(model, state, cands, &jac, self.config.threads)?;
            pgs.iter()
                .zip(cands)
                .map(|(pg, u)| {
                    let schedule = vec![*u; h];
                    if analytic {
                        Ok(self.score_gaussian(pg, &schedule, &tr))
                    } else {
                        Ok(self.score_paths(&pg.scenarios(&base, &tr)?, &schedule))
                    }
                })
                .collect()
        };
        let hold_lin = screen(std::slice::from_ref(&hold_controls))?
            .pop()
            .ok_or_else(|| BedError::ShapeMismatch("no holding-course scenarios".into()))?;
        let m = self.objectives.len();
        let hold_lin_summary: Vec<ObjectiveSummary> =
            (0..m).map(|k| hold_lin.summary(k, m)).collect();
        // 2. screening + refinement on the linearised forecast
        let dim = space.dim();
        let mut screened = 0usize;
        let mut finalists_unit: Vec<Vec<f64>> = Vec::new();
        if dim > 0 {
            let acq_many = |xs: &[Vec<f64>]| -> Result<Vec<f64>> {
                let us: Vec<ControlArray<f64>> = xs
                    .iter()
                    .map(|x| space.to_controls(x))
                    .collect::<Result<_>>()?;
                Ok(screen(&us)?
                    .iter()
                    .map(|c| self.acquisition_value(c, &hold_lin, &hold_lin_summary))
                    .collect())
            };
            let raw = uniform_points(self.config.raw_samples, dim, self.config.seed)?;
            let mut starts: Vec<Vec<f64>> = raw.chunks_exact(dim).map(<[f64]>::to_vec).collect();
            starts.push(space.to_unit(&hold_controls)?);
            let values = acq_many(&starts)?;
            screened += starts.len();
            let mut order: Vec<usize> = (0..starts.len())
                .filter(|&i| values[i].is_finite())
                .collect();
            order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
            let lower = vec![0.0; dim];
            let upper = vec![1.0; dim];
            for &i in order.iter().take(self.config.restarts) {
                let mut evals = 0usize;
                // value and forward-difference gradient in one batched model call
                let mut neg = |x: &[f64], g: &mut [f64]| -> f64 {
                    let mut pts = Vec::with_capacity(dim + 1);
                    pts.push(x.to_vec());
                    let mut steps = Vec::with_capacity(dim);
                    for j in 0..dim {
                        let mut y = x.to_vec();
                        let h = if x[j] + FD_STEP <= 1.0 {
                            FD_STEP
                        } else {
                            -FD_STEP
                        };
                        y[j] += h;
                        steps.push(h);
                        pts.push(y);
                    }
                    evals += pts.len();
                    match acq_many(&pts) {
                        Ok(v) if v[0].is_finite() => {
                            for j in 0..dim {
                                let d = (v[j + 1] - v[0]) / steps[j];
                                g[j] = if d.is_finite() { -d } else { 0.0 };
                            }
                            -v[0]
                        }
                        _ => {
                            g.fill(0.0);
                            f64::INFINITY
                        }
                    }
                };
                let m = minimize_box(&mut neg, &starts[i], &lower, &upper, &REFINE_OPTIONS)?;
                tracing::debug!(start = i, iterations = m.iterations, evaluations = evals, stop = ?m.stop, "acquisition restart");
                screened += evals;
                finalists_unit.push(if -m.value >= values[i] {
                    m.x
                } else {
                    starts[i].clone()
                });
            }
        }
        // 3. final choice on the Monte-Carlo forecast (common random numbers)
        let mut finalists: Vec<ControlArray<f64>> = vec![hold_controls];
        for x in &finalists_unit {
            let u = space.to_controls(x)?;
            if !finalists.iter().any(|f| same(f, &u)) {
                finalists.push(u);
            }
        }
        let mc_seed = self.config.seed ^ 0x6d63_5f70_6174_6873;
        let mut scored = Vec::with_capacity(finalists.len());
        for u in &finalists {
            let sc = model
                .sample_paths(
                    state,
                    &vec![*u; h],
                    self.config.mc_samples,
                    mc_seed,
                    self.config.threads,
                )
                .map_err(hybrid_err)?;
            let paths: Vec<Vec<SpeciesArray<f64>>> = sc
                .initial
                .iter()
                .zip(&sc.latent)
                .map(|(s0, rest)| std::iter::once(*s0).chain(rest.iter().copied()).collect())
                .collect();
            scored.push(self.score_paths(&paths, &vec![*u; h]));
        }
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
        let forecast = model
            .forecast(
                state,
                &vec![chosen; h],
                &ForecastOptions {
                    method: ForecastMethod::MonteCarlo,
                    paths: self.config.mc_samples,
                    seed: mc_seed,
                    keep_paths: true,
                    threads: self.config.threads,
                },
            )
            .map_err(hybrid_err)?;
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
        })
    }

    /// Decisions for several reactors that share one model, as one q-batch.
    ///
    /// Each reactor's candidates are scored on its own linearised forecast (see
    /// [`BedPolicy::decide`]); the batch is then chosen greedily, reactor by reactor, by the
    /// joint Monte-Carlo log expected improvement of the batch so far plus the candidate
    /// (qLogEI over a multivariate normal of the reactors' objectives, fixed quasi-random
    /// base samples). The objectives' correlations come from the model: two candidates whose
    /// first-day inputs are close share the model's error there
    /// ([`HybridModel::input_correlation`]), so a candidate next to one already in the batch
    /// adds little joint improvement and the batch spreads over the design space. The
    /// incumbent is the best holding-course objective over the reactors (they run the same
    /// process). Every reactor's holding course is one of its candidates. Each chosen
    /// candidate is then refined locally with the others fixed, and its forecast and
    /// objectives are reported from seeded Monte-Carlo paths.
    pub fn decide_batch(
        &self,
        model: &HybridModel,
        reactors: &[(StateEstimate, ControlArray<f64>)],
    ) -> Result<Vec<Decision>> {
        let t0 = Instant::now();
        if reactors.is_empty() {
            return Ok(Vec::new());
        }
        if self.config.acquisition.is_multi_objective() {
            return Err(BedError::InvalidParameter {
                name: "acquisition",
                reason: "batch decisions take a single-objective acquisition".into(),
            });
        }
        let h = self.config.horizon_days as usize;
        let tr = model.config().transform;
        let m = self.objectives.len();
        let mut rs: Vec<BatchReactor> = Vec::with_capacity(reactors.len());
        let mut screened = 0usize;
        for (state, current) in reactors {
            let space = self.decision_space(current)?;
            let hold = *space.current();
            let mut jac = Vec::with_capacity(h);
            let mut mu = state.z;
            for d in 0..h {
                let x = HybridModel::z_input(&mu, &hold, state.day + d as u32);
                let lt = model.linearised_transition(&x).map_err(hybrid_err)?;
                jac.push(lt.jacobian);
                mu = lt.transition.mean;
                tr.clamp_z(&mut mu);
            }
            let dim = space.dim();
            let mut units: Vec<Vec<f64>> = vec![space.to_unit(&hold)?];
            if dim > 0 {
                units.extend(
                    uniform_points(self.config.raw_samples, dim, self.config.seed)?
                        .chunks_exact(dim)
                        .map(<[f64]>::to_vec),
                );
            }
            let mut r = BatchReactor {
                space,
                jac,
                cands: Vec::with_capacity(units.len()),
            };
            self.add_batch_candidates(model, state, &mut r, &units)?;
            screened += units.len();
            rs.push(r);
        }
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
        let q = rs.len();
        let base = BaseSamples::new(
            self.config.screening_samples.max(64),
            q,
            self.config.seed ^ 0x6261_7463_6821,
        )?;
        let joint = |members: &[&BatchCandidate]| -> f64 {
            self.joint_acquisition(model, members, &base, best, scale)
        };
        // greedy choice, reactor by reactor
        let mut chosen: Vec<usize> = Vec::with_capacity(q);
        for j in 0..q {
            let mut members: Vec<&BatchCandidate> = chosen
                .iter()
                .enumerate()
                .map(|(r, &c)| &rs[r].cands[c])
                .collect();
            let (mut best_i, mut best_v) = (0, f64::NEG_INFINITY);
            for (i, c) in rs[j].cands.iter().enumerate() {
                if i != 0 && c.feasible < MIN_FEASIBILITY {
                    continue;
                }
                members.push(c);
                let v = joint(&members);
                members.pop();
                if v > best_v {
                    best_v = v;
                    best_i = i;
                }
            }
            chosen.push(best_i);
        }
        // local refinement of each choice with the others fixed
        for j in 0..q {
            let dim = rs[j].space.dim();
            if dim == 0 || chosen[j] == 0 {
                continue;
            }
            let state = &reactors[j].0;
            let start = rs[j].cands[chosen[j]].unit.clone();
            let mut evals = 0usize;
            let refined = {
                let others: Vec<&BatchCandidate> = chosen
                    .iter()
                    .enumerate()
                    .filter(|(r, _)| *r != j)
                    .map(|(r, &c)| &rs[r].cands[c])
                    .collect();
                let rj = &rs[j];
                let mut neg = |xu: &[f64], g: &mut [f64]| -> f64 {
                    let mut pts = vec![xu.to_vec()];
                    let mut steps = Vec::with_capacity(dim);
                    for a in 0..dim {
                        let mut y = xu.to_vec();
                        let hh = if xu[a] + FD_STEP <= 1.0 {
                            FD_STEP
                        } else {
                            -FD_STEP
                        };
                        y[a] += hh;
                        steps.push(hh);
                        pts.push(y);
                    }
                    evals += pts.len();
                    let Ok(cands) = self.batch_candidates(model, state, rj, &pts) else {
                        g.fill(0.0);
                        return f64::INFINITY;
                    };
                    let vals: Vec<f64> = cands
                        .iter()
                        .map(|c| {
                            let mut members = others.clone();
                            members.push(c);
                            joint(&members)
                        })
                        .collect();
                    if !vals[0].is_finite() {
                        g.fill(0.0);
                        return f64::INFINITY;
                    }
                    for a in 0..dim {
                        let d = (vals[a + 1] - vals[0]) / steps[a];
                        g[a] = if d.is_finite() { -d } else { 0.0 };
                    }
                    -vals[0]
                };
                let opts = LbfgsbOptions {
                    max_iters: BATCH_REFINE_ITERS,
                    ..REFINE_OPTIONS
                };
                minimize_box(&mut neg, &start, &vec![0.0; dim], &vec![1.0; dim], &opts)?
            };
            screened += evals;
            let before = rs[j].cands.len();
            self.add_batch_candidates(model, state, &mut rs[j], &[refined.x])?;
            if rs[j].cands[before].feasible >= MIN_FEASIBILITY {
                let value_with = |c: usize| {
                    let members: Vec<&BatchCandidate> = chosen
                        .iter()
                        .enumerate()
                        .map(|(r, &k)| {
                            if r == j {
                                &rs[r].cands[c]
                            } else {
                                &rs[r].cands[k]
                            }
                        })
                        .collect();
                    joint(&members)
                };
                if value_with(before) > value_with(chosen[j]) {
                    chosen[j] = before;
                }
            }
        }
        let members: Vec<&BatchCandidate> = chosen
            .iter()
            .enumerate()
            .map(|(r, &c)| &rs[r].cands[c])
            .collect();
        let joint_value = joint(&members);
        // the decisions, with Monte-Carlo forecasts of the chosen setpoints
        let mc_seed = self.config.seed ^ 0x6d63_5f70_6174_6873;
        let mut out = Vec::with_capacity(q);
        for (j, (state, current)) in reactors.iter().enumerate() {
            let u = rs[j].cands[chosen[j]].controls;
            let hold = *rs[j].space.current();
            let (rec, feasible) = self.monte_carlo_summary(model, state, &u, mc_seed)?;
            let (holding, _) = self.monte_carlo_summary(model, state, &hold, mc_seed)?;
            let is_hold = chosen[j] == 0 || same(&u, &hold);
            let forecast = model
                .forecast(
                    state,
                    &vec![u; h],
                    &ForecastOptions {
                        method: ForecastMethod::MonteCarlo,
                        paths: self.config.mc_samples,
                        seed: mc_seed,
                        keep_paths: true,
                        threads: self.config.threads,
                    },
                )
                .map_err(hybrid_err)?;
            out.push(Decision {
                day: state.day,
                setpoints: Setpoints::new(state.day, u),
                current: *current,
                hold: is_hold,
                acquisition: self.config.acquisition,
                acquisition_value: joint_value,
                objectives: self.objectives.iter().map(|o| o.name()).collect(),
                reason: self.reason(is_hold, joint_value, &rec, &holding, feasible),
                recommended: rec,
                holding,
                probability_feasible: feasible,
                forecast,
                elapsed: Duration::ZERO,
                screened,
                finalists: q,
            });
        }
        let _ = m;
        let elapsed = t0.elapsed();
        for d in &mut out {
            d.elapsed = elapsed;
        }
        Ok(out)
    }

    /// Linearised scores of unit-cube points of one reactor, appended to its candidates.
    fn add_batch_candidates(
        &self,
        model: &HybridModel,
        state: &StateEstimate,
        r: &mut BatchReactor,
        units: &[Vec<f64>],
    ) -> Result<()> {
        let new = self.batch_candidates(model, state, r, units)?;
        r.cands.extend(new);
        Ok(())
    }

    fn batch_candidates(
        &self,
        model: &HybridModel,
        state: &StateEstimate,
        r: &BatchReactor,
        units: &[Vec<f64>],
    ) -> Result<Vec<BatchCandidate>> {
        let h = self.config.horizon_days as usize;
        let tr = model.config().transform;
        let m = self.objectives.len();
        let controls: Vec<ControlArray<f64>> = units
            .iter()
            .map(|u| r.space.to_controls(u))
            .collect::<Result<_>>()?;
        let pgs = linearised_paths(model, state, &controls, &r.jac, self.config.threads)?;
        pgs.iter()
            .zip(controls)
            .zip(units)
            .map(|((pg, u), unit)| {
                let sc = self.score_gaussian(pg, &vec![u; h], &tr);
                let g = sc.summary(0, m);
                Ok(BatchCandidate {
                    unit: unit.clone(),
                    controls: u,
                    mean: g.mean,
                    sd: g.sd.max(1e-12),
                    feasible: sc.feasible,
                    input: model
                        .gp_input(&HybridModel::z_input(&state.z, &u, state.day))
                        .map_err(hybrid_err)?,
                })
            })
            .collect()
    }

    /// qLogEI (or the configured Monte-Carlo acquisition) of a batch whose objectives are
    /// jointly normal: means and sds of the members, correlations from the model's input
    /// kernel; each member's contribution weighted by its probability of feasibility.
    fn joint_acquisition(
        &self,
        model: &HybridModel,
        members: &[&BatchCandidate],
        base: &BaseSamples,
        best: f64,
        scale: f64,
    ) -> f64 {
        let k = members.len();
        if k == 0 {
            return f64::NEG_INFINITY;
        }
        let mut cov = vec![0.0; k * k];
        for a in 0..k {
            for b in 0..=a {
                let rho = if a == b {
                    1.0
                } else {
                    model
                        .input_correlation(&members[a].input, &members[b].input)
                        .clamp(-1.0, 1.0)
                };
                let v = rho * members[a].sd * members[b].sd;
                cov[a * k + b] = v;
                cov[b * k + a] = v;
            }
        }
        let Some(l) = cholesky_jitter(&mut cov, k) else {
            return f64::NEG_INFINITY;
        };
        let n = base.n_samples();
        let mut samples = vec![0.0; n * k];
        let mut slacks = vec![0.0; n * k];
        for (s, row) in base.rows().enumerate() {
            for a in 0..k {
                let mut v = members[a].mean;
                for b in 0..=a {
                    v += l[a * k + b] * row[b];
                }
                samples[s * k + a] = v / scale;
                // feasibility as a deterministic slack: logit of the member's probability
                let p = members[a].feasible.clamp(1e-12, 1.0 - 1e-12);
                slacks[s * k + a] = (p / (1.0 - p)).ln() * McParams::default().eta;
            }
        }
        let (Ok(sm), Ok(cm)) = (
            SampleMatrix::new(&samples, n, k),
            SampleMatrix::new(&slacks, n, k),
        ) else {
            return f64::NEG_INFINITY;
        };
        let acq = if self.config.acquisition.is_monte_carlo() {
            self.config.acquisition
        } else {
            Acquisition::QLogEI
        };
        let params = McParams {
            beta: self.config.ucb_beta,
            ..McParams::default()
        };
        mc::evaluate(acq, sm, best / scale, &[cm], &params).unwrap_or(f64::NEG_INFINITY)
    }

    /// Objective summaries and the fraction of feasible paths under `u` held over the
    /// horizon, from seeded Monte-Carlo paths.
    fn monte_carlo_summary(
        &self,
        model: &HybridModel,
        state: &StateEstimate,
        u: &ControlArray<f64>,
        seed: u64,
    ) -> Result<(Vec<ObjectiveSummary>, f64)> {
        let h = self.config.horizon_days as usize;
        let m = self.objectives.len();
        let sc = model
            .sample_paths(
                state,
                &vec![*u; h],
                self.config.mc_samples,
                seed,
                self.config.threads,
            )
            .map_err(hybrid_err)?;
        let paths: Vec<Vec<SpeciesArray<f64>>> = sc
            .initial
            .iter()
            .zip(&sc.latent)
            .map(|(s0, rest)| std::iter::once(*s0).chain(rest.iter().copied()).collect())
            .collect();
        let scored = self.score_paths(&paths, &vec![*u; h]);
        Ok((
            (0..m).map(|k| scored.summary(k, m)).collect(),
            scored.feasible,
        ))
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
        if hold {
            format!(
                "{acq}: holding course (no candidate improves {name} enough; acquisition {value:.3}){cons}"
            )
        } else {
            format!("{acq}: {change:+.1} % {name} over holding course{cons}")
        }
    }
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
    unit: Vec<f64>,
    controls: ControlArray<f64>,
    mean: f64,
    sd: f64,
    feasible: f64,
    /// The first day's GP input, for the model's correlations.
    input: Vec<f64>,
}

/// The linearised forecast of one candidate: the mean path in `z` (day 0 = today) and the
/// stacked covariance of the path's states, row-major `(9(H+1))²`.
struct PathGaussian {
    means: Vec<SpeciesArray<f64>>,
    cov: Vec<f64>,
}

impl PathGaussian {
    fn dims(&self) -> usize {
        N_SPECIES * self.means.len()
    }

    /// Scenarios `means + L ε_s` from the base samples, in original units.
    fn scenarios(
        &self,
        base: &BaseSamples,
        tr: &LogTransform,
    ) -> Result<Vec<Vec<SpeciesArray<f64>>>> {
        let dims = self.dims();
        let mut a = self.cov.clone();
        let l = cholesky_jitter(&mut a, dims).ok_or_else(|| {
            BedError::Model("linearised forecast covariance is not positive definite".into())
        })?;
        let mut out = Vec::with_capacity(base.n_samples());
        let mut z = vec![0.0; dims];
        for row in base.rows() {
            for i in 0..dims {
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
                    .map(|(d, m)| {
                        let mut zd: SpeciesArray<f64> =
                            std::array::from_fn(|k| m[k] + z[d * N_SPECIES + k]);
                        tr.clamp_z(&mut zd);
                        tr.to_species(&zd)
                    })
                    .collect(),
            );
        }
        Ok(out)
    }
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
    let h = jac.len();
    let tr = model.config().transform;
    let nc = cands.len();
    let t = N_SPECIES;
    let mut means: Vec<Vec<SpeciesArray<f64>>> = vec![vec![state.z]; nc];
    let mut covs: Vec<Vec<Mat9>> = vec![Vec::with_capacity(h); nc];
    for d in 0..h {
        let inputs: Vec<_> = (0..nc)
            .map(|c| HybridModel::z_input(&means[c][d], &cands[c], state.day + d as u32))
            .collect();
        let trans = model
            .transitions_par(&inputs, threads)
            .map_err(hybrid_err)?;
        for (c, tr_c) in trans.into_iter().enumerate() {
            let mut m = tr_c.mean;
            tr.clamp_z(&mut m);
            means[c].push(m);
            covs[c].push(tr_c.cov);
        }
    }
    let dims = t * (h + 1);
    let mut out = Vec::with_capacity(nc);
    for c in 0..nc {
        let mut big = vec![0.0; dims * dims];
        for i in 0..t {
            for j in 0..t {
                big[i * dims + j] = state.cov[i][j];
            }
        }
        for d in 0..h {
            let jd = &jac[d];
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
                    big[((d + 1) * t + i) * dims + (d + 1) * t + j] = v + covs[c][d][i][j];
                }
            }
        }
        out.push(PathGaussian {
            means: std::mem::take(&mut means[c]),
            cov: big,
        });
    }
    Ok(out)
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
