//! Covariance functions over base inputs, with analytic gradients with respect to their
//! log-hyperparameters.
//!
//! Every kernel works on inputs already normalised to the unit cube by the model, so
//! length-scales are in unit-cube units. Parameters are exposed in log space (all built-in
//! kernel parameters are positive); the optimiser works in that space.

use crate::error::{GpError, Result};
use faer::{Mat, MatMut};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a hyperparameter means; used to attach priors and default bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ParamKind {
    /// A length-scale (log ℓ).
    LengthScale,
    /// A signal variance or scale (log σ²).
    Variance,
    /// A constant offset (log b).
    Offset,
    /// Anything else.
    Other,
}

/// Description of one kernel hyperparameter (log space).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamInfo {
    /// Human-readable name, e.g. `"rbf.log_lengthscale[3]"`.
    pub name: String,
    /// Meaning.
    pub kind: ParamKind,
    /// Lower and upper bound of the log-space value used by the optimiser.
    pub bounds: (f64, f64),
}

/// Default log-space bounds for length-scales in unit-cube units: ℓ ∈ [1e-2, 1e3].
pub const LENGTHSCALE_LOG_BOUNDS: (f64, f64) = (-4.605_170_185_988_091, 6.907_755_278_982_137);
/// Default log-space bounds for variances and offsets: [1e-6, 1e3].
pub const VARIANCE_LOG_BOUNDS: (f64, f64) = (-13.815_510_557_964_274, 6.907_755_278_982_137);

/// Step of the central finite differences in the default [`Kernel::eval_grad_x`]
/// (unit-cube units).
pub const KERNEL_FD_STEP: f64 = 1e-6;

/// A positive-semidefinite covariance function on base inputs.
///
/// Implement this to add your own kernel; the model is generic over it
/// (`MultiTaskGp<K: Kernel>`). `eval_grad` must return the same value as `eval` and
/// write `∂k/∂pᵢ` for every log-parameter `pᵢ` (in the order of [`Kernel::params`]) into
/// `grad`, whose length is [`Kernel::n_params`]. `eval_grad_x` has a finite-difference
/// default; every built-in kernel overrides it with the analytic input gradient.
pub trait Kernel: Send + Sync + fmt::Debug {
    /// Number of hyperparameters.
    fn n_params(&self) -> usize;
    /// Current hyperparameters (log space).
    fn params(&self) -> Vec<f64>;
    /// Overwrite the hyperparameters. A slice whose length is not [`Kernel::n_params`]
    /// is refused with [`GpError::KernelParamCount`] and leaves the kernel unchanged.
    fn set_params(&mut self, p: &[f64]) -> Result<()>;
    /// Names, kinds and bounds of the hyperparameters.
    fn param_info(&self) -> Vec<ParamInfo>;
    /// Smallest number of input columns this kernel reads (max active dimension + 1).
    fn min_input_dim(&self) -> usize;
    /// Kernel value `k(x, y)`.
    fn eval(&self, x: &[f64], y: &[f64]) -> f64;
    /// Kernel value and its gradient with respect to the log-parameters.
    fn eval_grad(&self, x: &[f64], y: &[f64], grad: &mut [f64]) -> f64;
    /// The block `out[(a, i)] = k(xₐ, yᵢ)` between the `out.nrows()` rows of `x` and the
    /// `out.ncols()` rows of `y` (row-major, `d` columns each). The default evaluates every
    /// pair; the smooth stationary kernels override it with one matrix product for all the
    /// scaled squared distances ([`Matern`]).
    fn cross_block(&self, x: &[f64], y: &[f64], d: usize, out: MatMut<'_, f64>) {
        cross_pairwise(self, x, y, d, out);
    }
    /// Kernel value and its gradient with respect to the FIRST input,
    /// `grad[j] = ∂k(x, y)/∂x_j` for every column `j` of `x` (`grad.len() == x.len()`;
    /// columns the kernel does not read get 0). Where a kernel is not differentiable
    /// (Matérn-½ at `x = y`) the value 0 is returned for the gradient.
    ///
    /// The default uses central differences with step [`KERNEL_FD_STEP`].
    fn eval_grad_x(&self, x: &[f64], y: &[f64], grad: &mut [f64]) -> f64 {
        let mut xp = x.to_vec();
        for j in 0..x.len() {
            xp[j] = x[j] + KERNEL_FD_STEP;
            let up = self.eval(&xp, y);
            xp[j] = x[j] - KERNEL_FD_STEP;
            let dn = self.eval(&xp, y);
            xp[j] = x[j];
            grad[j] = (up - dn) / (2.0 * KERNEL_FD_STEP);
        }
        self.eval(x, y)
    }
}

fn check_len(p: &[f64], n: usize) -> Result<()> {
    if p.len() == n {
        Ok(())
    } else {
        Err(GpError::KernelParamCount {
            expected: n,
            got: p.len(),
        })
    }
}

/// Adds `scale · ∂k/∂x_d` of a stationary kernel to `grad`, given the factor `f` with
/// `∂k/∂log ℓ_d = f · ((x_d − y_d)/ℓ_d)²`: since `k = φ(r²)`, `f = −2φ'(r²)` and
/// `∂k/∂x_d = 2φ'(r²)(x_d − y_d)/ℓ_d² = −f (x_d − y_d)/ℓ_d²`.
fn stationary_grad_x(
    active: &[usize],
    inv_ls: &[f64],
    f: f64,
    x: &[f64],
    y: &[f64],
    scale: f64,
    grad: &mut [f64],
) {
    for (k, &d) in active.iter().enumerate() {
        grad[d] -= scale * f * (x[d] - y[d]) * inv_ls[k] * inv_ls[k];
    }
}

/// Scaled squared distance terms `s_d = ((x_d − y_d)/ℓ_d)²` over the active dimensions.
fn scaled_sq(active: &[usize], inv_ls: &[f64], x: &[f64], y: &[f64], s: &mut [f64]) -> f64 {
    let mut r2 = 0.0;
    for (k, &d) in active.iter().enumerate() {
        let diff = (x[d] - y[d]) * inv_ls[k];
        s[k] = diff * diff;
        r2 += s[k];
    }
    r2
}

/// [`Kernel::cross_block`] pair by pair.
fn cross_pairwise<K: Kernel + ?Sized>(
    k: &K,
    x: &[f64],
    y: &[f64],
    d: usize,
    mut out: MatMut<'_, f64>,
) {
    for a in 0..out.nrows() {
        let xa = &x[a * d..(a + 1) * d];
        for i in 0..out.ncols() {
            out[(a, i)] = k.eval(xa, &y[i * d..(i + 1) * d]);
        }
    }
}

/// Below this many rows of `x` a cross block is evaluated pair by pair: the product path
/// scales a copy of all of `y` first, which only pays when several rows share it.
const CROSS_GEMM_MIN_ROWS: usize = 8;

