//! Analytic acquisitions of a Gaussian predictive distribution `N(μ, σ²)` of the objective
//! under one candidate, against an incumbent `best` (maximisation), with their gradients
//! with respect to `(μ, σ)`.
//!
//! With `z = (μ − best)/σ`, `φ` and `Φ` the standard normal density and distribution:
//!
//! | acquisition | value | `∂/∂μ` | `∂/∂σ` |
//! |---|---|---|---|
//! | PI | `Φ(z)` | `φ(z)/σ` | `−z φ(z)/σ` |
//! | log PI | `ln Φ(z)` | `φ(z)/(σ Φ(z))` | `−z φ(z)/(σ Φ(z))` |
//! | EI | `σ h(z)`, `h(z) = φ(z) + z Φ(z)` | `Φ(z)` | `φ(z)` |
//! | LogEI | `ln σ + ln h(z)` | `Φ(z)/(σ h(z))` | `φ(z)/(σ h(z))` |
//! | UCB | `μ + √β σ` | `1` | `√β` |
//!
//! EI: Jones, Schonlau & Welch (1998), J. Global Optim. 13:455–492,
//! doi:10.1023/A:1008306431147. LogEI: Ament, Daulton, Eriksson, Balandat & Bakshy (2023),
//! "Unexpected improvements to expected improvement for Bayesian optimization", NeurIPS,
//! arXiv:2310.20708: `ln h` is evaluated by [`special::log_h`](crate::special::log_h), finite
//! and strictly increasing far beyond the underflow of EI (`z ≈ −38`). UCB: Srinivas et al.
//! (2010), ICML, arXiv:0912.3995 (β as in BoTorch: the bonus is `√β·σ`).
//!
//! **σ → 0.** When `σ = 0` (or `z` overflows) the limits are returned: EI = `max(μ − best, 0)`,
//! PI = `1{μ > best}` (½ at equality), LogEI = `ln(μ − best)` or `−∞` with infinite
//! gradient when no improvement is possible.
//!
//! **Constraints.** With outcome constraints modelled as independent Gaussians
//! ([`GaussianConstraint`]), constrained EI is `EI × P(feasible)` (Gardner et al. 2014,
//! ICML; Schonlau, Welch & Jones 1998), and its log form `LogEI + ln P(feasible)` stays finite
//! when `P(feasible)` underflows.

use perfusio_core::Acquisition;
use serde::{Deserialize, Serialize};

use crate::error::{BedError, Result};
use crate::special::{
    h, log_h_with_ratios, log_norm_cdf, log1mexp, mills_ratio, norm_cdf, norm_pdf,
};

/// Gaussian predictive distribution `N(mean, sd²)` of the objective under one candidate.
///
/// ```
/// use perfusio_bed::analytic::Predictive;
/// let p = Predictive::new(1.0, 0.5).unwrap();
/// assert!((p.sd() - 0.5).abs() < 1e-15);
/// assert!(Predictive::new(1.0, -0.1).is_err());
/// // a variance that is negative by round-off is clamped to zero
/// assert!((Predictive::from_variance(1.0, -1e-18).unwrap().sd()).abs() < 1e-300);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Predictive {
    mean: f64,
    sd: f64,
}

/// Variances down to `−VARIANCE_ROUNDOFF · max(1, mean²)` are treated as round-off and
/// clamped to zero by [`Predictive::from_variance`].
pub const VARIANCE_ROUNDOFF: f64 = 1e-12;

impl Predictive {
    /// A predictive distribution; `mean` must be finite and `sd` finite and `≥ 0`.
    pub fn new(mean: f64, sd: f64) -> Result<Self> {
        if !mean.is_finite() {
            return Err(BedError::NonFinite {
                what: "predictive mean",
                value: mean,
            });
        }
        if !(sd.is_finite() && sd >= 0.0) {
            return Err(BedError::InvalidParameter {
                name: "sd",
                reason: format!(
                    "the predictive standard deviation must be finite and >= 0, got {sd}"
                ),
            });
        }
        Ok(Self { mean, sd })
    }

