//! Adaptive explicit Runge–Kutta integration: Dormand–Prince 5(4) with PI step-size control.
//!
//! The method is the 7-stage, first-same-as-last (FSAL) pair of Dormand & Prince (1980),
//! *J. Comput. Appl. Math.* 6(1):19–26, doi:10.1016/0771-050X(80)90013-3, advancing with the
//! 5th-order solution and estimating the local error from the embedded 4th-order one. Step
//! control follows Hairer, Nørsett & Wanner, *Solving ODEs I* (2nd ed.), §II.4: the error is
//! the RMS of `e_i / (atol + rtol·max(|y0_i|, |y1_i|))`, the new step is
//! `h·min(10, max(0.2, err^{-α}·err_prev^{β} / 0.9))` with `α = 0.2 − 0.75β`, `β = 0.04`,
//! and no growth right after a rejected step.
//!
//! States are fixed-size arrays (`[f64; N]`), so a call allocates nothing. A right-hand side
//! with a switching surface (such as the lactate switch) goes through [`integrate_switched`],
//! which freezes the branch within each step and locates the crossing (see there); with
//! plain [`integrate`] a jump is crossed by step rejection only, which keeps the error
//! *estimate* below tolerance but can leave a true error ten times larger (tested).

use crate::error::{MechError, Result};

/// Settings of [`integrate`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dopri5Options {
    /// Relative tolerance.
    pub rtol: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Largest step allowed (same unit as `t`).
    pub h_max: f64,
    /// First trial step; `None` = estimated from the right-hand side (Hairer's `hinit`).
    pub h_init: Option<f64>,
    /// Largest number of step attempts (accepted + rejected) before giving up.
    pub max_steps: usize,
}

/// The plant model's settings: rtol 1e-6, atol 1e-9, at most 1 h per step.
pub const PLANT_ODE_OPTIONS: Dopri5Options = Dopri5Options {
    rtol: 1e-6,
    atol: 1e-9,
    h_max: 1.0,
    h_init: None,
    max_steps: 100_000,
};

impl Default for Dopri5Options {
    fn default() -> Self {
        PLANT_ODE_OPTIONS
    }
}

/// Work done by one [`integrate`] call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dopri5Stats {
    /// Accepted steps.
    pub accepted: usize,
    /// Rejected steps.
    pub rejected: usize,
    /// Right-hand-side evaluations.
    pub rhs_evals: usize,
}

// Dormand–Prince tableau.
const C2: f64 = 1.0 / 5.0;
const C3: f64 = 3.0 / 10.0;
const C4: f64 = 4.0 / 5.0;
const C5: f64 = 8.0 / 9.0;
const A21: f64 = 1.0 / 5.0;
const A31: f64 = 3.0 / 40.0;
const A32: f64 = 9.0 / 40.0;
const A41: f64 = 44.0 / 45.0;
const A42: f64 = -56.0 / 15.0;
const A43: f64 = 32.0 / 9.0;
const A51: f64 = 19372.0 / 6561.0;
const A52: f64 = -25360.0 / 2187.0;
const A53: f64 = 64448.0 / 6561.0;
const A54: f64 = -212.0 / 729.0;
const A61: f64 = 9017.0 / 3168.0;
const A62: f64 = -355.0 / 33.0;
const A63: f64 = 46732.0 / 5247.0;
const A64: f64 = 49.0 / 176.0;
const A65: f64 = -5103.0 / 18656.0;
const A71: f64 = 35.0 / 384.0;
const A73: f64 = 500.0 / 1113.0;
const A74: f64 = 125.0 / 192.0;
const A75: f64 = -2187.0 / 6784.0;
const A76: f64 = 11.0 / 84.0;
// Difference between the 5th- and 4th-order weights.
const E1: f64 = 71.0 / 57600.0;
const E3: f64 = -71.0 / 16695.0;
const E4: f64 = 71.0 / 1920.0;
const E5: f64 = -17253.0 / 339200.0;
const E6: f64 = 22.0 / 525.0;
const E7: f64 = -1.0 / 40.0;

