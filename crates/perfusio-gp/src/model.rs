//! The fitted multi-task Gaussian process.

use crate::engine::{
    self, LOG_KAPPA_BOUNDS, Layout, Normaliser, PostState, Posterior, SolverPath, Standardiser,
    TrainSet, W_BOUNDS,
};
use crate::error::{GpError, Result};
use crate::kernel::{Kernel, KernelSpec, ParamKind};
use crate::mean::{ConstantMean, PriorMean};
use crate::params::{FitOptions, GpParams, GpValidParams, TaskInit, Tune};
use argmin::core::{CostFunction, Executor, Gradient, State, TerminationReason};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use faer::{Mat, MatRef, Par};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Outcome of a hyperparameter fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitReport {
    /// Negative log marginal likelihood at the final hyperparameters (standardised units,
    /// priors excluded).
    pub nlml: f64,
    /// Objective actually minimised: NLML plus the prior penalty.
    pub objective: f64,
    /// L-BFGS iterations over all starts.
    pub iterations: u64,
    /// Objective evaluations (value + gradient) over all starts.
    pub evaluations: u64,
    /// Wall-clock time of the fit, including data preparation and the final factorisation.
    pub wall_time: Duration,
    /// Whether the best start stopped on its tolerance (not on the iteration limit).
    pub converged: bool,
    /// Largest absolute jitter added to a diagonal during the fit (0 if none).
    pub jitter: f64,
    /// `jitter > 0`.
    pub jitter_added: bool,
    /// Number of starts run.
    pub n_starts: usize,
    /// Index of the start that won.
    pub best_start: usize,
    /// Path used for the final factorisation (Kronecker on complete data, else dense).
    pub path: SolverPath,
    /// Path used to evaluate the likelihood during optimisation.
    pub objective_path: SolverPath,
}

/// Marginal mean and variance of a batch of rows, original units.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Posterior mean per row.
    pub mean: Vec<f64>,
    /// Posterior variance per row (latent, or including observation noise, depending on
    /// the call). Tiny negative round-off is clamped to 0.
    pub variance: Vec<f64>,
}

/// Joint posterior of a batch of rows, original units.
#[derive(Debug, Clone, PartialEq)]
pub struct JointPrediction {
    /// Posterior mean per row.
    pub mean: Vec<f64>,
    /// Latent covariance, `m × m` row-major.
    pub covariance: Vec<f64>,
}

/// What the model was fitted with as prior mean (the mean itself is not serialised).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum MeanLabel {
    Constant(f64),
    External(String),
}

/// An exact multi-task Gaussian process in indexed format, fitted by
/// [`GpValidParams::fit`].
///
/// Rows of `X` are `[base inputs..., task id]`; the covariance of two rows is
/// `k_x(x, x')·B[t, t']` with `B = W Wᵀ + diag(κ)`, plus per-task Gaussian noise
/// `σ²_t ≥ NOISE_FLOOR` (standardised units) on the diagonal. Targets are modelled as
/// `y = m(x, t) + μ_t + s_t·f(x, t)`, where `m` is the prior mean, `μ_t`, `s_t` are the
/// per-task mean and standard deviation of the residuals and `f` is the GP; base inputs are
/// mapped onto the unit cube first. All outputs are in original units
/// (Bonilla, Chai & Williams 2008, "Multi-task Gaussian process prediction", NeurIPS;
/// Rasmussen & Williams 2006, algorithm 2.1).
///
/// Persisted with serde (hyperparameters, training data, normalisation and the cached
/// factorisation, so a round trip gives bit-identical predictions). The prior mean is not
/// serialised: see [`PriorMean`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MultiTaskGp<K: Kernel = KernelSpec> {
    kernel: K,
    lay: Layout,
    theta: Vec<f64>,
    opts: FitOptions,
    n_cols: usize,
    x: Vec<f64>,
    y: Vec<f64>,
    norm: Normaliser,
    st: Standardiser,
    ts: TrainSet,
    post: Posterior,
    path: SolverPath,
    report: FitReport,
    mean_label: MeanLabel,
    #[serde(skip)]
    mean: Option<Arc<dyn PriorMean>>,
}

/// Map between the optimiser's unconstrained vector `u` and θ: each active θ_j is
/// `lo + (hi − lo)·σ(u_j)` with σ the logistic function.
#[derive(Debug)]
struct Space {
    active: Vec<usize>,
    lo: Vec<f64>,
    hi: Vec<f64>,
    base: Vec<f64>,
}

fn sigmoid(u: f64) -> f64 {
    1.0 / (1.0 + (-u).exp())
}

