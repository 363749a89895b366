//! Box-constrained minimisation of a smooth function: L-BFGS-B.
//!
//! [`minimize`] minimises `f(x)` subject to `lower ≤ x ≤ upper` (either bound may be
//! infinite) given a closure that returns the value and writes the gradient. It is the
//! limited-memory BFGS method with bounds of Byrd, Lu, Nocedal & Zhu (1995), "A limited
//! memory algorithm for bound constrained optimization", SIAM J. Sci. Comput. 16(5),
//! doi:10.1137/0916069, with the subspace step of Morales & Nocedal (2011), "Remark on
//! algorithm 778", ACM TOMS 38(1), doi:10.1145/2049662.2049669:
//!
//! 1. the *generalised Cauchy point* along the projected steepest-descent path of the
//!    quadratic model `m(x) = f + gᵀ(x − xₖ) + ½ (x − xₖ)ᵀ B (x − xₖ)`, with `B` the
//!    compact limited-memory BFGS matrix `θI − W M Wᵀ`, fixes the variables that hit a bound;
//! 2. the model is minimised over the remaining free variables (direct primal method),
//!    and the result projected back onto the box;
//! 3. a Moré–Thuente line search (MINPACK-2 `dcsrch`, sufficient decrease 1e-3, curvature
//!    0.9) along the step to that point, never leaving the box.
//!
//! Bounds are handled by the optimiser itself: a variable at its bound is held there while
//! its gradient points outward, and released as soon as it points inward. No squashing
//! transform is needed, so gradients do not vanish near a bound.
//!
//! # Stopping rule
//! Checked after every iteration, in this order; [`Termination`] says which rule stopped it:
//! * [`Termination::GradientTolerance`]: the projected gradient
//!   `‖P(x − ∇f) − x‖_∞ ≤ grad_tol` (first-order optimality on the box: zero for free
//!   variables means ∇f = 0, for a variable at a bound it means the gradient pushes outward);
//! * [`Termination::CostTolerance`]: the relative decrease of the last iteration
//!   `(f_{k−1} − f_k) / max(|f_{k−1}|, |f_k|, 1) ≤ rel_cost_tol` (SciPy's `ftol`);
//! * [`Termination::IterationCap`] / [`Termination::EvaluationCap`]: the budget ran out
//!   first — the result is **not** converged;
//! * [`Termination::LineSearchFailed`]: no decrease could be found along the step even after
//!   discarding the curvature memory (typically the optimum is reached to round-off, or
//!   the gradient is inconsistent with the value) — not converged.
//!
//! Only the two tolerance rules (and the empty problem) count as
//! [`Termination::converged`].
//!
//! ```
//! use perfusio_gp::optim::{minimize, LbfgsbOptions, Termination};
//! // Rosenbrock with x₀ ≤ 0.5: the constrained minimum is at (0.5, 0.25).
//! let f = |x: &[f64], g: &mut [f64]| -> Result<f64, std::convert::Infallible> {
//!     let (a, b) = (1.0 - x[0], x[1] - x[0] * x[0]);
//!     g[0] = -2.0 * a - 400.0 * x[0] * b;
//!     g[1] = 200.0 * b;
//!     Ok(a * a + 100.0 * b * b)
//! };
//! let r = minimize(f, &[-1.2, 1.0], &[-2.0, -2.0], &[0.5, 2.0], &LbfgsbOptions::default())?;
//! assert!(r.termination.converged());
//! assert!((r.x[0] - 0.5).abs() < 1e-9 && (r.x[1] - 0.25).abs() < 1e-5);
//! # Ok::<(), perfusio_gp::optim::OptimError<std::convert::Infallible>>(())
//! ```

use serde::{Deserialize, Serialize};
use std::fmt;

/// Default number of correction pairs kept (SciPy's `maxcor`).
pub const DEFAULT_MEMORY: usize = 10;
/// Default projected-gradient tolerance (SciPy's `gtol`).
pub const DEFAULT_GRAD_TOL: f64 = 1e-5;
/// Default relative-decrease tolerance, `1e7 · ε` (SciPy's `ftol` with `factr = 1e7`).
pub const DEFAULT_REL_COST_TOL: f64 = 1e7 * f64::EPSILON;
/// Default limit of objective evaluations in one line search (SciPy's `maxls`).
pub const DEFAULT_MAX_LINE_SEARCH: u64 = 20;

/// Sufficient-decrease constant of the line search.
const LS_FTOL: f64 = 1e-3;
/// Curvature constant of the line search.
const LS_GTOL: f64 = 0.9;
/// Relative width below which the line-search bracket is considered collapsed.
const LS_XTOL: f64 = 0.1;

/// Options of [`minimize`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LbfgsbOptions {
    /// Correction pairs kept (≥ 1).
    pub memory: usize,
    /// Iteration limit (0 = only evaluate the start).
    pub max_iters: u64,
    /// Limit of objective evaluations, line searches included.
    pub max_evals: u64,
    /// Projected-gradient ∞-norm tolerance (> 0).
    pub grad_tol: f64,
    /// Relative-decrease tolerance (≥ 0; 0 disables the rule).
    pub rel_cost_tol: f64,
    /// Limit of evaluations in one line search.
    pub max_line_search: u64,
    /// Problems with at most this many variables keep a full n×n self-scaling BFGS matrix
    /// instead of `memory` correction pairs (the same Cauchy-point, subspace and line-search
    /// steps): at these sizes it costs less per iteration than the compact form, and on
    /// ill-conditioned problems (strongly coupled hyperparameters) it needs far fewer
    /// iterations. 0 disables it.
    pub dense_max_vars: usize,
}

/// Default [`LbfgsbOptions::dense_max_vars`].
pub const DEFAULT_DENSE_MAX_VARS: usize = 200;

impl Default for LbfgsbOptions {
    fn default() -> Self {
        Self {
            memory: DEFAULT_MEMORY,
            max_iters: 1000,
            max_evals: 2000,
            grad_tol: DEFAULT_GRAD_TOL,
            rel_cost_tol: DEFAULT_REL_COST_TOL,
            max_line_search: DEFAULT_MAX_LINE_SEARCH,
            dense_max_vars: DEFAULT_DENSE_MAX_VARS,
        }
    }
}

/// Why [`minimize`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Termination {
    /// The projected-gradient norm fell below its tolerance (converged).
    GradientTolerance,
    /// The relative decrease of the objective fell below its tolerance (converged).
    CostTolerance,
    /// The iteration limit was reached first (not converged).
    IterationCap,
    /// The evaluation limit was reached first (not converged).
    EvaluationCap,
    /// No decrease could be found along the search direction, even after discarding the
    /// curvature memory (not converged).
    LineSearchFailed,
    /// The problem has no variables: trivially solved (converged).
    NoVariables,
    /// No iteration was allowed (`max_iters = 0`): the start is returned unoptimised.
    NotRun,
}