/// Safety factor of the step-size controller.
const SAFETY: f64 = 0.9;
/// Smallest step-size ratio.
const FAC_MIN: f64 = 0.2;
/// Largest step-size ratio.
const FAC_MAX: f64 = 10.0;
/// PI-controller memory exponent (Hairer's DOPRI5 default).
const BETA: f64 = 0.04;

/// One Dormand–Prince step of size `h` from `(t, y)` with `k1 = f(t, y)`.
/// Writes the 5th-order solution to `y_new`, `f(t+h, y_new)` to `k7`, the error vector
/// (already multiplied by `h`) to `err`.
#[allow(clippy::too_many_arguments)]
fn dp_step<const N: usize, F>(
    f: &mut F,
    t: f64,
    y: &[f64; N],
    k1: &[f64; N],
    h: f64,
    y_new: &mut [f64; N],
    k7: &mut [f64; N],
    err: &mut [f64; N],
) where
    F: FnMut(f64, &[f64; N], &mut [f64; N]),
{
    let mut k2 = [0.0; N];
    let mut k3 = [0.0; N];
    let mut k4 = [0.0; N];
    let mut k5 = [0.0; N];
    let mut k6 = [0.0; N];
    let mut s = [0.0; N];
    for i in 0..N {
        s[i] = y[i] + h * A21 * k1[i];
    }
    f(t + C2 * h, &s, &mut k2);
    for i in 0..N {
        s[i] = y[i] + h * (A31 * k1[i] + A32 * k2[i]);
    }
    f(t + C3 * h, &s, &mut k3);
    for i in 0..N {
        s[i] = y[i] + h * (A41 * k1[i] + A42 * k2[i] + A43 * k3[i]);
    }
    f(t + C4 * h, &s, &mut k4);
    for i in 0..N {
        s[i] = y[i] + h * (A51 * k1[i] + A52 * k2[i] + A53 * k3[i] + A54 * k4[i]);
    }
    f(t + C5 * h, &s, &mut k5);
    for i in 0..N {
        s[i] = y[i] + h * (A61 * k1[i] + A62 * k2[i] + A63 * k3[i] + A64 * k4[i] + A65 * k5[i]);
    }
    f(t + h, &s, &mut k6);
    for i in 0..N {
        y_new[i] = y[i] + h * (A71 * k1[i] + A73 * k3[i] + A74 * k4[i] + A75 * k5[i] + A76 * k6[i]);
    }
    f(t + h, y_new, k7);
    for i in 0..N {
        err[i] = h * (E1 * k1[i] + E3 * k3[i] + E4 * k4[i] + E5 * k5[i] + E6 * k6[i] + E7 * k7[i]);
    }
}

/// The error control's tolerances of one call: a relative one and an absolute one per
/// component.
#[derive(Debug, Clone, Copy)]
struct Tolerances<const N: usize> {
    rtol: f64,
    atol: [f64; N],
}

fn error_norm<const N: usize>(
    err: &[f64; N],
    y0: &[f64; N],
    y1: &[f64; N],
    tol: &Tolerances<N>,
) -> f64 {
    let mut acc = 0.0;
    for i in 0..N {
        let sc = tol.atol[i] + tol.rtol * y0[i].abs().max(y1[i].abs());
        let r = err[i] / sc;
        acc += r * r;
    }
    (acc / N as f64).sqrt()
}