impl Space {
    fn theta(&self, u: &[f64]) -> Vec<f64> {
        let mut th = self.base.clone();
        for (j, &a) in self.active.iter().enumerate() {
            th[a] = self.lo[j] + (self.hi[j] - self.lo[j]) * sigmoid(u[j]);
        }
        th
    }
    fn u(&self, theta: &[f64]) -> Vec<f64> {
        self.active
            .iter()
            .enumerate()
            .map(|(j, &a)| {
                let f =
                    ((theta[a] - self.lo[j]) / (self.hi[j] - self.lo[j])).clamp(1e-9, 1.0 - 1e-9);
                (f / (1.0 - f)).ln()
            })
            .collect()
    }
    fn chain(&self, u: &[f64], g_theta: &[f64]) -> Vec<f64> {
        self.active
            .iter()
            .enumerate()
            .map(|(j, &a)| {
                let s = sigmoid(u[j]);
                g_theta[a] * (self.hi[j] - self.lo[j]) * s * (1.0 - s)
            })
            .collect()
    }
}

/// Last evaluation: `(u, objective, gradient in u)`.
type CachedEval = (Vec<f64>, f64, Vec<f64>);

/// Everything the objective needs.
#[derive(Debug)]
struct Objective<'a, K: Kernel + Clone> {
    kernel: &'a K,
    ts: &'a TrainSet,
    grid: Option<&'a engine::Grid>,
    lay: Layout,
    opts: &'a FitOptions,
    space: &'a Space,
    kinds: Vec<ParamKind>,
    ls_prior: Option<(f64, f64)>,
    evals: Cell<u64>,
    jitter: Cell<f64>,
    cache: RefCell<Option<CachedEval>>,
    best: RefCell<Option<(f64, Vec<f64>)>>,
}

impl<K: Kernel + Clone> Objective<'_, K> {
    /// Prior penalty `−Σ ln p(θ)` and its θ-gradient.
    fn penalty(&self, theta: &[f64], grad: &mut [f64]) -> f64 {
        let mut pen = 0.0;
        if let Some((mu, s)) = self.ls_prior {
            for (j, kind) in self.kinds.iter().enumerate() {
                if *kind == ParamKind::LengthScale {
                    let th = theta[j];
                    pen += th + (th - mu).powi(2) / (2.0 * s * s);
                    grad[j] += 1.0 + (th - mu) / (s * s);
                }
            }
        }
        if let Some((a, b)) = self.opts.priors.noise {
            for j in self.lay.noise() {
                let th = theta[j];
                pen += -(a - 1.0) * th + b * th.exp();
                grad[j] += -(a - 1.0) + b * th.exp();
            }
        }
        pen
    }

    fn eval_theta(&self, theta: &[f64]) -> Result<(f64, f64, Vec<f64>)> {
        let mut k = self.kernel.clone();
        k.set_params(&theta[..self.lay.nk]);
        let e = match self.grid {
            Some(g) => engine::eval_kron(&k, self.ts, g, theta, &self.lay, true)?,
            None => engine::eval_dense(&k, self.ts, theta, &self.lay, self.opts, true)?,
        };
        self.jitter.set(self.jitter.get().max(e.jitter));
        let mut g = e.grad;
        let pen = self.penalty(theta, &mut g);
        Ok((e.nlml, e.nlml + pen, g))
    }

    fn eval_u(&self, u: &[f64]) -> std::result::Result<(f64, Vec<f64>), argmin::core::Error> {
        if let Some((cu, c, g)) = self.cache.borrow().as_ref()
            && cu.len() == u.len()
            && cu.iter().zip(u).all(|(a, b)| a.to_bits() == b.to_bits())
        {
            return Ok((*c, g.clone()));
        }
        let theta = self.space.theta(u);
        self.evals.set(self.evals.get() + 1);
        let (_, cost, g_theta) = self
            .eval_theta(&theta)
            .map_err(|e| argmin::core::Error::msg(e.to_string()))?;
        if !cost.is_finite() || g_theta.iter().any(|v| !v.is_finite()) {
            return Err(argmin::core::Error::msg("non-finite objective"));
        }
        let g = self.space.chain(u, &g_theta);
        let better = self.best.borrow().as_ref().is_none_or(|(c, _)| cost < *c);
        if better {
            *self.best.borrow_mut() = Some((cost, theta));
        }
        *self.cache.borrow_mut() = Some((u.to_vec(), cost, g.clone()));
        Ok((cost, g))
    }
}

/// Borrowing handle given to argmin (the objective keeps counters and the best point).
#[derive(Debug)]
struct ObjRef<'b, 'a, K: Kernel + Clone>(&'b Objective<'a, K>);

impl<K: Kernel + Clone> CostFunction for ObjRef<'_, '_, K> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, u: &Self::Param) -> std::result::Result<f64, argmin::core::Error> {
        self.0.eval_u(u).map(|(c, _)| c)
    }
}

