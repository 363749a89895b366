//! Acquisition optimisation: space-filling raw candidates, then the best few refined by a
//! bounded quasi-Newton method.
//!
//! # The minimiser
//! [`minimize_box`] is a projected limited-memory BFGS for box constraints in the spirit of
//! L-BFGS-B (Byrd, Lu, Nocedal & Zhu 1995, SIAM J. Sci. Comput. 16(5):1190–1208,
//! doi:10.1137/0916069), in the simpler form of Kim, Sra & Dhillon (2010), "Tackling
//! box-constrained optimization via a new projected quasi-Newton approach", SIAM J. Sci.
//! Comput. 32(6):3548–3563, doi:10.1137/08073812X:
//!
//! 1. the **active set** holds the coordinates at a bound whose gradient pushes outwards;
//! 2. the L-BFGS two-loop recursion (Nocedal & Wright 2006, Alg. 7.4) gives a direction on
//!    the free coordinates (steepest descent when it is not a descent direction);
//! 3. a backtracking **Armijo search along the projection arc** `P(x + α d)` accepts
//!    `f(x⁺) ≤ f(x) + c₁ ∇f·(x⁺ − x)`;
//! 4. curvature pairs with `sᵀy > ε‖s‖‖y‖` update the memory.
//!
//! It stops when the projected gradient `‖P(x − ∇f) − x‖∞` falls below `pg_tol`, when the
//! relative decrease falls below `f_rel_tol` (SciPy's `factr` rule), at the iteration limit,
//! or when the line search fails. It is deterministic.
//!
//! # Multistart
//! [`maximize`] follows BoTorch's `optimize_acqf` (`optim/optimize.py`): score `raw_samples`
//! (default 512) points of a randomly shifted lattice in the unit cube ([`uniform_points`]),
//! refine the best `restarts` (default 10) with [`minimize_box`] on `−acquisition`, keep the
//! best. BoTorch draws its restarts by Boltzmann sampling of the raw values; here they are
//! the top `restarts`, so that the result depends only on the seed. Gradients are finite
//! differences on the deterministic (fixed-base-sample) acquisition unless given
//! ([`maximize_with_gradient`]).

use serde::{Deserialize, Serialize};

use crate::error::{BedError, Result};
use crate::qmc::uniform_points;

/// Options of [`minimize_box`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LbfgsbOptions {
    /// Number of stored curvature pairs (default 10).
    pub memory: usize,
    /// Iteration limit (default 200).
    pub max_iters: usize,
    /// Tolerance on the sup-norm of the projected gradient (default 1e-8).
    pub pg_tol: f64,
    /// Tolerance on the relative decrease `(f − f⁺)/max(|f|, |f⁺|, 1)` (default 1e-12).
    pub f_rel_tol: f64,
    /// Armijo constant `c₁` (default 1e-4).
    pub c1: f64,
    /// Maximum number of step halvings in one line search (default 40).
    pub max_line_search: usize,
    /// Largest sup-norm of a steepest-descent step, as a fraction of the box width
    /// (default 0.25): the first step has no curvature information to scale it.
    pub max_first_step: f64,
}

impl Default for LbfgsbOptions {
    fn default() -> Self {
        Self {
            memory: 10,
            max_iters: 200,
            pg_tol: 1e-8,
            f_rel_tol: 1e-12,
            c1: 1e-4,
            max_line_search: 40,
            max_first_step: 0.25,
        }
    }
}

/// Why [`minimize_box`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum StopReason {
    /// The projected gradient is below `pg_tol` (a KKT point).
    ProjectedGradient,
    /// The relative decrease fell below `f_rel_tol`.
    RelativeDecrease,
    /// `max_iters` reached.
    MaxIterations,
    /// No step along the projection arc decreased the objective enough.
    LineSearch,
    /// The objective is not finite at the start.
    NonFiniteStart,
}

/// Result of [`minimize_box`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Minimum {
    /// The minimiser found.
    pub x: Vec<f64>,
    /// The objective there.
    pub value: f64,
    /// Iterations taken.
    pub iterations: usize,
    /// Objective (and gradient) evaluations.
    pub evaluations: usize,
    /// Why it stopped.
    pub stop: StopReason,
}