/// Hairer's starting-step heuristic (one extra right-hand-side evaluation).
fn initial_step<const N: usize, F>(
    f: &mut F,
    t: f64,
    y: &[f64; N],
    k1: &[f64; N],
    tol: &Tolerances<N>,
    h_max: f64,
    span: f64,
) -> f64
where
    F: FnMut(f64, &[f64; N], &mut [f64; N]),
{
    let (mut d0, mut d1) = (0.0, 0.0);
    for i in 0..N {
        let sc = tol.atol[i] + tol.rtol * y[i].abs();
        d0 += (y[i] / sc).powi(2);
        d1 += (k1[i] / sc).powi(2);
    }
    let n = N as f64;
    let (d0, d1) = ((d0 / n).sqrt(), (d1 / n).sqrt());
    let mut h0 = if d0 < 1e-5 || d1 < 1e-5 {
        1e-6
    } else {
        0.01 * d0 / d1
    };
    h0 = h0.min(h_max).min(span);
    let mut y1 = [0.0; N];
    for i in 0..N {
        y1[i] = y[i] + h0 * k1[i];
    }
    let mut k2 = [0.0; N];
    f(t + h0, &y1, &mut k2);
    let mut d2 = 0.0;
    for i in 0..N {
        let sc = tol.atol[i] + tol.rtol * y[i].abs();
        d2 += ((k2[i] - k1[i]) / sc).powi(2);
    }
    let d2 = (d2 / n).sqrt() / h0;
    let h1 = if d1.max(d2) <= 1e-15 {
        (h0 * 1e-3).max(1e-6)
    } else {
        (0.01 / d1.max(d2)).powf(1.0 / 5.0)
    };
    (100.0 * h0).min(h1).min(h_max).min(span)
}

/// Integrates `dy/dt = f(t, y)` from `t0` to `t1` (`t1 >= t0`) with adaptive Dormand–Prince
/// 5(4) and returns `y(t1)` with the work statistics. Allocates nothing.
///
/// ```
/// use perfusio_mechanistic::ode::{integrate, Dopri5Options};
/// // y' = -y, y(0) = 1  =>  y(5) = e^-5
/// let (y, stats) = integrate(|_t, y: &[f64; 1], dy: &mut [f64; 1]| dy[0] = -y[0],
///                            0.0, [1.0], 5.0, &Dopri5Options::default()).unwrap();
/// assert!((y[0] - (-5.0f64).exp()).abs() < 1e-8);
/// assert!(stats.accepted >= 5); // at most 1 per step
/// ```
pub fn integrate<const N: usize, F>(
    mut f: F,
    t0: f64,
    y0: [f64; N],
    t1: f64,
    opts: &Dopri5Options,
) -> Result<([f64; N], Dopri5Stats)>
where
    F: FnMut(f64, &[f64; N], &mut [f64; N]),
{
    integrate_switched(
        |t, y: &[f64; N], _below: bool, dy: &mut [f64; N]| f(t, y, dy),
        |_: &[f64; N]| 1.0,
        t0,
        y0,
        t1,
        opts,
    )
}

/// Cubic Hermite interpolant of a step at `theta` in [0, 1].
fn hermite<const N: usize>(
    y0: &[f64; N],
    k0: &[f64; N],
    y1: &[f64; N],
    k1: &[f64; N],
    h: f64,
    theta: f64,
    out: &mut [f64; N],
) {
    let (t2, t3) = (theta * theta, theta * theta * theta);
    let h00 = 2.0 * t3 - 3.0 * t2 + 1.0;
    let h10 = t3 - 2.0 * t2 + theta;
    let h01 = -2.0 * t3 + 3.0 * t2;
    let h11 = t3 - t2;
    for i in 0..N {
        out[i] = h00 * y0[i] + h10 * h * k0[i] + h01 * y1[i] + h11 * h * k1[i];
    }
}

/// Steps shorter than this (in units of `t`) are not taken to reach a switch: the branch is
/// flipped in place instead.
const MIN_SWITCH_STEP: f64 = 1e-10;
/// Bisection iterations on the interpolant to locate a switch inside a step.
const SWITCH_BISECTIONS: usize = 60;
/// ln 1e-4: the floor of the previous step's error in the PI step-size controller.
const LN_ERR_FLOOR: f64 = -9.210_340_371_976_182;

