//! Hyperparameter fitting: the MAP objective, its starting points and the L-BFGS-B glue.
//!
//! The optimiser works directly on the hyperparameter vector θ (log length-scales, raw
//! `W`, log κ, log noise) inside its box bounds ([`crate::optim`]); it minimises the
//! objective per observation, `(NLML(θ) − ln p(θ)) / n`, so that the tolerances mean the
//! same on 50 and on 7 000 rows.

use super::{Curvature, FitReport, MultiTaskGp};
use crate::engine::{self, LOG_KAPPA_BOUNDS, Layout, Normaliser, SolverPath, TrainSet, W_BOUNDS};
use crate::error::{GpError, Result};
use crate::kernel::{Kernel, ParamKind};
use crate::optim::{self, LbfgsbOptions, Minimum, OptimError, Termination};
use crate::params::{FitOptions, GpValidParams, HyperPriors, TaskInit, Tune};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

/// Iterations a warm start gets with the previous fit's curvature before it goes on without
/// it. Warm refits that the curvature helps converge in 7–30 iterations; one that it misled
/// (14 days, 5 % of targets missing) crawled to the 1 000-iteration cap without converging.
const WARM_CURVATURE_ITERS: u64 = 100;

/// Where a fit starts.
enum Start<'a, K: Kernel> {
    /// From the configured or data-informed point, with `n_starts` starts.
    Scratch,
    /// From a previous model's hyperparameters and input map, one start.
    Warm(&'a MultiTaskGp<K>),
}

/// What every start of a fit shares: the model structure, the options, the active
/// hyperparameters and their bounds.
struct Problem<'a, K: Kernel + Clone> {
    kernel: &'a K,
    lay: Layout,
    opts: &'a FitOptions,
    kinds: &'a [ParamKind],
    ls_prior: Option<(f64, f64)>,
    active: &'a [usize],
    lo: &'a [f64],
    hi: &'a [f64],
    /// Called before every evaluation of the objective (see [`Pause`]).
    pause: Pause<'a>,
}

/// A hook that a fit calls before every evaluation of its objective, inside an evaluation
/// on the Kronecker paths between its large products (after the eigendecompositions, before
/// and after the kernel-gradient contraction), and before the final factorisation: tens of
/// milliseconds apart on large training sets. It lets a fit that runs in the background wait
/// while more urgent work uses the cores; it may block, it must return.
pub type Pause<'a> = &'a (dyn Fn() + Sync);

/// The hook of the plain fits: returns at once.
pub(super) fn no_pause() {}

/// Outcome of [`Problem::run`].
struct Run {
    minimum: Minimum,
    theta: Vec<f64>,
    best_start: usize,
    starts: usize,
    iterations: u64,
    evaluations: u64,
    jitter: f64,
}

