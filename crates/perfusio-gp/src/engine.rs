//! Numerical core: data preparation, negative log marginal likelihood and its gradient on
//! the dense and Kronecker paths, and the cached posterior state.

use crate::error::{GpError, Result};
use crate::kernel::Kernel;
use crate::mean::{MeanError, PriorMean};
use crate::params::FitOptions;
use faer::linalg::solvers::DenseSolveCore;
use faer::linalg::solvers::Llt;
use faer::{Mat, MatMut, MatRef, Par, Side};
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

/// Check base inputs (row-major, `d` columns, no task id); returns the number of inputs.
pub(crate) fn validate_base(base: &[f64], d: usize) -> Result<usize> {
    if d == 0 || !base.len().is_multiple_of(d) {
        return Err(GpError::ShapeMismatch(format!(
            "base inputs have {} values, which is not a multiple of the {d} base columns \
             (base inputs carry no task id)",
            base.len()
        )));
    }
    for (row, r) in base.chunks_exact(d).enumerate() {
        if let Some(col) = r.iter().position(|v| !v.is_finite()) {
            return Err(GpError::NonFinite {
                what: "X",
                row,
                col,
            });
        }
    }
    Ok(base.len() / d)
}

/// Affine map of each base column onto the unit cube, `u = (x − lo)·inv_range`: from the
/// caller's input bounds, or from the data (see [`Normaliser::from_data`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Normaliser {
    pub(crate) lo: Vec<f64>,
    pub(crate) inv_range: Vec<f64>,
    /// `true` when the caller fixed the bounds.
    #[serde(default)]
    pub(crate) fixed: bool,
}

impl Normaliser {
    /// The map from the training data: `[min, max] → [0, 1]` per column; a column whose
    /// values are all equal to `c` is mapped with width `max(|c|, 1)` centred on `c`
    /// (never left in raw units).
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
        let mut inv_range = Vec::with_capacity(d);
        for j in 0..d {
            let w = hi[j] - lo[j];
            if w > 0.0 && w.is_finite() {
                inv_range.push(1.0 / w);
            } else {
                let c = lo[j];
                let w = c.abs().max(1.0);
                lo[j] = c - 0.5 * w;
                inv_range.push(1.0 / w);
            }
        }
        Self {
            lo,
            inv_range,
            fixed: false,
        }
    }
    /// The map `[lo, hi] → [0, 1]` per column (bounds checked by the caller).
    pub(crate) fn from_bounds(bounds: &[(f64, f64)]) -> Self {
        Self {
            lo: bounds.iter().map(|b| b.0).collect(),
            inv_range: bounds.iter().map(|b| 1.0 / (b.1 - b.0)).collect(),
            fixed: true,
        }
    }
    pub(crate) fn apply(&self, row: &[f64], out: &mut Vec<f64>) {
        for (j, v) in row.iter().take(self.lo.len()).enumerate() {
            out.push((v - self.lo[j]) * self.inv_range[j]);
        }
    }
    /// Width of each column's interval (the original-unit length of one unit-cube unit).
    pub(crate) fn widths(&self) -> Vec<f64> {
        self.inv_range.iter().map(|v| 1.0 / v).collect()
    }
    /// `(lo, hi)` of each column.
    pub(crate) fn bounds(&self) -> Vec<(f64, f64)> {
        self.lo
            .iter()
            .zip(&self.inv_range)
            .map(|(l, r)| (*l, l + 1.0 / r))
            .collect()
    }
}

/// Prior mean of every task at `m` base inputs (row-major `m × d`, original units):
/// `m × n_tasks` row-major, one call of the mean per input.
pub(crate) fn mean_at(
    mean: &dyn PriorMean,
    base: &[f64],
    d: usize,
    n_tasks: usize,
) -> Result<Vec<f64>> {
    let m = base.len() / d.max(1);
    if let Some(c) = mean.as_constant() {
        return Ok(vec![c; m * n_tasks]);
    }
    let mut out = vec![0.0; m * n_tasks];
    for (x, o) in base.chunks_exact(d).zip(out.chunks_exact_mut(n_tasks)) {
        mean.eval(x, o)?;
        check_mean(x, o)?;
    }
    Ok(out)
}

fn check_mean(x: &[f64], out: &[f64]) -> Result<()> {
    match out.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(t) => Err(GpError::PriorMean(MeanError(format!(
            "non-finite value {} for task {t} at base input {x:?}",
            out[t]
        )))),
    }
}

/// Prior mean of each row's task (rows in indexed format), the mean evaluated once per
/// distinct base input.
pub(crate) fn mean_rows(
    mean: &dyn PriorMean,
    x: &[f64],
    n_cols: usize,
    n_tasks: usize,
) -> Result<Vec<f64>> {
    let n = x.len() / n_cols;
    if let Some(c) = mean.as_constant() {
        return Ok(vec![c; n]);
    }
    let d = n_cols - 1;
    let mut cache: HashMap<Vec<u64>, Vec<f64>> = HashMap::new();
    let mut out = Vec::with_capacity(n);
    for r in x.chunks_exact(n_cols) {
        let base = &r[..d];
        let k = key(base);
        let v = match cache.get(&k) {
            Some(v) => v,
            None => {
                let mut v = vec![0.0; n_tasks];
                mean.eval(base, &mut v)?;
                check_mean(base, &v)?;
                cache.entry(k).or_insert(v)
            }
        };
        out.push(v[task_of(r)]);
    }
    Ok(out)
}

/// Per-task offset and scale of the residuals `y − m(x)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Standardiser {
    /// Offset subtracted before the fit and added back to predictions: the task's mean
    /// residual when centring (see [`crate::FitOptions::centre_targets`]), else 0 (except
    /// for a constant task, whose constant is all there is to learn).
    pub(crate) mean: Vec<f64>,
    /// Scale: the residuals' standard deviation about the offset.
    pub(crate) std: Vec<f64>,
    /// Tasks whose residuals are all equal (or observed at most once): unit scale.
    #[serde(default)]
    pub(crate) constant: Vec<bool>,
}

