//! Numerical core: data preparation, negative log marginal likelihood and its gradient on
//! the dense and Kronecker paths, and the cached posterior state.

use crate::error::{GpError, Result};
use crate::kernel::Kernel;
use crate::mean::PriorMean;
use crate::params::FitOptions;
use faer::linalg::solvers::DenseSolveCore;
use faer::linalg::solvers::Llt;
use faer::{Mat, MatRef, Par, Side};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

const LN_2PI: f64 = 1.837_877_066_409_345_5;
/// Bounds of each entry of `W` (standardised units).
pub(crate) const W_BOUNDS: (f64, f64) = (-5.0, 5.0);
/// Log bounds of each κ: [1e-6, 20].
pub(crate) const LOG_KAPPA_BOUNDS: (f64, f64) = (-13.815_510_557_964_274, 2.995_732_273_553_991);

/// Check X (row-major, `n_cols` columns, last column = task id) and y; returns the row count.
pub(crate) fn validate(
    x: &[f64],
    n_cols: usize,
    y: Option<&[f64]>,
    n_tasks: usize,
) -> Result<usize> {
    if n_cols < 1 {
        return Err(GpError::ShapeMismatch(
            "X needs at least one column (the task id, last)".into(),
        ));
    }
    if !x.len().is_multiple_of(n_cols) {
        return Err(GpError::ShapeMismatch(format!(
            "X has {} values, which is not a multiple of n_cols = {n_cols}",
            x.len()
        )));
    }
    let n = x.len() / n_cols;
    if let Some(y) = y {
        if y.len() != n {
            return Err(GpError::ShapeMismatch(format!(
                "X has {n} rows but y has {} values",
                y.len()
            )));
        }
        if let Some(row) = y.iter().position(|v| !v.is_finite()) {
            return Err(GpError::NonFinite {
                what: "y",
                row,
                col: 0,
            });
        }
    }
    for (row, r) in x.chunks_exact(n_cols).enumerate() {
        if let Some(col) = r.iter().position(|v| !v.is_finite()) {
            return Err(GpError::NonFinite {
                what: "X",
                row,
                col,
            });
        }
        let t = r[n_cols - 1];
        if t < 0.0 || t.fract().abs() > 0.0 || t >= n_tasks as f64 {
            return Err(GpError::TaskOutOfRange {
                row,
                value: t,
                n_tasks,
            });
        }
    }
    Ok(n)
}

/// Task id of a validated row.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub(crate) fn task_of(row: &[f64]) -> usize {
    row[row.len() - 1] as usize
}

/// Affine map of each base column onto the unit cube (fixed at fit time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Normaliser {
    pub(crate) lo: Vec<f64>,
    pub(crate) inv_range: Vec<f64>,
}

impl Normaliser {
    pub(crate) fn from_data(x: &[f64], n_cols: usize) -> Self {
        let d = n_cols - 1;
        let mut lo = vec![f64::INFINITY; d];
        let mut hi = vec![f64::NEG_INFINITY; d];
        for r in x.chunks_exact(n_cols) {
            for j in 0..d {
                lo[j] = lo[j].min(r[j]);
                hi[j] = hi[j].max(r[j]);
            }
        }
        let inv_range = lo
            .iter()
            .zip(&hi)
            .map(|(l, h)| if h - l > 0.0 { 1.0 / (h - l) } else { 1.0 })
            .collect();
        Self { lo, inv_range }
    }
    pub(crate) fn apply(&self, row: &[f64], out: &mut Vec<f64>) {
        for (j, v) in row.iter().take(self.lo.len()).enumerate() {
            out.push((v - self.lo[j]) * self.inv_range[j]);
        }
    }
}

/// Per-task mean and standard deviation of the residuals `y − m(x)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Standardiser {
    pub(crate) mean: Vec<f64>,
    pub(crate) std: Vec<f64>,
}

impl Standardiser {
    pub(crate) fn from_residuals(res: &[f64], tasks: &[usize], n_tasks: usize) -> Self {
        let mut cnt = vec![0usize; n_tasks];
        let mut sum = vec![0.0; n_tasks];
        for (r, &t) in res.iter().zip(tasks) {
            cnt[t] += 1;
            sum[t] += r;
        }
        let mean: Vec<f64> = sum
            .iter()
            .zip(&cnt)
            .map(|(s, &c)| if c > 0 { s / c as f64 } else { 0.0 })
            .collect();
        let mut ss = vec![0.0; n_tasks];
        for (r, &t) in res.iter().zip(tasks) {
            ss[t] += (r - mean[t]).powi(2);
        }
        let std = ss
            .iter()
            .zip(&cnt)
            .map(|(s, &c)| {
                let v = if c > 1 {
                    (s / (c - 1) as f64).sqrt()
                } else {
                    0.0
                };
                // a constant or single-point task keeps unit scale
                if v > 1e-12 { v } else { 1.0 }
            })
            .collect();
        Self { mean, std }
    }
}