impl<K: Kernel + Clone> Problem<'_, K> {
    /// Minimise the objective on `ts` from `theta0` (and `n_starts − 1` random starts
    /// around it), keeping the best start.
    fn run(
        &self,
        ts: &TrainSet,
        grid: Option<&engine::Grid>,
        theta0: &[f64],
        n_starts: usize,
        max_iters: u64,
        hessian: Option<&[f64]>,
    ) -> Result<Run> {
        let mut obj = Objective::new(self, ts, grid, theta0);
        let lbfgsb = LbfgsbOptions {
            memory: self.opts.lbfgs_memory,
            max_iters,
            max_evals: max_iters
                .saturating_mul(optim::DEFAULT_MAX_LINE_SEARCH)
                .saturating_add(1),
            grad_tol: self.opts.grad_tol,
            rel_cost_tol: self.opts.cost_tol,
            max_line_search: optim::DEFAULT_MAX_LINE_SEARCH,
            dense_max_vars: self.opts.dense_max_vars,
        };
        let u0: Vec<f64> = self.active.iter().map(|&a| theta0[a]).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(self.opts.seed);
        let mut best: Option<(Minimum, usize)> = None;
        let mut iterations = 0;
        let mut last_err = String::new();
        let starts = if self.active.is_empty() { 1 } else { n_starts };
        for s in 0..starts {
            let us = if s == 0 {
                u0.clone()
            } else {
                random_start(self.active, self.lo, self.hi, theta0, &self.lay, &mut rng)
            };
            let res = optim::minimize_with_hessian(
                |u: &[f64], g: &mut [f64]| {
                    (self.pause)();
                    obj.eval_active(u, g)
                },
                &us,
                self.lo,
                self.hi,
                &lbfgsb,
                if s == 0 { hessian } else { None },
            );
            match res {
                Ok(m) => {
                    iterations += m.iterations;
                    tracing::debug!(
                        start = s,
                        termination = %m.termination,
                        iterations = m.iterations,
                        evaluations = m.evaluations,
                        objective_per_obs = m.value,
                        projected_grad = m.projected_grad_norm,
                        "GP hyperparameter start finished"
                    );
                    if best.as_ref().is_none_or(|(b, _)| m.value < b.value) {
                        best = Some((m, s));
                    }
                }
                Err(OptimError::Objective(e)) => {
                    tracing::debug!(start = s, error = %e, "GP start failed at its first point");
                    last_err = e.to_string();
                }
                Err(e) => {
                    tracing::debug!(start = s, error = %e, "GP start failed");
                    last_err = e.to_string();
                }
            }
        }
        let Some((minimum, best_start)) = best else {
            return Err(GpError::Optimisation(last_err));
        };
        Ok(Run {
            theta: obj.theta_of(&minimum.x),
            minimum,
            best_start,
            starts,
            iterations,
            evaluations: obj.evals,
            jitter: obj.jitter,
        })
    }
}

/// The training rows of about `target` of the distinct base inputs, evenly spread (every
/// k-th input in order of appearance), with the full set's standardisation.
fn subset(ts: &TrainSet, target: usize) -> TrainSet {
    let stride = ts.n_base.div_ceil(target.max(1)).max(1);
    let mut new_index = vec![usize::MAX; ts.n_base];
    let mut base = Vec::new();
    let mut n_base = 0;
    for i in (0..ts.n_base).step_by(stride) {
        new_index[i] = n_base;
        base.extend_from_slice(ts.base_row(i));
        n_base += 1;
    }
    let mut out = TrainSet {
        base,
        n_base,
        row_base: Vec::new(),
        row_task: Vec::new(),
        z: Vec::new(),
        ..ts.clone()
    };
    for r in 0..ts.n() {
        let b = new_index[ts.row_base[r]];
        if b != usize::MAX {
            out.row_base.push(b);
            out.row_task.push(ts.row_task[r]);
            out.z.push(ts.z[r]);
        }
    }
    out
}

/// The MAP objective over the active hyperparameters.
struct Objective<'a, K: Kernel + Clone> {
    kernel: K,
    ts: &'a TrainSet,
    grid: Option<&'a engine::Grid>,
    lay: Layout,
    opts: &'a FitOptions,
    kinds: Vec<ParamKind>,
    ls_prior: Option<(f64, f64)>,
    active: Vec<usize>,
    theta: Vec<f64>,
    n_obs: f64,
    evals: u64,
    jitter: f64,
    /// The fit's hook, also called inside an evaluation between its large products.
    pause: Pause<'a>,
}

impl<'a, K: Kernel + Clone> Objective<'a, K> {
    fn new(
        problem: &'a Problem<'a, K>,
        ts: &'a TrainSet,
        grid: Option<&'a engine::Grid>,
        theta: &[f64],
    ) -> Self {
        Self {
            kernel: problem.kernel.clone(),
            ts,
            grid,
            lay: problem.lay,
            opts: problem.opts,
            kinds: problem.kinds.to_vec(),
            ls_prior: problem.ls_prior,
            active: problem.active.to_vec(),
            theta: theta.to_vec(),
            n_obs: ts.n() as f64,
            evals: 0,
            jitter: 0.0,
            pause: problem.pause,
        }
    }