    /// From a mean and a variance; negative variances within
    /// [`VARIANCE_ROUNDOFF`]` · max(1, mean²)` are clamped to zero, larger ones are errors.
    pub fn from_variance(mean: f64, variance: f64) -> Result<Self> {
        let tol = VARIANCE_ROUNDOFF * mean.abs().powi(2).max(1.0);
        if variance < 0.0 && variance >= -tol {
            return Self::new(mean, 0.0);
        }
        if variance.is_nan() || variance < 0.0 {
            return Err(BedError::InvalidParameter {
                name: "variance",
                reason: format!("the predictive variance must be >= 0, got {variance}"),
            });
        }
        Self::new(mean, variance.sqrt())
    }

    /// Predictive mean `μ`.
    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// Predictive standard deviation `σ`.
    pub fn sd(&self) -> f64 {
        self.sd
    }

    /// Standardised improvement `z = (μ − best)/σ`; `None` when `σ = 0` or `z` overflows.
    pub fn z(&self, best: f64) -> Option<f64> {
        let z = (self.mean - best) / self.sd;
        z.is_finite().then_some(z)
    }
}

/// An acquisition value and its partial derivatives with respect to the predictive mean and
/// standard deviation (chain them with `∂μ/∂x`, `∂σ/∂x` for a gradient in the controls).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ValueGrad {
    /// The acquisition value.
    pub value: f64,
    /// `∂ value / ∂μ`.
    pub d_mean: f64,
    /// `∂ value / ∂σ`.
    pub d_sd: f64,
}

impl ValueGrad {
    const fn new(value: f64, d_mean: f64, d_sd: f64) -> Self {
        Self {
            value,
            d_mean,
            d_sd,
        }
    }
}

/// Probability of improvement `PI = P(Y > best) = Φ(z)` (Kushner 1964,
/// doi:10.1115/1.3653121).
///
/// ```
/// use perfusio_bed::analytic::{Predictive, probability_of_improvement};
/// let pi = probability_of_improvement(Predictive::new(1.0, 1.0).unwrap(), 0.0);
/// assert!((pi.value - 0.841_344_746_068_543).abs() < 1e-15);
/// ```
pub fn probability_of_improvement(pred: Predictive, best: f64) -> ValueGrad {
    let Some(z) = pred.z(best) else {
        let d = pred.mean - best;
        let v = if d > 0.0 {
            1.0
        } else if d < 0.0 {
            0.0
        } else {
            0.5
        };
        return ValueGrad::new(v, 0.0, 0.0);
    };
    let pdf = norm_pdf(z);
    ValueGrad::new(norm_cdf(z), pdf / pred.sd, -z * pdf / pred.sd)
}

/// `ln PI = ln Φ(z)`, finite where PI underflows (`z < −38`).
pub fn log_probability_of_improvement(pred: Predictive, best: f64) -> ValueGrad {
    let Some(z) = pred.z(best) else {
        let d = pred.mean - best;
        return if d > 0.0 {
            ValueGrad::new(0.0, 0.0, 0.0)
        } else if d < 0.0 {
            ValueGrad::new(f64::NEG_INFINITY, f64::INFINITY, f64::INFINITY)
        } else {
            ValueGrad::new(-std::f64::consts::LN_2, f64::INFINITY, 0.0)
        };
    };
    // φ(z)/Φ(z) = 1/R(−z) with the Mills ratio R, stable in both tails.
    let ratio = 1.0 / mills_ratio(-z);
    ValueGrad::new(log_norm_cdf(z), ratio / pred.sd, -z * ratio / pred.sd)
}

/// Expected improvement `EI = E[max(Y − best, 0)] = σ (z Φ(z) + φ(z))`.
///
/// Evaluated as `σ·h(z)` with the tail-stable [`special::h`](crate::special::h), accurate in relative
/// terms down to the underflow of `φ` (plain `zΦ + φ` loses `log₁₀ z²` digits).
///
/// ```
/// use perfusio_bed::analytic::{Predictive, expected_improvement};
/// let ei = expected_improvement(Predictive::new(0.0, 1.0).unwrap(), 0.0);
/// assert!((ei.value - 0.398_942_280_401_432_7).abs() < 1e-15); // 1/√(2π)
/// assert!((ei.d_mean - 0.5).abs() < 1e-15);
/// ```
pub fn expected_improvement(pred: Predictive, best: f64) -> ValueGrad {
    let Some(z) = pred.z(best) else {
        let d = pred.mean - best;
        return if d > 0.0 {
            ValueGrad::new(d, 1.0, 0.0)
        } else if d < 0.0 {
            ValueGrad::new(0.0, 0.0, 0.0)
        } else {
            ValueGrad::new(0.0, 0.5, norm_pdf(0.0))
        };
    };
    if z > NO_TAIL_ABOVE {
        // h(z) = z (1 + O(φ(z)/z³)): the improvement is certain, EI = μ − best exactly
        return ValueGrad::new(pred.mean - best, 1.0, norm_pdf(z));
    }
    ValueGrad::new(pred.sd * h(z), norm_cdf(z), norm_pdf(z))
}

