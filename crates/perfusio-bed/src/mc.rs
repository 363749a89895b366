//! Monte-Carlo acquisitions over a matrix of objective samples `samples[s][j]`
//! (`s` = base sample / scenario, `j` = candidate of a q-batch), as in BoTorch's
//! `monte_carlo.py` and `logei.py`.
//!
//! With the base samples held fixed ([`BaseSamples`](crate::qmc::BaseSamples)), each value is
//! a deterministic function of the candidates (sample average approximation; Balandat et al.
//! 2020, "BoTorch", NeurIPS, arXiv:1910.06403).
//!
//! | acquisition | value |
//! |---|---|
//! | qEI | `(1/S) Σ_s max_j (f_sj − best)⁺ · Π_c σ(ŝ_csj/η)` |
//! | qLogEI | `logmeanexp_s fatmax_j [ln fatplus(f_sj − best; τ_relu) + Σ_c ln fatmoid(ŝ_csj/η)]` (temperature `τ_max` in the fatmax) |
//! | qLogNEI | as qLogEI with a per-scenario incumbent `best_s = fatmax_b baseline_sb` |
//! | qUCB | `(1/S) Σ_s max_j (μ̂_j + √(βπ/2)·|f_sj − μ̂_j|)`, `μ̂_j = (1/S)Σ_s f_sj` |
//!
//! `ŝ_csj` is the slack of outcome constraint `c` in scenario `s` of candidate `j`
//! (`≥ 0` when satisfied, see [`OutcomeConstraint`](crate::objective::OutcomeConstraint)),
//! and `σ(·)` smooths its indicator with temperature `η` (BoTorch's
//! `compute_smoothed_feasibility_indicator`).
//!
//! **qLogEI** (Ament et al. 2023, NeurIPS, arXiv:2310.20708, §4): the improvement is
//! smoothed by the *fat* softplus `fatplus(x; τ) = τ(softplus(x/τ) + 0.1/(1 + (x/τ)²))`, whose
//! Cauchy tail keeps `ln` and its gradient finite and informative where every sample is
//! below the incumbent; the max over the batch by the fat maximum
//! `fatmax(x; τ) = M + τ ln Σ_j p(−(x_j − M)/τ)`, `M = max_j x_j`,
//! `p(y) = 2/(2 + 2y + y²)` (`p(0) = 1`, decaying like `2/y²`); the mean over scenarios
//! by `logmeanexp`. Defaults `τ_relu = 1e-6`, `τ_max = 1e-2` are BoTorch's; they are in the
//! units of the objective, so **standardise the objective samples** (e.g. divide by the
//! predictive sd under holding course) before calling. `fat = false` uses softplus,
//! `τ·logsumexp(x/τ)` and the logistic sigmoid instead.
//!
//! **qUCB** (Wilson, Moriconi, Hutter & Deisenroth 2017, arXiv:1712.00424): for `q = 1`,
//! `E|f − μ| = σ√(2/π)` so the value converges to the analytic `μ + √β σ`.

use perfusio_core::Acquisition;
use serde::{Deserialize, Serialize};

use crate::error::{BedError, Result};
use crate::special::{log_sigmoid, sigmoid, softplus};

/// Row-major view of an `n_samples × q` matrix of samples (`[s][j]`).
///
/// ```
/// use perfusio_bed::mc::SampleMatrix;
/// let data = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
/// let m = SampleMatrix::new(&data, 3, 2).unwrap();
/// assert_eq!(m.row(1), &[3.0, 4.0]);
/// assert!(SampleMatrix::new(&data, 4, 2).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleMatrix<'a> {
    data: &'a [f64],
    n_samples: usize,
    q: usize,
}