/// Adaptive Dormand–Prince 5(4) for a right-hand side with a switching surface.
///
/// `f(t, y, below, dy)` evaluates the branch `below` (`true`: the branch that applies where
/// `g(y) < 0`), and `g` is a continuous switch function. Each step is taken with the branch
/// frozen at the one valid at its start, so the integrated field is smooth within a step and
/// the error estimate stays valid. When an accepted step ends on the other side of the
/// surface, the crossing is located on the step's cubic Hermite interpolant by bisection,
/// the step is redone up to the crossing, and the branch is flipped there. This keeps the
/// 5th-order accuracy across the discontinuity (plain step rejection only controls the
/// error estimate, which is not reliable for a step that straddles a jump).
///
/// Sliding along the surface (both branches pointing into it) is not integrated: repeated
/// flips count as rejected attempts and the call ends with [`MechError::Integration`] once
/// `max_steps` is reached. The plant model's lactate switch never slides, because lactate
/// does not act on glucose.
pub fn integrate_switched<const N: usize, F, G>(
    f: F,
    g: G,
    t0: f64,
    y0: [f64; N],
    t1: f64,
    opts: &Dopri5Options,
) -> Result<([f64; N], Dopri5Stats)>
where
    F: FnMut(f64, &[f64; N], bool, &mut [f64; N]),
    G: Fn(&[f64; N]) -> f64,
{
    integrate_switched_with_atol(f, g, t0, y0, t1, opts, &[opts.atol; N])
}