/// Training set in model coordinates: unique normalised base inputs and the rows that
/// index them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TrainSet {
    pub(crate) d: usize,
    pub(crate) n_tasks: usize,
    /// Unique normalised base inputs, `n_base × d` row-major.
    pub(crate) base: Vec<f64>,
    pub(crate) n_base: usize,
    pub(crate) row_base: Vec<usize>,
    pub(crate) row_task: Vec<usize>,
    /// Standardised residual targets.
    pub(crate) z: Vec<f64>,
}

fn key(row: &[f64]) -> Vec<u64> {
    // +0.0 turns −0.0 into +0.0 so both group together
    row.iter().map(|v| (v + 0.0).to_bits()).collect()
}

impl TrainSet {
    pub(crate) fn n(&self) -> usize {
        self.row_task.len()
    }
    pub(crate) fn base_row(&self, i: usize) -> &[f64] {
        &self.base[i * self.d..(i + 1) * self.d]
    }
    fn key_map(&self) -> HashMap<Vec<u64>, usize> {
        (0..self.n_base)
            .map(|i| (key(self.base_row(i)), i))
            .collect()
    }
    /// Add validated rows (normalised with `norm`, standardised with `st`).
    pub(crate) fn extend(
        &mut self,
        x: &[f64],
        n_cols: usize,
        y: &[f64],
        norm: &Normaliser,
        st: &Standardiser,
        mean: &dyn PriorMean,
    ) {
        let mut map = self.key_map();
        let mut buf = Vec::with_capacity(self.d);
        for (r, yv) in x.chunks_exact(n_cols).zip(y) {
            let t = task_of(r);
            buf.clear();
            norm.apply(r, &mut buf);
            let k = key(&buf);
            let i = *map.entry(k).or_insert_with(|| {
                self.base.extend_from_slice(&buf);
                self.n_base += 1;
                self.n_base - 1
            });
            self.row_base.push(i);
            self.row_task.push(t);
            let res = yv - mean.mean(&r[..n_cols - 1], t);
            self.z.push((res - st.mean[t]) / st.std[t]);
        }
    }
    /// The training rows as a base-input × task grid with gaps, if no (input, task) cell is
    /// observed twice and at most [`MAX_GAP_FRACTION`] of the cells are empty.
    pub(crate) fn grid(&self) -> Option<Grid> {
        let cells = self.n_base * self.n_tasks;
        if self.n() > cells || (cells - self.n()) as f64 > MAX_GAP_FRACTION * cells as f64 {
            return None;
        }
        let mut z = Mat::<f64>::full(self.n_base, self.n_tasks, f64::NAN);
        for r in 0..self.n() {
            let (i, t) = (self.row_base[r], self.row_task[r]);
            if !z[(i, t)].is_nan() {
                return None;
            }
            z[(i, t)] = self.z[r];
        }
        let mut missing = Vec::new();
        for t in 0..self.n_tasks {
            for i in 0..self.n_base {
                if z[(i, t)].is_nan() {
                    z[(i, t)] = 0.0;
                    missing.push((i, t));
                }
            }
        }
        Some(Grid { z, missing })
    }

    /// `Some(Z)` (n_base × n_tasks) if every task is observed exactly once at every base input.
    pub(crate) fn complete_matrix(&self) -> Option<Mat<f64>> {
        if self.n() != self.n_base * self.n_tasks {
            return None;
        }
        self.grid().filter(|g| g.missing.is_empty()).map(|g| g.z)
    }
}

/// Largest fraction of empty grid cells for which the likelihood is evaluated on the
/// Kronecker grid with a Schur-complement correction instead of the dense path (the
/// correction costs O(m·N²·T + m³) for m empty cells).
pub const MAX_GAP_FRACTION: f64 = 0.2;

/// Targets on the base-input × task grid (zeros in the empty cells) and the empty cells.
#[derive(Debug, Clone)]
pub(crate) struct Grid {
    pub(crate) z: Mat<f64>,
    pub(crate) missing: Vec<(usize, usize)>,
}