/// Above this standardised improvement `h(z) = z` to far below double precision
/// (relative correction `< φ(40)/40³ ≈ 1e-353`), so EI is `μ − best` and LogEI `ln(μ − best)`,
/// computed without the cancellation of `ln σ + ln h(z)` for tiny `σ`.
const NO_TAIL_ABOVE: f64 = 40.0;

/// Log expected improvement `LogEI = ln σ + ln h(z)` (Ament et al. 2023).
///
/// Finite and strictly increasing in `μ` for every `σ > 0` and every representable `z`
/// (tested down to `z = −1e4` and at `−1e100`); matches `ln(EI)` to 1e-10 relative where EI
/// is a normal double. The gradient `(Φ/(σh), φ/(σh))` comes from
/// [`log_h_ratios`](crate::special::log_h_ratios) and stays finite in the tail, where the
/// gradient of EI itself vanishes — the point of the paper.
///
/// ```
/// use perfusio_bed::analytic::{Predictive, log_expected_improvement};
/// // EI underflows here (z = −50), LogEI does not:
/// let v = log_expected_improvement(Predictive::new(-50.0, 1.0).unwrap(), 0.0);
/// assert!(v.value.is_finite() && v.value < -1250.0);
/// assert!(v.d_mean > 49.0 && v.d_mean < 51.0); // ≈ |z| for z ≪ 0
/// ```
pub fn log_expected_improvement(pred: Predictive, best: f64) -> ValueGrad {
    let Some(z) = pred.z(best) else {
        let d = pred.mean - best;
        return if d > 0.0 {
            ValueGrad::new(d.ln(), 1.0 / d, 0.0)
        } else {
            ValueGrad::new(f64::NEG_INFINITY, f64::INFINITY, f64::INFINITY)
        };
    };
    if z > NO_TAIL_ABOVE {
        let d = pred.mean - best;
        return ValueGrad::new(d.ln(), 1.0 / d, norm_pdf(z) / d);
    }
    let (lh, cdf_ratio, pdf_ratio) = log_h_with_ratios(z);
    ValueGrad::new(pred.sd.ln() + lh, cdf_ratio / pred.sd, pdf_ratio / pred.sd)
}

/// Upper confidence bound `UCB = μ + √β σ` (`β ≥ 0`; NaN for negative `β`).
///
/// ```
/// use perfusio_bed::analytic::{Predictive, upper_confidence_bound};
/// let u = upper_confidence_bound(Predictive::new(1.0, 0.5).unwrap(), 4.0);
/// assert!((u.value - 2.0).abs() < 1e-15 && (u.d_sd - 2.0).abs() < 1e-15);
/// ```
pub fn upper_confidence_bound(pred: Predictive, beta: f64) -> ValueGrad {
    let s = beta.sqrt();
    ValueGrad::new(pred.mean + s * pred.sd, 1.0, s)
}

/// One outcome constraint `lower ≤ Y_c ≤ upper` on an outcome with Gaussian predictive
/// distribution, independent of the objective and of the other constraints.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GaussianConstraint {
    /// Predictive distribution of the constrained outcome.
    pub pred: Predictive,
    /// Lower bound (`None`: unbounded below).
    pub lower: Option<f64>,
    /// Upper bound (`None`: unbounded above).
    pub upper: Option<f64>,
}

impl GaussianConstraint {
    /// `P(lower ≤ Y ≤ upper) = Φ(b) − Φ(a)`, `a = (lower − μ)/σ`, `b = (upper − μ)/σ`,
    /// evaluated on the side of the smaller tail so no digits are lost.
    ///
    /// ```
    /// use perfusio_bed::analytic::{GaussianConstraint, Predictive};
    /// let viability = GaussianConstraint {
    ///     pred: Predictive::new(97.0, 1.0).unwrap(),
    ///     lower: Some(95.0),
    ///     upper: None,
    /// };
    /// assert!((viability.probability() - 0.977_249_868_051_820_8).abs() < 1e-15);
    /// ```
    pub fn probability(&self) -> f64 {
        let (a, b) = self.standardised();
        if a >= 0.0 {
            norm_cdf(-a) - norm_cdf(-b)
        } else if b <= 0.0 {
            norm_cdf(b) - norm_cdf(a)
        } else {
            1.0 - norm_cdf(a) - norm_cdf(-b)
        }
    }