/// `r²(a, i) = Σ_k ((x_a,k − y_i,k)/ℓ_k)²` over the active columns for every pair of the `m`
/// rows of `x` and the `n` rows of `y`, as `‖x̃_a‖² + ‖ỹ_i‖² − 2 x̃_a·ỹ_i` with one matrix
/// product. The columns are centred on `y`'s mean first (distances do not change), which
/// keeps the cancellation error at the size of the points' spread, not of their coordinates;
/// negative rounding is clamped at 0.
fn scaled_sq_distances(
    active: &[usize],
    inv_ls: &[f64],
    x: &[f64],
    m: usize,
    y: &[f64],
    n: usize,
    d: usize,
) -> Mat<f64> {
    let p = active.len();
    let centre: Vec<f64> = active
        .iter()
        .map(|&c| (0..n).map(|i| y[i * d + c]).sum::<f64>() / n.max(1) as f64)
        .collect();
    let xs = Mat::<f64>::from_fn(m, p, |a, k| (x[a * d + active[k]] - centre[k]) * inv_ls[k]);
    let ys = Mat::<f64>::from_fn(n, p, |i, k| (y[i * d + active[k]] - centre[k]) * inv_ls[k]);
    let xn: Vec<f64> = (0..m)
        .map(|a| (0..p).map(|k| xs[(a, k)] * xs[(a, k)]).sum())
        .collect();
    let yn: Vec<f64> = (0..n)
        .map(|i| (0..p).map(|k| ys[(i, k)] * ys[(i, k)]).sum())
        .collect();
    let mut r2 = Mat::<f64>::zeros(m, n);
    faer::linalg::matmul::matmul(
        r2.as_mut(),
        faer::Accum::Replace,
        xs.as_ref(),
        ys.transpose(),
        -2.0,
        faer::Par::Seq,
    );
    // the product leaves the AVX upper state dirty: clear it before the exponentials
    crate::simd::clear_upper_state();
    for i in 0..n {
        for a in 0..m {
            r2[(a, i)] = (r2[(a, i)] + xn[a] + yn[i]).max(0.0);
        }
    }
    r2
}

fn scaled_r2(active: &[usize], inv_ls: &[f64], x: &[f64], y: &[f64]) -> f64 {
    let mut r2 = 0.0;
    for (k, &d) in active.iter().enumerate() {
        let diff = (x[d] - y[d]) * inv_ls[k];
        r2 += diff * diff;
    }
    r2
}

/// Squared-exponential (RBF) kernel with ARD length-scales, unit variance:
/// `k(x, y) = exp(−½ Σ_d (x_d − y_d)² / ℓ_d²)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "StationaryRaw", into = "StationaryRaw")]
pub struct Rbf {
    active: Vec<usize>,
    log_ls: Vec<f64>,
    inv_ls: Vec<f64>,
}

/// Serialised form of the stationary kernels (the cached inverse length-scales are
/// rebuilt on load, with the same arithmetic, so values stay bit-identical).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StationaryRaw {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nu: Option<Nu>,
    active: Vec<usize>,
    log_ls: Vec<f64>,
}

fn inv_of(log_ls: &[f64]) -> Vec<f64> {
    log_ls.iter().map(|v| (-v).exp()).collect()
}

impl From<StationaryRaw> for Rbf {
    fn from(r: StationaryRaw) -> Self {
        let inv_ls = inv_of(&r.log_ls);
        Self {
            active: r.active,
            log_ls: r.log_ls,
            inv_ls,
        }
    }
}
impl From<Rbf> for StationaryRaw {
    fn from(k: Rbf) -> Self {
        Self {
            nu: None,
            active: k.active,
            log_ls: k.log_ls,
        }
    }
}
impl From<StationaryRaw> for Matern {
    fn from(r: StationaryRaw) -> Self {
        let inv_ls = inv_of(&r.log_ls);
        Self {
            nu: r.nu.unwrap_or(Nu::FiveHalves),
            active: r.active,
            log_ls: r.log_ls,
            inv_ls,
        }
    }
}
impl From<Matern> for StationaryRaw {
    fn from(k: Matern) -> Self {
        Self {
            nu: Some(k.nu),
            active: k.active,
            log_ls: k.log_ls,
        }
    }
}

impl Rbf {
    /// ARD kernel over input columns `0..n_dims`, all length-scales `ls`.
    pub fn new(n_dims: usize, ls: f64) -> Self {
        Self::on_dims((0..n_dims).collect(), ls)
    }
    /// ARD kernel over the given active input columns, all length-scales `ls`.
    pub fn on_dims(active: Vec<usize>, ls: f64) -> Self {
        let log_ls = vec![ls.ln(); active.len()];
        let inv_ls = vec![(-ls.ln()).exp(); active.len()];
        Self {
            active,
            log_ls,
            inv_ls,
        }
    }
    /// Current length-scales.
    pub fn lengthscales(&self) -> Vec<f64> {
        self.log_ls.iter().map(|v| v.exp()).collect()
    }
}

fn ls_info(prefix: &str, n: usize) -> Vec<ParamInfo> {
    (0..n)
        .map(|k| ParamInfo {
            name: format!("{prefix}.log_lengthscale[{k}]"),
            kind: ParamKind::LengthScale,
            bounds: LENGTHSCALE_LOG_BOUNDS,
        })
        .collect()
}

impl Kernel for Rbf {
    fn n_params(&self) -> usize {
        self.log_ls.len()
    }
    fn params(&self) -> Vec<f64> {
        self.log_ls.clone()
    }
    fn set_params(&mut self, p: &[f64]) -> Result<()> {
        check_len(p, self.log_ls.len())?;
        self.log_ls.copy_from_slice(p);
        self.inv_ls = inv_of(p);
        Ok(())
    }
    fn param_info(&self) -> Vec<ParamInfo> {
        ls_info("rbf", self.log_ls.len())
    }
    fn min_input_dim(&self) -> usize {
        self.active.iter().max().map_or(0, |m| m + 1)
    }
    fn eval(&self, x: &[f64], y: &[f64]) -> f64 {
        (-0.5 * scaled_r2(&self.active, &self.inv_ls, x, y)).exp()
    }
    fn eval_grad(&self, x: &[f64], y: &[f64], grad: &mut [f64]) -> f64 {
        let r2 = scaled_sq(&self.active, &self.inv_ls, x, y, grad);
        let k = (-0.5 * r2).exp();
        for g in grad.iter_mut() {
            *g *= k;
        }
        k
    }
    fn eval_grad_x(&self, x: &[f64], y: &[f64], grad: &mut [f64]) -> f64 {
        grad.fill(0.0);
        self.add_grad_x(x, y, 1.0, grad)
    }
}

impl Rbf {
    fn add_grad_x(&self, x: &[f64], y: &[f64], scale: f64, grad: &mut [f64]) -> f64 {
        let k = self.eval(x, y);
        stationary_grad_x(&self.active, &self.inv_ls, k, x, y, scale, grad);
        k
    }
}

/// Smoothness of a Matérn kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Nu {
    /// ν = 1/2 (exponential kernel).
    Half,
    /// ν = 3/2.
    ThreeHalves,
    /// ν = 5/2.
    FiveHalves,
}

/// Matérn kernel with ARD length-scales and unit variance, ν ∈ {1/2, 3/2, 5/2}.
///
/// With `r = sqrt(Σ_d (x_d − y_d)²/ℓ_d²)`: ν=1/2: `e^{−r}`; ν=3/2: `(1+√3 r) e^{−√3 r}`;
/// ν=5/2: `(1+√5 r+5r²/3) e^{−√5 r}` (Rasmussen & Williams 2006, eq. 4.17,
/// ISBN 0-262-18253-X).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "StationaryRaw", into = "StationaryRaw")]
pub struct Matern {
    nu: Nu,
    active: Vec<usize>,
    log_ls: Vec<f64>,
    inv_ls: Vec<f64>,
}