/// Build normaliser, standardiser and training set from validated data.
pub(crate) fn prepare(
    x: &[f64],
    n_cols: usize,
    y: &[f64],
    n_tasks: usize,
    mean: &dyn PriorMean,
) -> (Normaliser, Standardiser, TrainSet) {
    let norm = Normaliser::from_data(x, n_cols);
    let tasks: Vec<usize> = x.chunks_exact(n_cols).map(task_of).collect();
    let res: Vec<f64> = x
        .chunks_exact(n_cols)
        .zip(y)
        .zip(&tasks)
        .map(|((r, yv), &t)| yv - mean.mean(&r[..n_cols - 1], t))
        .collect();
    let st = Standardiser::from_residuals(&res, &tasks, n_tasks);
    let mut ts = TrainSet {
        d: n_cols - 1,
        n_tasks,
        base: Vec::new(),
        n_base: 0,
        row_base: Vec::new(),
        row_task: Vec::new(),
        z: Vec::new(),
    };
    ts.extend(x, n_cols, y, &norm, &st, mean);
    (norm, st, ts)
}

/// Layout of the full hyperparameter vector θ:
/// `[kernel (log) | W (n_tasks × rank, raw) | ln κ (n_tasks) | ln σ² (n_tasks)]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Layout {
    pub(crate) nk: usize,
    pub(crate) t: usize,
    pub(crate) r: usize,
}

impl Layout {
    pub(crate) fn len(&self) -> usize {
        self.nk + self.t * self.r + 2 * self.t
    }
    pub(crate) fn w(&self) -> std::ops::Range<usize> {
        self.nk..self.nk + self.t * self.r
    }
    pub(crate) fn kappa(&self) -> std::ops::Range<usize> {
        let s = self.nk + self.t * self.r;
        s..s + self.t
    }
    pub(crate) fn noise(&self) -> std::ops::Range<usize> {
        let s = self.nk + self.t * self.r + self.t;
        s..s + self.t
    }
}

/// Task covariance `B = W Wᵀ + diag(κ)` from θ.
pub(crate) fn task_matrix(theta: &[f64], lay: &Layout) -> Mat<f64> {
    let w = &theta[lay.w()];
    let kap = &theta[lay.kappa()];
    Mat::from_fn(lay.t, lay.t, |a, b| {
        let mut v: f64 = (0..lay.r)
            .map(|k| w[a * lay.r + k] * w[b * lay.r + k])
            .sum();
        if a == b {
            v += kap[a].exp();
        }
        v
    })
}

/// Base kernel matrix over the unique training inputs.
pub(crate) fn kx_matrix<K: Kernel>(k: &K, ts: &TrainSet) -> Mat<f64> {
    let n = ts.n_base;
    let mut m = Mat::<f64>::zeros(n, n);
    for i in 0..n {
        let xi = ts.base_row(i);
        for j in 0..=i {
            let v = k.eval(xi, ts.base_row(j));
            m[(i, j)] = v;
            m[(j, i)] = v;
        }
    }
    m
}

/// `out[p] = Σ_ij G[i,j] ∂K_x[i,j]/∂θ_p` for symmetric `G`, one pass over the pairs.
pub(crate) fn contract<K: Kernel>(k: &K, ts: &TrainSet, g: MatRef<'_, f64>, out: &mut [f64]) {
    let np = k.n_params();
    let mut buf = vec![0.0; np];
    for i in 0..ts.n_base {
        let xi = ts.base_row(i);
        for j in 0..=i {
            let w = if i == j {
                g[(i, i)]
            } else {
                g[(i, j)] + g[(j, i)]
            };
            if w == 0.0 {
                continue;
            }
            k.eval_grad(xi, ts.base_row(j), &mut buf);
            for (o, b) in out.iter_mut().zip(&buf) {
                *o += w * b;
            }
        }
    }
}

/// Cross kernel between `m` normalised test inputs (row-major) and the training bases.
pub(crate) fn cross<K: Kernel>(k: &K, test: &[f64], m: usize, ts: &TrainSet) -> Mat<f64> {
    let d = ts.d;
    Mat::from_fn(m, ts.n_base, |a, i| {
        k.eval(&test[a * d..(a + 1) * d], ts.base_row(i))
    })
}

/// Cholesky with bounded jitter escalation. Returns the lower factor and the absolute
/// jitter added (0 if none).
pub(crate) fn chol_jitter(kmat: Mat<f64>, opts: &FitOptions) -> Result<(Mat<f64>, f64)> {
    chol_jitter_llt(kmat, opts).map(|(llt, j)| (llt.L().to_owned(), j))
}

