//! Acquisition optimisation: space-filling raw candidates, then the best few refined by a
//! bounded quasi-Newton method.
//!
//! # The minimiser
//! [`minimize_box`] is the workspace's one bounded quasi-Newton method,
//! [`perfusio_gp::optim::minimize`]: L-BFGS-B (Byrd, Lu, Nocedal & Zhu 1995, SIAM J. Sci.
//! Comput. 16(5):1190–1208, doi:10.1137/0916069) with the generalised Cauchy point, the
//! subspace step and a Moré–Thuente line search that never leaves the box; at the few
//! dimensions of a decision it keeps a dense self-scaling BFGS matrix. This module adapts
//! its options and stop reasons to the acquisition setting (`f64` closures, a non-finite
//! value at a trial point shortens the step).
//!
//! It stops when the projected gradient `‖P(x − ∇f) − x‖∞` falls below `pg_tol`
//! ([`StopReason::ProjectedGradient`]) or the relative decrease falls below `f_rel_tol`
//! ([`StopReason::RelativeDecrease`]) — the two converged stops — or, not converged, at the
//! iteration limit or when the line search finds no decrease. It is deterministic.
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
    /// Number of stored curvature pairs (default 10; problems of up to 200 variables keep
    /// a dense BFGS matrix instead).
    pub memory: usize,
    /// Iteration limit (default 200).
    pub max_iters: usize,
    /// Tolerance on the sup-norm of the projected gradient (default 1e-8).
    pub pg_tol: f64,
    /// Tolerance on the relative decrease `(f − f⁺)/max(|f|, |f⁺|, 1)` (default 1e-12).
    pub f_rel_tol: f64,
    /// Largest number of evaluations in one line search (default 20).
    pub max_line_search: usize,
}

impl Default for LbfgsbOptions {
    fn default() -> Self {
        Self {
            memory: 10,
            max_iters: 200,
            pg_tol: 1e-8,
            f_rel_tol: 1e-12,
            max_line_search: 20,
        }
    }
}

/// Why [`minimize_box`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum StopReason {
    /// The projected gradient is below `pg_tol` (a KKT point; converged).
    ProjectedGradient,
    /// The relative decrease fell below `f_rel_tol` (converged).
    RelativeDecrease,
    /// `max_iters` (or the evaluation budget) reached first: not converged.
    MaxIterations,
    /// No step along the search direction decreased the objective: not converged.
    LineSearch,
    /// The objective is not finite at the start.
    NonFiniteStart,
}

impl StopReason {
    /// `true` for the two tolerance stops.
    pub fn converged(self) -> bool {
        matches!(self, Self::ProjectedGradient | Self::RelativeDecrease)
    }

    /// Stable snake-case name: `projected_gradient`, `relative_decrease`,
    /// `max_iterations`, `line_search`, `non_finite_start`.
    pub fn name(self) -> &'static str {
        match self {
            Self::ProjectedGradient => "projected_gradient",
            Self::RelativeDecrease => "relative_decrease",
            Self::MaxIterations => "max_iterations",
            Self::LineSearch => "line_search",
            Self::NonFiniteStart => "non_finite_start",
        }
    }
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

/// Minimises `f` over the box `[lower, upper]` from `x0` (projected into the box) with
/// [`perfusio_gp::optim::minimize`].
///
/// `f(x, grad)` returns the objective and writes its gradient into `grad`; a non-finite
/// value at a trial point shortens the step; at the start it is reported as
/// [`StopReason::NonFiniteStart`].
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
/// assert!(m.stop.converged());
/// assert!((m.x[0] - 0.5).abs() < 1e-9 && (m.x[1] - 0.25).abs() < 1e-6);
/// ```
pub fn minimize_box(
    f: &mut dyn FnMut(&[f64], &mut [f64]) -> f64,
    x0: &[f64],
    lower: &[f64],
    upper: &[f64],
    opts: &LbfgsbOptions,
) -> Result<Minimum> {
    use perfusio_gp::optim::{self, OptimError, Termination};
    check_box(x0, lower, upper)?;
    let gp_opts = optim::LbfgsbOptions {
        memory: opts.memory.max(1),
        max_iters: opts.max_iters as u64,
        max_evals: (opts.max_iters.max(1) * opts.max_line_search.max(1)) as u64 + 1,
        grad_tol: opts.pg_tol,
        rel_cost_tol: opts.f_rel_tol,
        max_line_search: opts.max_line_search.max(1) as u64,
        ..optim::LbfgsbOptions::default()
    };
    let wrapped = |x: &[f64],
                   g: &mut [f64]|
     -> std::result::Result<f64, std::convert::Infallible> { Ok(f(x, g)) };
    match optim::minimize(wrapped, x0, lower, upper, &gp_opts) {
        Ok(m) => Ok(Minimum {
            stop: match m.termination {
                Termination::GradientTolerance | Termination::NoVariables => {
                    StopReason::ProjectedGradient
                }
                Termination::CostTolerance => StopReason::RelativeDecrease,
                Termination::LineSearchFailed => StopReason::LineSearch,
                _ => StopReason::MaxIterations,
            },
            x: m.x,
            value: m.value,
            iterations: m.iterations as usize,
            evaluations: m.evaluations as usize,
        }),
        Err(OptimError::NonFiniteStart) => {
            let x: Vec<f64> = x0
                .iter()
                .zip(lower.iter().zip(upper))
                .map(|(v, (l, u))| v.clamp(*l, *u))
                .collect();
            let mut g = vec![0.0; x.len()];
            let value = f(&x, &mut g);
            Ok(Minimum {
                x,
                value,
                iterations: 0,
                evaluations: 1,
                stop: StopReason::NonFiniteStart,
            })
        }
        Err(OptimError::InvalidProblem(reason)) => Err(BedError::InvalidParameter {
            name: "lbfgsb",
            reason,
        }),
        Err(e) => Err(BedError::InvalidParameter {
            name: "lbfgsb",
            reason: e.to_string(),
        }),
    }
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