    /// Full θ with the active entries replaced by `u`.
    fn theta_of(&self, u: &[f64]) -> Vec<f64> {
        let mut th = self.theta.clone();
        for (j, &a) in self.active.iter().enumerate() {
            th[a] = u[j];
        }
        th
    }

    /// NLML, objective (NLML + penalty) and the θ-gradient of the objective.
    fn eval_theta(&mut self, theta: &[f64]) -> Result<(f64, f64, Vec<f64>)> {
        self.kernel.set_params(&theta[..self.lay.nk])?;
        let e = match self.grid {
            Some(g) => {
                engine::eval_kron(&self.kernel, self.ts, g, theta, &self.lay, true, self.pause)?
            }
            None => engine::eval_dense(&self.kernel, self.ts, theta, &self.lay, self.opts, true)?,
        };
        self.jitter = self.jitter.max(e.jitter);
        let mut g = e.grad;
        let pen = penalty(
            &self.opts.priors,
            self.ls_prior,
            &self.kinds,
            &self.lay,
            theta,
            &mut g,
        );
        Ok((e.nlml, e.nlml + pen, g))
    }

    /// Per-observation objective and gradient over the active entries.
    fn eval_active(&mut self, u: &[f64], grad: &mut [f64]) -> Result<f64> {
        self.evals += 1;
        let theta = self.theta_of(u);
        let (_, obj, g) = self.eval_theta(&theta)?;
        for (gj, &a) in grad.iter_mut().zip(&self.active) {
            *gj = g[a] / self.n_obs;
        }
        Ok(obj / self.n_obs)
    }
}

/// Prior penalty `−Σ ln p(θ)` (see [`HyperPriors`]) and its θ-gradient, added to `grad`.
fn penalty(
    priors: &HyperPriors,
    ls_prior: Option<(f64, f64)>,
    kinds: &[ParamKind],
    lay: &Layout,
    theta: &[f64],
    grad: &mut [f64],
) -> f64 {
    let mut pen = 0.0;
    if let Some((mu, s)) = ls_prior {
        for (j, kind) in kinds.iter().enumerate() {
            if *kind == ParamKind::LengthScale {
                // log-normal density of ℓ = e^θ: −ln p = θ + (θ − μ)²/2σ² + const
                let th = theta[j];
                pen += th + (th - mu).powi(2) / (2.0 * s * s);
                grad[j] += 1.0 + (th - mu) / (s * s);
            }
        }
    }
    if let Some((a, b)) = priors.noise {
        for j in lay.noise() {
            // gamma density of σ² = e^θ: −ln p = −(a − 1)θ + b e^θ + const
            let th = theta[j];
            pen += -(a - 1.0) * th + b * th.exp();
            grad[j] += -(a - 1.0) + b * th.exp();
        }
    }
    if let Some((a, b)) = priors.signal {
        let (w, kap) = (lay.w(), lay.kappa());
        for t in 0..lay.t {
            // gamma density of B_tt = Σ_k W_tk² + κ_t: −ln p = −(a − 1) ln B_tt + b B_tt + const
            let kappa = theta[kap.start + t].exp();
            let btt = kappa
                + (0..lay.r)
                    .map(|k| theta[w.start + t * lay.r + k].powi(2))
                    .sum::<f64>();
            pen += -(a - 1.0) * btt.ln() + b * btt;
            let dpen = -(a - 1.0) / btt + b;
            for k in 0..lay.r {
                let j = w.start + t * lay.r + k;
                grad[j] += dpen * 2.0 * theta[j];
            }
            grad[kap.start + t] += dpen * kappa;
        }
    }
    pen
}