    /// `ln P(lower ≤ Y ≤ upper)`, finite where the probability underflows.
    pub fn log_probability(&self) -> f64 {
        let (a, b) = self.standardised();
        let log_diff = |hi: f64, lo: f64| {
            // ln(Φ(hi) − Φ(lo)) for lo < hi ≤ 0
            let lh = log_norm_cdf(hi);
            let ll = log_norm_cdf(lo);
            if ll.is_infinite() {
                lh
            } else {
                lh + log1mexp(ll - lh)
            }
        };
        if a.is_nan() || b.is_nan() || a >= b {
            // empty interval or σ = 0 with μ outside / at the ends
            return if self.probability() > 0.0 {
                self.probability().ln()
            } else {
                f64::NEG_INFINITY
            };
        }
        if a >= 0.0 {
            log_diff(-a, -b)
        } else if b <= 0.0 {
            log_diff(b, a)
        } else {
            (-(norm_cdf(a) + norm_cdf(-b))).ln_1p()
        }
    }

    fn standardised(&self) -> (f64, f64) {
        let lo = self.lower.unwrap_or(f64::NEG_INFINITY);
        let hi = self.upper.unwrap_or(f64::INFINITY);
        let (m, s) = (self.pred.mean, self.pred.sd);
        if s > 0.0 {
            ((lo - m) / s, (hi - m) / s)
        } else {
            // the sign of an infinite z decides: inside → (−∞, +∞), outside → empty
            let side = |bound: f64| {
                if bound > m {
                    f64::INFINITY
                } else if bound < m {
                    f64::NEG_INFINITY
                } else {
                    0.0
                }
            };
            (side(lo), side(hi))
        }
    }
}

/// `P(feasible) = Π_c P(lower_c ≤ Y_c ≤ upper_c)` for independent constraints (1 when empty).
pub fn probability_of_feasibility(constraints: &[GaussianConstraint]) -> f64 {
    constraints
        .iter()
        .map(GaussianConstraint::probability)
        .product()
}

/// `ln P(feasible) = Σ_c ln P_c`.
pub fn log_probability_of_feasibility(constraints: &[GaussianConstraint]) -> f64 {
    constraints
        .iter()
        .map(GaussianConstraint::log_probability)
        .sum()
}

/// Constrained expected improvement `EI × P(feasible)`; the gradient is with respect to the
/// objective's `(μ, σ)` (the constraints' moments are held fixed).
pub fn constrained_expected_improvement(
    pred: Predictive,
    best: f64,
    constraints: &[GaussianConstraint],
) -> ValueGrad {
    let p = probability_of_feasibility(constraints);
    let ei = expected_improvement(pred, best);
    ValueGrad::new(ei.value * p, ei.d_mean * p, ei.d_sd * p)
}

/// Log constrained expected improvement `LogEI + ln P(feasible)`, finite where either factor
/// underflows.
///
/// ```
/// use perfusio_bed::analytic::*;
/// let c = GaussianConstraint { pred: Predictive::new(0.0, 1.0).unwrap(), lower: Some(40.0), upper: None };
/// let obj = Predictive::new(0.0, 1.0).unwrap();
/// assert!(constrained_expected_improvement(obj, 0.0, &[c]).value < 1e-300); // underflows
/// let log = log_constrained_expected_improvement(obj, 0.0, &[c]).value;
/// assert!((log - (-0.918_938_533_204_672_7 - 804.608_442_013_753_8)).abs() < 1e-9);
/// ```
pub fn log_constrained_expected_improvement(
    pred: Predictive,
    best: f64,
    constraints: &[GaussianConstraint],
) -> ValueGrad {
    let lp = log_probability_of_feasibility(constraints);
    let lei = log_expected_improvement(pred, best);
    ValueGrad::new(lei.value + lp, lei.d_mean, lei.d_sd)
}