impl<K: Kernel + Clone> Gradient for ObjRef<'_, '_, K> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, u: &Self::Param) -> std::result::Result<Vec<f64>, argmin::core::Error> {
        self.0.eval_u(u).map(|(_, g)| g)
    }
}

fn initial_theta<K: Kernel>(
    kernel: &K,
    n_tasks: usize,
    rank: usize,
    init: Option<&TaskInit>,
) -> Vec<f64> {
    let mut th = kernel.params();
    match init {
        Some(i) => {
            th.extend_from_slice(&i.w);
            th.extend(i.kappa.iter().map(|v| v.ln()));
            th.extend(i.noise.iter().map(|v| v.ln()));
        }
        None => {
            // B starts with off-diagonal 0.5 and diagonal 0.9 (standardised outputs)
            let wv = if rank > 0 {
                (0.5 / rank as f64).sqrt()
            } else {
                0.0
            };
            th.extend(std::iter::repeat_n(wv, n_tasks * rank));
            let kap = if rank > 0 { 0.4f64 } else { 0.9 };
            th.extend(std::iter::repeat_n(kap.ln(), n_tasks));
            th.extend(std::iter::repeat_n(
                crate::params::DEFAULT_NOISE_INIT.ln(),
                n_tasks,
            ));
        }
    }
    th
}

fn random_start(space: &Space, theta0: &[f64], lay: &Layout, rng: &mut ChaCha8Rng) -> Vec<f64> {
    let mut th = theta0.to_vec();
    for (j, &a) in space.active.iter().enumerate() {
        let (lo, hi) = (space.lo[j], space.hi[j]);
        let v = if a < lay.nk {
            theta0[a] + rng.random_range(-1.5..1.5)
        } else if lay.w().contains(&a) {
            rng.random_range(-1.0..1.0)
        } else if lay.kappa().contains(&a) {
            rng.random_range(0.05f64.ln()..0.0)
        } else {
            rng.random_range(1e-3f64.ln()..0.3f64.ln())
        };
        let margin = 1e-3 * (hi - lo);
        th[a] = v.clamp(lo + margin, hi - margin);
    }
    th
}

impl<K: Kernel + Clone> GpValidParams<K> {
    /// Fit hyperparameters and condition on `(x, y)`.
    ///
    /// `x` is row-major with `n_cols` columns, the last being the integer task id in
    /// `0..n_tasks`; `y` has one target per row. Uses the Kronecker path when every task is
    /// observed exactly once at every distinct base input, the dense path otherwise.
    pub fn fit(&self, x: &[f64], n_cols: usize, y: &[f64]) -> Result<MultiTaskGp<K>> {
        let p = &self.0;
        let th0 = initial_theta(&p.kernel, p.n_tasks, p.rank, p.init.as_ref());
        self.fit_impl(x, n_cols, y, th0, p.opts.n_starts, p.opts.max_iters)
    }

    /// Fit starting from the hyperparameters of `previous` (a single start limited to
    /// `warm_iters` iterations); the normalisation is recomputed from the new data.
    pub fn fit_warm(
        &self,
        x: &[f64],
        n_cols: usize,
        y: &[f64],
        previous: &MultiTaskGp<K>,
    ) -> Result<MultiTaskGp<K>> {
        if previous.lay.len()
            != self.0.kernel.n_params() + self.0.n_tasks * self.0.rank + 2 * self.0.n_tasks
        {
            return Err(GpError::ShapeMismatch(
                "the previous model has a different kernel, task count or rank than these params"
                    .into(),
            ));
        }
        self.fit_impl(
            x,
            n_cols,
            y,
            previous.theta.clone(),
            1,
            self.0.opts.warm_iters,
        )
    }