/// Starting hyperparameters: the kernel's configured parameters (by default the mode of
/// the length-scale prior) and, unless [`crate::GpParams::task_init`] gives them, the
/// data-informed task covariance of [`data_task_init`].
fn initial_theta<K: Kernel>(
    kernel: &K,
    ts: &TrainSet,
    rank: usize,
    init: Option<&TaskInit>,
) -> Vec<f64> {
    let mut th = kernel.params();
    let owned;
    let init = match init {
        Some(i) => i,
        None => {
            owned = data_task_init(ts, rank);
            &owned
        }
    };
    th.extend_from_slice(&init.w);
    th.extend(init.kappa.iter().map(|v| v.ln()));
    th.extend(init.noise.iter().map(|v| v.ln()));
    th
}

/// Data-informed start of the task covariance: with noise `σ²₀ = DEFAULT_NOISE_INIT` and
/// signal `s = 1 − σ²₀` per task (the residuals are standardised to unit variance),
/// `B₀ = W Wᵀ + diag(κ) ≈ s·C`, where `C` is the correlation of the standardised residuals
/// of each pair of tasks over the inputs where both are observed: `W` holds the leading
/// `rank` eigenvectors of `C` scaled by the square roots of their eigenvalues, and κ the
/// rest of each diagonal (at least 5 % of `s`). With no pair observed together, tasks start
/// uncorrelated.
fn data_task_init(ts: &TrainSet, rank: usize) -> TaskInit {
    let t = ts.n_tasks;
    let noise = crate::params::DEFAULT_NOISE_INIT;
    let s = 1.0 - noise;
    // residuals on the grid (NaN where missing)
    let mut z = vec![f64::NAN; ts.n_base * t];
    for r in 0..ts.n() {
        z[ts.row_base[r] * t + ts.row_task[r]] = ts.z[r];
    }
    let mut c = faer::Mat::<f64>::identity(t, t);
    for a in 0..t {
        for b in 0..a {
            let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
            for i in 0..ts.n_base {
                let (za, zb) = (z[i * t + a], z[i * t + b]);
                if za.is_finite() && zb.is_finite() {
                    sab += za * zb;
                    saa += za * za;
                    sbb += zb * zb;
                }
            }
            let r = if saa > 0.0 && sbb > 0.0 {
                (sab / (saa * sbb).sqrt()).clamp(-1.0, 1.0)
            } else {
                0.0
            };
            c[(a, b)] = r;
            c[(b, a)] = r;
        }
    }
    let mut w = vec![0.0; t * rank];
    if rank > 0
        && let Ok(e) = c.self_adjoint_eigen(faer::Side::Lower)
    {
        let vals = e.S().column_vector();
        let vecs = e.U();
        for k in 0..rank.min(t) {
            // eigenvalues ascend: take them from the top
            let col = t - 1 - k;
            let lam = vals[col].max(0.0);
            for a in 0..t {
                w[a * rank + k] = vecs[(a, col)] * (s * lam).sqrt();
            }
        }
    }
    let kappa = (0..t)
        .map(|a| {
            let ww: f64 = (0..rank).map(|k| w[a * rank + k].powi(2)).sum();
            (s - ww).max(0.05 * s)
        })
        .collect();
    TaskInit {
        w,
        kappa,
        noise: vec![noise; t],
    }
}

/// A random start around `theta0`: kernel parameters ±1.5 (log), W uniform in ±1, κ in
/// [0.05, 1], noise in [1e-3, 0.3], clamped inside the bounds.
fn random_start(
    active: &[usize],
    lo: &[f64],
    hi: &[f64],
    theta0: &[f64],
    lay: &Layout,
    rng: &mut ChaCha8Rng,
) -> Vec<f64> {
    active
        .iter()
        .enumerate()
        .map(|(j, &a)| {
            let v = if a < lay.nk {
                theta0[a] + rng.random_range(-1.5..1.5)
            } else if lay.w().contains(&a) {
                rng.random_range(-1.0..1.0)
            } else if lay.kappa().contains(&a) {
                rng.random_range(0.05f64.ln()..0.0)
            } else {
                rng.random_range(1e-3f64.ln()..0.3f64.ln())
            };
            v.clamp(lo[j], hi[j])
        })
        .collect()
}