/// As [`chol_jitter`], keeping faer's factorisation object (for its inverse).
pub(crate) fn chol_jitter_llt(mut kmat: Mat<f64>, opts: &FitOptions) -> Result<(Llt<f64>, f64)> {
    let n = kmat.nrows();
    if let Ok(llt) = kmat.llt(Side::Lower) {
        return Ok((llt, 0.0));
    }
    let mean_diag = (0..n).map(|i| kmat[(i, i)]).sum::<f64>() / n.max(1) as f64;
    let mut rel = opts.jitter_start;
    let mut added = 0.0;
    loop {
        let j = rel * mean_diag.abs().max(f64::MIN_POSITIVE);
        for i in 0..n {
            kmat[(i, i)] += j - added;
        }
        added = j;
        if let Ok(llt) = kmat.llt(Side::Lower) {
            tracing::debug!(jitter = j, "Cholesky needed jitter");
            return Ok((llt, j));
        }
        if rel >= opts.max_jitter {
            return Err(GpError::NotPositiveDefinite { jitter: j });
        }
        rel = (rel * 10.0).min(opts.max_jitter);
    }
}

/// Inverse of `L Lᵀ` from its lower factor.
pub(crate) fn inverse_from_l(l: MatRef<'_, f64>) -> Mat<f64> {
    let n = l.nrows();
    let mut li = Mat::<f64>::identity(n, n);
    faer::linalg::triangular_solve::solve_lower_triangular_in_place(l, li.as_mut(), Par::Seq);
    let out: Mat<f64> = li.transpose() * li.as_ref();
    out
}

/// Solve `L Lᵀ x = b`.
pub(crate) fn chol_solve(l: MatRef<'_, f64>, b: &[f64]) -> Vec<f64> {
    let mut v = Mat::from_fn(b.len(), 1, |i, _| b[i]);
    faer::linalg::triangular_solve::solve_lower_triangular_in_place(l, v.as_mut(), Par::Seq);
    faer::linalg::triangular_solve::solve_upper_triangular_in_place(
        l.transpose(),
        v.as_mut(),
        Par::Seq,
    );
    (0..b.len()).map(|i| v[(i, 0)]).collect()
}

/// Dense row covariance `K[r,s] = K_x[i_r,i_s]·B[t_r,t_s] + δ_rs σ²_{t_r}`.
pub(crate) fn dense_k(
    ts: &TrainSet,
    kx: MatRef<'_, f64>,
    b: MatRef<'_, f64>,
    noise: &[f64],
) -> Mat<f64> {
    let n = ts.n();
    Mat::from_fn(n, n, |r, s| {
        let v = kx[(ts.row_base[r], ts.row_base[s])] * b[(ts.row_task[r], ts.row_task[s])];
        if r == s { v + noise[ts.row_task[r]] } else { v }
    })
}

/// NLML value, gradient over θ (if asked) and jitter.
pub(crate) struct Eval {
    pub(crate) nlml: f64,
    pub(crate) grad: Vec<f64>,
    pub(crate) jitter: f64,
}

/// Gradient of the task-covariance and noise parts from `G_B` (T×T) and per-task noise terms.
fn task_grads(
    theta: &[f64],
    lay: &Layout,
    gb: MatRef<'_, f64>,
    gnoise: &[f64],
    noise: &[f64],
    grad: &mut [f64],
) {
    let w = &theta[lay.w()];
    let wr = lay.w();
    for t in 0..lay.t {
        for k in 0..lay.r {
            let v: f64 = (0..lay.t).map(|b| gb[(t, b)] * w[b * lay.r + k]).sum();
            grad[wr.start + t * lay.r + k] = v;
        }
        grad[lay.kappa().start + t] = 0.5 * gb[(t, t)] * theta[lay.kappa().start + t].exp();
        grad[lay.noise().start + t] = 0.5 * noise[t] * gnoise[t];
    }
}