    fn fit_impl(
        &self,
        x: &[f64],
        n_cols: usize,
        y: &[f64],
        theta0: Vec<f64>,
        n_starts: usize,
        max_iters: u64,
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
        let (norm, st, ts) = engine::prepare(x, n_cols, y, p.n_tasks, p.prior_mean.as_ref());
        let lay = Layout {
            nk: p.kernel.n_params(),
            t: p.n_tasks,
            r: p.rank,
        };
        let grid = if opts.force_dense { None } else { ts.grid() };
        let objective_path = match &grid {
            Some(g) if g.missing.is_empty() => SolverPath::Kronecker,
            Some(_) => SolverPath::KroneckerWithGaps,
            None => SolverPath::Dense,
        };
        let info = p.kernel.param_info();
        let mut active = Vec::new();
        let mut lo = Vec::new();
        let mut hi = Vec::new();
        let mut push = |j: usize, b: (f64, f64)| {
            active.push(j);
            lo.push(b.0);
            hi.push(b.1);
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
        let mut theta0 = theta0;
        // keep the start inside the bounds (a warm start may come from wider settings)
        for (j, &a) in active.iter().enumerate() {
            theta0[a] = theta0[a].clamp(lo[j], hi[j]);
        }
        let space = Space {
            active,
            lo,
            hi,
            base: theta0.clone(),
        };
        let ls_prior = opts
            .priors
            .lengthscale
            .map(|(mu, s)| (mu.unwrap_or(2f64.sqrt() + 0.5 * (d.max(1) as f64).ln()), s));
        let obj = Objective {
            kernel: &p.kernel,
            ts: &ts,
            grid: grid.as_ref(),
            lay,
            opts,
            space: &space,
            kinds: info.iter().map(|i| i.kind).collect(),
            ls_prior,
            evals: Cell::new(0),
            jitter: Cell::new(0.0),
            cache: RefCell::new(None),
            best: RefCell::new(None),
        };

        let mut best: Option<(f64, Vec<f64>, bool, usize)> = None;
        let mut iterations = 0;
        let mut last_err = String::new();
        let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
        let run_opt = !space.active.is_empty() && max_iters > 0;
        let starts = if run_opt { n_starts } else { 1 };
        for s in 0..starts {
            let th_s = if s == 0 {
                theta0.clone()
            } else {
                random_start(&space, &theta0, &lay, &mut rng)
            };
            *obj.best.borrow_mut() = None;
            *obj.cache.borrow_mut() = None;
            let (cost, theta, conv) = if run_opt {
                let u0 = space.u(&th_s);
                let solver = LBFGS::new(MoreThuenteLineSearch::new(), opts.lbfgs_memory)
                    .with_tolerance_grad(opts.grad_tol)
                    .and_then(|s| s.with_tolerance_cost(opts.cost_tol))
                    .map_err(|e| GpError::Optimisation(e.to_string()))?;
                let res = Executor::new(ObjRef(&obj), solver)
                    .configure(|st| st.param(u0).max_iters(max_iters))
                    .run();
                let conv = match &res {
                    Ok(r) => {
                        iterations += r.state().get_iter();
                        matches!(
                            r.state().get_termination_reason(),
                            Some(TerminationReason::SolverConverged)
                        )
                    }
                    Err(e) => {
                        last_err = e.to_string();
                        tracing::debug!(start = s, error = %e, "L-BFGS start stopped with an error");
                        false
                    }
                };
                match obj.best.borrow().clone() {
                    Some((c, th)) => (c, th, conv),
                    None => continue,
                }
            } else {
                match obj.eval_theta(&th_s) {
                    Ok((_, c, _)) => (c, th_s, true),
                    Err(e) => {
                        last_err = e.to_string();
                        continue;
                    }
                }
            };
            if best.as_ref().is_none_or(|b| cost < b.0) {
                best = Some((cost, theta, conv, s));
            }
        }
        let Some((objective, theta, converged, best_start)) = best else {
            return Err(GpError::Optimisation(last_err));
        };
        let mut kernel = p.kernel.clone();
        kernel.set_params(&theta[..lay.nk]);
        let (post, path, nlml, jit) = engine::build_posterior(&kernel, &ts, &theta, &lay, opts)?;
        let jitter = obj.jitter.get().max(jit);
        let report = FitReport {
            nlml,
            objective,
            iterations,
            evaluations: obj.evals.get(),
            wall_time: t_start.elapsed(),
            converged,
            jitter,
            jitter_added: jitter > 0.0,
            n_starts: starts,
            best_start,
            path,
            objective_path,
        };
        tracing::debug!(?report, "GP fitted");
        let mean_label = match p.prior_mean.as_constant() {
            Some(c) => MeanLabel::Constant(c),
            None => MeanLabel::External(p.prior_mean.label()),
        };
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
            mean_label,
            mean: Some(p.prior_mean.clone()),
        })
    }
}

/// Prepared test rows.
struct TestSet {
    m: usize,
    base: Vec<f64>,
    mu: usize,
    row_u: Vec<usize>,
    row_t: Vec<usize>,
    prior: Vec<f64>,
}