impl Standardiser {
    /// Offsets and scales of the residuals `res` of the tasks `tasks`; `centre` chooses
    /// whether the offset is each task's mean residual or 0.
    pub(crate) fn from_residuals(
        res: &[f64],
        tasks: &[usize],
        n_tasks: usize,
        centre: bool,
    ) -> Self {
        let mut cnt = vec![0usize; n_tasks];
        let mut sum = vec![0.0; n_tasks];
        for (r, &t) in res.iter().zip(tasks) {
            cnt[t] += 1;
            sum[t] += r;
        }
        let avg: Vec<f64> = sum
            .iter()
            .zip(&cnt)
            .map(|(s, &c)| if c > 0 { s / c as f64 } else { 0.0 })
            .collect();
        let mut ss = vec![0.0; n_tasks];
        for (r, &t) in res.iter().zip(tasks) {
            ss[t] += (r - avg[t]).powi(2);
        }
        let sd: Vec<f64> = ss
            .iter()
            .zip(&cnt)
            .map(|(s, &c)| {
                if c > 1 {
                    (s / (c - 1) as f64).sqrt()
                } else {
                    0.0
                }
            })
            .collect();
        // a constant or single-point task keeps unit scale
        let constant: Vec<bool> = sd
            .iter()
            .zip(&avg)
            .map(|(v, m)| *v <= 1e-12 * m.abs().max(1.0))
            .collect();
        let mean: Vec<f64> = avg
            .iter()
            .zip(&constant)
            .map(|(m, c)| if centre || *c { *m } else { 0.0 })
            .collect();
        // uncentred, the scale is the spread about 0: sd² plus the squared mean
        let std = sd
            .iter()
            .zip(&avg)
            .zip(cnt.iter().zip(&constant))
            .map(|((v, a), (&c, k))| {
                if *k {
                    1.0
                } else if centre {
                    *v
                } else {
                    let n = c as f64;
                    (v * v + a * a * n / (n - 1.0)).sqrt()
                }
            })
            .collect();
        Self {
            mean,
            std,
            constant,
        }
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
    /// Add validated rows (normalised with `norm`, standardised with `st`); `prior` is the
    /// prior mean of each row's task.
    pub(crate) fn extend(
        &mut self,
        x: &[f64],
        n_cols: usize,
        y: &[f64],
        norm: &Normaliser,
        st: &Standardiser,
        prior: &[f64],
    ) {
        let mut map = self.key_map();
        let mut buf = Vec::with_capacity(self.d);
        for ((r, yv), pm) in x.chunks_exact(n_cols).zip(y).zip(prior) {
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
            let res = yv - pm;
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

/// Standardiser and training set from validated data, normalised with `norm`.
pub(crate) fn prepare(
    x: &[f64],
    n_cols: usize,
    y: &[f64],
    n_tasks: usize,
    norm: &Normaliser,
    mean: &dyn PriorMean,
    centre: bool,
) -> Result<(Standardiser, TrainSet)> {
    let prior = mean_rows(mean, x, n_cols, n_tasks)?;
    let tasks: Vec<usize> = x.chunks_exact(n_cols).map(task_of).collect();
    let res: Vec<f64> = y.iter().zip(&prior).map(|(yv, p)| yv - p).collect();
    let st = Standardiser::from_residuals(&res, &tasks, n_tasks, centre);
    let mut ts = TrainSet {
        d: n_cols - 1,
        n_tasks,
        base: Vec::new(),
        n_base: 0,
        row_base: Vec::new(),
        row_task: Vec::new(),
        z: Vec::new(),
    };
    ts.extend(x, n_cols, y, norm, &st, &prior);
    Ok((st, ts))
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

/// Work (multiply-adds or kernel evaluations) above which a step is split over
/// [`THREADS`] threads; below it, spawning costs more than it saves.
pub(crate) const PAR_MIN_WORK: usize = 4_000_000;
/// Threads used for the large steps of a fit or a prediction (the kernel matrix, its
/// gradient contraction, the large matrix products and triangular solves).
pub(crate) const THREADS: usize = 2;

/// Run `f` over the rows `0..n` of a triangular loop (row `i` costs `i + 1`), split over
/// [`THREADS`] scoped threads when `work` is large: rows `i` and `n − 1 − i` pair up to
/// equal cost and the pairs are dealt out in turn. Returns one result per thread.
fn par_rows<R: Send>(n: usize, work: usize, f: impl Fn(&[usize]) -> R + Sync) -> Vec<R> {
    if work < PAR_MIN_WORK || n < 2 * THREADS {
        let all: Vec<usize> = (0..n).collect();
        return vec![f(&all)];
    }
    let mut sets: Vec<Vec<usize>> = vec![Vec::new(); THREADS];
    for i in 0..n.div_ceil(2) {
        let set = &mut sets[i % THREADS];
        set.push(i);
        if n - 1 - i != i {
            set.push(n - 1 - i);
        }
    }
    let f = &f;
    std::thread::scope(|sc| {
        let handles: Vec<_> = sets[1..]
            .iter()
            .map(|set| sc.spawn(move || f(set)))
            .collect();
        let mut out = vec![f(&sets[0])];
        for h in handles {
            match h.join() {
                Ok(r) => out.push(r),
                Err(e) => std::panic::resume_unwind(e),
            }
        }
        out
    })
}

/// Base kernel matrix over the unique training inputs.
pub(crate) fn kx_matrix<K: Kernel>(k: &K, ts: &TrainSet) -> Mat<f64> {
    kx_matrix_impl(k, ts, false).0
}

/// Stored per-pair kernel gradients above this many numbers (64 MB) are recomputed instead.
const PAIR_GRADS_MAX: usize = 8_000_000;

/// The kernel's gradient at every pair `j ≤ i` of training inputs, kept from the pass that
/// formed `K_x` for [`contract_any`]: a likelihood gradient then costs one weighted sum
/// of stored vectors instead of a second kernel evaluation per pair (a square root and an
/// exponential each: about a quarter of an online refit's time, measured).
pub(crate) struct PairGrads {
    /// Per part of [`par_rows`]: its rows, and the gradients of their pairs in row order
    /// (`n_params` numbers per pair).
    parts: Vec<(Vec<usize>, Vec<f64>)>,
}

/// [`kx_matrix`], and with `grads` the per-pair gradients too when they fit in
/// [`PAIR_GRADS_MAX`] (the entries are then the values [`Kernel::eval_grad`] returns).
pub(crate) fn kx_matrix_impl<K: Kernel>(
    k: &K,
    ts: &TrainSet,
    grads: bool,
) -> (Mat<f64>, Option<PairGrads>) {
    let n = ts.n_base;
    let np = k.n_params();
    let grads = grads && np > 0 && n * (n + 1) / 2 * np <= PAIR_GRADS_MAX;
    let work = n * n / 2 * ts.d.max(1);
    let parts = par_rows(n, work, |rows| {
        // the exponentials below follow faer's kernels on this thread (the previous
        // evaluation's factorisations): in the dirty AVX state each costs ~25× more
        crate::simd::clear_upper_state();
        let pairs: usize = rows.iter().map(|i| i + 1).sum();
        let mut vals = Vec::with_capacity(pairs);
        let mut store = Vec::with_capacity(if grads { pairs * np } else { 0 });
        let mut buf = vec![0.0; np];
        for &i in rows {
            let xi = ts.base_row(i);
            for j in 0..=i {
                let v = if grads {
                    let v = k.eval_grad(xi, ts.base_row(j), &mut buf);
                    store.extend_from_slice(&buf);
                    v
                } else {
                    k.eval(xi, ts.base_row(j))
                };
                vals.push((i, j, v));
            }
        }
        (rows.to_vec(), vals, store)
    });
    let mut m = Mat::<f64>::zeros(n, n);
    let mut stored = Vec::with_capacity(parts.len());
    for (rows, vals, store) in parts {
        for (i, j, v) in vals {
            m[(i, j)] = v;
            m[(j, i)] = v;
        }
        stored.push((rows, store));
    }
    (m, grads.then_some(PairGrads { parts: stored }))
}

/// `out[p] = Σ_ij G[i,j] ∂K_x[i,j]/∂θ_p` for symmetric `G` given by its lower triangle,
/// one pass over the pairs: from the stored gradients when given, else evaluated.
pub(crate) fn contract_any<K: Kernel>(
    k: &K,
    ts: &TrainSet,
    stored: Option<&PairGrads>,
    g: MatRef<'_, f64>,
    out: &mut [f64],
) {
    let Some(pg) = stored else {
        return contract(k, ts, g, out);
    };
    let np = k.n_params();
    // the parts as `contract` splits them (same weights, same order), each on its thread
    let part = |(rows, store): &(Vec<usize>, Vec<f64>)| {
        let mut acc = vec![0.0; np];
        let mut off = 0;
        for &i in rows {
            for j in 0..=i {
                let w = if i == j { g[(i, i)] } else { 2.0 * g[(i, j)] };
                if w != 0.0 {
                    for (o, b) in acc.iter_mut().zip(&store[off..off + np]) {
                        *o += w * b;
                    }
                }
                off += np;
            }
        }
        acc
    };
    let accs: Vec<Vec<f64>> = match pg.parts.split_first() {
        Some((first, rest)) if !rest.is_empty() => std::thread::scope(|sc| {
            let handles: Vec<_> = rest.iter().map(|p| sc.spawn(move || part(p))).collect();
            let mut accs = vec![part(first)];
            for h in handles {
                match h.join() {
                    Ok(a) => accs.push(a),
                    Err(e) => std::panic::resume_unwind(e),
                }
            }
            accs
        }),
        _ => pg.parts.iter().map(part).collect(),
    };
    for acc in accs {
        for (o, v) in out.iter_mut().zip(acc) {
            *o += v;
        }
    }
}

/// `out[p] = Σ_ij G[i,j] ∂K_x[i,j]/∂θ_p` for symmetric `G` given by its lower triangle,
/// one pass over the pairs.
pub(crate) fn contract<K: Kernel>(k: &K, ts: &TrainSet, g: MatRef<'_, f64>, out: &mut [f64]) {
    let np = k.n_params();
    let n = ts.n_base;
    let work = n * n / 2 * ts.d.max(1);
    let parts = par_rows(n, work, |rows| {
        // after this evaluation's products: see `kx_matrix_impl`
        crate::simd::clear_upper_state();
        let mut acc = vec![0.0; np];
        let mut buf = vec![0.0; np];
        for &i in rows {
            let xi = ts.base_row(i);
            for j in 0..=i {
                // G is symmetric: only its lower triangle is read
                let w = if i == j { g[(i, i)] } else { 2.0 * g[(i, j)] };
                if w == 0.0 {
                    continue;
                }
                k.eval_grad(xi, ts.base_row(j), &mut buf);
                for (o, b) in acc.iter_mut().zip(&buf) {
                    *o += w * b;
                }
            }
        }
        acc
    });
    for part in parts {
        for (o, v) in out.iter_mut().zip(part) {
            *o += v;
        }
    }
}

/// Cross kernel between `m` normalised test inputs (row-major) and the training bases.
pub(crate) fn cross<K: Kernel>(k: &K, test: &[f64], m: usize, ts: &TrainSet) -> Mat<f64> {
    let (d, n) = (ts.d, ts.n_base);
    let mut out = Mat::<f64>::zeros(m, n);
    // a kernel evaluation costs about d multiply-adds and an exponential
    if m * n * (d + 20) < PAR_MIN_WORK || m < 2 * THREADS {
        k.cross_block(&test[..m * d], &ts.base, d, out.as_mut());
        return out;
    }
    let h = m / 2;
    let (top, bottom) = out.as_mut().split_at_row_mut(h);
    std::thread::scope(|sc| {
        sc.spawn(|| k.cross_block(&test[h * d..m * d], &ts.base, d, bottom));
        k.cross_block(&test[..h * d], &ts.base, d, top);
    });
    out
}

/// `dst (+)= alpha · lhs · rhs`, the columns of `dst` split over [`THREADS`] threads when
/// the product is large.
pub(crate) fn gemm(
    dst: MatMut<'_, f64>,
    add: bool,
    lhs: MatRef<'_, f64>,
    rhs: MatRef<'_, f64>,
    alpha: f64,
) {
    let acc = if add {
        faer::Accum::Add
    } else {
        faer::Accum::Replace
    };
    let (m, n, k) = (dst.nrows(), dst.ncols(), lhs.ncols());
    if m * n * k < PAR_MIN_WORK || n < 2 * THREADS {
        faer::linalg::matmul::matmul(dst, acc, lhs, rhs, alpha, Par::Seq);
        crate::simd::clear_upper_state();
        return;
    }
    let mid = n / 2;
    let (left, right) = dst.split_at_col_mut(mid);
    let (rl, rr) = (rhs.subcols(0, mid), rhs.subcols(mid, n - mid));
    std::thread::scope(|sc| {
        sc.spawn(move || faer::linalg::matmul::matmul(left, acc, lhs, rl, alpha, Par::Seq));
        faer::linalg::matmul::matmul(right, acc, lhs, rr, alpha, Par::Seq);
    });
    crate::simd::clear_upper_state();
}

/// The lower triangle (diagonal included) of `dst (+)= alpha · lhs · rhs` for a square
/// `dst`; the upper triangle is left untouched. When large, the work is split in two equal
/// halves over two threads: the two diagonal blocks, and the off-diagonal block.
pub(crate) fn gemm_lower(
    dst: MatMut<'_, f64>,
    add: bool,
    lhs: MatRef<'_, f64>,
    rhs: MatRef<'_, f64>,
    alpha: f64,
) {
    use faer::linalg::matmul::triangular::{BlockStructure, matmul};
    let acc = if add {
        faer::Accum::Add
    } else {
        faer::Accum::Replace
    };
    let (n, k) = (dst.nrows(), lhs.ncols());
    let tri = |d: MatMut<'_, f64>, l: MatRef<'_, f64>, r: MatRef<'_, f64>| {
        matmul(
            d,
            BlockStructure::TriangularLower,
            acc,
            l,
            BlockStructure::Rectangular,
            r,
            BlockStructure::Rectangular,
            alpha,
            Par::Seq,
        );
    };
    if n * n * k / 2 < PAR_MIN_WORK || n < 4 {
        tri(dst, lhs, rhs);
        return;
    }
    let h = n / 2;
    let (d11, _, d21, d22) = dst.split_at_mut(h, h);
    let (l1, l2) = (lhs.subrows(0, h), lhs.subrows(h, n - h));
    let (r1, r2) = (rhs.subcols(0, h), rhs.subcols(h, n - h));
    std::thread::scope(|sc| {
        sc.spawn(move || {
            tri(d11, l1, r1);
            tri(d22, l2, r2);
        });
        faer::linalg::matmul::matmul(d21, acc, l2, r1, alpha, Par::Seq);
    });
}

/// Copy the lower triangle of a square matrix onto its upper triangle.
pub(crate) fn symmetrise_from_lower(m: &mut Mat<f64>) {
    for j in 0..m.ncols() {
        for i in 0..j {
            m[(i, j)] = m[(j, i)];
        }
    }
}

/// `lhs · rhs` (see [`gemm`]).
pub(crate) fn mul(lhs: MatRef<'_, f64>, rhs: MatRef<'_, f64>) -> Mat<f64> {
    let mut out = Mat::<f64>::zeros(lhs.nrows(), rhs.ncols());
    gemm(out.as_mut(), false, lhs, rhs, 1.0);
    out
}

/// Query batches up to this many rows take [`mul_rows`]'s dot products.
const FEW_ROWS: usize = 4;

/// `x a` (`x` m × N, `a` N × K) as `m × K`. For a few rows of `x` (the one query a day of a
/// moment-matched forecast), K·m dot products down `a`'s contiguous columns: a general
/// product first copies `a` into packed panels, which for one row costs more than the
/// product itself (on the 27-run design `a` is the 756 × 756 eigenbasis, read once a day).
pub(crate) fn mul_rows(x: MatRef<'_, f64>, a: MatRef<'_, f64>) -> Mat<f64> {
    let (m, k) = (x.nrows(), a.ncols());
    let cols: Option<Vec<&[f64]>> = (m <= FEW_ROWS)
        .then(|| {
            (0..k)
                .map(|c| a.col(c).try_as_col_major().map(|c| c.as_slice()))
                .collect()
        })
        .flatten();
    let Some(cols) = cols else {
        return mul(x, a);
    };
    let rows: Vec<Vec<f64>> = (0..m)
        .map(|p| (0..x.ncols()).map(|j| x[(p, j)]).collect())
        .collect();
    Mat::from_fn(m, k, |p, c| dot4(&rows[p], cols[c]))
}

/// Solve `L X = B` in place for lower-triangular `L`, the columns of `B` split over
/// [`THREADS`] threads when large.
pub(crate) fn solve_lower(l: MatRef<'_, f64>, b: MatMut<'_, f64>) {
    let (n, k) = (l.nrows(), b.ncols());
    if n * n * k / 2 < PAR_MIN_WORK || k < 2 * THREADS {
        faer::linalg::triangular_solve::solve_lower_triangular_in_place(l, b, Par::Seq);
        return;
    }
    let (left, right) = b.split_at_col_mut(k / 2);
    std::thread::scope(|sc| {
        sc.spawn(move || {
            faer::linalg::triangular_solve::solve_lower_triangular_in_place(l, left, Par::Seq)
        });
        faer::linalg::triangular_solve::solve_lower_triangular_in_place(l, right, Par::Seq);
    });
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
    let (kx, pair_grads) = kx_matrix_impl(k, ts, want_grad);
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
        contract_any(k, ts, pair_grads.as_ref(), gx.as_ref(), &mut gk);
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
    /// `α` as an N×T matrix (zero-padded `K_OO⁻¹ z` when cells are missing).
    pub(crate) a: Mat<f64>,
    pub(crate) nlml: f64,
    /// The missing-cell correction, if any.
    pub(crate) gap: Option<GapParts>,
    /// The kernel's gradients at every pair of inputs, when asked for and small enough.
    pub(crate) pair_grads: Option<PairGrads>,
}

/// Missing-cell correction of the Kronecker path.
///
/// With the full-grid covariance `K = K_x ⊗ B + I ⊗ D`, `U = K⁻¹E_M` (one column per empty
/// cell) and `S = E_Mᵀ K⁻¹ E_M = L_S L_Sᵀ`, the observed block satisfies
/// `log|K_OO| = log|K| + log|S|` and its zero-padded inverse is `K⁻¹ − U S⁻¹ Uᵀ`. In the
/// whitened eigenbasis `K⁻¹ = D^{-1/2}(Q_x ⊗ Q_B) Λ⁻¹ (Q_x ⊗ Q_B)ᵀ D^{-1/2}`, so
/// `U L_S^{-T}` is `D^{-1/2}(Q_x ⊗ Q_B) Ẑ` with `Ẑ = L_S⁻¹ Z̃ᵀ`,
/// `Z̃_a[k,u] = Q_x[i_a,k] Q_B[t_a,u] / (σ_{t_a} (λx_k λb_u + 1))`, and every correction of
/// the likelihood gradient and the posterior is a product with `Ẑ`.
pub(crate) struct GapParts {
    pub(crate) cells: Vec<(usize, usize)>,
    /// `Ẑ`, `m × NT` column-major (column `k + u·N`); read as an `(m·N) × T` matrix its row
    /// `c + m·k` holds `Ẑ_c[k, ·]`.
    pub(crate) zt: Vec<f64>,
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
/// eigendecompositions of `K_x` (N×N) and `D^{-1/2} B D^{-1/2}` (T×T), with the
/// missing-cell correction of [`GapParts`] when the grid has empty cells.
pub(crate) fn kron_parts<K: Kernel>(
    k: &K,
    ts: &TrainSet,
    grid: &Grid,
    theta: &[f64],
    lay: &Layout,
    pair_grads: bool,
) -> Result<KronParts> {
    let (n, t) = (ts.n_base, lay.t);
    let zmat = grid.z.as_ref();
    let (kx, pair_grads) = kx_matrix_impl(k, ts, pair_grads);
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
    let logdet = n as f64 * theta[lay.noise()].iter().sum::<f64>() + logdet_s;
    let mut p = KronParts {
        kx,
        b,
        qx,
        lx,
        qb,
        lb,
        sd,
        a,
        nlml: 0.0,
        gap: None,
        pair_grads,
    };
    let mut logdet_gap = 0.0;
    if !grid.missing.is_empty() {
        let (gap, ld) = gap_parts(&mut p, &grid.missing)?;
        p.gap = Some(gap);
        logdet_gap = ld;
    }

    let mut quad = 0.0;
    for i in 0..n {
        for j in 0..t {
            quad += zmat[(i, j)] * p.a[(i, j)];
        }
    }
    let nobs = (n * t - grid.missing.len()) as f64;
    p.nlml = 0.5 * quad + 0.5 * (logdet + logdet_gap) + 0.5 * nobs * LN_2PI;
    Ok(p)
}

/// Missing-cell correction: corrects `p.a` to the zero-padded `K_OO⁻¹ z` and returns `Ẑ`
/// and `log|S|`.
fn gap_parts(p: &mut KronParts, cells: &[(usize, usize)]) -> Result<(GapParts, f64)> {
    let (n, t, m) = (p.qx.nrows(), p.qb.nrows(), cells.len());
    let s = |k: usize, u: usize| p.lx[k] * p.lb[u] + 1.0;
    // S[a,b] = Σ_k Qx[i_a,k] Qx[i_b,k] R_{t_a t_b}[k] / (σ_a σ_b), R_{tt'}[k] = Σ_u Qb[t,u]Qb[t',u]/s_ku
    let mut by_task: Vec<Vec<usize>> = vec![Vec::new(); t];
    for (a, &(_, ta)) in cells.iter().enumerate() {
        by_task[ta].push(a);
    }
    let mut smat = Mat::<f64>::zeros(m, m);
    for t1 in 0..t {
        if by_task[t1].is_empty() {
            continue;
        }
        for t2 in t1..t {
            if by_task[t2].is_empty() {
                continue;
            }
            let r: Vec<f64> = (0..n)
                .map(|k| {
                    (0..t)
                        .map(|u| p.qb[(t1, u)] * p.qb[(t2, u)] / s(k, u))
                        .sum()
                })
                .collect();
            // uncorrelated tasks (no task eigenvector in common): the block is exactly zero
            if r.iter().all(|v| *v == 0.0) {
                continue;
            }
            let (c1, c2) = (&by_task[t1], &by_task[t2]);
            let x1 = Mat::from_fn(c1.len(), n, |row, k| p.qx[(cells[c1[row]].0, k)] * r[k]);
            let x2 = Mat::from_fn(n, c2.len(), |k, col| p.qx[(cells[c2[col]].0, k)]);
            let blk: Mat<f64> = x1.as_ref() * x2.as_ref();
            let scale = 1.0 / (p.sd[t1] * p.sd[t2]);
            for (row, &a) in c1.iter().enumerate() {
                for (col, &bb) in c2.iter().enumerate() {
                    let v = blk[(row, col)] * scale;
                    smat[(a, bb)] = v;
                    smat[(bb, a)] = v;
                }
            }
        }
    }
    let llt = smat.llt(Side::Lower).map_err(|_| GpError::Indefinite {
        what: "Schur complement of the missing cells",
        advice: "raise the noise lower bound (`noise_bounds`), or use the dense path (`force_dense`)",
    })?;
    let ls = llt.L();
    let logdet_s: f64 = 2.0 * (0..m).map(|a| ls[(a, a)].ln()).sum::<f64>();

    // α ← α − U S⁻¹ α_M, with U S⁻¹ α_M = Qx Δ Qb ᵀ / σ, Δ[k,u] = Σ_a w_a Qx[i_a,k] Qb[t_a,u] / (σ_{t_a} s_ku)
    let r: Vec<f64> = cells.iter().map(|&(i, tt)| p.a[(i, tt)]).collect();
    let w = chol_solve(ls, &r);
    let xw = Mat::from_fn(n, m, |k, a| {
        let (i, ta) = cells[a];
        p.qx[(i, k)] * w[a] / p.sd[ta]
    });
    let qbr = Mat::from_fn(m, t, |a, u| p.qb[(cells[a].1, u)]);
    let mut delta: Mat<f64> = xw.as_ref() * qbr.as_ref();
    for u in 0..t {
        for k in 0..n {
            delta[(k, u)] /= s(k, u);
        }
    }
    let tmp: Mat<f64> = p.qx.as_ref() * delta.as_ref();
    let corr: Mat<f64> = tmp.as_ref() * p.qb.transpose();
    for v in 0..t {
        for i in 0..n {
            p.a[(i, v)] -= corr[(i, v)] / p.sd[v];
        }
    }

    // Ẑ = L_S⁻¹ Z̃ᵀ
    let mut zt = vec![0.0; m * n * t];
    for u in 0..t {
        for k in 0..n {
            let sk = s(k, u);
            let off = m * (k + u * n);
            for (a, &(i, ta)) in cells.iter().enumerate() {
                zt[off + a] = p.qx[(i, k)] * p.qb[(ta, u)] / (p.sd[ta] * sk);
            }
        }
    }

    solve_lower(ls, MatMut::from_column_major_slice_mut(&mut zt, m, n * t));

    Ok((
        GapParts {
            cells: cells.to_vec(),
            zt,
        },
        logdet_s,
    ))
}

impl GapParts {
    fn m(&self) -> usize {
        self.cells.len()
    }
    /// `Ẑ` read as an `(m·N) × T` matrix.
    fn zr(&self, n: usize, t: usize) -> MatRef<'_, f64> {
        from_vec(&self.zt, self.m() * n, t)
    }
    /// The Gram matrices `Σ_c Ẑ_cᵀ Λx Ẑ_c` and `Σ_c Ẑ_cᵀ Ẑ_c` (both `T × T`, row-major) of
    /// `Ẑ` read as an `(m·N) × T` matrix whose row `c + m·k` has weight `λx_k`: one pass of
    /// dot products over each pair of columns, without a weighted copy of `Ẑ`. A pair of
    /// columns with no cell non-zero in both ([`GapParts::nonzero_rows`]) is exactly 0.
    fn grams(&self, n: usize, t: usize, lx: &[f64], nonzero: &[bool]) -> (Vec<f64>, Vec<f64>) {
        let m = self.m();
        let len = m * n;
        let col = |u: usize| &self.zt[u * len..(u + 1) * len];
        let mut weighted = vec![0.0; t * t];
        let mut plain = vec![0.0; t * t];
        for u in 0..t {
            for v in 0..=u {
                if !(0..m).any(|c| nonzero[u * m + c] && nonzero[v * m + c]) {
                    continue;
                }
                let (a, b) = (col(u), col(v));
                let (mut sw, mut sp) = (0.0, 0.0);
                for (k, &w) in lx.iter().enumerate().take(n) {
                    let blk = dot4(&a[k * m..(k + 1) * m], &b[k * m..(k + 1) * m]);
                    sw += w * blk;
                    sp += blk;
                }
                for (g, val) in [(&mut weighted, sw), (&mut plain, sp)] {
                    g[u * t + v] = val;
                    g[v * t + u] = val;
                }
            }
        }
        (weighted, plain)
    }
    /// Whether row `u·m + c` of `Ẑ` (cell c's values against task eigenvector u, over the
    /// N input eigenvectors) has a non-zero entry.
    fn nonzero_rows(&self, n: usize, t: usize) -> Vec<bool> {
        let m = self.m();
        let mut nonzero = vec![false; m * t];
        for u in 0..t {
            let zb = self.block(n, u);
            for k in 0..n {
                for (c, v) in zb.col(k).iter().enumerate() {
                    nonzero[u * m + c] |= *v != 0.0;
                }
            }
        }
        nonzero
    }
    /// Block `u` of `Ẑ`: the `m × N` matrix `[Ẑ_c[k, u]]`.
    fn block(&self, n: usize, u: usize) -> MatRef<'_, f64> {
        let m = self.m();
        from_vec(&self.zt[u * m * n..(u + 1) * m * n], m, n)
    }
}

/// Dot product with four independent partial sums (the compiler can keep them in one
/// vector register; a single running sum would serialise every addition).
pub(crate) fn dot4(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for j in 0..4 {
            acc[j] += x[j] * y[j];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// Kronecker path with or without empty cells: NLML and its gradient. The gradient of
/// every parameter is a trace that splits into the full-grid Kronecker term and, with
/// empty cells, a correction computed from `Ẑ` (see [`GapParts`]).
pub(crate) fn eval_kron<K: Kernel>(
    k: &K,
    ts: &TrainSet,
    grid: &Grid,
    theta: &[f64],
    lay: &Layout,
    want_grad: bool,
    pause: crate::model::Pause<'_>,
) -> Result<Eval> {
    let p = kron_parts(k, ts, grid, theta, lay, want_grad)?;
    let (n, t) = (ts.n_base, lay.t);
    // (a pausable fit's hook, between the evaluation's large products)
    pause();
    let mut grad = vec![0.0; lay.len()];
    if want_grad {
        let s = |i: usize, j: usize| p.lx[i] * p.lb[j] + 1.0;
        // base kernel: G_x = Q_x (diag(c) − Σ_u λb_u Ẑ_uᵀẐ_u) Q_xᵀ − A B Aᵀ
        let mut inner = Mat::<f64>::zeros(n, n);
        // which rows `u·m + c` of Ẑ are not identically zero: with independent tasks, cell
        // c's row is non-zero for its own task's eigenvector only, m rows of m·T
        let gap_rows = p.gap.as_ref().map(|g| g.nonzero_rows(n, t));
        if let (Some(g), Some(nonzero)) = (&p.gap, &gap_rows) {
            // Σ_u λb_u Ẑ_uᵀẐ_u as one product of the stacked, scaled non-zero rows
            let m = g.m();
            // per kept row: its block, its cell and the block's weight √λb_u
            let rows: Vec<(MatRef<'_, f64>, usize, f64)> = (0..m * t)
                .filter(|&r| nonzero[r])
                .map(|r| (g.block(n, r / m), r % m, p.lb[r / m].sqrt()))
                .collect();
            let mut zs = Mat::<f64>::zeros(rows.len(), n);
            for k in 0..n {
                for (row, (zb, c, w)) in rows.iter().enumerate() {
                    zs[(row, k)] = w * zb[(*c, k)];
                }
            }
            gemm_lower(inner.as_mut(), false, zs.transpose(), zs.as_ref(), -1.0);
            symmetrise_from_lower(&mut inner);
        }
        for i in 0..n {
            inner[(i, i)] += (0..t).map(|j| p.lb[j] / s(i, j)).sum::<f64>();
        }
        let qi = mul(p.qx.as_ref(), inner.as_ref());
        // G_x is symmetric and `contract` reads its lower triangle only
        let mut gx = Mat::<f64>::zeros(n, n);
        gemm_lower(gx.as_mut(), false, qi.as_ref(), p.qx.transpose(), 1.0);
        let ab: Mat<f64> = p.a.as_ref() * p.b.as_ref();
        gemm_lower(gx.as_mut(), true, ab.as_ref(), p.a.transpose(), -1.0);
        pause();
        let mut gk = vec![0.0; lay.nk];
        contract_any(k, ts, p.pair_grads.as_ref(), gx.as_ref(), &mut gk);
        pause();

        for (g, v) in grad.iter_mut().zip(&gk) {
            *g = 0.5 * v;
        }
        // task covariance: G_B = D^{-1/2} Q_B (diag(e) − Σ_c Ẑ_cᵀ Λx Ẑ_c) Q_Bᵀ D^{-1/2} − Aᵀ K_x A
        let mut hin = Mat::<f64>::zeros(t, t);
        for j in 0..t {
            hin[(j, j)] = (0..n).map(|i| p.lx[i] / s(i, j)).sum();
        }
        let noise: Vec<f64> = p.sd.iter().map(|v| v * v).collect();
        let mut gap_noise = vec![0.0; t];
        if let (Some(g), Some(nonzero)) = (&p.gap, &gap_rows) {
            // Σ_c Ẑ_cᵀ Λx Ẑ_c and Σ_c Ẑ_cᵀ Ẑ_c: two T×T Gram matrices of Ẑ's columns
            let (weighted, plain) = g.grams(n, t, &p.lx, nonzero);
            for u in 0..t {
                for v in 0..t {
                    hin[(u, v)] -= weighted[u * t + v];
                }
            }
            // noise: Σ_c ‖Ẑ_c q_t‖² / σ_t² = q_tᵀ (Σ_c Ẑ_cᵀẐ_c) q_t / σ_t², q_t row t of Q_B
            for (tt, gn) in gap_noise.iter_mut().enumerate() {
                let mut quad = 0.0;
                for u in 0..t {
                    for v in 0..t {
                        quad += p.qb[(tt, u)] * plain[u * t + v] * p.qb[(tt, v)];
                    }
                }
                *gn = quad / noise[tt];
            }
        }
        let qh: Mat<f64> = p.qb.as_ref() * hin.as_ref();
        let h: Mat<f64> = qh.as_ref() * p.qb.transpose();
        let ka: Mat<f64> = p.kx.as_ref() * p.a.as_ref();
        let aka: Mat<f64> = p.a.transpose() * ka.as_ref();
        let gb = Mat::from_fn(t, t, |i, j| h[(i, j)] / (p.sd[i] * p.sd[j]) - aka[(i, j)]);
        // noise
        let inv_s_sum: Vec<f64> = (0..t)
            .map(|u| (0..n).map(|i| 1.0 / s(i, u)).sum())
            .collect();
        let gn: Vec<f64> = (0..t)
            .map(|tt| {
                let tr: f64 = (0..t)
                    .map(|u| p.qb[(tt, u)].powi(2) * inv_s_sum[u])
                    .sum::<f64>()
                    / noise[tt];
                let aa: f64 = (0..n).map(|i| p.a[(i, tt)].powi(2)).sum();
                tr - gap_noise[tt] - aa
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
    /// Kronecker grid with a Schur-complement correction for a few empty cells.
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
        /// `W[(t,i),(t',j)] = Σ_{r∈i, s∈j} B[t_r,t] K⁻¹[r,s] B[t_s,t']`, NT × NT
        /// column-major, row index `t·N + i`.
        w: Vec<f64>,
        jitter: f64,
    },
    Kron {
        qx: Vec<f64>,
        /// `Q_Bᵀ D^{-1/2} B`, T×T column-major.
        wv: Vec<f64>,
        lx: Vec<f64>,
        lb: Vec<f64>,
        /// `M[i,(t,t')] = Σ_u wv[u,t] wv[u,t'] / (λx_i λb_u + 1)`, N × T² column-major,
        /// column `t·T + t'`.
        mtt: Vec<f64>,
        /// Missing-cell correction: `Ĝ = Q_x [Ẑ_c wv]`, N × (T·m) column-major, column
        /// `t·m + c`; the latent covariance gains `Σ_c (k*ᵀĜ_{t,c})(k*ᵀĜ_{t',c})` back.
        gap: Option<Vec<f64>>,
        /// Number of empty cells.
        n_gap: usize,
        /// Per column of the correction, `Σ_{i∉R} λx_i Z[i,col]²` over the eigenvectors a
        /// truncated prediction leaves out (see `model::lowrank`); `None` when nothing is
        /// truncated or the posterior was read from a file without it.
        #[serde(default)]
        gap_tail: Option<Vec<f64>>,
        /// Per column of the correction, `Σ_{i∉R} Z[i,col]²` (unweighted); `None` as for
        /// `gap_tail`.
        #[serde(default)]
        gap_tail_norm: Option<Vec<f64>>,
    },
}

/// Posterior cache plus the mean weights `P = (per-base α)·B` (N×T column-major) and `B`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Posterior {
    pub(crate) state: PostState,
    pub(crate) p: Vec<f64>,
    pub(crate) b: Vec<f64>,
    pub(crate) noise: Vec<f64>,
    /// Truncated eigenbasis for batched task covariances, built on first use.
    #[serde(skip)]
    pub(crate) trunc: crate::model::lowrank::TruncCache,
    /// The non-zero columns of the empty-cell correction, found on first use.
    #[serde(skip)]
    pub(crate) gapcols: crate::model::gapcols::GapCache,
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

/// `W = Cᵀ K⁻¹ C` with `C[s, (t,j)] = [base(s) = j]·B[task(s), t]` (NT × NT, row `t·N + i`).
pub(crate) fn dense_w(ts: &TrainSet, kinv: MatRef<'_, f64>, b: MatRef<'_, f64>) -> Vec<f64> {
    let (nb, t, n) = (ts.n_base, ts.n_tasks, ts.n());
    let c = Mat::from_fn(n, nb * t, |s, col| {
        let (tt, j) = (col / nb, col % nb);
        if ts.row_base[s] == j {
            b[(ts.row_task[s], tt)]
        } else {
            0.0
        }
    });
    let kc: Mat<f64> = kinv * c.as_ref();
    let w: Mat<f64> = c.transpose() * kc.as_ref();
    to_vec(w.as_ref())
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

/// The grid a fit or posterior would use: Kronecker (with or without gaps) unless the
/// data has duplicated cells or too many gaps, or the caller forces the dense path.
pub(crate) fn grid_for(ts: &TrainSet, opts: &FitOptions) -> Option<Grid> {
    if opts.force_dense { None } else { ts.grid() }
}

/// Build the posterior cache for fixed θ on the chosen path. Returns the posterior, the
/// path, the NLML and the jitter added.
pub(crate) fn build_posterior<K: Kernel>(
    k: &K,
    ts: &TrainSet,
    theta: &[f64],
    lay: &Layout,
    opts: &FitOptions,
    pause: crate::model::Pause<'_>,
) -> Result<(Posterior, SolverPath, f64, f64)> {
    let noise: Vec<f64> = theta[lay.noise()].iter().map(|v| v.exp()).collect();
    if let Some(grid) = grid_for(ts, opts) {
        let kp = kron_parts(k, ts, &grid, theta, lay, false)?;
        // (a pausable fit's hook, before the empty-cell correction's product)
        pause();
        let (n, t) = (ts.n_base, lay.t);
        let bs = Mat::from_fn(t, t, |u, j| kp.b[(u, j)] / kp.sd[u]);
        let wv: Mat<f64> = kp.qb.transpose() * bs.as_ref();
        let mtt = Mat::from_fn(n, t * t, |i, col| {
            let (t1, t2) = (col / t, col % t);
            (0..t)
                .map(|u| wv[(u, t1)] * wv[(u, t2)] / (kp.lx[i] * kp.lb[u] + 1.0))
                .sum()
        });
        let (gap, n_gap, (gap_tail, gap_tail_norm), path) = match &kp.gap {
            None => (None, 0, (None, None), SolverPath::Kronecker),
            Some(g) => {
                let m = g.m();
                let zw: Mat<f64> = g.zr(n, t) * wv.as_ref();
                let zmat = Mat::from_fn(n, t * m, |kk, col| zw[(col % m + m * kk, col / m)]);
                let gh = mul(kp.qx.as_ref(), zmat.as_ref());
                let tail = crate::model::lowrank::gap_tail_weights(&kp.lx, zmat.as_ref());
                (
                    Some(to_vec(gh.as_ref())),
                    m,
                    tail.map_or((None, None), |(w, z)| (Some(w), Some(z))),
                    SolverPath::KroneckerWithGaps,
                )
            }
        };
        let p: Mat<f64> = kp.a.as_ref() * kp.b.as_ref();
        let post = Posterior {
            state: PostState::Kron {
                qx: to_vec(kp.qx.as_ref()),
                wv: to_vec(wv.as_ref()),
                lx: kp.lx.clone(),
                lb: kp.lb.clone(),
                mtt: to_vec(mtt.as_ref()),
                gap,
                n_gap,
                gap_tail,
                gap_tail_norm,
            },
            p: to_vec(p.as_ref()),
            b: to_vec(kp.b.as_ref()),
            noise,
            trunc: Default::default(),
            gapcols: Default::default(),
        };
        return Ok((post, path, kp.nlml, 0.0));
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
    let w = dense_w(ts, kinv, b);
    let p = dense_p(ts, &alpha, b);
    Posterior {
        state: PostState::Dense {
            l: to_vec(l),
            kinv: to_vec(kinv),
            alpha,
            w,
            jitter,
        },
        p,
        b: to_vec(b),
        noise,
        trunc: Default::default(),
        gapcols: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::kernel::{KernelSpec, Matern, Nu};

    /// `n` inputs in `d` dimensions on a fixed pseudo-random pattern, one task.
    fn train_set(n: usize, d: usize) -> TrainSet {
        let base: Vec<f64> = (0..n * d)
            .map(|k| ((k as f64 * 0.618_033_988_7).fract() * 7.0).sin().abs())
            .collect();
        TrainSet {
            d,
            n_tasks: 1,
            base,
            n_base: n,
            row_base: (0..n).collect(),
            row_task: vec![0; n],
            z: vec![0.0; n],
        }
    }

    /// The gradient contraction from the gradients stored while `K_x` was formed equals
    /// the one that evaluates the kernel again, bit for bit, and so does `K_x`: on one part
    /// (a small set) and on two threads' parts (a set large enough to split); a set whose
    /// gradients would exceed the cap stores none.
    #[test]
    fn stored_pair_gradients_contract_exactly_as_evaluated_ones() {
        for (n, d) in [(30, 4), (700, 17)] {
            let ts = train_set(n, d);
            let mut k = KernelSpec::Matern(Matern::new(Nu::FiveHalves, d, 0.7));
            let p: Vec<f64> = (0..d).map(|j| (0.3 + 0.05 * j as f64).ln()).collect();
            k.set_params(&p).unwrap();
            let (kx, pg) = kx_matrix_impl(&k, &ts, true);
            let pg = pg.unwrap();
            assert_eq!(pg.parts.len(), if n > 100 { THREADS } else { 1 });
            let plain = kx_matrix(&k, &ts);
            for i in 0..n {
                for j in 0..n {
                    assert_eq!(kx[(i, j)].to_bits(), plain[(i, j)].to_bits());
                }
            }
            // a symmetric weight matrix with some exact zeros (skipped by both)
            let g = Mat::from_fn(n, n, |i, j| {
                let (a, b) = (i.max(j), i.min(j));
                if (a + b) % 7 == 0 {
                    0.0
                } else {
                    ((a * 31 + b * 17) as f64).sin()
                }
            });
            let (mut stored, mut evaluated) = (vec![0.0; d], vec![0.0; d]);
            contract_any(&k, &ts, Some(&pg), g.as_ref(), &mut stored);
            contract(&k, &ts, g.as_ref(), &mut evaluated);
            for (a, b) in stored.iter().zip(&evaluated) {
                assert_eq!(a.to_bits(), b.to_bits(), "{a} vs {b}");
            }
            assert!(evaluated.iter().all(|v| v.abs() > 0.0));
        }
        let ts = train_set(1000, 17);
        let k = KernelSpec::Matern(Matern::new(Nu::FiveHalves, 17, 0.7));
        const { assert!(1000 * 1001 / 2 * 17 > PAIR_GRADS_MAX) };
        assert!(kx_matrix_impl(&k, &ts, true).1.is_none());
    }
}