fn check_box(x0: &[f64], lower: &[f64], upper: &[f64]) -> Result<()> {
    if lower.len() != x0.len() || upper.len() != x0.len() {
        return Err(BedError::ShapeMismatch(format!(
            "x0 has {} coordinates, lower {} and upper {}",
            x0.len(),
            lower.len(),
            upper.len()
        )));
    }
    for (i, (l, u)) in lower.iter().zip(upper).enumerate() {
        if !(l.is_finite() && u.is_finite() && l <= u) {
            return Err(BedError::InvalidParameter {
                name: "bounds",
                reason: format!("coordinate {i}: need finite lower <= upper, got [{l}, {u}]"),
            });
        }
    }
    if let Some(&v) = x0.iter().find(|v| !v.is_finite()) {
        return Err(BedError::NonFinite {
            what: "starting point",
            value: v,
        });
    }
    Ok(())
}

fn project(x: &mut [f64], lower: &[f64], upper: &[f64]) {
    for ((xi, l), u) in x.iter_mut().zip(lower).zip(upper) {
        *xi = xi.clamp(*l, *u);
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Minimises `f` over the box `[lower, upper]` from `x0` (projected into the box).
///
/// `f(x, grad)` returns the objective and writes its gradient into `grad`; a non-finite
/// value counts as `+∞` (the line search backs off).
///
/// ```
/// use perfusio_bed::optimize::{LbfgsbOptions, minimize_box};
/// // Rosenbrock on [−2, 0.5] × [−2, 2]: the bound x ≤ 0.5 is active, minimiser (0.5, 0.25)
/// let mut f = |x: &[f64], g: &mut [f64]| {
///     let (a, b) = (1.0 - x[0], x[1] - x[0] * x[0]);
///     g[0] = -2.0 * a - 400.0 * x[0] * b;
///     g[1] = 200.0 * b;
///     a * a + 100.0 * b * b
/// };
/// let m = minimize_box(&mut f, &[-1.2, 1.0], &[-2.0, -2.0], &[0.5, 2.0], &LbfgsbOptions::default()).unwrap();
/// assert!((m.x[0] - 0.5).abs() < 1e-9 && (m.x[1] - 0.25).abs() < 1e-6);
/// ```
pub fn minimize_box(
    f: &mut dyn FnMut(&[f64], &mut [f64]) -> f64,
    x0: &[f64],
    lower: &[f64],
    upper: &[f64],
    opts: &LbfgsbOptions,
) -> Result<Minimum> {
    check_box(x0, lower, upper)?;
    let n = x0.len();
    let mut x = x0.to_vec();
    project(&mut x, lower, upper);
    let mut g = vec![0.0; n];
    let mut evaluations = 1;
    let mut fx = f(&x, &mut g);
    if !fx.is_finite() || g.iter().any(|v| !v.is_finite()) {
        return Ok(Minimum {
            x,
            value: fx,
            iterations: 0,
            evaluations,
            stop: StopReason::NonFiniteStart,
        });
    }
    let width: Vec<f64> = lower.iter().zip(upper).map(|(l, u)| u - l).collect();
    let mut s_hist: Vec<Vec<f64>> = Vec::with_capacity(opts.memory);
    let mut y_hist: Vec<Vec<f64>> = Vec::with_capacity(opts.memory);
    let mut d = vec![0.0; n];
    let mut free = vec![true; n];
    let mut x_new = vec![0.0; n];
    let mut g_new = vec![0.0; n];
    let mut stop = StopReason::MaxIterations;
    let mut iterations = 0;
    while iterations < opts.max_iters {
        // projected gradient and active set
        let mut pg: f64 = 0.0;
        for i in 0..n {
            let step = (x[i] - g[i]).clamp(lower[i], upper[i]) - x[i];
            pg = pg.max(step.abs());
            free[i] = width[i] > 0.0
                && !((x[i] <= lower[i] && g[i] > 0.0) || (x[i] >= upper[i] && g[i] < 0.0));
        }
        if pg <= opts.pg_tol {
            stop = StopReason::ProjectedGradient;
            break;
        }
        iterations += 1;
        // two-loop recursion on the free coordinates
        let masked = |v: &[f64], out: &mut Vec<f64>| {
            out.clear();
            out.extend(v.iter().zip(&free).map(|(x, &f)| if f { *x } else { 0.0 }));
        };
        let mut q = Vec::with_capacity(n);
        masked(&g, &mut q);
        let mut alphas = vec![0.0; s_hist.len()];
        let mut rhos = vec![0.0; s_hist.len()];
        let mut sm = Vec::with_capacity(n);
        let mut ym = Vec::with_capacity(n);
        let mut gamma = 0.0;
        for k in (0..s_hist.len()).rev() {
            masked(&s_hist[k], &mut sm);
            masked(&y_hist[k], &mut ym);
            let sy = dot(&sm, &ym);
            if sy <= 1e-12 * dot(&sm, &sm).sqrt() * dot(&ym, &ym).sqrt() || sy <= 0.0 {
                continue;
            }
            rhos[k] = 1.0 / sy;
            if gamma <= 0.0 {
                gamma = sy / dot(&ym, &ym);
            }
            alphas[k] = rhos[k] * dot(&sm, &q);
            for (qi, yi) in q.iter_mut().zip(&ym) {
                *qi -= alphas[k] * yi;
            }
        }
        let have_curvature = gamma > 0.0;
        if have_curvature {
            for qi in q.iter_mut() {
                *qi *= gamma;
            }
            for k in 0..s_hist.len() {
                if rhos[k] <= 0.0 {
                    continue;
                }
                masked(&s_hist[k], &mut sm);
                masked(&y_hist[k], &mut ym);
                let beta = rhos[k] * dot(&ym, &q);
                for (qi, si) in q.iter_mut().zip(&sm) {
                    *qi += si * (alphas[k] - beta);
                }
            }
        }
        for i in 0..n {
            d[i] = if free[i] { -q[i] } else { 0.0 };
        }
        let slope = dot(&g, &d);
        let mut steepest = !have_curvature;
        if slope >= 0.0 || !slope.is_finite() {
            // not a descent direction: restart from steepest descent
            for i in 0..n {
                d[i] = if free[i] { -g[i] } else { 0.0 };
            }
            s_hist.clear();
            y_hist.clear();
            steepest = true;
        }
        let mut alpha = 1.0;
        if steepest {
            // scale the first step to at most `max_first_step` of the box
            let dmax = d
                .iter()
                .zip(&width)
                .filter(|(_, w)| **w > 0.0)
                .map(|(di, w)| di.abs() / w)
                .fold(0.0, f64::max);
            if dmax > 0.0 {
                alpha = (opts.max_first_step / dmax).min(1.0);
            }
        }
        // backtracking Armijo search along the projection arc
        let mut accepted = false;
        let mut f_new = fx;
        for _ in 0..opts.max_line_search {
            for i in 0..n {
                x_new[i] = (x[i] + alpha * d[i]).clamp(lower[i], upper[i]);
            }
            let moved: f64 = x_new
                .iter()
                .zip(&x)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            if moved <= 0.0 {
                break;
            }
            evaluations += 1;
            f_new = f(&x_new, &mut g_new);
            let decrease: f64 = g
                .iter()
                .zip(&x_new)
                .zip(&x)
                .map(|((gi, a), b)| gi * (a - b))
                .sum();
            if f_new.is_finite()
                && g_new.iter().all(|v| v.is_finite())
                && f_new <= fx + opts.c1 * decrease
            {
                accepted = true;
                break;
            }
            alpha *= 0.5;
        }
        if !accepted {
            stop = StopReason::LineSearch;
            break;
        }
        let s: Vec<f64> = x_new.iter().zip(&x).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        if sy > f64::EPSILON * dot(&s, &s).sqrt() * dot(&y, &y).sqrt() {
            if s_hist.len() == opts.memory.max(1) {
                s_hist.remove(0);
                y_hist.remove(0);
            }
            s_hist.push(s);
            y_hist.push(y);
        }
        let rel = (fx - f_new) / fx.abs().max(f_new.abs()).max(1.0);
        x.copy_from_slice(&x_new);
        g.copy_from_slice(&g_new);
        fx = f_new;
        if rel <= opts.f_rel_tol {
            stop = StopReason::RelativeDecrease;
            break;
        }
    }
    Ok(Minimum {
        x,
        value: fx,
        iterations,
        evaluations,
        stop,
    })
}

/// Finite-difference scheme for the gradient of an acquisition without one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum FiniteDifference {
    /// `(f(x + h eᵢ) − f(x))/h` (backwards at the upper bound): `D` extra evaluations.
    Forward {
        /// Step in unit-cube coordinates (default 1e-7).
        step: f64,
    },
    /// `(f(x + h eᵢ) − f(x − h eᵢ))/2h` (one-sided at a bound): `2D` extra evaluations,
    /// error `O(h²)`.
    Central {
        /// Step in unit-cube coordinates (default 6e-6 ≈ ε^{1/3}).
        step: f64,
    },
}

impl Default for FiniteDifference {
    fn default() -> Self {
        FiniteDifference::Forward { step: 1e-7 }
    }
}

/// Value and finite-difference gradient of `f` at `x` inside `[0, 1]^D`.
pub fn fd_gradient(
    f: &dyn Fn(&[f64]) -> f64,
    x: &[f64],
    scheme: FiniteDifference,
    grad: &mut [f64],
) -> f64 {
    let fx = f(x);
    let mut xp = x.to_vec();
    for i in 0..x.len() {
        let xi = x[i];
        grad[i] = match scheme {
            FiniteDifference::Forward { step } => {
                let h = if xi + step <= 1.0 { step } else { -step };
                xp[i] = xi + h;
                let v = (f(&xp) - fx) / h;
                xp[i] = xi;
                v
            }
            FiniteDifference::Central { step } => {
                let hi = (xi + step).min(1.0);
                let lo = (xi - step).max(0.0);
                xp[i] = hi;
                let fp = f(&xp);
                xp[i] = lo;
                let fm = f(&xp);
                xp[i] = xi;
                (fp - fm) / (hi - lo)
            }
        };
    }
    fx
}

/// Options of [`maximize`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MaximizeOptions {
    /// Space-filling raw candidates scored first (default 512, `RunConfig::raw_samples`).
    pub raw_samples: usize,
    /// Best raw candidates refined (default 10, `RunConfig::optimizer_restarts`).
    pub restarts: usize,
    /// Seed of the raw candidates' random shift (default 42).
    pub seed: u64,
    /// Options of the local minimiser.
    pub lbfgsb: LbfgsbOptions,
    /// Gradient scheme when no gradient is given.
    pub finite_difference: FiniteDifference,
}