impl<K: Kernel + Clone> MultiTaskGp<K> {
    /// Number of columns of X (base inputs + task id).
    pub fn n_cols(&self) -> usize {
        self.n_cols
    }
    /// Number of tasks.
    pub fn n_tasks(&self) -> usize {
        self.lay.t
    }
    /// Number of training rows.
    pub fn n_train(&self) -> usize {
        self.ts.n()
    }
    /// Report of the last fit.
    pub fn report(&self) -> &FitReport {
        &self.report
    }
    /// Path of the current factorisation.
    pub fn path(&self) -> SolverPath {
        self.path
    }
    /// The fitted base kernel.
    pub fn kernel(&self) -> &K {
        &self.kernel
    }
    /// Full hyperparameter vector `[kernel (log) | W | ln κ | ln σ²]`.
    pub fn hyperparameters(&self) -> &[f64] {
        &self.theta
    }
    /// Task covariance `B` (standardised units), T×T row-major.
    pub fn task_covariance(&self) -> Vec<f64> {
        let b = engine::task_matrix(&self.theta, &self.lay);
        (0..self.lay.t)
            .flat_map(|i| (0..self.lay.t).map(move |j| (i, j)))
            .map(|(i, j)| b[(i, j)])
            .collect()
    }
    /// Per-task noise variances in original units.
    pub fn noise_variances(&self) -> Vec<f64> {
        self.post
            .noise
            .iter()
            .zip(&self.st.std)
            .map(|(n, s)| n * s * s)
            .collect()
    }
    /// Options the model was fitted with.
    pub fn options(&self) -> &FitOptions {
        &self.opts
    }
    /// Hand back the prior mean after deserialisation (or replace it; the model's
    /// standardisation stays as fitted, so only hand back the mean it was fitted with).
    pub fn set_prior_mean(&mut self, mean: Arc<dyn PriorMean>) {
        self.mean = Some(mean);
    }

    fn mean_fn(&self) -> Result<Arc<dyn PriorMean>> {
        match (&self.mean, &self.mean_label) {
            (Some(m), _) => Ok(m.clone()),
            (None, MeanLabel::Constant(c)) => Ok(Arc::new(ConstantMean(*c))),
            (None, MeanLabel::External(l)) => Err(GpError::PriorMeanMissing(l.clone())),
        }
    }

    fn params(&self) -> Result<GpValidParams<K>> {
        let (lay, th) = (&self.lay, &self.theta);
        let mut kernel = self.kernel.clone();
        kernel.set_params(&th[..lay.nk]);
        GpParams {
            kernel,
            n_tasks: lay.t,
            rank: lay.r,
            init: Some(TaskInit {
                w: th[lay.w()].to_vec(),
                kappa: th[lay.kappa()].iter().map(|v| v.exp()).collect(),
                noise: th[lay.noise()]
                    .iter()
                    .map(|v| {
                        v.exp()
                            .clamp(self.opts.noise_bounds.0, self.opts.noise_bounds.1)
                    })
                    .collect(),
            }),
            prior_mean: self.mean_fn()?,
            opts: self.opts.clone(),
        }
        .check()
    }

    fn prep_test(&self, x: &[f64]) -> Result<TestSet> {
        let m = engine::validate(x, self.n_cols, None, self.lay.t)?;
        let mean = self.mean_fn()?;
        let d = self.n_cols - 1;
        let mut map = std::collections::HashMap::new();
        let mut base = Vec::new();
        let mut row_u = Vec::with_capacity(m);
        let mut row_t = Vec::with_capacity(m);
        let mut prior = Vec::with_capacity(m);
        let mut buf = Vec::with_capacity(d);
        for r in x.chunks_exact(self.n_cols) {
            let t = engine::task_of(r);
            buf.clear();
            self.norm.apply(r, &mut buf);
            let key: Vec<u64> = buf.iter().map(|v| (v + 0.0).to_bits()).collect();
            let next = map.len();
            let u = *map.entry(key).or_insert_with(|| {
                base.extend_from_slice(&buf);
                next
            });
            row_u.push(u);
            row_t.push(t);
            prior.push(mean.mean(&r[..d], t));
        }
        Ok(TestSet {
            m,
            base,
            mu: map.len(),
            row_u,
            row_t,
            prior,
        })
    }