/// Dense path: O(n³) in the number of rows, gradients contracted at N×N (base) level.
pub(crate) fn eval_dense<K: Kernel>(
    k: &K,
    ts: &TrainSet,
    theta: &[f64],
    lay: &Layout,
    opts: &FitOptions,
    want_grad: bool,
) -> Result<Eval> {
    let kx = kx_matrix(k, ts);
    let b = task_matrix(theta, lay);
    let noise: Vec<f64> = theta[lay.noise()].iter().map(|v| v.exp()).collect();
    let n = ts.n();
    let (llt, jitter) = chol_jitter_llt(dense_k(ts, kx.as_ref(), b.as_ref(), &noise), opts)?;
    let l = llt.L();
    let alpha = chol_solve(l, &ts.z);
    let quad: f64 = alpha.iter().zip(&ts.z).map(|(a, z)| a * z).sum();
    let logdet: f64 = 2.0 * (0..n).map(|i| l[(i, i)].ln()).sum::<f64>();
    let nlml = 0.5 * quad + 0.5 * logdet + 0.5 * n as f64 * LN_2PI;
    let mut grad = vec![0.0; lay.len()];
    if want_grad {
        let kinv = llt.inverse();
        let mut gx = Mat::<f64>::zeros(ts.n_base, ts.n_base);
        let mut gb = Mat::<f64>::zeros(lay.t, lay.t);
        let mut gn = vec![0.0; lay.t];
        for r in 0..n {
            let (ir, tr) = (ts.row_base[r], ts.row_task[r]);
            for s in 0..n {
                let (is, tsk) = (ts.row_base[s], ts.row_task[s]);
                let m = kinv[(r, s)] - alpha[r] * alpha[s];
                gx[(ir, is)] += m * b[(tr, tsk)];
                gb[(tr, tsk)] += m * kx[(ir, is)];
            }
            gn[tr] += kinv[(r, r)] - alpha[r] * alpha[r];
        }
        let mut gk = vec![0.0; lay.nk];
        contract(k, ts, gx.as_ref(), &mut gk);
        for (g, v) in grad.iter_mut().zip(&gk) {
            *g = 0.5 * v;
        }
        task_grads(theta, lay, gb.as_ref(), &gn, &noise, &mut grad);
    }
    Ok(Eval { nlml, grad, jitter })
}

/// Kronecker pieces shared by the likelihood and the posterior.
pub(crate) struct KronParts {
    pub(crate) kx: Mat<f64>,
    pub(crate) b: Mat<f64>,
    pub(crate) qx: Mat<f64>,
    pub(crate) lx: Vec<f64>,
    pub(crate) qb: Mat<f64>,
    pub(crate) lb: Vec<f64>,
    pub(crate) sd: Vec<f64>,
    /// `α` as an N×T matrix.
    pub(crate) a: Mat<f64>,
    pub(crate) nlml: f64,
    /// `log|K_full|`.
    pub(crate) logdet: f64,
}

fn sym_eigen(m: &Mat<f64>, what: &'static str) -> Result<(Mat<f64>, Vec<f64>)> {
    let e = m
        .self_adjoint_eigen(Side::Lower)
        .map_err(|_| GpError::Eigen { what })?;
    let s = e.S().column_vector();
    let vals = (0..m.nrows()).map(|i| s[i].max(0.0)).collect();
    Ok((e.U().to_owned(), vals))
}

/// Kronecker path: `K = K_x ⊗ B + I ⊗ D`, whitened by `D^{-1/2}` and solved through the
/// eigendecompositions of `K_x` (N×N) and `D^{-1/2} B D^{-1/2}` (T×T).
pub(crate) fn kron_parts<K: Kernel>(
    k: &K,
    ts: &TrainSet,
    zmat: MatRef<'_, f64>,
    theta: &[f64],
    lay: &Layout,
) -> Result<KronParts> {
    let (n, t) = (ts.n_base, lay.t);
    let kx = kx_matrix(k, ts);
    let b = task_matrix(theta, lay);
    let sd: Vec<f64> = theta[lay.noise()].iter().map(|v| (0.5 * v).exp()).collect();
    let bt = Mat::from_fn(t, t, |i, j| b[(i, j)] / (sd[i] * sd[j]));
    let (qx, lx) = sym_eigen(&kx, "input kernel")?;
    let (qb, lb) = sym_eigen(&bt, "task covariance")?;
    let ytil = Mat::from_fn(n, t, |i, j| zmat[(i, j)] / sd[j]);
    let tmp: Mat<f64> = qx.transpose() * ytil.as_ref();
    let mut zt: Mat<f64> = tmp.as_ref() * qb.as_ref();
    let mut logdet_s = 0.0;
    for i in 0..n {
        for j in 0..t {
            let s = lx[i] * lb[j] + 1.0;
            zt[(i, j)] /= s;
            logdet_s += s.ln();
        }
    }
    let tmp: Mat<f64> = qx.as_ref() * zt.as_ref();
    let atil: Mat<f64> = tmp.as_ref() * qb.transpose();
    let a = Mat::from_fn(n, t, |i, j| atil[(i, j)] / sd[j]);
    let mut quad = 0.0;
    for i in 0..n {
        for j in 0..t {
            quad += zmat[(i, j)] * a[(i, j)];
        }
    }
    let logdet = n as f64 * theta[lay.noise()].iter().sum::<f64>() + logdet_s;
    let nlml = 0.5 * quad + 0.5 * logdet + 0.5 * (n * t) as f64 * LN_2PI;
    Ok(KronParts {
        kx,
        b,
        qx,
        lx,
        qb,
        lb,
        sd,
        a,
        nlml,
        logdet,
    })
}