impl<K: Kernel + Clone> GpValidParams<K> {
    /// Fit hyperparameters and condition on `(x, y)`.
    ///
    /// `x` is row-major with `n_cols` columns, the last being the integer task id in
    /// `0..n_tasks`; `y` has one target per row. Uses the Kronecker path when every task is
    /// observed at most once at every distinct base input and at most
    /// [`MAX_GAP_FRACTION`](crate::MAX_GAP_FRACTION) of the cells are empty, the dense path
    /// otherwise. The report says whether the optimiser converged ([`FitReport`]).
    pub fn fit(&self, x: &[f64], n_cols: usize, y: &[f64]) -> Result<MultiTaskGp<K>> {
        self.fit_pausable(x, n_cols, y, &no_pause)
    }

    /// [`fit`](Self::fit) that calls `pause` at its checkpoints (see [`Pause`]); the result
    /// is the same.
    pub fn fit_pausable(
        &self,
        x: &[f64],
        n_cols: usize,
        y: &[f64],
        pause: Pause<'_>,
    ) -> Result<MultiTaskGp<K>> {
        let _clean = crate::simd::UpperStateGuard;
        self.fit_impl(x, n_cols, y, Start::Scratch, pause)
    }

    /// Fit starting from the hyperparameters of `previous` (a single start limited to
    /// `warm_iters` iterations). The input map is the one of these params if they fix
    /// [`input bounds`](crate::GpParams::input_bounds), otherwise `previous`'s, so the
    /// warm-started length-scales keep their meaning.
    pub fn fit_warm(
        &self,
        x: &[f64],
        n_cols: usize,
        y: &[f64],
        previous: &MultiTaskGp<K>,
    ) -> Result<MultiTaskGp<K>> {
        self.fit_warm_pausable(x, n_cols, y, previous, &no_pause)
    }

    /// [`fit_warm`](Self::fit_warm) that calls `pause` at its checkpoints (see [`Pause`]);
    /// the result is the same.
    pub fn fit_warm_pausable(
        &self,
        x: &[f64],
        n_cols: usize,
        y: &[f64],
        previous: &MultiTaskGp<K>,
        pause: Pause<'_>,
    ) -> Result<MultiTaskGp<K>> {
        let _clean = crate::simd::UpperStateGuard;
        let p = &self.0;
        if previous.lay.len() != p.kernel.n_params() + p.n_tasks * p.rank + 2 * p.n_tasks
            || previous.lay.t != p.n_tasks
            || previous.lay.r != p.rank
        {
            return Err(GpError::ShapeMismatch(
                "the previous model has a different kernel, task count or rank than these params"
                    .into(),
            ));
        }
        if previous.n_cols != n_cols {
            return Err(GpError::ShapeMismatch(format!(
                "the previous model has {} columns, X has {n_cols}",
                previous.n_cols
            )));
        }
        self.fit_impl(x, n_cols, y, Start::Warm(previous), pause)
    }

    fn normaliser(&self, x: &[f64], n_cols: usize, start: &Start<'_, K>) -> Result<Normaliser> {
        let d = n_cols - 1;
        match (&self.0.input_bounds, start) {
            (Some(b), _) => {
                if b.len() != d {
                    return Err(GpError::InvalidParameter {
                        name: "input_bounds",
                        reason: format!(
                            "{} bounds given for {d} base columns; give one (lo, hi) per base column (the task id excluded)",
                            b.len()
                        ),
                    });
                }
                Ok(Normaliser::from_bounds(b))
            }
            (None, Start::Warm(prev)) => Ok(prev.norm.clone()),
            (None, Start::Scratch) => Ok(Normaliser::from_data(x, n_cols)),
        }
    }