    fn b(&self) -> MatRef<'_, f64> {
        engine::from_vec(&self.post.b, self.lay.t, self.lay.t)
    }

    /// Standardised latent mean and variance, plus the cross kernel (mu × N).
    fn latent(&self, ts: &TestSet, want_var: bool) -> (Vec<f64>, Vec<f64>, Mat<f64>) {
        let (nb, t, d) = (self.ts.n_base, self.lay.t, self.ts.d);
        let kxs = engine::cross(&self.kernel, &ts.base, ts.mu, &self.ts);
        let p = engine::from_vec(&self.post.p, nb, t);
        let kp: Mat<f64> = kxs.as_ref() * p;
        let mean: Vec<f64> = (0..ts.m).map(|c| kp[(ts.row_u[c], ts.row_t[c])]).collect();
        if !want_var {
            return (mean, Vec::new(), kxs);
        }
        let b = self.b();
        let kss: Vec<f64> = (0..ts.mu)
            .map(|u| {
                self.kernel
                    .eval(&ts.base[u * d..(u + 1) * d], &ts.base[u * d..(u + 1) * d])
            })
            .collect();
        let mut var: Vec<f64> = (0..ts.m)
            .map(|c| kss[ts.row_u[c]] * b[(ts.row_t[c], ts.row_t[c])])
            .collect();
        match &self.post.state {
            PostState::Kron { qx, rm, .. } => {
                let qx = engine::from_vec(qx, nb, nb);
                let rm = engine::from_vec(rm, nb, t);
                let um: Mat<f64> = qx.transpose() * kxs.transpose();
                for (c, v) in var.iter_mut().enumerate() {
                    let (u, tt) = (ts.row_u[c], ts.row_t[c]);
                    let red: f64 = (0..nb).map(|i| um[(i, u)].powi(2) * rm[(i, tt)]).sum();
                    *v -= red;
                }
            }
            PostState::Dense { wt, .. } => {
                for tt in 0..t {
                    if !ts.row_t.contains(&tt) {
                        continue;
                    }
                    let w = engine::from_vec(&wt[tt * nb * nb..(tt + 1) * nb * nb], nb, nb);
                    let kw: Mat<f64> = kxs.as_ref() * w;
                    for c in (0..ts.m).filter(|&c| ts.row_t[c] == tt) {
                        let u = ts.row_u[c];
                        let red: f64 = (0..nb).map(|i| kw[(u, i)] * kxs[(u, i)]).sum();
                        var[c] -= red;
                    }
                }
            }
        }
        for v in &mut var {
            *v = v.max(0.0);
        }
        (mean, var, kxs)
    }

    fn to_original(&self, ts: &TestSet, mean: &mut [f64], var: &mut [f64], with_noise: bool) {
        for (c, mc) in mean.iter_mut().enumerate().take(ts.m) {
            let t = ts.row_t[c];
            let s = self.st.std[t];
            *mc = ts.prior[c] + self.st.mean[t] + s * *mc;
            if let Some(v) = var.get_mut(c) {
                let extra = if with_noise { self.post.noise[t] } else { 0.0 };
                *v = s * s * (*v + extra);
            }
        }
    }

    /// Posterior mean and latent variance (without observation noise) of each row of `x`
    /// (`n_cols` columns, task id last), original units.
    pub fn predict(&self, x: &[f64]) -> Result<Prediction> {
        let ts = self.prep_test(x)?;
        let (mut mean, mut var, _) = self.latent(&ts, true);
        self.to_original(&ts, &mut mean, &mut var, false);
        Ok(Prediction {
            mean,
            variance: var,
        })
    }

    /// Posterior mean and predictive variance of a new observation (latent variance plus the
    /// task's noise variance), original units.
    pub fn predict_observed(&self, x: &[f64]) -> Result<Prediction> {
        let ts = self.prep_test(x)?;
        let (mut mean, mut var, _) = self.latent(&ts, true);
        self.to_original(&ts, &mut mean, &mut var, true);
        Ok(Prediction {
            mean,
            variance: var,
        })
    }

    /// Posterior mean only (cheapest query), original units.
    pub fn predict_mean(&self, x: &[f64]) -> Result<Vec<f64>> {
        let ts = self.prep_test(x)?;
        let (mut mean, _, _) = self.latent(&ts, false);
        self.to_original(&ts, &mut mean, &mut [], false);
        Ok(mean)
    }

    /// Joint latent posterior (mean and full covariance) of the rows of `x`, original units.
    pub fn predict_joint(&self, x: &[f64]) -> Result<JointPrediction> {
        let ts = self.prep_test(x)?;
        let (mut mean, _, kxs) = self.latent(&ts, false);
        let (nb, t, d, m) = (self.ts.n_base, self.lay.t, self.ts.d, ts.m);
        let b = self.b();
        let v: Mat<f64> = match &self.post.state {
            PostState::Kron { qx, wv, lx, lb, .. } => {
                let qx = engine::from_vec(qx, nb, nb);
                let wv = engine::from_vec(wv, t, t);
                let um: Mat<f64> = qx.transpose() * kxs.transpose();
                Mat::from_fn(nb * t, m, |row, c| {
                    let (i, u) = (row % nb, row / nb);
                    um[(i, ts.row_u[c])] * wv[(u, ts.row_t[c])] / (lx[i] * lb[u] + 1.0).sqrt()
                })
            }
            PostState::Dense { l, .. } => {
                let n = self.ts.n();
                let l = engine::from_vec(l, n, n);
                let mut ks = Mat::from_fn(n, m, |r, c| {
                    kxs[(ts.row_u[c], self.ts.row_base[r])] * b[(self.ts.row_task[r], ts.row_t[c])]
                });
                faer::linalg::triangular_solve::solve_lower_triangular_in_place(
                    l,
                    ks.as_mut(),
                    Par::Seq,
                );
                ks
            }
        };
        let vtv: Mat<f64> = v.transpose() * v.as_ref();
        let mut cov = vec![0.0; m * m];
        for c in 0..m {
            let (uc, tc) = (ts.row_u[c], ts.row_t[c]);
            for e in 0..m {
                let (ue, te) = (ts.row_u[e], ts.row_t[e]);
                let kss = self.kernel.eval(
                    &ts.base[uc * d..(uc + 1) * d],
                    &ts.base[ue * d..(ue + 1) * d],
                );
                let mut val = kss * b[(tc, te)] - vtv[(c, e)];
                if c == e {
                    val = val.max(0.0);
                }
                cov[c * m + e] = val * self.st.std[tc] * self.st.std[te];
            }
        }
        self.to_original(&ts, &mut mean, &mut [], false);
        Ok(JointPrediction {
            mean,
            covariance: cov,
        })
    }

    /// `n_samples` joint draws of the latent function at the rows of `x` (original units),
    /// from a `ChaCha8Rng` seeded with `seed`. Each inner vector has one value per row.
    pub fn sample(&self, x: &[f64], n_samples: usize, seed: u64) -> Result<Vec<Vec<f64>>> {
        let jp = self.predict_joint(x)?;
        let m = jp.mean.len();
        let cov = Mat::from_fn(m, m, |i, j| jp.covariance[i * m + j]);
        let (l, _) = engine::chol_jitter(cov, &self.opts)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut out = Vec::with_capacity(n_samples);
        let mut z = vec![0.0; m];
        for _ in 0..n_samples {
            for v in z.iter_mut() {
                *v = rng.sample(rand_distr::StandardNormal);
            }
            let s: Vec<f64> = (0..m)
                .map(|i| jp.mean[i] + (0..=i).map(|j| l[(i, j)] * z[j]).sum::<f64>())
                .collect();
            out.push(s);
        }
        Ok(out)
    }

    /// Condition on the rows `(x, y)` from scratch with this model's hyperparameters,
    /// normalisation and standardisation (no refit). Chooses the path as a fit would.
    pub fn condition_from_scratch(&self, x: &[f64], y: &[f64]) -> Result<Self> {
        let n = engine::validate(x, self.n_cols, Some(y), self.lay.t)?;
        if n < 1 {
            return Err(GpError::TooFewPoints { got: n, need: 1 });
        }
        let mean = self.mean_fn()?;
        let mut ts = TrainSet {
            base: Vec::new(),
            n_base: 0,
            row_base: Vec::new(),
            row_task: Vec::new(),
            z: Vec::new(),
            ..self.ts.clone()
        };
        ts.extend(x, self.n_cols, y, &self.norm, &self.st, mean.as_ref());
        let (post, path, _, _) =
            engine::build_posterior(&self.kernel, &ts, &self.theta, &self.lay, &self.opts)?;
        Ok(Self {
            x: x.to_vec(),
            y: y.to_vec(),
            ts,
            post,
            path,
            ..self.clone()
        })
    }

    /// Condition on extra rows with the hyperparameters, normalisation and standardisation
    /// frozen, by extending the Cholesky factor (rank-k update: O(n²k + k³), no
    /// refactorisation of the existing rows). A model on the Kronecker path is first turned
    /// into its dense factorisation (one O((NT)³) factorisation), after which appends are
    /// incremental.
    pub fn condition_on(&mut self, x: &[f64], y: &[f64]) -> Result<()> {
        let k_new = engine::validate(x, self.n_cols, Some(y), self.lay.t)?;
        if k_new == 0 {
            return Ok(());
        }
        let mean = self.mean_fn()?;
        let n_old = self.ts.n();
        let b = engine::task_matrix(&self.theta, &self.lay);
        let noise = self.post.noise.clone();
        let (l_old, kinv_old, jitter) = match &self.post.state {
            PostState::Dense {
                l, kinv, jitter, ..
            } => (
                engine::from_vec(l, n_old, n_old).to_owned(),
                engine::from_vec(kinv, n_old, n_old).to_owned(),
                *jitter,
            ),
            PostState::Kron { .. } => {
                let kx = engine::kx_matrix(&self.kernel, &self.ts);
                let (l, j) = engine::chol_jitter(
                    engine::dense_k(&self.ts, kx.as_ref(), b.as_ref(), &noise),
                    &self.opts,
                )?;
                let kinv = engine::inverse_from_l(l.as_ref());
                (l, kinv, j)
            }
        };
        let mut ts = self.ts.clone();
        ts.extend(x, self.n_cols, y, &self.norm, &self.st, mean.as_ref());
        let n = ts.n();
        let d = ts.d;
        let kfun = |r: usize, s: usize| {
            let v = self
                .kernel
                .eval(ts.base_row(ts.row_base[r]), ts.base_row(ts.row_base[s]))
                * b[(ts.row_task[r], ts.row_task[s])];
            if r == s {
                v + noise[ts.row_task[r]] + jitter
            } else {
                v
            }
        };
        let _ = d;
        let k12 = Mat::from_fn(n_old, k_new, |r, s| kfun(r, n_old + s));
        let k22 = Mat::from_fn(k_new, k_new, |r, s| kfun(n_old + r, n_old + s));
        let mut x12 = k12.clone();
        faer::linalg::triangular_solve::solve_lower_triangular_in_place(
            l_old.as_ref(),
            x12.as_mut(),
            Par::Seq,
        );
        let xtx: Mat<f64> = x12.transpose() * x12.as_ref();
        let schur = &k22 - &xtx;
        let (l22, j2) = engine::chol_jitter(schur, &self.opts)?;
        let mut l = Mat::<f64>::zeros(n, n);
        l.as_mut()
            .submatrix_mut(0, 0, n_old, n_old)
            .copy_from(l_old.as_ref());
        l.as_mut()
            .submatrix_mut(n_old, 0, k_new, n_old)
            .copy_from(x12.transpose());
        l.as_mut()
            .submatrix_mut(n_old, n_old, k_new, k_new)
            .copy_from(l22.as_ref());
        // block inverse: Y = K11⁻¹ K12, S⁻¹ from L22
        let yk: Mat<f64> = kinv_old.as_ref() * k12.as_ref();
        let sinv = engine::inverse_from_l(l22.as_ref());
        let ys: Mat<f64> = yk.as_ref() * sinv.as_ref();
        let ysy: Mat<f64> = ys.as_ref() * yk.transpose();
        let mut kinv = Mat::<f64>::zeros(n, n);
        kinv.as_mut()
            .submatrix_mut(0, 0, n_old, n_old)
            .copy_from(&kinv_old + &ysy);
        kinv.as_mut()
            .submatrix_mut(0, n_old, n_old, k_new)
            .copy_from(-&ys);
        kinv.as_mut()
            .submatrix_mut(n_old, 0, k_new, n_old)
            .copy_from((-&ys).transpose());
        kinv.as_mut()
            .submatrix_mut(n_old, n_old, k_new, k_new)
            .copy_from(&sinv);
        let alpha = engine::chol_solve(l.as_ref(), &ts.z);
        self.post = engine::dense_posterior(
            &ts,
            l.as_ref(),
            kinv.as_ref(),
            alpha,
            b.as_ref(),
            noise,
            jitter.max(j2),
        );
        self.ts = ts;
        self.path = SolverPath::Dense;
        self.x.extend_from_slice(x);
        self.y.extend_from_slice(y);
        Ok(())
    }

    /// Append rows and refit warm-started from the current hyperparameters (one start,
    /// `warm_iters` iterations); normalisation and standardisation are recomputed from all
    /// rows. On error the model is left unchanged.
    pub fn append_and_refit(&mut self, x: &[f64], y: &[f64]) -> Result<&FitReport> {
        engine::validate(x, self.n_cols, Some(y), self.lay.t)?;
        let mut xa = self.x.clone();
        xa.extend_from_slice(x);
        let mut ya = self.y.clone();
        ya.extend_from_slice(y);
        let params = self.params()?;
        *self = params.fit_warm(&xa, self.n_cols, &ya, self)?;
        Ok(&self.report)
    }

    /// Negative log marginal likelihood and its gradient with respect to the full
    /// hyperparameter vector (see [`MultiTaskGp::hyperparameters`]) at `theta`, on this
    /// model's training data, evaluated on the path a fit would use (priors excluded).
    pub fn nlml_and_grad(&self, theta: &[f64]) -> Result<(f64, Vec<f64>)> {
        if theta.len() != self.lay.len() {
            return Err(GpError::ShapeMismatch(format!(
                "theta has {} values, the model {}",
                theta.len(),
                self.lay.len()
            )));
        }
        let mut k = self.kernel.clone();
        k.set_params(&theta[..self.lay.nk]);
        let grid = if self.opts.force_dense {
            None
        } else {
            self.ts.grid()
        };
        let e = match grid {
            Some(g) => engine::eval_kron(&k, &self.ts, &g, theta, &self.lay, true)?,
            None => engine::eval_dense(&k, &self.ts, theta, &self.lay, &self.opts, true)?,
        };
        Ok((e.nlml, e.grad))
    }
}