impl KronParts {
    /// `K_full⁻¹ Y` for an N×T matrix `Y` (vec ordering: base input major).
    fn apply_inv(&self, y: MatRef<'_, f64>) -> Mat<f64> {
        let (n, t) = (y.nrows(), y.ncols());
        let ytil = Mat::from_fn(n, t, |i, j| y[(i, j)] / self.sd[j]);
        let tmp: Mat<f64> = self.qx.transpose() * ytil.as_ref();
        let mut zt: Mat<f64> = tmp.as_ref() * self.qb.as_ref();
        for i in 0..n {
            for j in 0..t {
                zt[(i, j)] /= self.lx[i] * self.lb[j] + 1.0;
            }
        }
        let tmp: Mat<f64> = self.qx.as_ref() * zt.as_ref();
        let at: Mat<f64> = tmp.as_ref() * self.qb.transpose();
        Mat::from_fn(n, t, |i, j| at[(i, j)] / self.sd[j])
    }
}

/// Kronecker path on a grid with empty cells M: with `U = K_full⁻¹ E_M` and
/// `S = E_Mᵀ K_full⁻¹ E_M`, the observed block satisfies `log|K_OO| = log|K_full| + log|S|`
/// and its zero-padded inverse is `K_full⁻¹ − U S⁻¹ Uᵀ`; every trace in the gradient then
/// splits into the Kronecker term and an O(m·N²·T) correction.
pub(crate) fn eval_kron<K: Kernel>(
    k: &K,
    ts: &TrainSet,
    grid: &Grid,
    theta: &[f64],
    lay: &Layout,
    want_grad: bool,
) -> Result<Eval> {
    let mut p = kron_parts(k, ts, grid.z.as_ref(), theta, lay)?;
    let (n, t) = (ts.n_base, lay.t);
    let m = grid.missing.len();
    let mut us: Vec<Mat<f64>> = Vec::with_capacity(m);
    let mut vs: Vec<Mat<f64>> = Vec::with_capacity(m);
    if m > 0 {
        for &(i, tt) in &grid.missing {
            let mut e = Mat::<f64>::zeros(n, t);
            e[(i, tt)] = 1.0;
            us.push(p.apply_inv(e.as_ref()));
        }
        let smat = Mat::from_fn(m, m, |a, b| {
            let (ia, ta) = grid.missing[a];
            let (ib, tb) = grid.missing[b];
            0.5 * (us[b][(ia, ta)] + us[a][(ib, tb)])
        });
        let llt = smat
            .llt(Side::Lower)
            .map_err(|_| GpError::NotPositiveDefinite { jitter: 0.0 })?;
        let lsv = llt.L();
        let logdet_s: f64 = 2.0 * (0..m).map(|a| lsv[(a, a)].ln()).sum::<f64>();
        let a0m: Vec<f64> = grid.missing.iter().map(|&(i, tt)| p.a[(i, tt)]).collect();
        let c = chol_solve(lsv, &a0m);
        for (a, ca) in c.iter().enumerate() {
            for j in 0..t {
                for i in 0..n {
                    p.a[(i, j)] -= ca * us[a][(i, j)];
                }
            }
        }
        let sinv = inverse_from_l(lsv);
        for a in 0..m {
            let mut v = Mat::<f64>::zeros(n, t);
            for (b, ub) in us.iter().enumerate() {
                let w = sinv[(b, a)];
                for j in 0..t {
                    for i in 0..n {
                        v[(i, j)] += w * ub[(i, j)];
                    }
                }
            }
            vs.push(v);
        }
        let mut quad = 0.0;
        for i in 0..n {
            for j in 0..t {
                quad += grid.z[(i, j)] * p.a[(i, j)];
            }
        }
        let nobs = (n * t - m) as f64;
        p.nlml = 0.5 * quad + 0.5 * (p.logdet + logdet_s) + 0.5 * nobs * LN_2PI;
    }
    let mut grad = vec![0.0; lay.len()];
    if want_grad {
        let s = |i: usize, j: usize| p.lx[i] * p.lb[j] + 1.0;
        // base kernel: G_x = Q_x diag(c) Q_xᵀ − A B Aᵀ
        let c: Vec<f64> = (0..n)
            .map(|i| (0..t).map(|j| p.lb[j] / s(i, j)).sum())
            .collect();
        let qc = Mat::from_fn(n, n, |i, j| p.qx[(i, j)] * c[j]);
        let cm: Mat<f64> = qc.as_ref() * p.qx.transpose();
        let ab: Mat<f64> = p.a.as_ref() * p.b.as_ref();
        let aba: Mat<f64> = ab.as_ref() * p.a.transpose();
        let mut gx = &cm - &aba;
        for (u, v) in us.iter().zip(&vs) {
            let ub: Mat<f64> = u.as_ref() * p.b.as_ref();
            let c: Mat<f64> = ub.as_ref() * v.transpose();
            gx -= &c;
        }
        let mut gk = vec![0.0; lay.nk];
        contract(k, ts, gx.as_ref(), &mut gk);
        for (g, v) in grad.iter_mut().zip(&gk) {
            *g = 0.5 * v;
        }
        // task covariance: G_B = D^{-1/2} Q_B diag(e) Q_Bᵀ D^{-1/2} − Aᵀ K_x A
        let e: Vec<f64> = (0..t)
            .map(|j| (0..n).map(|i| p.lx[i] / s(i, j)).sum())
            .collect();
        let qe = Mat::from_fn(t, t, |i, j| p.qb[(i, j)] * e[j]);
        let h: Mat<f64> = qe.as_ref() * p.qb.transpose();
        let ka: Mat<f64> = p.kx.as_ref() * p.a.as_ref();
        let aka: Mat<f64> = p.a.transpose() * ka.as_ref();
        let mut gb = Mat::from_fn(t, t, |i, j| h[(i, j)] / (p.sd[i] * p.sd[j]) - aka[(i, j)]);
        for (u, v) in us.iter().zip(&vs) {
            let kv: Mat<f64> = p.kx.as_ref() * v.as_ref();
            let c: Mat<f64> = u.transpose() * kv.as_ref();
            gb -= &c;
        }
        // noise
        let inv_s_sum: Vec<f64> = (0..t)
            .map(|u| (0..n).map(|i| 1.0 / s(i, u)).sum())
            .collect();
        let noise: Vec<f64> = p.sd.iter().map(|v| v * v).collect();
        let gn: Vec<f64> = (0..t)
            .map(|tt| {
                let tr: f64 = (0..t)
                    .map(|u| p.qb[(tt, u)].powi(2) * inv_s_sum[u])
                    .sum::<f64>()
                    / noise[tt];
                let aa: f64 = (0..n).map(|i| p.a[(i, tt)].powi(2)).sum();
                let corr: f64 = us
                    .iter()
                    .zip(&vs)
                    .map(|(u, v)| (0..n).map(|i| u[(i, tt)] * v[(i, tt)]).sum::<f64>())
                    .sum();
                tr - corr - aa
            })
            .collect();
        task_grads(theta, lay, gb.as_ref(), &gn, &noise, &mut grad);
    }
    Ok(Eval {
        nlml: p.nlml,
        grad,
        jitter: 0.0,
    })
}