impl Matern {
    /// ARD Matérn over input columns `0..n_dims`, all length-scales `ls`.
    pub fn new(nu: Nu, n_dims: usize, ls: f64) -> Self {
        Self::on_dims(nu, (0..n_dims).collect(), ls)
    }
    /// ARD Matérn over the given active input columns.
    pub fn on_dims(nu: Nu, active: Vec<usize>, ls: f64) -> Self {
        let log_ls = vec![ls.ln(); active.len()];
        let inv_ls = inv_of(&log_ls);
        Self {
            nu,
            active,
            log_ls,
            inv_ls,
        }
    }
    /// Current length-scales.
    pub fn lengthscales(&self) -> Vec<f64> {
        self.log_ls.iter().map(|v| v.exp()).collect()
    }
    /// Value and `(1/r) dk/dr`-type factor `f` such that `∂k/∂log ℓ_d = f · s_d`.
    fn value_and_factor(&self, r2: f64) -> (f64, f64) {
        let r = r2.max(0.0).sqrt();
        match self.nu {
            Nu::Half => {
                let e = (-r).exp();
                let f = if r > 0.0 { e / r } else { 0.0 };
                (e, f)
            }
            Nu::ThreeHalves => {
                let a = 3f64.sqrt() * r;
                let e = (-a).exp();
                ((1.0 + a) * e, 3.0 * e)
            }
            Nu::FiveHalves => {
                let a = 5f64.sqrt() * r;
                let e = (-a).exp();
                ((1.0 + a + 5.0 * r2 / 3.0) * e, 5.0 / 3.0 * (1.0 + a) * e)
            }
        }
    }
}

impl Kernel for Matern {
    fn n_params(&self) -> usize {
        self.log_ls.len()
    }
    fn params(&self) -> Vec<f64> {
        self.log_ls.clone()
    }
    fn set_params(&mut self, p: &[f64]) -> Result<()> {
        check_len(p, self.log_ls.len())?;
        self.log_ls.copy_from_slice(p);
        self.inv_ls = inv_of(p);
        Ok(())
    }
    fn param_info(&self) -> Vec<ParamInfo> {
        ls_info("matern", self.log_ls.len())
    }
    fn min_input_dim(&self) -> usize {
        self.active.iter().max().map_or(0, |m| m + 1)
    }
    fn eval(&self, x: &[f64], y: &[f64]) -> f64 {
        self.value_and_factor(scaled_r2(&self.active, &self.inv_ls, x, y))
            .0
    }
    fn cross_block(&self, x: &[f64], y: &[f64], d: usize, mut out: MatMut<'_, f64>) {
        let (m, n) = (out.nrows(), out.ncols());
        // pairwise below the size where a product pays, and for ν = ½ (not smooth at r = 0,
        // where the product's rounding of r² would show)
        if self.nu == Nu::Half || m < CROSS_GEMM_MIN_ROWS || self.active.is_empty() {
            cross_pairwise(self, x, y, d, out);
            return;
        }
        let r2 = scaled_sq_distances(&self.active, &self.inv_ls, x, m, y, n, d);
        for i in 0..n {
            for a in 0..m {
                out[(a, i)] = self.value_and_factor(r2[(a, i)]).0;
            }
        }
    }
    fn eval_grad(&self, x: &[f64], y: &[f64], grad: &mut [f64]) -> f64 {
        let r2 = scaled_sq(&self.active, &self.inv_ls, x, y, grad);
        let (k, f) = self.value_and_factor(r2);
        for g in grad.iter_mut() {
            *g *= f;
        }
        k
    }
    fn eval_grad_x(&self, x: &[f64], y: &[f64], grad: &mut [f64]) -> f64 {
        grad.fill(0.0);
        self.add_grad_x(x, y, 1.0, grad)
    }
}

impl Matern {
    fn add_grad_x(&self, x: &[f64], y: &[f64], scale: f64, grad: &mut [f64]) -> f64 {
        let (k, f) = self.value_and_factor(scaled_r2(&self.active, &self.inv_ls, x, y));
        stationary_grad_x(&self.active, &self.inv_ls, f, x, y, scale, grad);
        k
    }
}

/// Linear kernel with offset: `k(x, y) = b + v · Σ_d x_d y_d` over the active columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Linear {
    active: Vec<usize>,
    log_offset: f64,
    log_variance: f64,
}

impl Linear {
    /// Linear kernel over columns `0..n_dims` with offset `b` and variance `v`.
    pub fn new(n_dims: usize, b: f64, v: f64) -> Self {
        Self::on_dims((0..n_dims).collect(), b, v)
    }
    /// Linear kernel over the given active columns.
    pub fn on_dims(active: Vec<usize>, b: f64, v: f64) -> Self {
        Self {
            active,
            log_offset: b.ln(),
            log_variance: v.ln(),
        }
    }
    fn dot(&self, x: &[f64], y: &[f64]) -> f64 {
        self.active.iter().map(|&d| x[d] * y[d]).sum()
    }
}

impl Kernel for Linear {
    fn n_params(&self) -> usize {
        2
    }
    fn params(&self) -> Vec<f64> {
        vec![self.log_offset, self.log_variance]
    }
    fn set_params(&mut self, p: &[f64]) -> Result<()> {
        check_len(p, 2)?;
        self.log_offset = p[0];
        self.log_variance = p[1];
        Ok(())
    }
    fn param_info(&self) -> Vec<ParamInfo> {
        vec![
            ParamInfo {
                name: "linear.log_offset".into(),
                kind: ParamKind::Offset,
                bounds: VARIANCE_LOG_BOUNDS,
            },
            ParamInfo {
                name: "linear.log_variance".into(),
                kind: ParamKind::Variance,
                bounds: VARIANCE_LOG_BOUNDS,
            },
        ]
    }
    fn min_input_dim(&self) -> usize {
        self.active.iter().max().map_or(0, |m| m + 1)
    }
    fn eval(&self, x: &[f64], y: &[f64]) -> f64 {
        self.log_offset.exp() + self.log_variance.exp() * self.dot(x, y)
    }
    fn eval_grad(&self, x: &[f64], y: &[f64], grad: &mut [f64]) -> f64 {
        let b = self.log_offset.exp();
        let vd = self.log_variance.exp() * self.dot(x, y);
        grad[0] = b;
        grad[1] = vd;
        b + vd
    }
    fn eval_grad_x(&self, x: &[f64], y: &[f64], grad: &mut [f64]) -> f64 {
        grad.fill(0.0);
        self.add_grad_x(x, y, 1.0, grad)
    }
}

impl Linear {
    fn add_grad_x(&self, x: &[f64], y: &[f64], scale: f64, grad: &mut [f64]) -> f64 {
        let v = self.log_variance.exp();
        for &d in &self.active {
            grad[d] += scale * v * y[d];
        }
        self.eval(x, y)
    }
}