impl<'a> SampleMatrix<'a> {
    /// A view of `data` (length `n_samples · q`, both at least 1, no NaN; infinite values
    /// are allowed, e.g. the `+∞` slack of a scenario without forecast days).
    pub fn new(data: &'a [f64], n_samples: usize, q: usize) -> Result<Self> {
        if n_samples == 0 || q == 0 || data.len() != n_samples * q {
            return Err(BedError::ShapeMismatch(format!(
                "a sample matrix of {n_samples} samples × {q} candidates needs {} values \
                 (both at least 1), got {}",
                n_samples * q,
                data.len()
            )));
        }
        if let Some(&v) = data.iter().find(|v| v.is_nan()) {
            return Err(BedError::NonFinite {
                what: "Monte-Carlo samples",
                value: v,
            });
        }
        Ok(Self { data, n_samples, q })
    }

    /// Number of samples `S`.
    pub fn n_samples(&self) -> usize {
        self.n_samples
    }

    /// Number of candidates `q`.
    pub fn q(&self) -> usize {
        self.q
    }

    /// Row `s`: the `q` candidates' values in scenario `s`.
    pub fn row(&self, s: usize) -> &'a [f64] {
        &self.data[s * self.q..(s + 1) * self.q]
    }

    /// Element `[s][j]`.
    pub fn get(&self, s: usize, j: usize) -> f64 {
        self.data[s * self.q + j]
    }

    /// The underlying row-major slice.
    pub fn as_slice(&self) -> &'a [f64] {
        self.data
    }

    fn same_shape(&self, other: &SampleMatrix<'_>, what: &str) -> Result<()> {
        if self.n_samples != other.n_samples || self.q != other.q {
            return Err(BedError::ShapeMismatch(format!(
                "{what} has shape {} × {}, the objective samples {} × {}",
                other.n_samples, other.q, self.n_samples, self.q
            )));
        }
        Ok(())
    }
}

/// Temperatures and options of the Monte-Carlo acquisitions (defaults as in BoTorch).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct McParams {
    /// UCB exploration weight `β ≥ 0` (bonus `√(βπ/2)·|f − μ̂|`); default 1 (one sd for q = 1).
    pub beta: f64,
    /// Temperature of the smoothed ReLU of the improvement (default 1e-6).
    pub tau_relu: f64,
    /// Temperature of the smoothed max over the batch (default 1e-2).
    pub tau_max: f64,
    /// Temperature of the smoothed constraint indicators, in slack units (default 1e-3).
    pub eta: f64,
    /// Fat-tailed smoothings (default true).
    pub fat: bool,
}

impl Default for McParams {
    fn default() -> Self {
        Self {
            beta: 1.0,
            tau_relu: 1e-6,
            tau_max: 1e-2,
            eta: 1e-3,
            fat: true,
        }
    }
}

impl McParams {
    /// Checks that every temperature is finite and positive and `β ≥ 0`.
    pub fn check(&self) -> Result<()> {
        for (name, v) in [
            ("tau_relu", self.tau_relu),
            ("tau_max", self.tau_max),
            ("eta", self.eta),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(BedError::InvalidParameter {
                    name,
                    reason: format!("temperatures must be finite and > 0, got {v}"),
                });
            }
        }
        if !(self.beta.is_finite() && self.beta >= 0.0) {
            return Err(BedError::InvalidParameter {
                name: "beta",
                reason: format!("UCB needs a finite beta >= 0, got {}", self.beta),
            });
        }
        Ok(())
    }
}

/// Coefficient of the Cauchy term of [`fatplus`] (BoTorch's choice; keeps it convex and
/// monotone).
const FATPLUS_ALPHA: f64 = 0.1;

/// Fat-tailed softplus `τ(softplus(x/τ) + 0.1/(1 + (x/τ)²))`: a smooth `max(x, 0)` whose
/// left tail decays like `1/x²` rather than exponentially.
pub fn fatplus(x: f64, tau: f64) -> f64 {
    let t = x / tau;
    tau * (softplus(t) + FATPLUS_ALPHA / (1.0 + t * t))
}

/// `ln fatplus(x; τ)`, finite for every finite `x`.
pub fn log_fatplus(x: f64, tau: f64) -> f64 {
    log_fatplus_scaled(x / tau) + tau.ln()
}