/// Evaluates one of the analytic acquisitions by name (`PI`, `EI`, `LogEI`, `UCB`; `beta` is
/// used by UCB only and must be `≥ 0`). The Monte-Carlo and multi-objective acquisitions are
/// errors here: evaluate them on samples with [`mc`](crate::mc) and [`multi`](crate::multi).
pub fn evaluate(
    acquisition: Acquisition,
    pred: Predictive,
    best: f64,
    beta: f64,
) -> Result<ValueGrad> {
    if !best.is_finite() {
        return Err(BedError::NonFinite {
            what: "incumbent",
            value: best,
        });
    }
    match acquisition {
        Acquisition::PI => Ok(probability_of_improvement(pred, best)),
        Acquisition::EI => Ok(expected_improvement(pred, best)),
        Acquisition::LogEI => Ok(log_expected_improvement(pred, best)),
        Acquisition::UCB => {
            if !(beta.is_finite() && beta >= 0.0) {
                return Err(BedError::InvalidParameter {
                    name: "beta",
                    reason: format!("UCB needs a finite beta >= 0, got {beta}"),
                });
            }
            Ok(upper_confidence_bound(pred, beta))
        }
        other => Err(BedError::InvalidParameter {
            name: "acquisition",
            reason: format!(
                "{other} is not an analytic acquisition (PI, EI, LogEI, UCB); \
                 evaluate it on Monte-Carlo samples"
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::special::norm_cdf as cdf;

    fn p(m: f64, s: f64) -> Predictive {
        Predictive::new(m, s).unwrap()
    }

    fn rel(a: f64, b: f64) -> f64 {
        if (a - b).abs() == 0.0 {
            0.0
        } else {
            (a - b).abs() / b.abs().max(f64::MIN_POSITIVE)
        }
    }

    /// Grid of (μ, σ, best).
    fn grid() -> Vec<(f64, f64, f64)> {
        let mut g = Vec::new();
        for i in 0..41 {
            let mu = -3.0 + 0.15 * i as f64;
            for sd in [0.05, 0.3, 1.0, 2.5] {
                for best in [-0.5, 0.0, 1.2] {
                    g.push((mu, sd, best));
                }
            }
        }
        g
    }

    #[test]
    fn closed_forms_on_a_grid() {
        for (mu, sd, best) in grid() {
            let z = (mu - best) / sd;
            let closed_ei = sd * (z * cdf(z) + norm_pdf(z));
            let ei = expected_improvement(p(mu, sd), best);
            // the closed form itself loses log10(z²) digits to cancellation for z < 0
            let tol = 1e-14 * (1.0 + z * z);
            assert!(rel(ei.value, closed_ei) < tol, "EI({mu}, {sd}, {best})");
            let pi = probability_of_improvement(p(mu, sd), best);
            assert!(rel(pi.value, cdf(z)) < 1e-15);
            let lpi = log_probability_of_improvement(p(mu, sd), best);
            assert!(lpi.value.is_finite());
            assert!(
                cdf(z) < f64::MIN_POSITIVE
                    || (lpi.value - cdf(z).ln()).abs() < 1e-13 * cdf(z).ln().abs() + 1e-15,
                "logPI at z = {z}: {} vs {}",
                lpi.value,
                cdf(z).ln()
            );
            let ucb = upper_confidence_bound(p(mu, sd), 2.0);
            assert!(rel(ucb.value, mu + 2f64.sqrt() * sd) < 1e-15);
        }
        // independent values (mpmath): EI(1, 2; 0) = 2·h(0.5); PI(0, 1; 0) = ½
        let ei = expected_improvement(p(1.0, 2.0), 0.0).value;
        assert!(rel(ei, 2.0 * (-0.359_827_683_745_063_8f64).exp()) < 1e-15);
        assert!(rel(probability_of_improvement(p(0.0, 1.0), 0.0).value, 0.5) < 1e-16);
    }

    #[test]
    fn log_ei_matches_log_of_ei_where_representable() {
        // z from −35 to 5: EI ≥ 1e-270 is a normal double throughout
        let mut worst: f64 = 0.0;
        for i in 0..=4000 {
            let z = -35.0 + 0.01 * i as f64;
            for sd in [1e-3, 1.0, 40.0] {
                let best = 2.0;
                let mu = best + z * sd;
                let naive_ei = sd * (z * cdf(z) + norm_pdf(z));
                let lei = log_expected_improvement(p(mu, sd), best).value;
                let r = rel(lei, naive_ei.ln());
                worst = worst.max(r);
                assert!(r < 1e-10, "z = {z}, sd = {sd}: {lei} vs {}", naive_ei.ln());
            }
        }
        assert!(worst < 1e-12, "worst relative error {worst:e}");
    }

    #[test]
    fn log_ei_is_finite_and_strictly_monotone_deep_in_the_tail() {
        let sd = 0.7;
        let best = 10.0;
        let mut prev = f64::NEG_INFINITY;
        let mut z = -1e4;
        while z <= 5.0 {
            let v = log_expected_improvement(p(best + z * sd, sd), best);
            assert!(
                v.value.is_finite() && v.d_mean.is_finite() && v.d_sd.is_finite(),
                "z = {z}"
            );
            assert!(v.value > prev, "LogEI not increasing at z = {z}");
            assert!(v.d_mean > 0.0 && v.d_sd > 0.0);
            prev = v.value;
            z += if z < -40.0 { 0.25 } else { 1e-3 };
        }
        // and far beyond: z = −1e100 (value ≈ −5e199)
        let far = log_expected_improvement(p(-1e100, 1.0), 0.0).value;
        assert!(far.is_finite() && rel(far, -5e199) < 1e-15);
    }

    #[test]
    fn gradients_match_finite_differences() {
        type Acq = fn(Predictive, f64) -> ValueGrad;
        let fns: [(&str, Acq); 4] = [
            ("PI", probability_of_improvement),
            ("logPI", log_probability_of_improvement),
            ("EI", expected_improvement),
            ("LogEI", log_expected_improvement),
        ];
        for (name, f) in fns {
            for (mu, sd, best) in grid().into_iter().step_by(7) {
                let g = f(p(mu, sd), best);
                let hm = 1e-6 * sd;
                let fd_m =
                    (f(p(mu + hm, sd), best).value - f(p(mu - hm, sd), best).value) / (2.0 * hm);
                let fd_s =
                    (f(p(mu, sd + hm), best).value - f(p(mu, sd - hm), best).value) / (2.0 * hm);
                // central differences: truncation O(h²) plus round-off ~ ε|f|/h
                let scale = g.d_mean.abs().max(g.d_sd.abs());
                let f0 = f(p(mu, sd), best).value.abs().max(1.0);
                let tol = 1e-6 * scale + 1e-15 * f0 / hm;
                assert!(
                    (g.d_mean - fd_m).abs() < tol,
                    "{name} d_mean at ({mu}, {sd}, {best})"
                );
                assert!(
                    (g.d_sd - fd_s).abs() < tol,
                    "{name} d_sd at ({mu}, {sd}, {best})"
                );
            }
        }
        // LogEI deep in the tail, where the EI gradient has long underflowed
        for z in [-30.0, -100.0, -1000.0] {
            let sd = 2.0;
            let g = log_expected_improvement(p(z * sd, sd), 0.0);
            let hm = 1e-4 * sd;
            let f = |m: f64, s: f64| log_expected_improvement(p(m, s), 0.0).value;
            let fd_m = (f(z * sd + hm, sd) - f(z * sd - hm, sd)) / (2.0 * hm);
            let fd_s = (f(z * sd, sd + hm) - f(z * sd, sd - hm)) / (2.0 * hm);
            assert!(
                rel(g.d_mean, fd_m) < 1e-4,
                "z = {z}: {} vs {fd_m}",
                g.d_mean
            );
            assert!(rel(g.d_sd, fd_s) < 1e-4, "z = {z}: {} vs {fd_s}", g.d_sd);
        }
    }

    #[test]
    fn zero_sd_limits() {
        let best = 1.0;
        // σ = 0 exactly
        assert!(rel(expected_improvement(p(3.0, 0.0), best).value, 2.0) < 1e-16);
        assert!(expected_improvement(p(0.0, 0.0), best).value.abs() < 1e-300);
        assert!(rel(log_expected_improvement(p(3.0, 0.0), best).value, 2f64.ln()) < 1e-16);
        assert!(log_expected_improvement(p(0.0, 0.0), best).value == f64::NEG_INFINITY);
        assert!(rel(probability_of_improvement(p(3.0, 0.0), best).value, 1.0) < 1e-16);
        assert!(probability_of_improvement(p(0.0, 0.0), best).value.abs() < 1e-300);
        assert!(rel(probability_of_improvement(p(1.0, 0.0), best).value, 0.5) < 1e-16);
        // σ → 0⁺ converges to the limits
        for sd in [1e-3, 1e-8, 1e-30, 1e-300] {
            let up = expected_improvement(p(3.0, sd), best).value;
            assert!(rel(up, 2.0) < 1e-15, "sd = {sd}");
            let lup = log_expected_improvement(p(3.0, sd), best).value;
            assert!(rel(lup, 2f64.ln()) < 1e-14, "sd = {sd}");
            // ≈ −z²/2 with z = −1/σ: finite while z² is representable, −∞ beyond
            let down = log_expected_improvement(p(0.0, sd), best).value;
            assert!(down <= -0.4 / (sd * sd), "sd = {sd}: {down}");
            assert_eq!(down.is_finite(), sd > 1e-150, "sd = {sd}");
        }
        // sub-normal σ: z overflows and the limit is taken
        assert!(
            rel(
                log_expected_improvement(p(3.0, 1e-310), best).value,
                2f64.ln()
            ) < 1e-16
        );
    }

    #[test]
    fn constrained_ei_is_ei_times_feasibility() {
        let obj = p(0.3, 0.8);
        let cons = [
            GaussianConstraint {
                pred: p(96.0, 1.5),
                lower: Some(95.0),
                upper: None,
            },
            GaussianConstraint {
                pred: p(4.0, 2.0),
                lower: Some(1.0),
                upper: Some(6.0),
            },
        ];
        let pf = (1.0 - cdf(-1.0 / 1.5)) * (cdf(1.0) - cdf(-1.5));
        assert!(rel(probability_of_feasibility(&cons), pf) < 1e-15);
        let ei = expected_improvement(obj, 0.5);
        let cei = constrained_expected_improvement(obj, 0.5, &cons);
        assert!(rel(cei.value, ei.value * pf) < 1e-15);
        assert!(rel(cei.d_mean, ei.d_mean * pf) < 1e-15);
        let lcei = log_constrained_expected_improvement(obj, 0.5, &cons);
        assert!(rel(lcei.value, (ei.value * pf).ln()) < 1e-14);
        // two-sided constraint deep in a tail: ln(Φ(−40) − Φ(−41)) (mpmath: −804.6084420137538 + ln(1 − e^{−40.5}·…))
        let far = GaussianConstraint {
            pred: p(0.0, 1.0),
            lower: Some(40.0),
            upper: Some(41.0),
        };
        assert!(rel(far.log_probability(), -804.608_442_013_753_8) < 1e-14);
        let far_low = GaussianConstraint {
            pred: p(0.0, 1.0),
            lower: Some(-41.0),
            upper: Some(-40.0),
        };
        assert!(rel(far_low.log_probability(), -804.608_442_013_753_8) < 1e-14);
        // σ = 0: an indicator
        let sure = GaussianConstraint {
            pred: p(96.0, 0.0),
            lower: Some(95.0),
            upper: None,
        };
        assert!(rel(sure.probability(), 1.0) < 1e-16 && sure.log_probability().abs() < 1e-16);
        let never = GaussianConstraint {
            pred: p(90.0, 0.0),
            lower: Some(95.0),
            upper: None,
        };
        assert!(never.probability().abs() < 1e-300);
        assert!(never.log_probability() == f64::NEG_INFINITY);
    }

    #[test]
    fn dispatcher_and_validation() {
        let pr = p(1.0, 1.0);
        let v = evaluate(Acquisition::LogEI, pr, 0.0, 0.0).unwrap();
        assert!(rel(v.value, log_expected_improvement(pr, 0.0).value) < 1e-16);
        let e = evaluate(Acquisition::QEI, pr, 0.0, 0.0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid parameter `acquisition`: qEI is not an analytic acquisition (PI, EI, LogEI, UCB); \
             evaluate it on Monte-Carlo samples"
        );
        assert!(evaluate(Acquisition::UCB, pr, 0.0, -1.0).is_err());
        assert!(evaluate(Acquisition::EI, pr, f64::NAN, 0.0).is_err());
        assert_eq!(
            Predictive::new(0.0, -1.0).unwrap_err().to_string(),
            "invalid parameter `sd`: the predictive standard deviation must be finite and >= 0, got -1"
        );
        assert!(Predictive::new(f64::INFINITY, 1.0).is_err());
        assert!(Predictive::from_variance(0.0, -1.0).is_err());
        assert!(rel(Predictive::from_variance(2.0, 9.0).unwrap().sd(), 3.0) < 1e-16);
    }
}