/// Bounds of an embedding coordinate (unit-free; at a distance of 3
/// two levels are practically independent, `exp(−4.5) ≈ 0.011`).
pub const EMBEDDING_COORD_BOUNDS: (f64, f64) = (-3.0, 3.0);
/// Bounds of the logit of the shared fraction of a [`LevelEmbedding`]: a ∈ [0.0025, 0.9975].
pub const SHARED_LOGIT_BOUNDS: (f64, f64) = (-6.0, 6.0);

/// Bounds of the log scale of one level of a [`LevelEmbedding`]: a factor e^±3 in sd.
pub const LEVEL_LOG_SCALE_BOUNDS: (f64, f64) = (-3.0, 3.0);

/// A kernel over a categorical column (for example the cell line): a coregionalisation
/// over the levels whose correlation comes from a learned embedding. Each level `l` has a
/// position `e_l ∈ ℝ^q` and a log scale `σ_l`, and
///
/// `k(x, y) = exp(σ_{l(x)} + σ_{l(y)}) · (a + (1 − a) · exp(−½ ‖e_{l(x)} − e_{l(y)}‖²))`,
///
/// with `a = 1/(1 + e^{−s})` the shared fraction. Between two levels the correlation is at
/// least `a` and closer to 1 the nearer their positions: levels that behave alike move
/// together when the positions are fitted by marginal likelihood with the other
/// hyperparameters (an entity embedding). The scales let one level deviate more than
/// another (a cell line the prior mean describes well next to one it does not). Multiply
/// it with a kernel over the other inputs so that a level borrows strength from the others
/// in proportion to how alike they are.
///
/// The column holds the level index `0..n_levels` (give it the input bounds `(0, 1)` so the
/// model's unit-cube map leaves it unchanged). Any other value (negative, too large, not
/// an integer) is an **unseen** level: its correlation with every known level is `a` and
/// its scale the largest known one, so a prediction for it keeps only the shared part of
/// what was learned and carries the rest as extra uncertainty.
///
/// Parameters (in order): `s`, the `q` coordinates of level 0, of level 1, …, then the log
/// scales of the levels.
///
/// ```
/// use perfusio_gp::kernel::{Kernel, LevelEmbedding};
/// let k = LevelEmbedding::new(0, 3, 2);
/// assert!((k.eval(&[1.0], &[1.0]) - 1.0).abs() < 1e-12);
/// let cross = k.eval(&[0.0], &[2.0]);
/// assert!(cross < 1.0 && cross > k.shared_fraction());
/// // an unseen level (-1) keeps only the shared part
/// assert!((k.eval(&[-1.0], &[0.0]) - k.shared_fraction()).abs() < 1e-12);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelEmbedding {
    /// Input column holding the level index.
    pub column: usize,
    /// Number of known levels.
    pub n_levels: usize,
    /// Dimension `q` of the positions.
    pub dims: usize,
    /// Logit of the shared fraction `a`.
    pub shared_logit: f64,
    /// Positions, level-major (`n_levels · dims`).
    pub coords: Vec<f64>,
    /// Log scale (sd) of each level.
    pub log_scales: Vec<f64>,
}

impl LevelEmbedding {
    /// `n_levels` levels of dimension `dims` in column `column`, spread on a circle (a
    /// line for `dims == 1`) of radius 0.5 — distinct starts, since equal positions have
    /// a zero gradient — with shared fraction ½ and unit scales.
    pub fn new(column: usize, n_levels: usize, dims: usize) -> Self {
        let mut coords = vec![0.0; n_levels * dims];
        for l in 0..n_levels {
            let phi = std::f64::consts::TAU * l as f64 / n_levels.max(1) as f64;
            if dims >= 1 {
                coords[l * dims] = 0.5 * phi.cos();
            }
            if dims >= 2 {
                coords[l * dims + 1] = 0.5 * phi.sin();
            }
        }
        Self {
            column,
            n_levels,
            dims,
            shared_logit: 0.0,
            coords,
            log_scales: vec![0.0; n_levels],
        }
    }

    /// The shared fraction `a` (the correlation of an unseen level with a known one).
    pub fn shared_fraction(&self) -> f64 {
        1.0 / (1.0 + (-self.shared_logit).exp())
    }

    /// Position of level `l`, if known.
    pub fn position(&self, l: usize) -> Option<&[f64]> {
        (l < self.n_levels).then(|| &self.coords[l * self.dims..(l + 1) * self.dims])
    }

    /// The correlation of two known levels.
    pub fn correlation(&self, a: usize, b: usize) -> Option<f64> {
        let (pa, pb) = (self.position(a)?, self.position(b)?);
        let d2: f64 = pa.iter().zip(pb).map(|(x, y)| (x - y) * (x - y)).sum();
        let sh = self.shared_fraction();
        Some(sh + (1.0 - sh) * (-0.5 * d2).exp())
    }

    /// The same kernel with one more level, placed at the mean of the known positions
    /// plus a small offset (a zero distance has a zero gradient) with the largest known
    /// scale, so that a model can be extended with a new level and warm-started.
    pub fn with_new_level(&self) -> Self {
        let mut k = self.clone();
        let q = self.dims;
        let mut centre = vec![0.0; q];
        for l in 0..self.n_levels {
            for (c, v) in centre.iter_mut().zip(&self.coords[l * q..(l + 1) * q]) {
                *c += v / self.n_levels as f64;
            }
        }
        if let Some(c) = centre.first_mut() {
            *c += 0.25;
        }
        k.coords.extend(centre);
        k.log_scales.push(self.unseen_log_scale().1);
        k.n_levels += 1;
        k
    }

    /// `(level, log scale)` of the largest known scale: an unseen level's (0 without levels).
    fn unseen_log_scale(&self) -> (Option<usize>, f64) {
        let mut best = (None, 0.0);
        for (l, &v) in self.log_scales.iter().enumerate() {
            if best.0.is_none() || v > best.1 {
                best = (Some(l), v);
            }
        }
        best
    }

    /// Returns `k(x, y)`; the input gradient is zero (a categorical column).
    fn add_grad_x(&self, x: &[f64], y: &[f64], _scale: f64, _grad: &mut [f64]) -> f64 {
        self.eval(x, y)
    }

    /// The level of an input value, `None` for an unseen level.
    fn level(&self, v: f64) -> Option<usize> {
        let r = v.round();
        ((v - r).abs() < 1e-9 && r >= 0.0 && r < self.n_levels as f64).then_some(r as usize)
    }

    /// Log scale of an input value and the level it belongs to (for an unseen value, the
    /// level whose scale it takes).
    fn scale_of(&self, v: f64) -> (Option<usize>, f64) {
        match self.level(v) {
            Some(l) => (Some(l), self.log_scales[l]),
            None => self.unseen_log_scale(),
        }
    }

    /// `(ρ, levels)`: the correlation part and the two levels when both are known and
    /// differ.
    fn rho(&self, x: &[f64], y: &[f64]) -> (f64, Option<(usize, usize)>) {
        let (vx, vy) = (x[self.column], y[self.column]);
        match (self.level(vx), self.level(vy)) {
            (Some(a), Some(b)) if a == b => (1.0, None),
            (Some(a), Some(b)) => {
                let q = self.dims;
                let d2: f64 = (0..q)
                    .map(|j| {
                        let d = self.coords[a * q + j] - self.coords[b * q + j];
                        d * d
                    })
                    .sum();
                ((-0.5 * d2).exp(), Some((a, b)))
            }
            // an unseen level is itself (the same value) and nothing else
            (None, None) if vx.to_bits() == vy.to_bits() => (1.0, None),
            _ => (0.0, None),
        }
    }
}