/// Beyond `|t| = 40` one of the two terms of `fatplus` is below `1e-17` of the other.
const FATPLUS_TAIL: f64 = 40.0;

/// `ln(softplus(t) + 0.1/(1 + t²))` with one logarithm in the tails.
fn log_fatplus_scaled(t: f64) -> f64 {
    if t < -FATPLUS_TAIL {
        // softplus(t) ≈ eᵗ < 5e-18 ≪ 0.1/(1 + t²)
        FATPLUS_ALPHA.ln() - (t * t).ln_1p()
    } else if t > FATPLUS_TAIL {
        // softplus(t) = t + O(e⁻ᵗ), the Cauchy term is below 1e-4/t³
        (t + FATPLUS_ALPHA / (1.0 + t * t)).ln()
    } else {
        (softplus(t) + FATPLUS_ALPHA / (1.0 + t * t)).ln()
    }
}

/// `ln softplus(x/τ)·τ` (the non-fat smoothed ReLU in log space), stable for `x ≪ 0`.
pub fn log_softplus(x: f64, tau: f64) -> f64 {
    let t = x / tau;
    if t < -30.0 {
        // softplus(t) = e^t (1 − e^t/2 + …)
        tau.ln() + t
    } else {
        tau.ln() + softplus(t).ln()
    }
}

/// Inflection point `1/√3` of the fatmoid.
const FATMOID_M: f64 = 0.577_350_269_189_625_8;

/// `ln fatmoid(x)`: a twice-differentiable step with a `1/x²` left tail,
/// `fatmoid(x) = ⅔/(1 + (x − m)²)` for `x < 0` and `1 − ⅔/(1 + (x + m)²)` otherwise,
/// `m = 1/√3` (BoTorch's `fatmoid`).
pub fn log_fatmoid(x: f64) -> f64 {
    if x < 0.0 {
        let u = x - FATMOID_M;
        (2.0f64 / 3.0).ln() - (u * u).ln_1p()
    } else {
        let u = x + FATMOID_M;
        (-(2.0 / 3.0) / (1.0 + u * u)).ln_1p()
    }
}

/// The fat maximum `M + τ ln Σ_j p(−(x_j − M)/τ)`, `p(y) = 2/(2 + 2y + y²)`, a smooth upper
/// bound of `max_j x_j` (`≤ max + τ ln q`). `−∞` entries are ignored; all `−∞` gives `−∞`.
pub fn fatmax(x: &[f64], tau: f64) -> f64 {
    let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    let sum: f64 = x
        .iter()
        .map(|&xi| {
            let y = (m - xi) / tau;
            2.0 / (2.0 + 2.0 * y + y * y)
        })
        .sum();
    m + tau * sum.ln()
}

/// `τ · logsumexp(x/τ)`, the softmax upper bound of `max_j x_j`.
pub fn smooth_max(x: &[f64], tau: f64) -> f64 {
    let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    let sum: f64 = x.iter().map(|&xi| ((xi - m) / tau).exp()).sum();
    m + tau * sum.ln()
}

/// `ln((1/n) Σ_i exp(x_i))` without overflow; `−∞` for an empty slice or all `−∞`.
pub fn logmeanexp(x: &[f64]) -> f64 {
    let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    let sum: f64 = x.iter().map(|&xi| (xi - m).exp()).sum();
    m + (sum / x.len() as f64).ln()
}