/// [`integrate_switched`] with an absolute tolerance per component (`opts.atol` is not
/// used): the local error of component `i` is measured against `atol[i] + rtol·|y_i|`, so
/// each component is resolved to its own meaningful scale. A component decaying towards zero
/// is otherwise followed down to the global `atol`: the plant's lactate, consumed at up to
/// `r·X/K_lac ≈ 30 h⁻¹` near exhaustion, then costs dozens of steps that resolve
/// concentrations far below anything measured.
///
/// Errors: as [`integrate_switched`], and for an `atol` entry that is not finite and
/// positive.
///
/// ```
/// use perfusio_mechanistic::ode::{integrate_switched_with_atol, Dopri5Options};
/// // a fast decay to zero next to a slow one: only the slow component needs 1e-9
/// let f = |_t, y: &[f64; 2], _below: bool, dy: &mut [f64; 2]| {
///     dy[0] = -30.0 * y[0];
///     dy[1] = -0.1 * y[1];
/// };
/// let opts = Dopri5Options { h_max: 24.0, ..Dopri5Options::default() };
/// let tight = integrate_switched_with_atol(f, |_| 1.0, 0.0, [1.0, 1.0], 24.0, &opts, &[1e-9, 1e-9]);
/// let loose = integrate_switched_with_atol(f, |_| 1.0, 0.0, [1.0, 1.0], 24.0, &opts, &[1e-5, 1e-9]);
/// let ((yt, st), (yl, sl)) = (tight.unwrap(), loose.unwrap());
/// assert!((yl[1] - (-2.4f64).exp()).abs() < 1e-6);
/// assert!(yl[0].abs() < 1e-5 && yt[0].abs() < 1e-9);
/// assert!(sl.accepted < st.accepted);
/// ```
pub fn integrate_switched_with_atol<const N: usize, F, G>(
    mut f: F,
    g: G,
    t0: f64,
    y0: [f64; N],
    t1: f64,
    opts: &Dopri5Options,
    atol: &[f64; N],
) -> Result<([f64; N], Dopri5Stats)>
where
    F: FnMut(f64, &[f64; N], bool, &mut [f64; N]),
    G: Fn(&[f64; N]) -> f64,
{
    let fail = |t: f64, h: f64, reason: &str| MechError::Integration {
        t,
        h,
        reason: reason.to_string(),
    };
    if !(t0.is_finite() && t1.is_finite()) || t1 < t0 {
        return Err(MechError::arg(
            "interval",
            format!("[{t0}, {t1}]"),
            "need finite t0 <= t1",
        ));
    }
    if !(opts.rtol > 0.0 && opts.h_max > 0.0 && atol.iter().all(|a| a.is_finite() && *a > 0.0)) {
        return Err(MechError::arg(
            "tolerances",
            format!("rtol {} atol {atol:?} h_max {}", opts.rtol, opts.h_max),
            "rtol, every atol and h_max must be positive",
        ));
    }
    let tol = Tolerances {
        rtol: opts.rtol,
        atol: *atol,
    };
    let mut stats = Dopri5Stats::default();
    let mut y = y0;
    if t1 - t0 <= 0.0 {
        return Ok((y, stats));
    }
    let mut t = t0;
    let mut below = g(&y) < 0.0;
    let mut k1 = [0.0; N];
    f(t, &y, below, &mut k1);
    stats.rhs_evals += 1;
    if k1.iter().chain(y.iter()).any(|v| !v.is_finite()) {
        return Err(fail(
            t,
            0.0,
            "the initial state or its derivative is not finite",
        ));
    }
    let mut h = match opts.h_init {
        Some(h) if h > 0.0 => h.min(opts.h_max),
        _ => {
            stats.rhs_evals += 1;
            let mut fm = |t: f64, y: &[f64; N], dy: &mut [f64; N]| f(t, y, below, dy);
            initial_step(&mut fm, t, &y, &k1, &tol, opts.h_max, t1 - t0)
        }
    };
    // ln of the previous accepted step's error (floored at 1e-4), for the PI controller
    let mut ln_err_prev: f64 = LN_ERR_FLOOR;
    let mut rejected_last = false;
    let mut y_new = [0.0; N];
    let mut k7 = [0.0; N];
    let mut err = [0.0; N];
    let mut probe = [0.0; N];
    let expo = 0.2 - BETA * 0.75;
    // set when the current trial step was shortened to end on the switching surface
    let mut to_switch = false;
    loop {
        if stats.accepted + stats.rejected >= opts.max_steps {
            return Err(fail(t, h, "too many steps (the problem may be stiff)"));
        }
        let remaining = t1 - t;
        let last = h >= remaining * (1.0 - 1e-12);
        if last {
            h = remaining;
            to_switch = false;
        }
        if h <= 16.0 * f64::EPSILON * t.abs().max(1.0) {
            return Err(fail(t, h, "step size underflow"));
        }
        {
            let mut fm = |t: f64, y: &[f64; N], dy: &mut [f64; N]| f(t, y, below, dy);
            dp_step(&mut fm, t, &y, &k1, h, &mut y_new, &mut k7, &mut err);
        }
        stats.rhs_evals += 6;
        let e = error_norm(&err, &y, &y_new, &tol);
        if !e.is_finite() {
            stats.rejected += 1;
            rejected_last = true;
            to_switch = false;
            h *= FAC_MIN;
            continue;
        }
        // e^expo as exp(expo · ln e): the PI controller's two powers cost one logarithm and
        // one or two exponentials per step
        let ln_e = e.ln();
        let fac11 = (expo * ln_e).exp();
        if e > 1.0 {
            stats.rejected += 1;
            rejected_last = true;
            to_switch = false;
            h /= (fac11 / SAFETY).min(1.0 / FAC_MIN);
            continue;
        }
        let crossed = (g(&y_new) < 0.0) != below;
        if crossed && !to_switch {
            // locate the first crossing on the interpolant, then redo the step up to it
            let (mut lo, mut hi) = (0.0, 1.0);
            for _ in 0..SWITCH_BISECTIONS {
                let mid = 0.5 * (lo + hi);
                hermite(&y, &k1, &y_new, &k7, h, mid, &mut probe);
                if (g(&probe) < 0.0) != below {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
            let h_switch = hi * h;
            if h_switch > MIN_SWITCH_STEP {
                h = h_switch;
                to_switch = true;
                continue;
            }
            // the switch is at the start of the step: flip the branch in place (counted as a
            // rejected attempt so that chattering on the surface stays bounded by max_steps)
            stats.rejected += 1;
            below = !below;
            f(t, &y, below, &mut k1);
            stats.rhs_evals += 1;
            continue;
        }
        // accept
        stats.accepted += 1;
        let mut fac = (expo * ln_e - BETA * ln_err_prev).exp();
        fac = (fac / SAFETY).clamp(1.0 / FAC_MAX, 1.0 / FAC_MIN);
        let mut h_new = h / fac;
        ln_err_prev = ln_e.max(LN_ERR_FLOOR);
        if rejected_last {
            h_new = h_new.min(h);
        }
        rejected_last = false;
        t = if last { t1 } else { t + h };
        y = y_new;
        if last {
            return Ok((y, stats));
        }
        if to_switch {
            // the step ended on the surface: continue on the other branch
            to_switch = false;
            below = !below;
            f(t, &y, below, &mut k1);
            stats.rhs_evals += 1;
        } else {
            k1 = k7; // FSAL
        }
        h = h_new.min(opts.h_max);
    }
}

/// Fixed-step Dormand–Prince (5th-order solution) with `n` equal steps; used to check the
/// convergence order. Returns `y(t1)` and the sum of the embedded error estimates.
pub fn integrate_fixed<const N: usize, F>(
    mut f: F,
    t0: f64,
    y0: [f64; N],
    t1: f64,
    n: usize,
) -> ([f64; N], [f64; N])
where
    F: FnMut(f64, &[f64; N], &mut [f64; N]),
{
    let n = n.max(1);
    let h = (t1 - t0) / n as f64;
    let mut y = y0;
    let mut k1 = [0.0; N];
    f(t0, &y, &mut k1);
    let mut y_new = [0.0; N];
    let mut k7 = [0.0; N];
    let mut err = [0.0; N];
    let mut err_sum = [0.0; N];
    for step in 0..n {
        let t = t0 + step as f64 * h;
        dp_step(&mut f, t, &y, &k1, h, &mut y_new, &mut k7, &mut err);
        for i in 0..N {
            err_sum[i] += err[i];
        }
        y = y_new;
        k1 = k7;
    }
    (y, err_sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    fn logistic(t: f64) -> f64 {
        // y' = r y (1 - y/K), y(0) = y0
        let (r, k, y0) = (0.8, 10.0, 0.1);
        k / (1.0 + (k / y0 - 1.0) * (-r * t).exp())
    }

    #[test]
    fn exponential_decay_matches_closed_form() {
        for lambda in [0.1, 1.0, 5.0] {
            let (y, _) = integrate(
                |_, y: &[f64; 1], dy: &mut [f64; 1]| dy[0] = -lambda * y[0],
                0.0,
                [2.0],
                3.0,
                &PLANT_ODE_OPTIONS,
            )
            .unwrap();
            let exact = 2.0 * (-lambda * 3.0f64).exp();
            assert_relative_eq!(y[0], exact, max_relative = 1e-6, epsilon = 1e-9);
        }
    }

    #[test]
    fn logistic_matches_closed_form_to_1e6() {
        let opts = Dopri5Options {
            h_max: 100.0,
            ..PLANT_ODE_OPTIONS
        };
        let (y, stats) = integrate(
            |_, y: &[f64; 1], dy: &mut [f64; 1]| dy[0] = 0.8 * y[0] * (1.0 - y[0] / 10.0),
            0.0,
            [0.1],
            15.0,
            &opts,
        )
        .unwrap();
        assert_relative_eq!(y[0], logistic(15.0), max_relative = 1e-6);
        assert_eq!(stats.rhs_evals, 2 + 6 * (stats.accepted + stats.rejected));
    }

    #[test]
    fn harmonic_oscillator_system_and_max_step() {
        // y'' = -y  =>  (cos t, -sin t); max step 1 forces >= 10 steps on [0, 10]
        let (y, stats) = integrate(
            |_, y: &[f64; 2], dy: &mut [f64; 2]| {
                dy[0] = y[1];
                dy[1] = -y[0];
            },
            0.0,
            [1.0, 0.0],
            10.0,
            &PLANT_ODE_OPTIONS,
        )
        .unwrap();
        assert!((y[0] - 10.0f64.cos()).abs() < 1e-6);
        assert!((y[1] + 10.0f64.sin()).abs() < 1e-6);
        assert!(stats.accepted >= 10);
    }

    #[test]
    fn fixed_step_convergence_order_is_five() {
        let f = |_: f64, y: &[f64; 1], dy: &mut [f64; 1]| dy[0] = 0.8 * y[0] * (1.0 - y[0] / 10.0);
        let exact = logistic(4.0);
        let e1 = (integrate_fixed(f, 0.0, [0.1], 4.0, 8).0[0] - exact).abs();
        let e2 = (integrate_fixed(f, 0.0, [0.1], 4.0, 16).0[0] - exact).abs();
        let e3 = (integrate_fixed(f, 0.0, [0.1], 4.0, 32).0[0] - exact).abs();
        let p12 = (e1 / e2).log2();
        let p23 = (e2 / e3).log2();
        assert!((4.5..=5.7).contains(&p12), "order {p12} ({e1:e} -> {e2:e})");
        assert!((4.5..=5.7).contains(&p23), "order {p23} ({e2:e} -> {e3:e})");
    }

    #[test]
    fn embedded_error_estimate_is_fourth_order_locally() {
        // the local error estimate of one step scales as h^5
        let f = |_: f64, y: &[f64; 1], dy: &mut [f64; 1]| dy[0] = (y[0]).sin() + 1.0;
        let e_h = integrate_fixed(f, 0.0, [0.3], 0.2, 1).1[0].abs();
        let e_h2 = integrate_fixed(f, 0.0, [0.3], 0.1, 1).1[0].abs();
        let p = (e_h / e_h2).log2();
        assert!((4.6..=5.4).contains(&p), "local order {p}");
    }

    #[test]
    fn tighter_tolerance_gives_smaller_error() {
        let f = |_: f64, y: &[f64; 1], dy: &mut [f64; 1]| dy[0] = 0.8 * y[0] * (1.0 - y[0] / 10.0);
        let run = |rtol: f64| {
            let o = Dopri5Options {
                rtol,
                atol: rtol * 1e-3,
                h_max: 100.0,
                ..PLANT_ODE_OPTIONS
            };
            (integrate(f, 0.0, [0.1], 10.0, &o).unwrap().0[0] - logistic(10.0)).abs()
        };
        let (loose, tight) = (run(1e-4), run(1e-9));
        assert!(tight < loose / 100.0, "{loose:e} vs {tight:e}");
        assert!(tight < 1e-8);
    }

    #[test]
    fn discontinuous_rhs_is_crossed_accurately() {
        // y' = 1 while y < 1, then 0.25: exact y(3) = 1 + 0.25 * 2 = 1.5
        let f = |_: f64, y: &[f64; 1], dy: &mut [f64; 1]| {
            dy[0] = if y[0] < 1.0 { 1.0 } else { 0.25 };
        };
        let (y, stats) = integrate(f, 0.0, [0.0], 3.0, &PLANT_ODE_OPTIONS).unwrap();
        // rejection alone only gets within ~1e-5 (the estimate is unreliable across a jump)
        assert_relative_eq!(y[0], 1.5, max_relative = 1e-4);
        assert!(stats.rejected > 0, "the jump must be resolved by rejection");
        assert!(stats.accepted < 200, "{stats:?}");
    }

    #[test]
    fn located_switch_is_accurate_to_tolerance() {
        // same problem with the switch function declared: 5th-order accuracy across the jump
        let f = |_: f64, _y: &[f64; 1], below: bool, dy: &mut [f64; 1]| {
            dy[0] = if below { 1.0 } else { 0.25 };
        };
        let (y, stats) = integrate_switched(
            f,
            |y: &[f64; 1]| y[0] - 1.0,
            0.0,
            [0.0],
            3.0,
            &PLANT_ODE_OPTIONS,
        )
        .unwrap();
        assert_relative_eq!(y[0], 1.5, max_relative = 1e-9);
        assert!(stats.accepted <= 8, "{stats:?}");
        // a smooth nonlinear field on each side: y' = -y below 0.5 ... use exponential decay
        // that switches rate at y = 0.5: y' = -y above, -2y below; exact: crossing at ln 2
        let f2 = |_: f64, y: &[f64; 1], below: bool, dy: &mut [f64; 1]| {
            dy[0] = if below { -2.0 * y[0] } else { -y[0] };
        };
        let (y, _) = integrate_switched(
            f2,
            |y: &[f64; 1]| y[0] - 0.5,
            0.0,
            [1.0],
            2.0,
            &PLANT_ODE_OPTIONS,
        )
        .unwrap();
        let exact = 0.5 * (-2.0 * (2.0 - 2f64.ln())).exp();
        assert_relative_eq!(y[0], exact, max_relative = 1e-6);
    }

    #[test]
    fn chattering_on_the_surface_is_bounded() {
        // y' = -1 above 0 and +1 below: the solution slides on y = 0 after t = 1
        let f = |_: f64, _y: &[f64; 1], below: bool, dy: &mut [f64; 1]| {
            dy[0] = if below { 1.0 } else { -1.0 };
        };
        let opts = Dopri5Options {
            max_steps: 5_000,
            ..PLANT_ODE_OPTIONS
        };
        // sliding modes are not integrated: the call stops with an error instead of looping
        let e = integrate_switched(f, |y: &[f64; 1]| y[0], 0.0, [1.0], 3.0, &opts).unwrap_err();
        assert!(e.to_string().contains("too many steps"), "{e}");
    }

    #[test]
    fn the_error_floor_is_ln_1e_minus_4() {
        assert_eq!(LN_ERR_FLOOR.to_bits(), 1e-4f64.ln().to_bits());
    }

    #[test]
    fn per_component_tolerances_are_checked_and_uniform_ones_are_the_scalar_tolerance() {
        let f = |_: f64, y: &[f64; 2], _: bool, dy: &mut [f64; 2]| {
            dy[0] = -3.0 * y[0];
            dy[1] = 0.8 * y[1] * (1.0 - y[1] / 10.0);
        };
        let g = |_: &[f64; 2]| 1.0;
        let o = PLANT_ODE_OPTIONS;
        let a = integrate_switched(f, g, 0.0, [1.0, 0.1], 5.0, &o).unwrap();
        let b = integrate_switched_with_atol(f, g, 0.0, [1.0, 0.1], 5.0, &o, &[o.atol; 2]).unwrap();
        assert_eq!(a.0.map(f64::to_bits), b.0.map(f64::to_bits));
        assert_eq!(a.1, b.1);
        for bad in [
            [1e-9, 0.0],
            [f64::NAN, 1e-9],
            [1e-9, -1.0],
            [f64::INFINITY, 1e-9],
        ] {
            let e = integrate_switched_with_atol(f, g, 0.0, [1.0, 0.1], 5.0, &o, &bad).unwrap_err();
            assert!(e.to_string().contains("every atol"), "{e}");
        }
    }

    #[test]
    fn invalid_input_is_an_error_not_a_panic() {
        let f = |_: f64, y: &[f64; 1], dy: &mut [f64; 1]| dy[0] = y[0];
        assert!(integrate(f, 1.0, [1.0], 0.0, &PLANT_ODE_OPTIONS).is_err());
        assert!(integrate(f, 0.0, [f64::NAN], 1.0, &PLANT_ODE_OPTIONS).is_err());
        let blow_up = |_: f64, y: &[f64; 1], dy: &mut [f64; 1]| dy[0] = y[0] * y[0];
        // y' = y^2, y(0) = 1 blows up at t = 1
        let e = integrate(blow_up, 0.0, [1.0], 2.0, &PLANT_ODE_OPTIONS).unwrap_err();
        assert!(matches!(e, MechError::Integration { .. }), "{e}");
        let (y, s) = integrate(f, 0.0, [1.0], 0.0, &PLANT_ODE_OPTIONS).unwrap();
        assert_relative_eq!(y[0], 1.0);
        assert_eq!(s.accepted, 0);
    }
}