impl Kernel for LevelEmbedding {
    fn n_params(&self) -> usize {
        1 + self.coords.len() + self.log_scales.len()
    }
    fn params(&self) -> Vec<f64> {
        let mut p = vec![self.shared_logit];
        p.extend_from_slice(&self.coords);
        p.extend_from_slice(&self.log_scales);
        p
    }
    fn set_params(&mut self, p: &[f64]) -> Result<()> {
        check_len(p, self.n_params())?;
        let nc = self.coords.len();
        self.shared_logit = p[0];
        self.coords.copy_from_slice(&p[1..1 + nc]);
        self.log_scales.copy_from_slice(&p[1 + nc..]);
        Ok(())
    }
    fn param_info(&self) -> Vec<ParamInfo> {
        let mut v = vec![ParamInfo {
            name: "embedding.shared_logit".into(),
            kind: ParamKind::Other,
            bounds: SHARED_LOGIT_BOUNDS,
        }];
        for l in 0..self.n_levels {
            for j in 0..self.dims {
                v.push(ParamInfo {
                    name: format!("embedding.level[{l}][{j}]"),
                    kind: ParamKind::Other,
                    bounds: EMBEDDING_COORD_BOUNDS,
                });
            }
        }
        for l in 0..self.n_levels {
            v.push(ParamInfo {
                name: format!("embedding.log_scale[{l}]"),
                kind: ParamKind::Other,
                bounds: LEVEL_LOG_SCALE_BOUNDS,
            });
        }
        v
    }
    fn min_input_dim(&self) -> usize {
        self.column + 1
    }
    fn eval(&self, x: &[f64], y: &[f64]) -> f64 {
        let a = self.shared_fraction();
        let s = (self.scale_of(x[self.column]).1 + self.scale_of(y[self.column]).1).exp();
        s * (a + (1.0 - a) * self.rho(x, y).0)
    }
    fn eval_grad(&self, x: &[f64], y: &[f64], grad: &mut [f64]) -> f64 {
        let a = self.shared_fraction();
        let (rho, pair) = self.rho(x, y);
        let (lx, sx) = self.scale_of(x[self.column]);
        let (ly, sy) = self.scale_of(y[self.column]);
        let s = (sx + sy).exp();
        let c = a + (1.0 - a) * rho;
        let k = s * c;
        grad.fill(0.0);
        grad[0] = s * a * (1.0 - a) * (1.0 - rho);
        let q = self.dims;
        if let Some((la, lb)) = pair {
            for j in 0..q {
                let d = self.coords[la * q + j] - self.coords[lb * q + j];
                // ∂ρ/∂e_a = −ρ (e_a − e_b), ∂ρ/∂e_b = +ρ (e_a − e_b)
                grad[1 + la * q + j] = -s * (1.0 - a) * rho * d;
                grad[1 + lb * q + j] = s * (1.0 - a) * rho * d;
            }
        }
        let off = 1 + self.coords.len();
        for l in [lx, ly].into_iter().flatten() {
            grad[off + l] += k;
        }
        k
    }
    fn eval_grad_x(&self, x: &[f64], y: &[f64], grad: &mut [f64]) -> f64 {
        // categorical: no gradient along the level column
        grad.fill(0.0);
        self.eval(x, y)
    }
}

/// Serialisable kernel expression: the built-in kernels and their scale, sum and product.
///
/// This is the default kernel type of the model and what persistence stores. Build
/// composites with [`KernelSpec::scaled`], [`KernelSpec::sum`] and [`KernelSpec::product`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum KernelSpec {
    /// RBF kernel.
    Rbf(Rbf),
    /// Matérn kernel.
    Matern(Matern),
    /// Linear kernel.
    Linear(Linear),
    /// Learned embedding of a categorical column.
    LevelEmbedding(LevelEmbedding),
    /// `σ² · k`, parameter `log σ²` first, then the inner kernel's.
    Scale {
        /// log σ².
        log_variance: f64,
        /// The scaled kernel.
        inner: Box<KernelSpec>,
    },
    /// Sum of kernels; parameters concatenated in order.
    Sum(Vec<KernelSpec>),
    /// Product of kernels; parameters concatenated in order.
    Product(Vec<KernelSpec>),
}

impl From<Rbf> for KernelSpec {
    fn from(k: Rbf) -> Self {
        Self::Rbf(k)
    }
}
impl From<Matern> for KernelSpec {
    fn from(k: Matern) -> Self {
        Self::Matern(k)
    }
}
impl From<LevelEmbedding> for KernelSpec {
    fn from(k: LevelEmbedding) -> Self {
        Self::LevelEmbedding(k)
    }
}
impl From<Linear> for KernelSpec {
    fn from(k: Linear) -> Self {
        Self::Linear(k)
    }
}

/// Largest number of factors in a product kernel whose gradient is computed on the stack.
const MAX_STACK_FACTORS: usize = 16;

impl KernelSpec {
    /// `variance · inner`.
    pub fn scaled(inner: impl Into<KernelSpec>, variance: f64) -> Self {
        Self::Scale {
            log_variance: variance.ln(),
            inner: Box::new(inner.into()),
        }
    }
    /// Sum of the given kernels.
    pub fn sum(parts: Vec<KernelSpec>) -> Self {
        Self::Sum(parts)
    }
    /// Product of the given kernels.
    pub fn product(parts: Vec<KernelSpec>) -> Self {
        Self::Product(parts)
    }
}