fn check_inputs(
    samples: &SampleMatrix<'_>,
    best: f64,
    constraints: &[SampleMatrix<'_>],
    params: &McParams,
) -> Result<()> {
    params.check()?;
    if !best.is_finite() {
        return Err(BedError::NonFinite {
            what: "incumbent",
            value: best,
        });
    }
    for c in constraints {
        samples.same_shape(c, "a constraint slack matrix")?;
    }
    Ok(())
}

/// Monte-Carlo batch expected improvement with sigmoid-weighted outcome constraints
/// (BoTorch `qExpectedImprovement`; Wilson et al. 2017).
///
/// `constraints[c]` holds the slacks `ŝ_csj` (feasible when `≥ 0`); empty for none.
pub fn q_expected_improvement(
    samples: SampleMatrix<'_>,
    best: f64,
    constraints: &[SampleMatrix<'_>],
    params: &McParams,
) -> Result<f64> {
    check_inputs(&samples, best, constraints, params)?;
    let mut total = 0.0;
    for s in 0..samples.n_samples() {
        let mut row_max: f64 = 0.0;
        for (j, &f) in samples.row(s).iter().enumerate() {
            let mut v = (f - best).max(0.0);
            for c in constraints {
                v *= sigmoid(c.get(s, j) / params.eta);
            }
            row_max = row_max.max(v);
        }
        total += row_max;
    }
    Ok(total / samples.n_samples() as f64)
}

/// Monte-Carlo batch log expected improvement, smoothed as in BoTorch's
/// `qLogExpectedImprovement` (see the module docs), with the log-feasibility of the
/// outcome constraints added before the max over the batch.
///
/// ```
/// use perfusio_bed::mc::{McParams, SampleMatrix, q_log_expected_improvement};
/// use perfusio_bed::qmc::BaseSamples;
/// // q = 1, f ~ N(0.2, 1), best = 0.5: converges to the analytic LogEI
/// let eps = BaseSamples::new(4096, 1, 3).unwrap();
/// let f: Vec<f64> = eps.as_slice().iter().map(|e| 0.2 + e).collect();
/// let v = q_log_expected_improvement(SampleMatrix::new(&f, 4096, 1).unwrap(), 0.5, &[], &McParams::default()).unwrap();
/// let exact = perfusio_bed::analytic::log_expected_improvement(
///     perfusio_bed::analytic::Predictive::new(0.2, 1.0).unwrap(), 0.5).value;
/// assert!((v - exact).abs() < 1e-3);
/// ```
pub fn q_log_expected_improvement(
    samples: SampleMatrix<'_>,
    best: f64,
    constraints: &[SampleMatrix<'_>],
    params: &McParams,
) -> Result<f64> {
    check_inputs(&samples, best, constraints, params)?;
    Ok(log_ei_core(&samples, |_| best, constraints, params))
}

/// Monte-Carlo batch log *noisy* expected improvement: the incumbent of scenario `s` is the
/// smoothed max of the baseline's sampled values in that scenario (`fatmax`, or the softmax
/// when `fat = false`, temperature `τ_max`), drawn jointly with the candidates (BoTorch
/// `qLogNoisyExpectedImprovement`; Letham et al. 2019, Bayesian Anal. 14(2):495–519,
/// doi:10.1214/18-BA1110).
pub fn q_log_noisy_expected_improvement(
    samples: SampleMatrix<'_>,
    baseline: SampleMatrix<'_>,
    constraints: &[SampleMatrix<'_>],
    params: &McParams,
) -> Result<f64> {
    check_inputs(&samples, 0.0, constraints, params)?;
    if baseline.n_samples() != samples.n_samples() {
        return Err(BedError::ShapeMismatch(format!(
            "the baseline has {} samples, the candidates {}: they must be drawn jointly",
            baseline.n_samples(),
            samples.n_samples()
        )));
    }
    let reduce = if params.fat { fatmax } else { smooth_max };
    Ok(log_ei_core(
        &samples,
        |s| reduce(baseline.row(s), params.tau_max),
        constraints,
        params,
    ))
}

fn log_ei_core(
    samples: &SampleMatrix<'_>,
    best_of: impl Fn(usize) -> f64,
    constraints: &[SampleMatrix<'_>],
    params: &McParams,
) -> f64 {
    let q = samples.q();
    let term = LogEiTerm::new(params);
    let mut per_sample = Vec::with_capacity(samples.n_samples());
    let mut li = vec![0.0; q];
    for s in 0..samples.n_samples() {
        let best = best_of(s);
        for (j, (l, &f)) in li.iter_mut().zip(samples.row(s)).enumerate() {
            *l = term.value(f, best, constraints.iter().map(|c| c.get(s, j)));
        }
        per_sample.push(term.reduce(&li));
    }
    logmeanexp(&per_sample)
}

/// One member's term in one scenario of the batch log-EI acquisitions, with the constants
/// of its [`McParams`] computed once. Batch code that keeps its members' terms across
/// candidates gets exactly the values of [`q_log_expected_improvement`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogEiTerm {
    tau_relu: f64,
    inv_tau: f64,
    ln_tau: f64,
    tau_max: f64,
    eta: f64,
    fat: bool,
}

impl LogEiTerm {
    pub(crate) fn new(params: &McParams) -> Self {
        Self {
            tau_relu: params.tau_relu,
            inv_tau: 1.0 / params.tau_relu,
            ln_tau: params.tau_relu.ln(),
            tau_max: params.tau_max,
            eta: params.eta,
            fat: params.fat,
        }
    }

    /// The log of the smoothed improvement of `f` over `best`, plus the log of the smoothed
    /// feasibility of each of its constraint slacks.
    pub(crate) fn value(&self, f: f64, best: f64, slacks: impl Iterator<Item = f64>) -> f64 {
        let mut l = if self.fat {
            log_fatplus_scaled((f - best) * self.inv_tau) + self.ln_tau
        } else {
            log_softplus(f - best, self.tau_relu)
        };
        for x in slacks {
            let x = x / self.eta;
            l += if self.fat {
                log_fatmoid(x)
            } else {
                log_sigmoid(x)
            };
        }
        l
    }

    /// The reduction of one scenario's member terms over the batch: the term itself for one
    /// member, the (fat) smoothed maximum otherwise.
    pub(crate) fn reduce(&self, li: &[f64]) -> f64 {
        if li.len() == 1 {
            li[0]
        } else if self.fat {
            fatmax(li, self.tau_max)
        } else {
            smooth_max(li, self.tau_max)
        }
    }
}

/// Monte-Carlo batch upper confidence bound (BoTorch `qUpperConfidenceBound`):
/// `(1/S) Σ_s max_j (μ̂_j + √(βπ/2)·|f_sj − μ̂_j|)`.
pub fn q_upper_confidence_bound(samples: SampleMatrix<'_>, beta: f64) -> Result<f64> {
    if !(beta.is_finite() && beta >= 0.0) {
        return Err(BedError::InvalidParameter {
            name: "beta",
            reason: format!("UCB needs a finite beta >= 0, got {beta}"),
        });
    }
    let n = samples.n_samples() as f64;
    let mut mean = vec![0.0; samples.q()];
    for s in 0..samples.n_samples() {
        for (m, &f) in mean.iter_mut().zip(samples.row(s)) {
            *m += f / n;
        }
    }
    let bonus = (beta * std::f64::consts::PI / 2.0).sqrt();
    let total: f64 = (0..samples.n_samples())
        .map(|s| {
            samples
                .row(s)
                .iter()
                .zip(&mean)
                .map(|(&f, &m)| m + bonus * (f - m).abs())
                .fold(f64::NEG_INFINITY, f64::max)
        })
        .sum();
    Ok(total / n)
}

/// Evaluates a Monte-Carlo acquisition by name (`qEI`, `qLogEI`, `qUCB`; constraints are
/// ignored by qUCB, which has no feasibility weighting in BoTorch either). The analytic and
/// multi-objective names are errors here.
pub fn evaluate(
    acquisition: Acquisition,
    samples: SampleMatrix<'_>,
    best: f64,
    constraints: &[SampleMatrix<'_>],
    params: &McParams,
) -> Result<f64> {
    match acquisition {
        Acquisition::QEI => q_expected_improvement(samples, best, constraints, params),
        Acquisition::QLogEI => q_log_expected_improvement(samples, best, constraints, params),
        Acquisition::QUCB => q_upper_confidence_bound(samples, params.beta),
        other => Err(BedError::InvalidParameter {
            name: "acquisition",
            reason: format!(
                "{other} is not a single-objective Monte-Carlo acquisition (qEI, qLogEI, qUCB)"
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytic::{
        Predictive, expected_improvement, log_expected_improvement, upper_confidence_bound,
    };
    use crate::qmc::BaseSamples;
    use crate::special::norm_cdf;

    fn draws(n: usize, dims: usize, seed: u64) -> BaseSamples {
        BaseSamples::new(n, dims, seed).unwrap()
    }

    /// RMS over `reps` seeds of `|mc(n) − exact|` for q = 1, f = μ + σ ε, with lattice
    /// (`qmc`) or pseudo-random base samples.
    fn rms(
        n: usize,
        reps: u64,
        qmc: bool,
        mc: &dyn Fn(SampleMatrix<'_>) -> f64,
        exact: f64,
    ) -> f64 {
        let (mu, sd) = (0.3, 1.3);
        let mut acc = 0.0;
        for r in 0..reps {
            let eps = if qmc {
                draws(n, 1, 100 + r)
            } else {
                BaseSamples::pseudo_random(n, 1, 100 + r).unwrap()
            };
            let f: Vec<f64> = eps.as_slice().iter().map(|e| mu + sd * e).collect();
            let v = mc(SampleMatrix::new(&f, n, 1).unwrap());
            acc += (v - exact).powi(2);
        }
        (acc / reps as f64).sqrt()
    }

    #[test]
    fn q1_converges_to_the_analytic_acquisitions() {
        let (mu, sd, best) = (0.3, 1.3, 0.8);
        let pred = Predictive::new(mu, sd).unwrap();
        let params = McParams::default();
        let ei = expected_improvement(pred, best).value;
        let lei = log_expected_improvement(pred, best).value;
        let ucb = upper_confidence_bound(pred, 2.0).value;
        type Mc<'f> = Box<dyn Fn(SampleMatrix<'_>) -> f64 + 'f>;
        let cases: [(&str, Mc<'_>, f64, f64); 3] = [
            (
                "qEI",
                Box::new(|m| q_expected_improvement(m, best, &[], &params).unwrap() / ei),
                1.0,
                2e-4,
            ),
            (
                "qLogEI",
                Box::new(|m| q_log_expected_improvement(m, best, &[], &params).unwrap()),
                lei,
                2e-4,
            ),
            (
                "qUCB",
                Box::new(|m| q_upper_confidence_bound(m, 2.0).unwrap() / ucb),
                1.0,
                1e-4,
            ),
        ];
        // RMS over 16 random shifts, 2^8 … 2^14 samples (measured: qEI and qLogEI
        // 3.3e-3 → 7.3e-5, qUCB 1.7e-3 → 3.7e-5; pseudo-random at 2^14: ~1e-2)
        for (name, f, exact, tol) in cases {
            let errs: Vec<f64> = [256, 1024, 4096, 16384]
                .iter()
                .map(|&n| rms(n, 16, true, &*f, exact))
                .collect();
            for w in errs.windows(2) {
                assert!(w[1] < w[0], "{name}: error does not shrink: {errs:?}");
            }
            assert!(errs[3] < errs[0] / 20.0, "{name}: {errs:?}");
            let prn = rms(16384, 16, false, &*f, exact);
            assert!(
                errs[3] < prn / 10.0,
                "{name}: QMC {:e} vs pseudo-random {prn:e}",
                errs[3]
            );
            assert!(
                errs[3] < tol,
                "{name}: final error {:e} (tolerance {tol:e})",
                errs[3]
            );
        }
    }

    #[test]
    fn constrained_forms_converge_to_ei_times_feasibility() {
        let (mu, sd, best) = (0.0, 1.0, 0.2);
        let (mc_mean, mc_sd) = (0.5, 1.0); // slack ~ N(0.5, 1): P(feasible) = Φ(0.5)
        let n = 16384;
        let eps = draws(n, 2, 7);
        let f: Vec<f64> = eps.rows().map(|r| mu + sd * r[0]).collect();
        let c: Vec<f64> = eps.rows().map(|r| mc_mean + mc_sd * r[1]).collect();
        let f = SampleMatrix::new(&f, n, 1).unwrap();
        let c = SampleMatrix::new(&c, n, 1).unwrap();
        let exact =
            expected_improvement(Predictive::new(mu, sd).unwrap(), best).value * norm_cdf(0.5);
        let params = McParams::default();
        let qei = q_expected_improvement(f, best, &[c], &params).unwrap();
        assert!((qei / exact - 1.0).abs() < 1e-3, "{qei} vs {exact}");
        let qlei = q_log_expected_improvement(f, best, &[c], &params).unwrap();
        assert!((qlei - exact.ln()).abs() < 1e-3, "{qlei} vs {}", exact.ln());
        // sigmoid smoothing: a looser temperature moves the value by O(η²) only
        let loose = McParams {
            eta: 0.05,
            ..params
        };
        let qei_loose = q_expected_improvement(f, best, &[c], &loose).unwrap();
        assert!((qei_loose / qei - 1.0).abs() < 5e-3);
    }

    #[test]
    fn batch_properties() {
        let n = 4096;
        let eps = draws(n, 3, 11);
        let params = McParams::default();
        // three independent candidates with different means
        let mus = [0.0, 0.4, -0.3];
        let f: Vec<f64> = eps
            .rows()
            .flat_map(|r| [mus[0] + r[0], mus[1] + r[1], mus[2] + r[2]])
            .collect();
        let m = SampleMatrix::new(&f, n, 3).unwrap();
        let best = 0.5;
        let qei = q_expected_improvement(m, best, &[], &params).unwrap();
        let single = mus
            .iter()
            .map(|&mu| expected_improvement(Predictive::new(mu, 1.0).unwrap(), best).value)
            .fold(0.0, f64::max);
        assert!(
            qei > single * 1.2,
            "a batch of three beats its best member: {qei} vs {single}"
        );
        // the smoothed log version is close to ln qEI (bias ≤ τ_max ln q + fat tails)
        let qlei = q_log_expected_improvement(m, best, &[], &params).unwrap();
        assert!((qlei - qei.ln()).abs() < 0.02, "{qlei} vs {}", qei.ln());
        // duplicating a candidate adds nothing
        let f2: Vec<f64> = eps.rows().flat_map(|r| [r[0], r[0]]).collect();
        let f1: Vec<f64> = eps.rows().map(|r| r[0]).collect();
        let dup = q_expected_improvement(SampleMatrix::new(&f2, n, 2).unwrap(), best, &[], &params)
            .unwrap();
        let one = q_expected_improvement(SampleMatrix::new(&f1, n, 1).unwrap(), best, &[], &params)
            .unwrap();
        assert!((dup - one).abs() < 1e-15);
        // qUCB of a batch is at least the best member's
        let ucb = q_upper_confidence_bound(m, 1.0).unwrap();
        assert!(ucb >= 0.4 + 1.0 - 2e-3);
        // noisy EI with a constant baseline equals plain EI with that incumbent (q = 1)
        let base: Vec<f64> = vec![best; n];
        let b = SampleMatrix::new(&base, n, 1).unwrap();
        let single_m = SampleMatrix::new(&f1, n, 1).unwrap();
        let nei = q_log_noisy_expected_improvement(single_m, b, &[], &params).unwrap();
        let lei = q_log_expected_improvement(single_m, best, &[], &params).unwrap();
        assert!((nei - lei).abs() < 1e-12);
    }

    #[test]
    fn log_ei_stays_finite_and_informative_far_below_the_incumbent() {
        let n = 256;
        let eps = draws(n, 1, 5);
        let params = McParams::default();
        let at = |mu: f64| {
            let f: Vec<f64> = eps.as_slice().iter().map(|e| mu + 0.1 * e).collect();
            q_log_expected_improvement(SampleMatrix::new(&f, n, 1).unwrap(), 10.0, &[], &params)
                .unwrap()
        };
        // every sample is ~100 sd below the incumbent: qEI is exactly 0, qLogEI still ranks
        let (a, b) = (at(-1.0), at(-0.5));
        assert!(a.is_finite() && b.is_finite() && b > a);
    }

    #[test]
    fn smoothers() {
        assert!((fatmax(&[1.0], 0.01) - 1.0).abs() < 1e-15);
        let fm = fatmax(&[1.0, 0.0, -3.0], 0.01);
        assert!(fm >= 1.0 && fm < 1.0 + 0.01 * 3f64.ln());
        assert!((smooth_max(&[2.0, 2.0], 0.1) - (2.0 + 0.1 * 2f64.ln())).abs() < 1e-15);
        assert!(fatmax(&[f64::NEG_INFINITY; 2], 0.1) == f64::NEG_INFINITY);
        assert!((logmeanexp(&[0.0, 0.0]) - 0.0).abs() < 1e-16);
        assert!(
            (logmeanexp(&[-1000.0, -1000.0 + 2f64.ln()]) - (-1000.0 + 1.5f64.ln())).abs() < 1e-12
        );
        assert!((log_fatmoid(0.0) - 0.5f64.ln()).abs() < 1e-15);
        assert!(log_fatmoid(-1e6).is_finite() && log_fatmoid(1e6).abs() < 1e-12);
        assert!((fatplus(5.0, 1e-6) - 5.0).abs() < 1e-9);
        assert!(log_fatplus(-1e3, 1e-6).is_finite());
        // the tail shortcuts agree with the full formula at the switch
        for t in [
            -40.0 - 1e-9,
            -40.0 + 1e-9,
            40.0 - 1e-9,
            40.0 + 1e-9,
            -1e8,
            1e8,
        ] {
            let full = (softplus(t) + 0.1 / (1.0 + t * t)).ln();
            assert!(
                (log_fatplus_scaled(t) - full).abs() < 1e-14 * full.abs().max(1.0),
                "t = {t}"
            );
        }
        assert!((log_softplus(-1.0, 1e-2) - (1e-2f64.ln() - 100.0)).abs() < 1e-12);
    }

    #[test]
    fn validation_errors() {
        let d = [0.0; 4];
        let m = SampleMatrix::new(&d, 2, 2).unwrap();
        let c = SampleMatrix::new(&d, 4, 1).unwrap();
        let p = McParams::default();
        assert_eq!(
            q_expected_improvement(m, 0.0, &[c], &p)
                .unwrap_err()
                .to_string(),
            "shape mismatch: a constraint slack matrix has shape 4 × 1, the objective samples 2 × 2"
        );
        assert!(q_log_expected_improvement(m, f64::NAN, &[], &p).is_err());
        let bad = McParams { tau_max: 0.0, ..p };
        assert_eq!(
            q_log_expected_improvement(m, 0.0, &[], &bad)
                .unwrap_err()
                .to_string(),
            "invalid parameter `tau_max`: temperatures must be finite and > 0, got 0"
        );
        assert!(q_upper_confidence_bound(m, -1.0).is_err());
        assert_eq!(
            SampleMatrix::new(&[0.0, f64::NAN], 2, 1)
                .unwrap_err()
                .to_string(),
            "non-finite value in Monte-Carlo samples: NaN; remove or replace it before calling"
        );
        assert!(evaluate(Acquisition::QEHVI, m, 0.0, &[], &p).is_err());
        assert!(evaluate(Acquisition::QUCB, m, 0.0, &[], &p).is_ok());
    }
}