    fn fit_impl(
        &self,
        x: &[f64],
        n_cols: usize,
        y: &[f64],
        start: Start<'_, K>,
        pause: Pause<'_>,
    ) -> Result<MultiTaskGp<K>> {
        let t_start = Instant::now();
        let p = &self.0;
        let opts = &p.opts;
        let n = engine::validate(x, n_cols, Some(y), p.n_tasks)?;
        if n < 2 {
            return Err(GpError::TooFewPoints { got: n, need: 2 });
        }
        let d = n_cols - 1;
        if p.kernel.min_input_dim() > d {
            return Err(GpError::ShapeMismatch(format!(
                "the kernel reads {} base columns but X has only {d} (plus the task id)",
                p.kernel.min_input_dim()
            )));
        }
        let norm = self.normaliser(x, n_cols, &start)?;
        let (st, ts) = engine::prepare(
            x,
            n_cols,
            y,
            p.n_tasks,
            &norm,
            p.prior_mean.as_ref(),
            opts.centre_targets,
        )?;
        let lay = Layout {
            nk: p.kernel.n_params(),
            t: p.n_tasks,
            r: p.rank,
        };
        let grid = engine::grid_for(&ts, opts);
        let objective_path = match &grid {
            Some(g) if g.missing.is_empty() => SolverPath::Kronecker,
            Some(_) => SolverPath::KroneckerWithGaps,
            None => SolverPath::Dense,
        };
        let (mut theta0, n_starts, max_iters) = match &start {
            Start::Scratch => (
                initial_theta(&p.kernel, &ts, p.rank, p.init.as_ref()),
                opts.n_starts,
                opts.max_iters,
            ),
            Start::Warm(prev) => (prev.theta.clone(), 1, opts.warm_iters),
        };
        // a task with constant residuals is held at W_t = 0, κ_t = lower bound and a large
        // noise (see `FitOptions::noise_bounds`)
        let frozen: Vec<usize> = (0..p.n_tasks)
            .filter(|&t| st.constant.get(t).copied().unwrap_or(false))
            .collect();
        let constant_noise = crate::params::CONSTANT_TASK_NOISE
            .clamp(opts.noise_bounds.0, opts.noise_bounds.1)
            .ln();
        // (only groups that are optimised: fixed values are the caller's)
        for &t in &frozen {
            if opts.tuning.task_covariance == Tune::Bounded {
                for k in 0..lay.r {
                    theta0[lay.w().start + t * lay.r + k] = 0.0;
                }
                theta0[lay.kappa().start + t] = LOG_KAPPA_BOUNDS.0;
            }
            if opts.tuning.noise == Tune::Bounded {
                theta0[lay.noise().start + t] = constant_noise;
            }
        }
        let is_frozen = |j: usize| {
            frozen.iter().any(|&t| {
                (lay.w().contains(&j) && (j - lay.w().start) / lay.r.max(1) == t)
                    || j == lay.kappa().start + t
                    || j == lay.noise().start + t
            })
        };
        let info = p.kernel.param_info();
        let mut active = Vec::new();
        let mut lo = Vec::new();
        let mut hi = Vec::new();
        let mut push = |j: usize, b: (f64, f64)| {
            if !is_frozen(j) {
                active.push(j);
                lo.push(b.0);
                hi.push(b.1);
            }
        };
        if opts.tuning.kernel == Tune::Bounded {
            for (j, inf) in info.iter().enumerate() {
                push(j, inf.bounds);
            }
        }
        if opts.tuning.task_covariance == Tune::Bounded {
            for j in lay.w() {
                push(j, W_BOUNDS);
            }
            for j in lay.kappa() {
                push(j, LOG_KAPPA_BOUNDS);
            }
        }
        if opts.tuning.noise == Tune::Bounded {
            for j in lay.noise() {
                push(j, (opts.noise_bounds.0.ln(), opts.noise_bounds.1.ln()));
            }
        }
        // keep the start inside the bounds (a warm start may come from wider settings)
        for (j, &a) in active.iter().enumerate() {
            theta0[a] = theta0[a].clamp(lo[j], hi[j]);
        }
        let ls_prior = opts
            .priors
            .lengthscale
            .map(|(mu, s)| (mu.unwrap_or(2f64.sqrt() + 0.5 * (d.max(1) as f64).ln()), s));
        let kinds: Vec<ParamKind> = info.iter().map(|i| i.kind).collect();
        let problem = Problem {
            kernel: &p.kernel,
            lay,
            opts,
            kinds: &kinds,
            ls_prior,
            active: &active,
            lo: &lo,
            hi: &hi,
            pause,
        };
        // a large fit starts from fits on evenly spread subsets of its inputs (see
        // `SUBSET_START_INPUTS`): a small one from the default point, then one on half the
        // inputs, whose curvature is the full fit's first Hessian
        let mut subset_evaluations = 0;
        let mut subset_hessian: Option<Vec<f64>> = None;
        if matches!(start, Start::Scratch)
            && ts.n_base >= crate::params::SUBSET_START_MIN_INPUTS
            && !active.is_empty()
            && max_iters > 0
        {
            let mut stages = vec![crate::params::SUBSET_START_INPUTS];
            if ts.n_base / 2 >= 2 * crate::params::SUBSET_START_INPUTS {
                stages.push(ts.n_base / 2);
            }
            for target in stages {
                let sub = subset(&ts, target);
                let sub_grid = engine::grid_for(&sub, opts);
                match problem.run(&sub, sub_grid.as_ref(), &theta0, 1, max_iters, None) {
                    Ok(r) => {
                        subset_evaluations += r.evaluations;
                        tracing::debug!(
                            inputs = sub.n_base,
                            evaluations = r.evaluations,
                            termination = %r.minimum.termination,
                            "GP subset start fitted"
                        );
                        theta0 = r.theta;
                        subset_hessian = r.minimum.hessian;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "GP subset start failed; starting from the previous point");
                        subset_hessian = None;
                    }
                }
            }
        }
        // a warm refit also starts from the previous fit's curvature
        let warm_hessian = match &start {
            Start::Warm(prev) => prev
                .curvature
                .as_ref()
                .filter(|c| c.active == active)
                .map(|c| c.hessian.as_slice()),
            Start::Scratch => subset_hessian.as_deref(),
        };
        // a warm start's borrowed curvature usually saves most of the iterations, but it can
        // also trap the quasi-Newton steps in a slow crawl: with it, the fit gets
        // `WARM_CURVATURE_ITERS` iterations, and one that has not converged by then goes on
        // from where it stopped without it
        let warm_cap = match (&start, warm_hessian) {
            (Start::Warm(_), Some(_)) => max_iters.min(WARM_CURVATURE_ITERS),
            _ => max_iters,
        };
        let mut run = problem.run(
            &ts,
            grid.as_ref(),
            &theta0,
            n_starts,
            warm_cap,
            warm_hessian,
        )?;
        // the run goes on from where it stopped, without the curvature, with what is left of
        // the iteration budget; the counts add up
        let without_curvature = |run: Run, why: &str| -> Result<Run> {
            let done = (run.iterations, run.evaluations);
            let again = problem.run(&ts, grid.as_ref(), &run.theta, 1, max_iters - done.0, None)?;
            tracing::debug!(
                first = %run.minimum.termination,
                then = %again.minimum.termination,
                "GP fit restarted without the {why} curvature"
            );
            Ok(Run {
                iterations: done.0 + again.iterations,
                evaluations: done.1 + again.evaluations,
                ..again
            })
        };
        if warm_cap < max_iters
            && !run.minimum.termination.converged()
            && run.iterations >= warm_cap
        {
            run = without_curvature(run, "previous")?;
        }
        // A curvature borrowed from the subset can mislead the first steps so far that the
        // relative decrease stalls before the gradient is small: only the gradient rule
        // counts then, and the fit goes on from where it stopped without it.
        if subset_hessian.is_some()
            && run.minimum.termination == Termination::CostTolerance
            && run.iterations < max_iters
        {
            run = without_curvature(run, "subset")?;
        }
        let (m, best_start, iterations, starts) =
            (run.minimum, run.best_start, run.iterations, run.starts);
        let theta = run.theta;
        let objective = m.value * ts.n() as f64;
        let evaluations = run.evaluations;
        let mut kernel = p.kernel.clone();
        kernel.set_params(&theta[..lay.nk])?;
        pause();
        let (post, path, nlml, jit) =
            engine::build_posterior(&kernel, &ts, &theta, &lay, opts, pause)?;
        let jitter = run.jitter.max(jit);
        let termination = m.termination;
        let curvature = m.hessian.clone().map(|hessian| Curvature {
            active: active.clone(),
            hessian,
        });
        let report = FitReport {
            nlml,
            objective,
            iterations,
            evaluations,
            subset_evaluations,
            wall_time: t_start.elapsed(),
            converged: termination.converged(),
            termination,
            projected_grad_norm: m.projected_grad_norm,
            jitter,
            jitter_added: jitter > 0.0,
            n_starts: starts,
            best_start,
            path,
            objective_path,
        };
        if report.converged {
            tracing::debug!(%report, "GP fitted");
        } else {
            tracing::warn!(%report, "GP hyperparameter fit did not converge");
        }
        Ok(MultiTaskGp {
            kernel,
            lay,
            theta,
            opts: opts.clone(),
            n_cols,
            x: x.to_vec(),
            y: y.to_vec(),
            norm,
            st,
            ts,
            post,
            path,
            report,
            mean_fingerprint: p.prior_mean.fingerprint(),
            mean_constant: p.prior_mean.as_constant(),
            mean: Some(p.prior_mean.clone()),
            curvature,
        })
    }
}