impl Kernel for KernelSpec {
    fn n_params(&self) -> usize {
        match self {
            Self::Rbf(k) => k.n_params(),
            Self::Matern(k) => k.n_params(),
            Self::Linear(k) => k.n_params(),
            Self::LevelEmbedding(k) => k.n_params(),
            Self::Scale { inner, .. } => 1 + inner.n_params(),
            Self::Sum(v) | Self::Product(v) => v.iter().map(Kernel::n_params).sum(),
        }
    }
    fn params(&self) -> Vec<f64> {
        match self {
            Self::Rbf(k) => k.params(),
            Self::Matern(k) => k.params(),
            Self::Linear(k) => k.params(),
            Self::LevelEmbedding(k) => k.params(),
            Self::Scale {
                log_variance,
                inner,
            } => {
                let mut p = vec![*log_variance];
                p.extend(inner.params());
                p
            }
            Self::Sum(v) | Self::Product(v) => v.iter().flat_map(Kernel::params).collect(),
        }
    }
    fn set_params(&mut self, p: &[f64]) -> Result<()> {
        check_len(p, self.n_params())?;
        match self {
            Self::Rbf(k) => k.set_params(p),
            Self::Matern(k) => k.set_params(p),
            Self::Linear(k) => k.set_params(p),
            Self::LevelEmbedding(k) => k.set_params(p),
            Self::Scale {
                log_variance,
                inner,
            } => {
                *log_variance = p[0];
                inner.set_params(&p[1..])
            }
            Self::Sum(v) | Self::Product(v) => {
                let mut off = 0;
                for k in v.iter_mut() {
                    let n = k.n_params();
                    k.set_params(&p[off..off + n])?;
                    off += n;
                }
                Ok(())
            }
        }
    }
    fn param_info(&self) -> Vec<ParamInfo> {
        match self {
            Self::Rbf(k) => k.param_info(),
            Self::Matern(k) => k.param_info(),
            Self::Linear(k) => k.param_info(),
            Self::LevelEmbedding(k) => k.param_info(),
            Self::Scale { inner, .. } => {
                let mut v = vec![ParamInfo {
                    name: "scale.log_variance".into(),
                    kind: ParamKind::Variance,
                    bounds: VARIANCE_LOG_BOUNDS,
                }];
                v.extend(inner.param_info());
                v
            }
            Self::Sum(v) | Self::Product(v) => v.iter().flat_map(Kernel::param_info).collect(),
        }
    }
    fn min_input_dim(&self) -> usize {
        match self {
            Self::Rbf(k) => k.min_input_dim(),
            Self::Matern(k) => k.min_input_dim(),
            Self::Linear(k) => k.min_input_dim(),
            Self::LevelEmbedding(k) => k.min_input_dim(),
            Self::Scale { inner, .. } => inner.min_input_dim(),
            Self::Sum(v) | Self::Product(v) => {
                v.iter().map(Kernel::min_input_dim).max().unwrap_or(0)
            }
        }
    }
    fn eval(&self, x: &[f64], y: &[f64]) -> f64 {
        match self {
            Self::Rbf(k) => k.eval(x, y),
            Self::Matern(k) => k.eval(x, y),
            Self::Linear(k) => k.eval(x, y),
            Self::LevelEmbedding(k) => k.eval(x, y),
            Self::Scale {
                log_variance,
                inner,
            } => log_variance.exp() * inner.eval(x, y),
            Self::Sum(v) => v.iter().map(|k| k.eval(x, y)).sum(),
            Self::Product(v) => v.iter().map(|k| k.eval(x, y)).product(),
        }
    }
    fn cross_block(&self, x: &[f64], y: &[f64], d: usize, mut out: MatMut<'_, f64>) {
        let (m, n) = (out.nrows(), out.ncols());
        match self {
            Self::Rbf(k) => k.cross_block(x, y, d, out),
            Self::Matern(k) => k.cross_block(x, y, d, out),
            Self::Linear(k) => k.cross_block(x, y, d, out),
            Self::LevelEmbedding(k) => k.cross_block(x, y, d, out),
            Self::Scale {
                log_variance,
                inner,
            } => {
                inner.cross_block(x, y, d, out.as_mut());
                let s = log_variance.exp();
                for i in 0..n {
                    for a in 0..m {
                        out[(a, i)] *= s;
                    }
                }
            }
            Self::Sum(v) | Self::Product(v) => {
                let product = matches!(self, Self::Product(_));
                let Some((first, rest)) = v.split_first() else {
                    out.fill(if product { 1.0 } else { 0.0 });
                    return;
                };
                first.cross_block(x, y, d, out.as_mut());
                let mut part = Mat::<f64>::zeros(m, n);
                for k in rest {
                    k.cross_block(x, y, d, part.as_mut());
                    for i in 0..n {
                        for a in 0..m {
                            if product {
                                out[(a, i)] *= part[(a, i)];
                            } else {
                                out[(a, i)] += part[(a, i)];
                            }
                        }
                    }
                }
            }
        }
    }
    fn eval_grad(&self, x: &[f64], y: &[f64], grad: &mut [f64]) -> f64 {
        match self {
            Self::Rbf(k) => k.eval_grad(x, y, grad),
            Self::Matern(k) => k.eval_grad(x, y, grad),
            Self::Linear(k) => k.eval_grad(x, y, grad),
            Self::LevelEmbedding(k) => k.eval_grad(x, y, grad),
            Self::Scale {
                log_variance,
                inner,
            } => {
                let s = log_variance.exp();
                let kin = inner.eval_grad(x, y, &mut grad[1..]);
                for g in grad[1..].iter_mut() {
                    *g *= s;
                }
                grad[0] = s * kin;
                s * kin
            }
            Self::Sum(v) => {
                let mut off = 0;
                let mut total = 0.0;
                for k in v {
                    let n = k.n_params();
                    total += k.eval_grad(x, y, &mut grad[off..off + n]);
                    off += n;
                }
                total
            }
            Self::Product(v) => {
                let mut vals = [0.0; MAX_STACK_FACTORS];
                let mut heap = Vec::new();
                let vals: &mut [f64] = if v.len() <= MAX_STACK_FACTORS {
                    &mut vals[..v.len()]
                } else {
                    heap.resize(v.len(), 0.0);
                    &mut heap
                };
                let mut off = 0;
                for (j, k) in v.iter().enumerate() {
                    let n = k.n_params();
                    vals[j] = k.eval_grad(x, y, &mut grad[off..off + n]);
                    off += n;
                }
                let mut off = 0;
                for (j, k) in v.iter().enumerate() {
                    let n = k.n_params();
                    let others: f64 = vals
                        .iter()
                        .enumerate()
                        .filter(|(l, _)| *l != j)
                        .map(|(_, v)| *v)
                        .product();
                    for g in grad[off..off + n].iter_mut() {
                        *g *= others;
                    }
                    off += n;
                }
                vals.iter().product()
            }
        }
    }
    fn eval_grad_x(&self, x: &[f64], y: &[f64], grad: &mut [f64]) -> f64 {
        grad.fill(0.0);
        self.add_grad_x(x, y, 1.0, grad)
    }
}