impl Default for MaximizeOptions {
    fn default() -> Self {
        Self {
            raw_samples: 512,
            restarts: 10,
            seed: 42,
            lbfgsb: LbfgsbOptions::default(),
            finite_difference: FiniteDifference::default(),
        }
    }
}

impl MaximizeOptions {
    /// Checks `raw_samples ≥ restarts ≥ 1`.
    pub fn check(&self) -> Result<()> {
        if self.restarts == 0 || self.raw_samples < self.restarts {
            return Err(BedError::InvalidParameter {
                name: "raw_samples",
                reason: format!(
                    "need raw_samples >= restarts >= 1 (restarts start from the best raw \
                     samples), got {} raw samples and {} restarts",
                    self.raw_samples, self.restarts
                ),
            });
        }
        Ok(())
    }
}

/// Result of [`maximize`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Maximum {
    /// The best point found, in `[0, 1]^D`.
    pub x: Vec<f64>,
    /// The acquisition there.
    pub value: f64,
    /// The best raw candidate's value (before refinement).
    pub best_raw_value: f64,
    /// Acquisition evaluations in total (gradient evaluations included).
    pub evaluations: usize,
    /// The local refinements, best first.
    pub restarts: Vec<Minimum>,
}

/// Maximises an acquisition over `[0, 1]^dim` with finite-difference gradients.
///
/// `extra_starts` are scored with the raw candidates (e.g. the point of the current
/// setpoints, so that the decision is never worse than holding course by the acquisition's
/// own measure). Deterministic for a seed.
///
/// ```
/// use perfusio_bed::optimize::{MaximizeOptions, maximize};
/// // a smooth bump with its peak at (0.3, 0.7)
/// let f = |x: &[f64]| -((x[0] - 0.3).powi(2) + (x[1] - 0.7).powi(2));
/// let m = maximize(2, &f, &MaximizeOptions::default(), &[]).unwrap();
/// assert!((m.x[0] - 0.3).abs() < 1e-5 && (m.x[1] - 0.7).abs() < 1e-5);
/// ```
pub fn maximize(
    dim: usize,
    acquisition: &dyn Fn(&[f64]) -> f64,
    opts: &MaximizeOptions,
    extra_starts: &[Vec<f64>],
) -> Result<Maximum> {
    let scheme = opts.finite_difference;
    let mut with_grad =
        |x: &[f64], g: &mut [f64]| -> f64 { fd_gradient(acquisition, x, scheme, g) };
    let per_gradient = match scheme {
        FiniteDifference::Forward { .. } => dim + 1,
        FiniteDifference::Central { .. } => 2 * dim + 1,
    };
    multistart(
        dim,
        acquisition,
        &mut with_grad,
        per_gradient,
        opts,
        extra_starts,
    )
}