impl<K: Kernel + Clone> MultiTaskGp<K> {
    /// Negative log marginal likelihood and its gradient with respect to the full
    /// hyperparameter vector (see [`MultiTaskGp::hyperparameters`]) at `theta`, on this
    /// model's training data, evaluated on the path a fit would use (priors excluded).
    pub fn nlml_and_grad(&self, theta: &[f64]) -> Result<(f64, Vec<f64>)> {
        let _clean = crate::simd::UpperStateGuard;
        if theta.len() != self.lay.len() {
            return Err(GpError::ShapeMismatch(format!(
                "theta has {} values, the model {}",
                theta.len(),
                self.lay.len()
            )));
        }
        let mut k = self.kernel.clone();
        k.set_params(&theta[..self.lay.nk])?;
        let e = match engine::grid_for(&self.ts, &self.opts) {
            Some(g) => engine::eval_kron(&k, &self.ts, &g, theta, &self.lay, true, &no_pause)?,
            None => engine::eval_dense(&k, &self.ts, theta, &self.lay, &self.opts, true)?,
        };
        Ok((e.nlml, e.grad))
    }

    /// The prior penalty `−ln p(θ)` of this model's priors at `theta` and its gradient (the
    /// fit minimises `NLML + penalty`).
    pub fn prior_penalty_and_grad(&self, theta: &[f64]) -> Result<(f64, Vec<f64>)> {
        if theta.len() != self.lay.len() {
            return Err(GpError::ShapeMismatch(format!(
                "theta has {} values, the model {}",
                theta.len(),
                self.lay.len()
            )));
        }
        let d = self.n_cols - 1;
        let ls_prior = self
            .opts
            .priors
            .lengthscale
            .map(|(mu, s)| (mu.unwrap_or(2f64.sqrt() + 0.5 * (d.max(1) as f64).ln()), s));
        let kinds: Vec<ParamKind> = self.kernel.param_info().iter().map(|i| i.kind).collect();
        let mut g = vec![0.0; theta.len()];
        let pen = penalty(
            &self.opts.priors,
            ls_prior,
            &kinds,
            &self.lay,
            theta,
            &mut g,
        );
        Ok((pen, g))
    }
}