/// Which path produced a factorisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SolverPath {
    /// `K_x ⊗ B` through eigendecompositions (complete data).
    Kronecker,
    /// Kronecker grid with a Schur-complement correction for a few empty cells (likelihood
    /// and gradient only; the posterior of such data is factorised densely).
    KroneckerWithGaps,
    /// Dense Cholesky over all rows.
    Dense,
}

/// Cached posterior quantities (all in standardised units).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum PostState {
    Dense {
        /// Lower Cholesky factor of the row covariance, column-major n×n.
        l: Vec<f64>,
        /// Inverse of the row covariance, column-major n×n.
        kinv: Vec<f64>,
        alpha: Vec<f64>,
        /// Per task `t`: `W_t[i,j] = Σ_{r∈i,s∈j} B[t_r,t] K⁻¹[r,s] B[t_s,t]`, N×N each.
        wt: Vec<f64>,
        jitter: f64,
    },
    Kron {
        qx: Vec<f64>,
        /// `Q_Bᵀ D^{-1/2} B`, T×T column-major.
        wv: Vec<f64>,
        lx: Vec<f64>,
        lb: Vec<f64>,
        /// `R[i,t] = Σ_u wv[u,t]² / (λx_i λb_u + 1)`, N×T column-major.
        rm: Vec<f64>,
    },
}

/// Posterior cache plus the mean weights `P = (per-base α)·B` (N×T column-major) and `B`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Posterior {
    pub(crate) state: PostState,
    pub(crate) p: Vec<f64>,
    pub(crate) b: Vec<f64>,
    pub(crate) noise: Vec<f64>,
}

pub(crate) fn to_vec(m: MatRef<'_, f64>) -> Vec<f64> {
    let mut v = Vec::with_capacity(m.nrows() * m.ncols());
    for j in 0..m.ncols() {
        for i in 0..m.nrows() {
            v.push(m[(i, j)]);
        }
    }
    v
}

pub(crate) fn from_vec(v: &[f64], nr: usize, nc: usize) -> MatRef<'_, f64> {
    MatRef::from_column_major_slice(v, nr, nc)
}