/// Maximises an acquisition with an analytic gradient: `acquisition(x, grad)` returns the
/// value and writes `∂/∂x` into `grad`.
pub fn maximize_with_gradient(
    dim: usize,
    acquisition: &dyn Fn(&[f64], &mut [f64]) -> f64,
    opts: &MaximizeOptions,
    extra_starts: &[Vec<f64>],
) -> Result<Maximum> {
    let value = |x: &[f64]| {
        let mut g = vec![0.0; x.len()];
        acquisition(x, &mut g)
    };
    let mut with_grad = |x: &[f64], g: &mut [f64]| acquisition(x, g);
    multistart(dim, &value, &mut with_grad, 1, opts, extra_starts)
}

fn multistart(
    dim: usize,
    value: &dyn Fn(&[f64]) -> f64,
    with_grad: &mut dyn FnMut(&[f64], &mut [f64]) -> f64,
    evals_per_gradient: usize,
    opts: &MaximizeOptions,
    extra_starts: &[Vec<f64>],
) -> Result<Maximum> {
    opts.check()?;
    for s in extra_starts {
        if s.len() != dim || s.iter().any(|v| !(0.0..=1.0).contains(v)) {
            return Err(BedError::ShapeMismatch(format!(
                "an extra start must be a point of [0, 1]^{dim}, got {s:?}"
            )));
        }
    }
    if dim == 0 {
        let v = value(&[]);
        if !v.is_finite() {
            return Err(BedError::NoFiniteAcquisition { raw_samples: 1 });
        }
        return Ok(Maximum {
            x: Vec::new(),
            value: v,
            best_raw_value: v,
            evaluations: 1,
            restarts: Vec::new(),
        });
    }
    let raw = uniform_points(opts.raw_samples, dim, opts.seed)?;
    let mut candidates: Vec<Vec<f64>> = raw.chunks_exact(dim).map(<[f64]>::to_vec).collect();
    candidates.extend(extra_starts.iter().cloned());
    let mut scored: Vec<(f64, usize)> = candidates
        .iter()
        .enumerate()
        .map(|(i, x)| (value(x), i))
        .filter(|(v, _)| v.is_finite())
        .collect();
    let mut evaluations = candidates.len();
    if scored.is_empty() {
        return Err(BedError::NoFiniteAcquisition {
            raw_samples: candidates.len(),
        });
    }
    // best first; ties by index, so the order is deterministic
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let best_raw_value = scored[0].0;
    let lower = vec![0.0; dim];
    let upper = vec![1.0; dim];
    let mut restarts = Vec::with_capacity(opts.restarts);
    for &(v0, i) in scored.iter().take(opts.restarts) {
        let mut neg = |x: &[f64], g: &mut [f64]| {
            let v = with_grad(x, g);
            for gi in g.iter_mut() {
                *gi = -*gi;
            }
            -v
        };
        let mut m = minimize_box(&mut neg, &candidates[i], &lower, &upper, &opts.lbfgsb)?;
        evaluations += m.evaluations * evals_per_gradient;
        m.value = -m.value;
        if m.value.is_nan() || m.value < v0 {
            // refinement never makes a start worse
            m.x.clone_from(&candidates[i]);
            m.value = v0;
        }
        tracing::trace!(start = i, raw = v0, refined = m.value, iterations = m.iterations, stop = ?m.stop, "acquisition restart");
        restarts.push(m);
    }
    restarts.sort_by(|a, b| b.value.total_cmp(&a.value));
    let best = &restarts[0];
    Ok(Maximum {
        x: best.x.clone(),
        value: best.value,
        best_raw_value,
        evaluations,
        restarts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 6-D Hartmann function (Dixon & Szegő 1978), negated so that its known global
    /// minimum −3.32237 becomes a maximum.
    fn neg_hartmann6(x: &[f64]) -> f64 {
        const ALPHA: [f64; 4] = [1.0, 1.2, 3.0, 3.2];
        const A: [[f64; 6]; 4] = [
            [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
            [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
            [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
            [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
        ];
        const P: [[f64; 6]; 4] = [
            [1312.0, 1696.0, 5569.0, 124.0, 8283.0, 5886.0],
            [2329.0, 4135.0, 8307.0, 3736.0, 1004.0, 9991.0],
            [2348.0, 1451.0, 3522.0, 2883.0, 3047.0, 6650.0],
            [4047.0, 8828.0, 8732.0, 5743.0, 1091.0, 381.0],
        ];
        (0..4)
            .map(|i| {
                let r: f64 = (0..6)
                    .map(|j| A[i][j] * (x[j] - P[i][j] * 1e-4).powi(2))
                    .sum();
                ALPHA[i] * (-r).exp()
            })
            .sum()
    }

    /// Maximiser and maximum of `neg_hartmann6` (polished by gradient descent in Python
    /// from the literature's x* = (0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573)).
    const X_STAR: [f64; 6] = [
        0.201_689_5,
        0.150_010_7,
        0.476_874_0,
        0.275_332_4,
        0.311_651_6,
        0.657_300_5,
    ];
    const F_STAR: f64 = 3.322_368_011_415_515;

    #[test]
    fn finds_the_hartmann6_maximum_deterministically() {
        let opts = MaximizeOptions {
            seed: 7,
            ..MaximizeOptions::default()
        };
        let m = maximize(6, &neg_hartmann6, &opts, &[]).unwrap();
        assert!(
            (m.value - F_STAR).abs() < 1e-8,
            "value {} vs {F_STAR}",
            m.value
        );
        for (a, b) in m.x.iter().zip(X_STAR) {
            assert!((a - b).abs() < 1e-5, "{:?}", m.x);
        }
        assert!(m.value >= m.best_raw_value);
        let again = maximize(6, &neg_hartmann6, &opts, &[]).unwrap();
        assert_eq!(
            again.x.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            m.x.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        assert_eq!(again.evaluations, m.evaluations);
        // central differences get there too
        let central = MaximizeOptions {
            finite_difference: FiniteDifference::Central { step: 6e-6 },
            ..opts
        };
        let c = maximize(6, &neg_hartmann6, &central, &[]).unwrap();
        assert!((c.value - F_STAR).abs() < 1e-8);
        // and other seeds
        for seed in [1, 2, 3] {
            let m = maximize(6, &neg_hartmann6, &MaximizeOptions { seed, ..opts }, &[]).unwrap();
            assert!((m.value - F_STAR).abs() < 1e-6, "seed {seed}: {}", m.value);
        }
    }

    #[test]
    fn analytic_gradient_on_a_rotated_quadratic_with_active_bounds() {
        // f(x) = −Σ_i (Σ_j R_ij (x_j − c_j))² with R a rotation of the cube's axes and c
        // partly outside the cube: the maximiser sits on the bounds
        let theta: f64 = 0.4;
        let (s, c) = theta.sin_cos();
        let center = [0.3, 1.4, 0.5, -0.2, 0.8, 0.6];
        let r = |v: &[f64]| -> Vec<f64> {
            vec![
                c * v[0] - s * v[1],
                s * v[0] + c * v[1],
                v[2],
                v[3],
                c * v[4] - s * v[5],
                s * v[4] + c * v[5],
            ]
        };
        let f = |x: &[f64], g: &mut [f64]| {
            let d: Vec<f64> = x.iter().zip(center).map(|(a, b)| a - b).collect();
            let rd = r(&d);
            // gradient: −2 Rᵀ R d = −2 d (R orthogonal)
            for (gi, di) in g.iter_mut().zip(&d) {
                *gi = -2.0 * di;
            }
            -rd.iter().map(|v| v * v).sum::<f64>()
        };
        let m = maximize_with_gradient(6, &f, &MaximizeOptions::default(), &[]).unwrap();
        // RᵀR = I, so the problem separates: the maximiser is the clamp of the centre
        let want = [0.3, 1.0, 0.5, 0.0, 0.8, 0.6];
        for (a, b) in m.x.iter().zip(want) {
            assert!((a - b).abs() < 1e-9, "{:?}", m.x);
        }
        assert!((m.value + 0.4f64.powi(2) + 0.2f64.powi(2)).abs() < 1e-12);
    }

    #[test]
    fn minimize_box_reports_its_stop() {
        let mut f = |x: &[f64], g: &mut [f64]| {
            g[0] = 2.0 * (x[0] - 3.0);
            (x[0] - 3.0).powi(2)
        };
        let m = minimize_box(&mut f, &[0.0], &[0.0], &[1.0], &LbfgsbOptions::default()).unwrap();
        assert!((m.x[0] - 1.0).abs() < 1e-15);
        assert_eq!(m.stop, StopReason::ProjectedGradient);
        let mut nan = |_: &[f64], _: &mut [f64]| f64::NAN;
        let m = minimize_box(&mut nan, &[0.5], &[0.0], &[1.0], &LbfgsbOptions::default()).unwrap();
        assert_eq!(m.stop, StopReason::NonFiniteStart);
        assert!(minimize_box(&mut f, &[0.5], &[1.0], &[0.0], &LbfgsbOptions::default()).is_err());
        assert!(
            minimize_box(
                &mut f,
                &[0.5, 0.1],
                &[0.0],
                &[1.0],
                &LbfgsbOptions::default()
            )
            .is_err()
        );
    }

    #[test]
    fn multistart_edge_cases() {
        let never = |_: &[f64]| f64::NAN;
        assert!(matches!(
            maximize(2, &never, &MaximizeOptions::default(), &[]),
            Err(BedError::NoFiniteAcquisition { raw_samples: 512 })
        ));
        let bad = MaximizeOptions {
            raw_samples: 5,
            restarts: 10,
            ..MaximizeOptions::default()
        };
        assert!(maximize(2, &|_| 0.0, &bad, &[]).is_err());
        assert!(maximize(2, &|_| 0.0, &MaximizeOptions::default(), &[vec![2.0, 0.0]]).is_err());
        let m = maximize(0, &|_| 4.0, &MaximizeOptions::default(), &[]).unwrap();
        assert!(m.x.is_empty() && (m.value - 4.0).abs() < 1e-15);
        // an extra start at the optimum of a plateau-with-a-spike function is kept
        let spike = |x: &[f64]| {
            if (x[0] - 0.123_456).abs() < 1e-9 {
                1.0
            } else {
                0.0
            }
        };
        let m = maximize(1, &spike, &MaximizeOptions::default(), &[vec![0.123_456]]).unwrap();
        assert!((m.value - 1.0).abs() < 1e-15 && (m.x[0] - 0.123_456).abs() < 1e-15);
    }
}