impl Termination {
    /// Stable snake-case name for logs and audit records: `gradient_tolerance`,
    /// `cost_tolerance`, `iteration_cap`, `evaluation_cap`, `line_search_failed`,
    /// `no_variables`, `not_run`.
    pub fn name(self) -> &'static str {
        match self {
            Self::GradientTolerance => "gradient_tolerance",
            Self::CostTolerance => "cost_tolerance",
            Self::IterationCap => "iteration_cap",
            Self::EvaluationCap => "evaluation_cap",
            Self::LineSearchFailed => "line_search_failed",
            Self::NoVariables => "no_variables",
            Self::NotRun => "not_run",
        }
    }

    /// `true` for the tolerance rules, `false` when a budget or a failure stopped it.
    pub fn converged(self) -> bool {
        matches!(
            self,
            Self::GradientTolerance | Self::CostTolerance | Self::NoVariables
        )
    }
}

impl fmt::Display for Termination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::GradientTolerance => "projected-gradient tolerance met",
            Self::CostTolerance => "relative-decrease tolerance met",
            Self::IterationCap => "iteration limit reached before convergence",
            Self::EvaluationCap => "evaluation limit reached before convergence",
            Self::LineSearchFailed => "line search found no decrease",
            Self::NoVariables => "no variables to optimise",
            Self::NotRun => "not run (iteration limit 0)",
        })
    }
}

/// Result of [`minimize`]: the best point found and how the run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Minimum {
    /// Best point (inside the box).
    pub x: Vec<f64>,
    /// Objective at `x`.
    pub value: f64,
    /// Gradient at `x`.
    pub grad: Vec<f64>,
    /// Projected-gradient ∞-norm at `x`.
    pub projected_grad_norm: f64,
    /// Iterations done.
    pub iterations: u64,
    /// Objective evaluations done.
    pub evaluations: u64,
    /// Why it stopped.
    pub termination: Termination,
    /// The final dense BFGS approximation of the Hessian (`n × n` row-major) when the dense
    /// model was used, for warm-starting a related problem with
    /// [`minimize_with_hessian`]; `None` with the limited-memory model.
    pub hessian: Option<Vec<f64>>,
}

/// Errors of [`minimize`]. Failures after the start are not errors: the best point so far
/// is returned with a non-converged [`Termination`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum OptimError<E> {
    /// Dimensions, bounds or options are inconsistent.
    #[error("invalid problem: {0}")]
    InvalidProblem(String),
    /// The objective returned an error at the starting point.
    #[error("the objective failed at the starting point: {0}")]
    Objective(E),
    /// The objective or its gradient is not finite at the starting point.
    #[error(
        "the objective or its gradient is not finite at the starting point; start elsewhere or check the objective"
    )]
    NonFiniteStart,
}

/// Projected-gradient ∞-norm `‖P(x − g) − x‖_∞`.
pub fn projected_grad_norm(x: &[f64], g: &[f64], lower: &[f64], upper: &[f64]) -> f64 {
    let mut m = 0.0f64;
    for i in 0..x.len() {
        let gi = if g[i] < 0.0 {
            (x[i] - upper[i]).max(g[i])
        } else {
            (x[i] - lower[i]).min(g[i])
        };
        m = m.max(gi.abs());
    }
    m
}

/// Limited-memory store of correction pairs and the compact-form matrices.
struct Memory {
    cap: usize,
    s: Vec<Vec<f64>>,
    y: Vec<Vec<f64>>,
    theta: f64,
    /// `M` of the compact form, `2k × 2k` row-major (k = pairs stored).
    m: Vec<f64>,
}