/// Per-task base-level precision blocks from the dense inverse.
pub(crate) fn dense_wt(ts: &TrainSet, kinv: MatRef<'_, f64>, b: MatRef<'_, f64>) -> Vec<f64> {
    let (nb, t) = (ts.n_base, ts.n_tasks);
    let mut wt = vec![0.0; t * nb * nb];
    for r in 0..ts.n() {
        for s in 0..ts.n() {
            let kv = kinv[(r, s)];
            let (ir, is) = (ts.row_base[r], ts.row_base[s]);
            let (tr, tsk) = (ts.row_task[r], ts.row_task[s]);
            for tt in 0..t {
                wt[tt * nb * nb + is * nb + ir] += b[(tr, tt)] * kv * b[(tsk, tt)];
            }
        }
    }
    wt
}

pub(crate) fn dense_p(ts: &TrainSet, alpha: &[f64], b: MatRef<'_, f64>) -> Vec<f64> {
    let (nb, t) = (ts.n_base, ts.n_tasks);
    let mut p = vec![0.0; nb * t];
    for r in 0..ts.n() {
        for tt in 0..t {
            p[tt * nb + ts.row_base[r]] += alpha[r] * b[(ts.row_task[r], tt)];
        }
    }
    p
}

/// Build the posterior cache for fixed θ on the chosen path.
pub(crate) fn build_posterior<K: Kernel>(
    k: &K,
    ts: &TrainSet,
    theta: &[f64],
    lay: &Layout,
    opts: &FitOptions,
) -> Result<(Posterior, SolverPath, f64, f64)> {
    let noise: Vec<f64> = theta[lay.noise()].iter().map(|v| v.exp()).collect();
    let zmat = if opts.force_dense {
        None
    } else {
        ts.complete_matrix()
    };
    if let Some(zmat) = zmat {
        let kp = kron_parts(k, ts, zmat.as_ref(), theta, lay)?;
        let (n, t) = (ts.n_base, lay.t);
        let bs = Mat::from_fn(t, t, |u, j| kp.b[(u, j)] / kp.sd[u]);
        let wv: Mat<f64> = kp.qb.transpose() * bs.as_ref();
        let rm = Mat::from_fn(n, t, |i, tt| {
            (0..t)
                .map(|u| wv[(u, tt)].powi(2) / (kp.lx[i] * kp.lb[u] + 1.0))
                .sum()
        });
        let p: Mat<f64> = kp.a.as_ref() * kp.b.as_ref();
        let post = Posterior {
            state: PostState::Kron {
                qx: to_vec(kp.qx.as_ref()),
                wv: to_vec(wv.as_ref()),
                lx: kp.lx.clone(),
                lb: kp.lb.clone(),
                rm: to_vec(rm.as_ref()),
            },
            p: to_vec(p.as_ref()),
            b: to_vec(kp.b.as_ref()),
            noise,
        };
        return Ok((post, SolverPath::Kronecker, kp.nlml, 0.0));
    }
    let kx = kx_matrix(k, ts);
    let b = task_matrix(theta, lay);
    let (llt, jitter) = chol_jitter_llt(dense_k(ts, kx.as_ref(), b.as_ref(), &noise), opts)?;
    let l = llt.L();
    let alpha = chol_solve(l, &ts.z);
    let n = ts.n();
    let quad: f64 = alpha.iter().zip(&ts.z).map(|(a, z)| a * z).sum();
    let logdet: f64 = 2.0 * (0..n).map(|i| l[(i, i)].ln()).sum::<f64>();
    let nlml = 0.5 * quad + 0.5 * logdet + 0.5 * n as f64 * LN_2PI;
    let kinv = llt.inverse();
    let post = dense_posterior(
        ts,
        l.as_ref(),
        kinv.as_ref(),
        alpha,
        b.as_ref(),
        noise,
        jitter,
    );
    Ok((post, SolverPath::Dense, nlml, jitter))
}

pub(crate) fn dense_posterior(
    ts: &TrainSet,
    l: MatRef<'_, f64>,
    kinv: MatRef<'_, f64>,
    alpha: Vec<f64>,
    b: MatRef<'_, f64>,
    noise: Vec<f64>,
    jitter: f64,
) -> Posterior {
    let wt = dense_wt(ts, kinv, b);
    let p = dense_p(ts, &alpha, b);
    Posterior {
        state: PostState::Dense {
            l: to_vec(l),
            kinv: to_vec(kinv),
            alpha,
            wt,
            jitter,
        },
        p,
        b: to_vec(b),
        noise,
    }
}