impl KernelSpec {
    /// Adds `scale · ∂k(x, y)/∂x` to `grad` and returns `k(x, y)`.
    fn add_grad_x(&self, x: &[f64], y: &[f64], scale: f64, grad: &mut [f64]) -> f64 {
        match self {
            Self::Rbf(k) => k.add_grad_x(x, y, scale, grad),
            Self::Matern(k) => k.add_grad_x(x, y, scale, grad),
            Self::Linear(k) => k.add_grad_x(x, y, scale, grad),
            Self::LevelEmbedding(k) => k.add_grad_x(x, y, scale, grad),
            Self::Scale {
                log_variance,
                inner,
            } => {
                let s = log_variance.exp();
                s * inner.add_grad_x(x, y, scale * s, grad)
            }
            Self::Sum(v) => v.iter().map(|k| k.add_grad_x(x, y, scale, grad)).sum(),
            Self::Product(v) => {
                let vals: Vec<f64> = v.iter().map(|k| k.eval(x, y)).collect();
                for (j, k) in v.iter().enumerate() {
                    let others: f64 = vals
                        .iter()
                        .enumerate()
                        .filter(|(l, _)| *l != j)
                        .map(|(_, v)| *v)
                        .product();
                    k.add_grad_x(x, y, scale * others, grad);
                }
                vals.iter().product()
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The block cross-covariance (one matrix product for the distances) equals the kernel
    /// evaluated pair by pair, including at coinciding points, for the kernels the hybrid
    /// model builds.
    #[test]
    fn cross_blocks_match_pairwise_evaluation() {
        let d = 5;
        let (m, n) = (23, 31);
        let mut seed = 11u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut y: Vec<f64> = (0..n * d).map(|_| 100.0 + next()).collect();
        for i in 0..n {
            y[i * d + 4] = (i % 3) as f64; // a categorical column
        }
        let mut x: Vec<f64> = (0..m * d).map(|_| 100.0 + next()).collect();
        x[..d].copy_from_slice(&y[..d]); // a test point on a training point
        for a in 0..m {
            x[a * d + 4] = (a % 3) as f64;
        }
        let mut matern = Matern::on_dims(Nu::FiveHalves, vec![0, 1, 2, 3], 0.3);
        matern.set_params(&[-1.5, -0.5, 0.2, 1.0]).unwrap();
        let kernels = [
            KernelSpec::Matern(matern.clone()),
            KernelSpec::Matern(Matern::on_dims(Nu::ThreeHalves, vec![1, 3], 0.05)),
            KernelSpec::Matern(Matern::on_dims(Nu::Half, vec![0, 2], 0.4)),
            KernelSpec::product(vec![
                KernelSpec::Scale {
                    log_variance: 0.7,
                    inner: Box::new(KernelSpec::Matern(matern)),
                },
                KernelSpec::LevelEmbedding(LevelEmbedding::new(4, 3, 2)),
            ]),
            KernelSpec::Sum(vec![
                KernelSpec::Rbf(Rbf::new(4, 0.5)),
                KernelSpec::Linear(Linear::new(2, 0.1, 0.2)),
            ]),
        ];
        for k in &kernels {
            let mut out = Mat::<f64>::zeros(m, n);
            k.cross_block(&x, &y, d, out.as_mut());
            for a in 0..m {
                for i in 0..n {
                    let want = k.eval(&x[a * d..(a + 1) * d], &y[i * d..(i + 1) * d]);
                    let got = out[(a, i)];
                    assert!(
                        (got - want).abs() <= 1e-12 * want.abs().max(1e-3),
                        "{k:?} ({a}, {i}): {got} vs {want}"
                    );
                }
            }
        }
    }

    /// Central finite difference of `k` with respect to log-parameter `j`.
    fn fd(k: &KernelSpec, x: &[f64], y: &[f64], j: usize) -> f64 {
        let h = 1e-6;
        let p = k.params();
        let mut kp = k.clone();
        let mut q = p.clone();
        q[j] += h;
        kp.set_params(&q).unwrap();
        let up = kp.eval(x, y);
        q[j] -= 2.0 * h;
        kp.set_params(&q).unwrap();
        let dn = kp.eval(x, y);
        (up - dn) / (2.0 * h)
    }

    /// Relative error with a floor of 1e-6 on the denominator (gradients that vanish
    /// cannot have a meaningful relative error).
    fn check(k: &KernelSpec, x: &[f64], y: &[f64]) -> std::result::Result<(), TestCaseError> {
        let mut g = vec![0.0; k.n_params()];
        let v = k.eval_grad(x, y, &mut g);
        prop_assert!((v - k.eval(x, y)).abs() <= 1e-14 * v.abs().max(1.0));
        for (j, gj) in g.iter().enumerate() {
            let f = fd(k, x, y, j);
            let rel = (gj - f).abs() / (f.abs().max(1e-6));
            prop_assert!(
                rel < 1e-5,
                "param {j}: analytic {gj}, fd {f}, rel {rel}, kernel {k:?}"
            );
        }
        Ok(())
    }

    fn kernels(ls: &[f64], b: f64, v: f64, s: f64) -> Vec<KernelSpec> {
        let mut rbf = Rbf::new(3, 1.0);
        rbf.set_params(&ls.iter().map(|l| l.ln()).collect::<Vec<_>>())
            .unwrap();
        let mut mats = Vec::new();
        for nu in [Nu::Half, Nu::ThreeHalves, Nu::FiveHalves] {
            let mut m = Matern::new(nu, 3, 1.0);
            m.set_params(&ls.iter().map(|l| l.ln()).collect::<Vec<_>>())
                .unwrap();
            mats.push(KernelSpec::Matern(m));
        }
        let lin = KernelSpec::Linear(Linear::on_dims(vec![0, 2], b, v));
        let mut out = vec![KernelSpec::Rbf(rbf.clone()), lin.clone()];
        out.extend(mats.iter().cloned());
        out.push(KernelSpec::scaled(rbf.clone(), s));
        out.push(KernelSpec::sum(vec![
            KernelSpec::Rbf(rbf.clone()),
            lin.clone(),
        ]));
        out.push(KernelSpec::product(vec![
            KernelSpec::Rbf(Rbf::on_dims(vec![0], ls[0])),
            KernelSpec::scaled(Matern::on_dims(Nu::FiveHalves, vec![1, 2], ls[1]), s),
            lin,
        ]));
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, rng_seed: proptest::test_runner::RngSeed::Fixed(7), ..ProptestConfig::default() })]
        #[test]
        fn kernel_gradients_match_finite_differences(
            x in proptest::collection::vec(0.0f64..1.0, 3),
            dy in proptest::collection::vec(0.05f64..0.6, 3),
            ls in proptest::collection::vec(0.2f64..2.0, 3),
            b in 0.1f64..2.0, v in 0.1f64..2.0, s in 0.2f64..3.0,
        ) {
            let y: Vec<f64> = x.iter().zip(&dy).map(|(a, d)| a + d).collect();
            for k in kernels(&ls, b, v, s) {
                check(&k, &x, &y)?;
            }
        }
    }