impl Memory {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            s: Vec::new(),
            y: Vec::new(),
            theta: 1.0,
            m: Vec::new(),
        }
    }
    fn len(&self) -> usize {
        self.s.len()
    }
    fn reset(&mut self) {
        self.s.clear();
        self.y.clear();
        self.theta = 1.0;
        self.m.clear();
    }
    /// Row `i` of `W = [Y, θS]` (length 2k).
    fn w_row(&self, i: usize, out: &mut [f64]) {
        let k = self.len();
        for j in 0..k {
            out[j] = self.y[j][i];
            out[k + j] = self.theta * self.s[j][i];
        }
    }
    /// `M v` (length 2k).
    fn m_mul(&self, v: &[f64], out: &mut [f64]) {
        let k2 = 2 * self.len();
        for (i, o) in out.iter_mut().enumerate().take(k2) {
            *o = (0..k2).map(|j| self.m[i * k2 + j] * v[j]).sum();
        }
    }
    /// Add a pair and rebuild `M`; returns `false` (and resets) if `M` is singular.
    fn push(&mut self, s: Vec<f64>, y: Vec<f64>) -> bool {
        let sy = dot(&s, &y);
        let yy = dot(&y, &y);
        if self.len() == self.cap {
            self.s.remove(0);
            self.y.remove(0);
        }
        self.s.push(s);
        self.y.push(y);
        self.theta = yy / sy;
        let k = self.len();
        let k2 = 2 * k;
        // middle matrix [[-D, Lᵀ], [L, θ SᵀS]]
        let mut a = vec![0.0; k2 * k2];
        for i in 0..k {
            for j in 0..k {
                let sij_y = dot(&self.s[i], &self.y[j]);
                if i == j {
                    a[i * k2 + j] = -sij_y;
                } else if i > j {
                    // L[i, j] = s_iᵀ y_j below the diagonal
                    a[(k + i) * k2 + j] = sij_y;
                    a[j * k2 + (k + i)] = sij_y;
                }
                a[(k + i) * k2 + (k + j)] = self.theta * dot(&self.s[i], &self.s[j]);
            }
        }
        match invert(&a, k2) {
            Some(m) => {
                self.m = m;
                true
            }
            None => {
                self.reset();
                false
            }
        }
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Solve `A X = B` for small dense `A` (`n × n`, row-major) by Gaussian elimination with
/// partial pivoting; `b` is `n × r` row-major. `None` if `A` is numerically singular.
fn solve_small(a: &[f64], b: &[f64], n: usize, r: usize) -> Option<Vec<f64>> {
    let mut a = a.to_vec();
    let mut x = b.to_vec();
    let scale = a
        .iter()
        .fold(0.0f64, |m, v| m.max(v.abs()))
        .max(f64::MIN_POSITIVE);
    for c in 0..n {
        let p = (c..n).max_by(|&i, &j| a[i * n + c].abs().total_cmp(&a[j * n + c].abs()))?;
        if a[p * n + c].abs() <= 1e3 * f64::EPSILON * scale {
            return None;
        }
        if p != c {
            for j in 0..n {
                a.swap(c * n + j, p * n + j);
            }
            for j in 0..r {
                x.swap(c * r + j, p * r + j);
            }
        }
        let piv = a[c * n + c];
        for i in c + 1..n {
            let f = a[i * n + c] / piv;
            if f == 0.0 {
                continue;
            }
            for j in c..n {
                a[i * n + j] -= f * a[c * n + j];
            }
            for j in 0..r {
                x[i * r + j] -= f * x[c * r + j];
            }
        }
    }
    for c in (0..n).rev() {
        let piv = a[c * n + c];
        for j in 0..r {
            let mut v = x[c * r + j];
            for k in c + 1..n {
                v -= a[c * n + k] * x[k * r + j];
            }
            x[c * r + j] = v / piv;
        }
    }
    Some(x)
}

fn invert(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut id = vec![0.0; n * n];
    for i in 0..n {
        id[i * n + i] = 1.0;
    }
    solve_small(a, &id, n, n)
}

/// Generalised Cauchy point (Byrd et al. 1995, algorithm CP). Returns the point and
/// `c = Wᵀ(x_cp − x)`.
fn cauchy_point(
    x: &[f64],
    g: &[f64],
    lower: &[f64],
    upper: &[f64],
    mem: &Memory,
) -> (Vec<f64>, Vec<f64>) {
    let n = x.len();
    let k2 = 2 * mem.len();
    let theta = mem.theta;
    let (t, mut d) = breakpoints(x, g, lower, upper);
    let mut xcp = x.to_vec();
    let mut c = vec![0.0; k2];
    let mut p = vec![0.0; k2];
    let mut wrow = vec![0.0; k2];
    for (i, &di) in d.iter().enumerate() {
        if di != 0.0 && k2 > 0 {
            mem.w_row(i, &mut wrow);
            for (pj, wj) in p.iter_mut().zip(&wrow) {
                *pj += wj * di;
            }
        }
    }
    let mut fp = -dot(&d, &d);
    if fp >= 0.0 {
        return (xcp, c);
    }
    let mut mp = vec![0.0; k2];
    mem.m_mul(&p, &mut mp);
    let mut fpp = -theta * fp - dot(&p, &mp);
    let fpp0 = fpp.abs();
    fpp = fpp.max(f64::EPSILON * fpp0);
    let mut dt_min = -fp / fpp;
    let mut t_old = 0.0;
    let mut order: Vec<usize> = (0..n)
        .filter(|&i| t[i] > 0.0 && t[i].is_finite() && d[i] != 0.0)
        .collect();
    order.sort_by(|&a, &b| t[a].total_cmp(&t[b]));
    let mut mc = vec![0.0; k2];
    let mut mw = vec![0.0; k2];
    for &b in &order {
        let dt = t[b] - t_old;
        if dt_min < dt {
            break;
        }
        xcp[b] = if d[b] > 0.0 { upper[b] } else { lower[b] };
        let zb = xcp[b] - x[b];
        for (cj, pj) in c.iter_mut().zip(&p) {
            *cj += dt * pj;
        }
        let gb = g[b];
        let (wmc, wmp, wmw) = if k2 > 0 {
            mem.w_row(b, &mut wrow);
            mem.m_mul(&c, &mut mc);
            mem.m_mul(&p, &mut mp);
            mem.m_mul(&wrow, &mut mw);
            (dot(&wrow, &mc), dot(&wrow, &mp), dot(&wrow, &mw))
        } else {
            (0.0, 0.0, 0.0)
        };
        fp += dt * fpp + gb * gb + theta * gb * zb - gb * wmc;
        fpp -= theta * gb * gb + 2.0 * gb * wmp + gb * gb * wmw;
        fpp = fpp.max(f64::EPSILON * fpp0);
        for (pj, wj) in p.iter_mut().zip(&wrow) {
            *pj += gb * wj;
        }
        d[b] = 0.0;
        dt_min = -fp / fpp;
        t_old = t[b];
        if fp >= 0.0 {
            dt_min = 0.0;
            break;
        }
    }
    let dt_min = dt_min.max(0.0);
    let t_final = t_old + dt_min;
    for i in 0..n {
        if d[i] != 0.0 {
            xcp[i] = (x[i] + t_final * d[i]).clamp(lower[i], upper[i]);
        }
    }
    for (cj, pj) in c.iter_mut().zip(&p) {
        *cj += dt_min * pj;
    }
    (xcp, c)
}

/// Minimise the quadratic model over the variables free at the Cauchy point (direct
/// primal method, Byrd et al. 1995 §5.1), then project onto the box (Morales & Nocedal
/// 2011); fall back to the truncated step if the projection is not a descent direction.
fn subspace_min(
    x: &[f64],
    g: &[f64],
    lower: &[f64],
    upper: &[f64],
    xcp: &[f64],
    c: &[f64],
    mem: &Memory,
) -> Vec<f64> {
    let n = x.len();
    let k2 = 2 * mem.len();
    let theta = mem.theta;
    let free: Vec<usize> = (0..n)
        .filter(|&i| xcp[i] > lower[i] && xcp[i] < upper[i])
        .collect();
    if free.is_empty() {
        return xcp.to_vec();
    }
    let mut mc = vec![0.0; k2];
    if k2 > 0 {
        mem.m_mul(c, &mut mc);
    }
    let mut wrow = vec![0.0; k2];
    // reduced gradient r = Zᵀ(g + θ(x_cp − x) − W M c)
    let mut r = Vec::with_capacity(free.len());
    let mut wtzr = vec![0.0; k2];
    let mut a = vec![0.0; k2 * k2];
    for &i in &free {
        let mut ri = g[i] + theta * (xcp[i] - x[i]);
        if k2 > 0 {
            mem.w_row(i, &mut wrow);
            ri -= dot(&wrow, &mc);
            for p in 0..k2 {
                wtzr[p] += wrow[p] * ri;
                for q in 0..k2 {
                    a[p * k2 + q] += wrow[p] * wrow[q];
                }
            }
        }
        r.push(ri);
    }
    // du = −r/θ − Zᵀ W (I − M WᵀZZᵀW / θ)⁻¹ M WᵀZ r / θ²
    let mut v = vec![0.0; k2];
    if k2 > 0 {
        let mut mv = vec![0.0; k2];
        mem.m_mul(&wtzr, &mut mv);
        let mut nmat = vec![0.0; k2 * k2];
        for p in 0..k2 {
            for q in 0..k2 {
                let ma: f64 = (0..k2).map(|l| mem.m[p * k2 + l] * a[l * k2 + q]).sum();
                nmat[p * k2 + q] = if p == q { 1.0 } else { 0.0 } - ma / theta;
            }
        }
        match solve_small(&nmat, &mv, k2, 1) {
            Some(s) => v = s,
            None => return xcp.to_vec(),
        }
    }
    let mut du = Vec::with_capacity(free.len());
    for (f, &i) in free.iter().enumerate() {
        let mut di = -r[f] / theta;
        if k2 > 0 {
            mem.w_row(i, &mut wrow);
            di -= dot(&wrow, &v) / (theta * theta);
        }
        du.push(di);
    }
    project_or_truncate(x, g, lower, upper, xcp, &free, &du)
}

/// Full BFGS approximation `B` (n×n, row-major) of the Hessian, for small problems:
/// self-scaling BFGS (Oren & Luenberger 1974, "Self-scaling variable metric (SSVM)
/// algorithms", Management Science 20(5), doi:10.1287/mnsc.20.5.845), which rescales `B`
/// by `yᵀs / sᵀBs` before each update.
struct Dense {
    n: usize,
    b: Vec<f64>,
    pairs: usize,
}

impl Dense {
    fn new(n: usize) -> Self {
        let mut d = Self {
            n,
            b: Vec::new(),
            pairs: 0,
        };
        d.reset();
        d
    }
    fn reset(&mut self) {
        let n = self.n;
        self.b = vec![0.0; n * n];
        for i in 0..n {
            self.b[i * n + i] = 1.0;
        }
        self.pairs = 0;
    }
    fn mul(&self, v: &[f64], out: &mut [f64]) {
        let n = self.n;
        for (i, o) in out.iter_mut().enumerate() {
            *o = dot(&self.b[i * n..(i + 1) * n], v);
        }
    }
    /// BFGS update `B ← B − B s sᵀ B / sᵀBs + y yᵀ / yᵀs`, the first one from
    /// `B₀ = (yᵀy / sᵀy) I` (Nocedal & Wright 2006, eq. 6.20).
    fn push(&mut self, s: &[f64], y: &[f64]) -> bool {
        let n = self.n;
        let sy = dot(s, y);
        if self.pairs == 0 {
            let scale = dot(y, y) / sy;
            self.b.fill(0.0);
            for i in 0..n {
                self.b[i * n + i] = scale;
            }
        }
        let mut bs = vec![0.0; n];
        self.mul(s, &mut bs);
        let mut sbs = dot(s, &bs);
        if !(sbs > 0.0 && sbs.is_finite()) {
            self.reset();
            return false;
        }
        if self.pairs > 0 {
            // self-scaling: B ← τB with τ = yᵀs / sᵀBs before the update, so that the
            // curvature of the unexplored subspace follows the latest step instead of the
            // first one (Oren & Luenberger 1974)
            let tau = sy / sbs;
            for v in self.b.iter_mut() {
                *v *= tau;
            }
            for v in bs.iter_mut() {
                *v *= tau;
            }
            sbs *= tau;
        }
        for i in 0..n {
            for j in 0..n {
                self.b[i * n + j] += y[i] * y[j] / sy - bs[i] * bs[j] / sbs;
            }
        }
        self.pairs += 1;
        true
    }

    /// Generalised Cauchy point of `q(z) = gᵀz + ½ zᵀBz` along the projected
    /// steepest-descent path (the dense counterpart of [`cauchy_point`]).
    fn cauchy_point(&self, x: &[f64], g: &[f64], lower: &[f64], upper: &[f64]) -> Vec<f64> {
        let n = self.n;
        let (t, mut d) = breakpoints(x, g, lower, upper);
        let mut z = vec![0.0; n];
        let mut bd = vec![0.0; n];
        self.mul(&d, &mut bd);
        let mut fp = -dot(&d, &d);
        let mut xcp = x.to_vec();
        if fp >= 0.0 {
            return xcp;
        }
        let mut fpp = dot(&d, &bd);
        let fpp0 = fpp.abs();
        fpp = fpp.max(f64::EPSILON * fpp0);
        let mut dt_min = -fp / fpp;
        let mut t_old = 0.0;
        let mut order: Vec<usize> = (0..n)
            .filter(|&i| t[i] > 0.0 && t[i].is_finite() && d[i] != 0.0)
            .collect();
        order.sort_by(|&a, &b| t[a].total_cmp(&t[b]));
        for &b in &order {
            let dt = t[b] - t_old;
            if dt_min < dt {
                break;
            }
            for i in 0..n {
                z[i] += dt * d[i];
            }
            xcp[b] = if d[b] > 0.0 { upper[b] } else { lower[b] };
            z[b] = xcp[b] - x[b];
            let db = d[b];
            d[b] = 0.0;
            for (i, v) in bd.iter_mut().enumerate() {
                *v -= self.b[i * n + b] * db;
            }
            fp = dot(g, &d) + dot(&z, &bd);
            fpp = dot(&d, &bd).max(f64::EPSILON * fpp0);
            dt_min = -fp / fpp;
            t_old = t[b];
            if fp >= 0.0 {
                dt_min = 0.0;
                break;
            }
        }
        let dt_min = dt_min.max(0.0);
        for i in 0..n {
            if d[i] != 0.0 {
                xcp[i] = (x[i] + z[i] + dt_min * d[i]).clamp(lower[i], upper[i]);
            }
        }
        xcp
    }

    /// Minimise the model over the variables free at the Cauchy point (Cholesky of the
    /// reduced `B`), then project, as [`subspace_min`].
    fn subspace_min(
        &self,
        x: &[f64],
        g: &[f64],
        lower: &[f64],
        upper: &[f64],
        xcp: &[f64],
    ) -> Vec<f64> {
        let n = self.n;
        let free: Vec<usize> = (0..n)
            .filter(|&i| xcp[i] > lower[i] && xcp[i] < upper[i])
            .collect();
        let nf = free.len();
        if nf == 0 {
            return xcp.to_vec();
        }
        let z: Vec<f64> = xcp.iter().zip(x).map(|(a, b)| a - b).collect();
        let mut bz = vec![0.0; n];
        self.mul(&z, &mut bz);
        // Cholesky of B_FF (row-major lower factor)
        let mut l = vec![0.0; nf * nf];
        for (r, &i) in free.iter().enumerate() {
            for (c, &j) in free.iter().enumerate().take(r + 1) {
                let mut v = self.b[i * n + j];
                for k in 0..c {
                    v -= l[r * nf + k] * l[c * nf + k];
                }
                if r == c {
                    if !(v > 0.0 && v.is_finite()) {
                        return xcp.to_vec();
                    }
                    l[r * nf + r] = v.sqrt();
                } else {
                    l[r * nf + c] = v / l[c * nf + c];
                }
            }
        }
        // solve L Lᵀ p = −r
        let mut p: Vec<f64> = free.iter().map(|&i| -(g[i] + bz[i])).collect();
        for r in 0..nf {
            let mut v = p[r];
            for k in 0..r {
                v -= l[r * nf + k] * p[k];
            }
            p[r] = v / l[r * nf + r];
        }
        for r in (0..nf).rev() {
            let mut v = p[r];
            for k in r + 1..nf {
                v -= l[k * nf + r] * p[k];
            }
            p[r] = v / l[r * nf + r];
        }
        project_or_truncate(x, g, lower, upper, xcp, &free, &p)
    }
}

/// The curvature model of the iteration: limited-memory or dense.
enum Model {
    Limited(Memory),
    Dense(Dense),
}

impl Model {
    fn pairs(&self) -> usize {
        match self {
            Self::Limited(m) => m.len(),
            Self::Dense(d) => d.pairs,
        }
    }
    fn reset(&mut self) {
        match self {
            Self::Limited(m) => m.reset(),
            Self::Dense(d) => d.reset(),
        }
    }
    fn push(&mut self, s: Vec<f64>, y: Vec<f64>) -> bool {
        match self {
            Self::Limited(m) => m.push(s, y),
            Self::Dense(d) => d.push(&s, &y),
        }
    }
    /// Cauchy point and, once curvature pairs exist, the subspace step: the target `x̄`.
    fn step_target(&self, x: &[f64], g: &[f64], lower: &[f64], upper: &[f64]) -> Vec<f64> {
        match self {
            Self::Limited(m) => {
                let (xcp, c) = cauchy_point(x, g, lower, upper, m);
                if m.len() > 0 {
                    subspace_min(x, g, lower, upper, &xcp, &c, m)
                } else {
                    xcp
                }
            }
            Self::Dense(d) => {
                let xcp = d.cauchy_point(x, g, lower, upper);
                if d.pairs > 0 {
                    d.subspace_min(x, g, lower, upper, &xcp)
                } else {
                    xcp
                }
            }
        }
    }
}

/// Breakpoints `tᵢ` of the projected steepest-descent path and its direction `d = −g`
/// (0 for variables that cannot move).
fn breakpoints(x: &[f64], g: &[f64], lower: &[f64], upper: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let n = x.len();
    let mut t = vec![f64::INFINITY; n];
    let mut d = vec![0.0; n];
    for i in 0..n {
        if g[i] < 0.0 && upper[i].is_finite() {
            t[i] = (x[i] - upper[i]) / g[i];
        } else if g[i] > 0.0 && lower[i].is_finite() {
            t[i] = (x[i] - lower[i]) / g[i];
        }
        d[i] = if t[i] > 0.0 && g[i] != 0.0 {
            -g[i]
        } else {
            0.0
        };
    }
    (t, d)
}

/// `x̄ = P(x_cp + p)` over the free variables if that is a descent direction from `x`,
/// otherwise the largest feasible fraction of `p` (Morales & Nocedal 2011).
fn project_or_truncate(
    x: &[f64],
    g: &[f64],
    lower: &[f64],
    upper: &[f64],
    xcp: &[f64],
    free: &[usize],
    du: &[f64],
) -> Vec<f64> {
    let n = x.len();
    let mut xbar = xcp.to_vec();
    for (f, &i) in free.iter().enumerate() {
        xbar[i] = (xcp[i] + du[f]).clamp(lower[i], upper[i]);
    }
    let descent: f64 = (0..n).map(|i| g[i] * (xbar[i] - x[i])).sum();
    if descent < 0.0 {
        return xbar;
    }
    let mut alpha = 1.0f64;
    for (f, &i) in free.iter().enumerate() {
        let di = du[f];
        if di < 0.0 && lower[i].is_finite() {
            alpha = alpha.min((lower[i] - xcp[i]) / di);
        } else if di > 0.0 && upper[i].is_finite() {
            alpha = alpha.min((upper[i] - xcp[i]) / di);
        }
    }
    let alpha = alpha.max(0.0);
    let mut xbar = xcp.to_vec();
    for (f, &i) in free.iter().enumerate() {
        xbar[i] = (xcp[i] + alpha * du[f]).clamp(lower[i], upper[i]);
    }
    xbar
}

/// Moré–Thuente line search (MINPACK-2 `dcsrch`/`dcstep`), as a state machine: feed it
/// `(f, g·d)` at the step it asks for.
struct LineSearch {
    brackt: bool,
    stage: u8,
    finit: f64,
    ginit: f64,
    gtest: f64,
    width: f64,
    width1: f64,
    stx: f64,
    fx: f64,
    gx: f64,
    sty: f64,
    fy: f64,
    gy: f64,
    stmin: f64,
    stmax: f64,
    stpmin: f64,
    stpmax: f64,
}

/// What the line search wants next.
enum LsStep {
    /// Evaluate at this step.
    Eval(f64),
    /// The strong Wolfe conditions hold at the last step.
    Converged,
    /// The search cannot make further progress (bracket collapsed, a step bound reached,
    /// or rounding errors); the last step is the best it can do.
    Warning,
}

impl LineSearch {
    fn start(stp: f64, f: f64, g: f64, stpmax: f64) -> Self {
        Self {
            brackt: false,
            stage: 1,
            finit: f,
            ginit: g,
            gtest: LS_FTOL * g,
            width: stpmax,
            width1: 2.0 * stpmax,
            stx: 0.0,
            fx: f,
            gx: g,
            sty: 0.0,
            fy: f,
            gy: g,
            stmin: 0.0,
            stmax: stp + 4.0 * stp,
            stpmin: 0.0,
            stpmax,
        }
    }

    fn next(&mut self, stp: f64, f: f64, g: f64) -> LsStep {
        let ftest = self.finit + stp * self.gtest;
        if self.stage == 1 && f <= ftest && g >= 0.0 {
            self.stage = 2;
        }
        if f <= ftest && g.abs() <= LS_GTOL * (-self.ginit) {
            return LsStep::Converged;
        }
        if self.brackt && (stp <= self.stmin || stp >= self.stmax) {
            return LsStep::Warning;
        }
        if self.brackt && self.stmax - self.stmin <= LS_XTOL * self.stmax {
            return LsStep::Warning;
        }
        if stp >= self.stpmax && f <= ftest && g <= self.gtest {
            return LsStep::Warning;
        }
        if stp <= self.stpmin && (f > ftest || g >= self.gtest) {
            return LsStep::Warning;
        }
        let mut stp = stp;
        if self.stage == 1 && f <= self.fx && f > ftest {
            let fm = f - stp * self.gtest;
            let mut fxm = self.fx - self.stx * self.gtest;
            let mut fym = self.fy - self.sty * self.gtest;
            let gm = g - self.gtest;
            let mut gxm = self.gx - self.gtest;
            let mut gym = self.gy - self.gtest;
            dcstep(
                &mut self.stx,
                &mut fxm,
                &mut gxm,
                &mut self.sty,
                &mut fym,
                &mut gym,
                &mut stp,
                fm,
                gm,
                &mut self.brackt,
                self.stmin,
                self.stmax,
            );
            self.fx = fxm + self.stx * self.gtest;
            self.fy = fym + self.sty * self.gtest;
            self.gx = gxm + self.gtest;
            self.gy = gym + self.gtest;
        } else {
            dcstep(
                &mut self.stx,
                &mut self.fx,
                &mut self.gx,
                &mut self.sty,
                &mut self.fy,
                &mut self.gy,
                &mut stp,
                f,
                g,
                &mut self.brackt,
                self.stmin,
                self.stmax,
            );
        }
        if self.brackt {
            if (self.sty - self.stx).abs() >= 0.66 * self.width1 {
                stp = self.stx + 0.5 * (self.sty - self.stx);
            }
            self.width1 = self.width;
            self.width = (self.sty - self.stx).abs();
            self.stmin = self.stx.min(self.sty);
            self.stmax = self.stx.max(self.sty);
        } else {
            self.stmin = stp + 1.1 * (stp - self.stx);
            self.stmax = stp + 4.0 * (stp - self.stx);
        }
        stp = stp.clamp(self.stpmin, self.stpmax);
        if self.brackt
            && (stp <= self.stmin
                || stp >= self.stmax
                || self.stmax - self.stmin <= LS_XTOL * self.stmax)
        {
            stp = self.stx;
        }
        LsStep::Eval(stp)
    }
}

/// One safeguarded cubic/quadratic step of the Moré–Thuente search (MINPACK-2 `dcstep`).
#[allow(clippy::too_many_arguments)]
fn dcstep(
    stx: &mut f64,
    fx: &mut f64,
    dx: &mut f64,
    sty: &mut f64,
    fy: &mut f64,
    dy: &mut f64,
    stp: &mut f64,
    fp: f64,
    dp: f64,
    brackt: &mut bool,
    stpmin: f64,
    stpmax: f64,
) {
    let sgnd = dp * (*dx / dx.abs());
    let stpf;
    if fp > *fx {
        let theta = 3.0 * (*fx - fp) / (*stp - *stx) + *dx + dp;
        let s = theta.abs().max(dx.abs()).max(dp.abs());
        let mut gamma = s * ((theta / s).powi(2) - (*dx / s) * (dp / s)).max(0.0).sqrt();
        if *stp < *stx {
            gamma = -gamma;
        }
        let p = (gamma - *dx) + theta;
        let q = ((gamma - *dx) + gamma) + dp;
        let r = p / q;
        let stpc = *stx + r * (*stp - *stx);
        let stpq = *stx + ((*dx / ((*fx - fp) / (*stp - *stx) + *dx)) / 2.0) * (*stp - *stx);
        stpf = if (stpc - *stx).abs() < (stpq - *stx).abs() {
            stpc
        } else {
            stpc + (stpq - stpc) / 2.0
        };
        *brackt = true;
    } else if sgnd < 0.0 {
        let theta = 3.0 * (*fx - fp) / (*stp - *stx) + *dx + dp;
        let s = theta.abs().max(dx.abs()).max(dp.abs());
        let mut gamma = s * ((theta / s).powi(2) - (*dx / s) * (dp / s)).max(0.0).sqrt();
        if *stp > *stx {
            gamma = -gamma;
        }
        let p = (gamma - dp) + theta;
        let q = ((gamma - dp) + gamma) + *dx;
        let r = p / q;
        let stpc = *stp + r * (*stx - *stp);
        let stpq = *stp + (dp / (dp - *dx)) * (*stx - *stp);
        stpf = if (stpc - *stp).abs() > (stpq - *stp).abs() {
            stpc
        } else {
            stpq
        };
        *brackt = true;
    } else if dp.abs() < dx.abs() {
        let theta = 3.0 * (*fx - fp) / (*stp - *stx) + *dx + dp;
        let s = theta.abs().max(dx.abs()).max(dp.abs());
        let mut gamma = s * ((theta / s).powi(2) - (*dx / s) * (dp / s)).max(0.0).sqrt();
        if *stp > *stx {
            gamma = -gamma;
        }
        let p = (gamma - dp) + theta;
        let q = (gamma + (*dx - dp)) + gamma;
        let r = p / q;
        let stpc = if r < 0.0 && gamma != 0.0 {
            *stp + r * (*stx - *stp)
        } else if *stp > *stx {
            stpmax
        } else {
            stpmin
        };
        let stpq = *stp + (dp / (dp - *dx)) * (*stx - *stp);
        if *brackt {
            let mut v = if (stpc - *stp).abs() < (stpq - *stp).abs() {
                stpc
            } else {
                stpq
            };
            v = if *stp > *stx {
                v.min(*stp + 0.66 * (*sty - *stp))
            } else {
                v.max(*stp + 0.66 * (*sty - *stp))
            };
            stpf = v;
        } else {
            let v = if (stpc - *stp).abs() > (stpq - *stp).abs() {
                stpc
            } else {
                stpq
            };
            stpf = v.clamp(stpmin, stpmax);
        }
    } else if *brackt {
        let theta = 3.0 * (fp - *fy) / (*sty - *stp) + *dy + dp;
        let s = theta.abs().max(dy.abs()).max(dp.abs());
        let mut gamma = s * ((theta / s).powi(2) - (*dy / s) * (dp / s)).max(0.0).sqrt();
        if *stp > *sty {
            gamma = -gamma;
        }
        let p = (gamma - dp) + theta;
        let q = ((gamma - dp) + gamma) + *dy;
        let r = p / q;
        stpf = *stp + r * (*sty - *stp);
    } else if *stp > *stx {
        stpf = stpmax;
    } else {
        stpf = stpmin;
    }
    if fp > *fx {
        *sty = *stp;
        *fy = fp;
        *dy = dp;
    } else {
        if sgnd < 0.0 {
            *sty = *stx;
            *fy = *fx;
            *dy = *dx;
        }
        *stx = *stp;
        *fx = fp;
        *dx = dp;
    }
    *stp = stpf;
}

/// Minimise `f` over the box `lower ≤ x ≤ upper` from `x0` (projected onto the box first).
///
/// `f(x, grad)` returns the value and writes the gradient into `grad`. An error or a
/// non-finite value at a trial point of a line search shortens the step; at the start it is
/// an [`OptimError`]. See the [module documentation](self) for the method and stopping rule.
pub fn minimize<F, E>(
    f: F,
    x0: &[f64],
    lower: &[f64],
    upper: &[f64],
    opts: &LbfgsbOptions,
) -> Result<Minimum, OptimError<E>>
where
    F: FnMut(&[f64], &mut [f64]) -> Result<f64, E>,
{
    minimize_with_hessian(f, x0, lower, upper, opts, None)
}

/// [`minimize`] warm-started with a Hessian approximation (`n × n` row-major, e.g. the
/// [`Minimum::hessian`] of a previous run on a related problem) instead of the identity.
/// It is used by the dense model only and ignored if its size or values are unusable; the
/// self-scaling of the first update corrects its overall scale.
pub fn minimize_with_hessian<F, E>(
    mut f: F,
    x0: &[f64],
    lower: &[f64],
    upper: &[f64],
    opts: &LbfgsbOptions,
    hessian: Option<&[f64]>,
) -> Result<Minimum, OptimError<E>>
where
    F: FnMut(&[f64], &mut [f64]) -> Result<f64, E>,
{
    let n = x0.len();
    if lower.len() != n || upper.len() != n {
        return Err(OptimError::InvalidProblem(format!(
            "x0 has {n} values but the bounds have {} and {}",
            lower.len(),
            upper.len()
        )));
    }
    if let Some(i) = (0..n).find(|&i| lower[i].is_nan() || upper[i].is_nan() || lower[i] > upper[i])
    {
        return Err(OptimError::InvalidProblem(format!(
            "bound {i}: lower {} must not exceed upper {}",
            lower[i], upper[i]
        )));
    }
    if opts.memory == 0
        || !(opts.grad_tol > 0.0 && opts.grad_tol.is_finite())
        || !(opts.rel_cost_tol >= 0.0 && opts.rel_cost_tol.is_finite())
        || opts.max_line_search == 0
    {
        return Err(OptimError::InvalidProblem(
            "need memory ≥ 1, 0 < grad_tol < ∞, 0 ≤ rel_cost_tol < ∞, max_line_search ≥ 1".into(),
        ));
    }
    if let Some(i) = x0.iter().position(|v| !v.is_finite()) {
        return Err(OptimError::InvalidProblem(format!(
            "x0[{i}] = {} is not finite",
            x0[i]
        )));
    }
    let mut x: Vec<f64> = (0..n).map(|i| x0[i].clamp(lower[i], upper[i])).collect();
    let mut g = vec![0.0; n];
    let mut fx = f(&x, &mut g).map_err(OptimError::Objective)?;
    let mut evaluations = 1u64;
    if !fx.is_finite() || g.iter().any(|v| !v.is_finite()) {
        return Err(OptimError::NonFiniteStart);
    }
    let mut pg = projected_grad_norm(&x, &g, lower, upper);
    let done = |x: Vec<f64>, value, grad, pg, iterations, evaluations, termination| Minimum {
        x,
        value,
        grad,
        projected_grad_norm: pg,
        iterations,
        evaluations,
        termination,
        hessian: None,
    };
    if n == 0 {
        return Ok(done(
            x,
            fx,
            g,
            0.0,
            0,
            evaluations,
            Termination::NoVariables,
        ));
    }
    if pg <= opts.grad_tol {
        return Ok(done(
            x,
            fx,
            g,
            pg,
            0,
            evaluations,
            Termination::GradientTolerance,
        ));
    }
    if opts.max_iters == 0 {
        return Ok(done(x, fx, g, pg, 0, evaluations, Termination::NotRun));
    }
    let mut mem = if n <= opts.dense_max_vars {
        let mut d = Dense::new(n);
        if let Some(h) = hessian
            && h.len() == n * n
            && h.iter().all(|v| v.is_finite())
        {
            // a warm start: the curvature of a previous, related problem
            d.b = h.to_vec();
            d.pairs = 1;
        }
        Model::Dense(d)
    } else {
        Model::Limited(Memory::new(opts.memory))
    };
    let mut iterations = 0u64;
    let mut xt = vec![0.0; n];
    let mut gt = vec![0.0; n];
    let termination = loop {
        if iterations >= opts.max_iters {
            break Termination::IterationCap;
        }
        if evaluations >= opts.max_evals {
            break Termination::EvaluationCap;
        }
        let xbar = mem.step_target(&x, &g, lower, upper);
        let d: Vec<f64> = xbar.iter().zip(&x).map(|(a, b)| a - b).collect();
        let gd = dot(&g, &d);
        let dnorm = dot(&d, &d).sqrt();
        if gd.is_nan() || gd >= 0.0 || dnorm == 0.0 {
            // not a descent direction: start afresh from steepest descent, or give up
            if mem.pairs() > 0 {
                tracing::trace!(iteration = iterations, "no descent direction; memory reset");
                mem.reset();
                continue;
            }
            break Termination::LineSearchFailed;
        }
        // largest feasible step along d (x̄ is feasible, so at least 1)
        let mut stpmax = f64::INFINITY;
        for i in 0..n {
            if d[i] < 0.0 && lower[i].is_finite() {
                stpmax = stpmax.min((lower[i] - x[i]) / d[i]);
            } else if d[i] > 0.0 && upper[i].is_finite() {
                stpmax = stpmax.min((upper[i] - x[i]) / d[i]);
            }
        }
        let boxed = lower.iter().chain(upper).all(|v| v.is_finite());
        if mem.pairs() == 0 {
            // first step (or after a reset): steepest descent, not longer than x̄ unless
            // the problem is unbounded in some direction
            stpmax = stpmax.min(if boxed { 1.0 } else { f64::INFINITY });
        }
        let stpmax = stpmax.clamp(1.0, 1e10);
        let mut stp = if mem.pairs() == 0 && !boxed {
            (1.0 / dnorm).min(stpmax)
        } else {
            1.0
        };
        let mut ls = LineSearch::start(stp, fx, gd, stpmax);
        let mut ls_evals = 0u64;
        let mut accepted: Option<(f64, f64)> = None;
        let mut best_trial: Option<(f64, f64)> = None;
        loop {
            if ls_evals >= opts.max_line_search || evaluations >= opts.max_evals {
                break;
            }
            for i in 0..n {
                xt[i] = (x[i] + stp * d[i]).clamp(lower[i], upper[i]);
            }
            ls_evals += 1;
            evaluations += 1;
            let ft = match f(&xt, &mut gt) {
                Ok(v) if v.is_finite() && gt.iter().all(|v| v.is_finite()) => v,
                _ => {
                    // treat as +∞: restart the search on a shorter interval
                    let short = 0.5 * stp;
                    tracing::trace!(step = stp, "objective failed at a trial point; shortening");
                    stp = short;
                    ls = LineSearch::start(stp, fx, gd, short.max(f64::MIN_POSITIVE));
                    continue;
                }
            };
            let gtd = dot(&gt, &d);
            if ft < fx && best_trial.is_none_or(|(_, bf)| ft < bf) {
                best_trial = Some((stp, ft));
            }
            match ls.next(stp, ft, gtd) {
                LsStep::Converged => {
                    accepted = Some((stp, ft));
                    break;
                }
                LsStep::Warning => {
                    if ft < fx {
                        accepted = Some((stp, ft));
                    }
                    break;
                }
                LsStep::Eval(s) => stp = s,
            }
        }
        // the last evaluated point sits in xt/gt; re-evaluate only if another step won
        let accepted = accepted.or(best_trial);
        let Some((stp_ok, f_ok)) = accepted else {
            if mem.pairs() > 0 {
                tracing::trace!(iteration = iterations, "line search failed; memory reset");
                mem.reset();
                continue;
            }
            break Termination::LineSearchFailed;
        };
        let same_point = (0..n)
            .all(|i| xt[i].to_bits() == (x[i] + stp_ok * d[i]).clamp(lower[i], upper[i]).to_bits());
        if !same_point {
            for i in 0..n {
                xt[i] = (x[i] + stp_ok * d[i]).clamp(lower[i], upper[i]);
            }
            evaluations += 1;
            match f(&xt, &mut gt) {
                Ok(v) if v.is_finite() && gt.iter().all(|v| v.is_finite()) => {}
                _ => {
                    break Termination::LineSearchFailed;
                }
            }
        }
        iterations += 1;
        let s: Vec<f64> = xt.iter().zip(&x).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = gt.iter().zip(&g).map(|(a, b)| a - b).collect();
        let f_old = fx;
        let gs_old = dot(&g, &s);
        x.copy_from_slice(&xt);
        g.copy_from_slice(&gt);
        fx = f_ok;
        pg = projected_grad_norm(&x, &g, lower, upper);
        tracing::trace!(
            iteration = iterations,
            evaluations,
            f = fx,
            projected_grad = pg,
            step = stp_ok,
            "L-BFGS-B iteration"
        );
        if pg <= opts.grad_tol {
            break Termination::GradientTolerance;
        }
        if (f_old - fx) <= opts.rel_cost_tol * f_old.abs().max(fx.abs()).max(1.0) {
            break Termination::CostTolerance;
        }
        let sy = dot(&s, &y);
        // skip the update when the curvature condition fails (sᵀy ≤ ε·(−gₖᵀs))
        if sy > f64::EPSILON * (-gs_old).max(0.0) && sy > 0.0 && !mem.push(s, y) {
            tracing::trace!(
                iteration = iterations,
                "singular middle matrix; memory reset"
            );
        }
    };
    Ok(Minimum {
        x,
        value: fx,
        grad: g,
        projected_grad_norm: pg,
        iterations,
        evaluations,
        termination,
        hessian: match mem {
            Model::Dense(d) => Some(d.b),
            Model::Limited(_) => None,
        },
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    fn rosen(x: &[f64], g: &mut [f64]) -> Result<f64, Infallible> {
        let n = x.len();
        let mut f = 0.0;
        g.iter_mut().for_each(|v| *v = 0.0);
        for i in 0..n - 1 {
            let a = 1.0 - x[i];
            let b = x[i + 1] - x[i] * x[i];
            f += a * a + 100.0 * b * b;
            g[i] += -2.0 * a - 400.0 * x[i] * b;
            g[i + 1] += 200.0 * b;
        }
        Ok(f)
    }

    #[test]
    fn unconstrained_rosenbrock_converges() {
        let inf = f64::INFINITY;
        let x0 = [-1.2, 1.0, -1.2, 1.0, 0.5];
        let r = minimize(rosen, &x0, &[-inf; 5], &[inf; 5], &LbfgsbOptions::default()).unwrap();
        assert!(r.termination.converged(), "{:?}", r.termination);
        for v in &r.x {
            assert!((v - 1.0).abs() < 1e-4, "{:?}", r.x);
        }
        assert!(r.evaluations < 150, "{} evaluations", r.evaluations);
    }

    /// Separable quadratic `Σ aᵢ (xᵢ − cᵢ)²` with a box that cuts off some centres: the
    /// solution is the projection of `c` onto the box (closed form).
    #[test]
    fn bounded_quadratic_hits_the_projection() {
        let a = [1.0, 10.0, 100.0, 0.1, 3.0, 1e3];
        let c = [2.0, -3.0, 0.5, 5.0, -0.2, 0.9];
        let lo = [-1.0, -1.0, -1.0, -1.0, -1.0, -1.0];
        let hi = [1.0, 1.0, 1.0, 1.0, 1.0, 0.5];
        let f = |x: &[f64], g: &mut [f64]| -> Result<f64, Infallible> {
            let mut v = 0.0;
            for i in 0..x.len() {
                v += a[i] * (x[i] - c[i]).powi(2);
                g[i] = 2.0 * a[i] * (x[i] - c[i]);
            }
            Ok(v)
        };
        let r = minimize(f, &[0.0; 6], &lo, &hi, &LbfgsbOptions::default()).unwrap();
        assert_eq!(r.termination, Termination::GradientTolerance);
        for i in 0..6 {
            let want = c[i].clamp(lo[i], hi[i]);
            assert!(
                (r.x[i] - want).abs() < 1e-7,
                "x[{i}] = {} vs {want}",
                r.x[i]
            );
        }
    }

    /// A coupled quadratic `½ xᵀAx − bᵀx` whose unconstrained minimum leaves the box; the
    /// result must satisfy the KKT conditions of the box problem.
    #[test]
    fn coupled_quadratic_satisfies_kkt() {
        let n = 8;
        let amat: Vec<f64> = (0..n * n)
            .map(|k| {
                let (i, j) = (k / n, k % n);
                if i == j {
                    4.0 + i as f64
                } else {
                    1.0 / (1.0 + (i as f64 - j as f64).abs())
                }
            })
            .collect();
        let b: Vec<f64> = (0..n).map(|i| 10.0 * ((i as f64) * 1.3).sin()).collect();
        let f = |x: &[f64], g: &mut [f64]| -> Result<f64, Infallible> {
            let mut v = 0.0;
            for i in 0..n {
                let ax: f64 = (0..n).map(|j| amat[i * n + j] * x[j]).sum();
                g[i] = ax - b[i];
                v += 0.5 * x[i] * ax - b[i] * x[i];
            }
            Ok(v)
        };
        let lo = vec![-0.5; n];
        let hi = vec![0.7; n];
        // the gradient rule alone
        let opts = LbfgsbOptions {
            rel_cost_tol: 0.0,
            ..LbfgsbOptions::default()
        };
        let r = minimize(f, &vec![0.0; n], &lo, &hi, &opts).unwrap();
        assert_eq!(r.termination, Termination::GradientTolerance);
        let mut active = 0;
        for i in 0..n {
            let gi = r.grad[i];
            if (r.x[i] - lo[i]).abs() < 1e-12 {
                assert!(gi >= -1e-5);
                active += 1;
            } else if (r.x[i] - hi[i]).abs() < 1e-12 {
                assert!(gi <= 1e-5);
                active += 1;
            } else {
                assert!(gi.abs() < 1e-5, "free x[{i}] has gradient {gi}");
            }
        }
        assert!(active >= 2, "the test should activate bounds");
    }

    /// The limited-memory and the dense curvature models reach the same box minimum.
    #[test]
    fn limited_and_dense_models_agree() {
        let lo = [-2.0, -0.5, -2.0, 0.2, -2.0];
        let hi = [2.0, 0.8, 2.0, 2.0, 0.9];
        let x0 = [-1.2, 0.5, -1.2, 1.0, 0.5];
        let limited = LbfgsbOptions {
            dense_max_vars: 0,
            ..LbfgsbOptions::default()
        };
        let a = minimize(rosen, &x0, &lo, &hi, &limited).unwrap();
        let b = minimize(rosen, &x0, &lo, &hi, &LbfgsbOptions::default()).unwrap();
        assert!(a.termination.converged() && b.termination.converged());
        for (u, v) in a.x.iter().zip(&b.x) {
            assert!((u - v).abs() < 1e-5, "{:?} vs {:?}", a.x, b.x);
        }
        assert!((a.value - b.value).abs() < 1e-9);
        // the bound x1 ≤ 0.8 is active at the minimum
        assert!((b.x[1] - 0.8).abs() < 1e-12);
    }

    #[test]
    fn caps_and_errors_are_reported() {
        let inf = f64::INFINITY;
        let opts = LbfgsbOptions {
            max_iters: 3,
            ..LbfgsbOptions::default()
        };
        let r = minimize(rosen, &[-1.2, 1.0], &[-inf; 2], &[inf; 2], &opts).unwrap();
        assert_eq!(r.termination, Termination::IterationCap);
        assert_eq!(r.termination.name(), "iteration_cap");
        assert!(!r.termination.converged());
        assert_eq!(r.iterations, 3);
        let opts = LbfgsbOptions {
            max_evals: 5,
            ..LbfgsbOptions::default()
        };
        let r = minimize(rosen, &[-1.2, 1.0], &[-inf; 2], &[inf; 2], &opts).unwrap();
        assert_eq!(r.termination, Termination::EvaluationCap);
        assert!(r.evaluations <= 5 + DEFAULT_MAX_LINE_SEARCH);
        let bad = minimize(rosen, &[0.0], &[1.0], &[0.0], &LbfgsbOptions::default());
        assert!(matches!(bad, Err(OptimError::InvalidProblem(_))));
        let nan = |_: &[f64], _: &mut [f64]| -> Result<f64, Infallible> { Ok(f64::NAN) };
        assert_eq!(
            minimize(nan, &[0.0], &[-1.0], &[1.0], &LbfgsbOptions::default()),
            Err(OptimError::NonFiniteStart)
        );
        let fails = |_: &[f64], _: &mut [f64]| -> Result<f64, &'static str> { Err("boom") };
        assert_eq!(
            minimize(fails, &[0.0], &[-1.0], &[1.0], &LbfgsbOptions::default()),
            Err(OptimError::Objective("boom"))
        );
    }

    /// A region where the objective fails (returns an error) is avoided by the line
    /// search, which shortens the step.
    #[test]
    fn failing_trial_points_shorten_the_step() {
        let f = |x: &[f64], g: &mut [f64]| -> Result<f64, &'static str> {
            if x[0] > 0.9 {
                return Err("outside the domain");
            }
            g[0] = 2.0 * (x[0] - 0.8);
            Ok((x[0] - 0.8).powi(2))
        };
        let r = minimize(f, &[-5.0], &[-10.0], &[10.0], &LbfgsbOptions::default()).unwrap();
        assert!(r.termination.converged(), "{:?}", r.termination);
        assert!((r.x[0] - 0.8).abs() < 1e-6);
    }
}