    /// Central finite difference of `k(·, y)` with respect to input column `j`.
    fn fd_x(k: &KernelSpec, x: &[f64], y: &[f64], j: usize) -> f64 {
        let h = 1e-6;
        let mut xp = x.to_vec();
        xp[j] += h;
        let up = k.eval(&xp, y);
        xp[j] -= 2.0 * h;
        let dn = k.eval(&xp, y);
        (up - dn) / (2.0 * h)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, rng_seed: proptest::test_runner::RngSeed::Fixed(11), ..ProptestConfig::default() })]
        /// `∂k(x, y)/∂x` of every kernel against central differences (relative error with
        /// a 1e-6 floor), and the value returned equals `eval`.
        #[test]
        fn kernel_input_gradients_match_finite_differences(
            x in proptest::collection::vec(0.0f64..1.0, 3),
            dy in proptest::collection::vec(0.05f64..0.6, 3),
            ls in proptest::collection::vec(0.2f64..2.0, 3),
            b in 0.1f64..2.0, v in 0.1f64..2.0, s in 0.2f64..3.0,
        ) {
            let y: Vec<f64> = x.iter().zip(&dy).map(|(a, d)| a + d).collect();
            for k in kernels(&ls, b, v, s) {
                let mut g = vec![f64::NAN; 3];
                let val = k.eval_grad_x(&x, &y, &mut g);
                prop_assert!((val - k.eval(&x, &y)).abs() <= 1e-14 * val.abs().max(1.0));
                for (j, gj) in g.iter().enumerate() {
                    let f = fd_x(&k, &x, &y, j);
                    let rel = (gj - f).abs() / f.abs().max(1e-6);
                    prop_assert!(rel < 1e-5, "column {j}: analytic {gj}, fd {f}, rel {rel}, kernel {k:?}");
                }
            }
        }
    }

    /// The finite-difference default of `eval_grad_x` agrees with the analytic override.
    #[test]
    fn default_input_gradient_is_close_to_analytic() {
        #[derive(Debug)]
        struct Wrapped(KernelSpec);
        impl Kernel for Wrapped {
            fn n_params(&self) -> usize {
                self.0.n_params()
            }
            fn params(&self) -> Vec<f64> {
                self.0.params()
            }
            fn set_params(&mut self, p: &[f64]) -> Result<()> {
                self.0.set_params(p)
            }
            fn param_info(&self) -> Vec<ParamInfo> {
                self.0.param_info()
            }
            fn min_input_dim(&self) -> usize {
                self.0.min_input_dim()
            }
            fn eval(&self, x: &[f64], y: &[f64]) -> f64 {
                self.0.eval(x, y)
            }
            fn eval_grad(&self, x: &[f64], y: &[f64], g: &mut [f64]) -> f64 {
                self.0.eval_grad(x, y, g)
            }
        }
        let k = KernelSpec::Matern(Matern::new(Nu::FiveHalves, 2, 0.4));
        let (x, y) = ([0.3, 0.8], [0.5, 0.1]);
        let (mut ga, mut gf) = ([0.0; 2], [0.0; 2]);
        k.eval_grad_x(&x, &y, &mut ga);
        Wrapped(k).eval_grad_x(&x, &y, &mut gf);
        for (a, f) in ga.iter().zip(&gf) {
            assert!((a - f).abs() < 1e-8 * a.abs().max(1.0), "{a} vs {f}");
        }
    }

    #[test]
    fn set_params_with_a_wrong_length_is_a_typed_error() {
        let mut k = KernelSpec::sum(vec![
            KernelSpec::Rbf(Rbf::new(2, 0.5)),
            KernelSpec::Linear(Linear::new(2, 1.0, 1.0)),
        ]);
        let before = k.clone();
        assert_eq!(
            k.set_params(&[0.0; 3]),
            Err(GpError::KernelParamCount {
                expected: 4,
                got: 3
            })
        );
        assert_eq!(k, before);
        assert_eq!(
            k.set_params(&[0.0; 5]).unwrap_err().to_string(),
            "the kernel has 4 log-parameters but 5 were given; pass one value per entry of `param_info()`"
        );
        let mut m = Matern::new(Nu::Half, 3, 1.0);
        assert!(m.set_params(&[0.0; 2]).is_err());
        assert!(m.set_params(&[0.0; 3]).is_ok());
    }

    #[test]
    fn closed_form_values() {
        // r = 1 with ℓ = 1 on one dimension
        let (x, y) = ([0.0], [1.0]);
        let e = |nu| KernelSpec::Matern(Matern::new(nu, 1, 1.0)).eval(&x, &y);
        approx::assert_relative_eq!(e(Nu::Half), (-1f64).exp(), max_relative = 1e-15);
        let s3 = 3f64.sqrt();
        approx::assert_relative_eq!(
            e(Nu::ThreeHalves),
            (1.0 + s3) * (-s3).exp(),
            max_relative = 1e-15
        );
        let s5 = 5f64.sqrt();
        approx::assert_relative_eq!(
            e(Nu::FiveHalves),
            (1.0 + s5 + 5.0 / 3.0) * (-s5).exp(),
            max_relative = 1e-15
        );
        approx::assert_relative_eq!(
            Rbf::new(1, 2.0).eval(&x, &y),
            (-0.125f64).exp(),
            max_relative = 1e-15
        );
        approx::assert_relative_eq!(
            Linear::new(2, 0.5, 2.0).eval(&[1.0, 2.0], &[3.0, -1.0]),
            0.5 + 2.0 * 1.0,
            max_relative = 1e-15
        );
    }

    #[test]
    fn serde_round_trip_keeps_values() {
        let k = KernelSpec::product(vec![
            KernelSpec::Rbf(Rbf::new(2, 0.3)),
            KernelSpec::scaled(Linear::new(2, 1.0, 0.5), 2.0),
        ]);
        let s = serde_json::to_string(&k).unwrap();
        let k2: KernelSpec = serde_json::from_str(&s).unwrap();
        let (a, b) = ([0.1, 0.7], [0.4, 0.2]);
        assert_eq!(k.eval(&a, &b).to_bits(), k2.eval(&a, &b).to_bits());
    }

    #[test]
    fn level_embedding_gradients_match_finite_differences() {
        let mut k = LevelEmbedding::new(1, 3, 2);
        k.shared_logit = 0.3;
        k.coords = vec![0.1, -0.4, 0.9, 0.2, -0.5, 0.7];
        k.log_scales = vec![0.2, -0.3, 0.5];
        let spec = KernelSpec::product(vec![
            KernelSpec::Matern(Matern::on_dims(Nu::FiveHalves, vec![0], 0.4)),
            KernelSpec::LevelEmbedding(k.clone()),
        ]);
        for (x, y) in [
            ([0.2, 0.0], [0.5, 2.0]),
            ([0.2, 1.0], [0.5, 1.0]),
            ([0.2, -1.0], [0.5, 1.0]),
            ([0.7, 2.0], [0.1, 1.0]),
        ] {
            check(&spec, &x, &y).unwrap();
            check(&KernelSpec::LevelEmbedding(k.clone()), &x, &y).unwrap();
        }
        // closed form between levels 0 and 1:
        // e^(0.2 − 0.3) (a + (1 − a) exp(−½ ((0.1−0.9)² + (−0.4−0.2)²)))
        let a = 1.0 / (1.0 + (-0.3f64).exp());
        let want = (-0.1f64).exp() * (a + (1.0 - a) * (-0.5f64 * (0.64 + 0.36)).exp());
        assert!((k.eval(&[0.0, 0.0], &[0.0, 1.0]) - want).abs() < 1e-14);
        assert!((k.eval(&[0.0, 2.0], &[0.0, 2.0]) - 1.0f64.exp()).abs() < 1e-14);
        // unseen levels take the largest scale (level 2's, 0.5): itself e^1, a known level
        // a · e^(0.5 + σ_l); a non-integer value is unseen too
        assert!((k.eval(&[0.0, -1.0], &[0.0, -1.0]) - 1.0f64.exp()).abs() < 1e-14);
        assert!((k.eval(&[0.0, 7.0], &[0.0, 2.0]) - a * 1.0f64.exp()).abs() < 1e-14);
        assert!((k.eval(&[0.0, 0.5], &[0.0, 0.0]) - a * 0.7f64.exp()).abs() < 1e-14);
        assert!((k.correlation(0, 1).unwrap() - want / (-0.1f64).exp()).abs() < 1e-14);
    }

    #[test]
    fn a_new_level_extends_the_parameters_and_keeps_the_old_ones() {
        let k = LevelEmbedding::new(0, 2, 2);
        let k3 = k.with_new_level();
        assert_eq!(k3.n_levels, 3);
        assert_eq!(k3.n_params(), k.n_params() + 3);
        assert_eq!(&k3.coords[..4], &k.coords[..]);
        assert_eq!(&k3.log_scales[..2], &k.log_scales[..]);
        // the new level is known now, and distinct from the others
        let v = k3.eval(&[2.0], &[0.0]);
        assert!(v < 1.0 && v > k3.shared_fraction(), "{v}");
    }
}
