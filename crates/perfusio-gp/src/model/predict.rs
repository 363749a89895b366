//! Predictions: per row, jointly over rows, and per base input for all tasks at once
//! (batched with matrix products), with input gradients.
//!
//! Every prediction at `m` base inputs forms the cross kernel `K_* (m × N)` against the N
//! distinct training inputs once and then works with matrix products:
//! * mean: `K_* P` with `P = (per-input α) B` (N × T);
//! * Kronecker posterior: the latent covariance of the tasks at input `p` is
//!   `k(p,p) B − Σ_i (K_* Q_x)²_{p,i} M_i` with `M_i[t,t'] = Σ_u wv[u,t] wv[u,t'] / (λx_i λb_u + 1)`
//!   (one GEMM against `Q_x`, one against `M`), plus `Σ_c (K_* Ĝ)_{p,(t,c)} (K_* Ĝ)_{p,(t',c)}`
//!   when the training grid has empty cells (they inform nothing, so the full-grid
//!   reduction is partly given back); for full task covariances on a large posterior, in
//!   the input kernel's leading eigenvectors with a per-input error bound (`lowrank`);
//! * dense posterior: `k(p,p) B − [k_pᵀ W_{tt'} k_p]` with `W = Cᵀ K⁻¹ C` precomputed at
//!   base-input level (NT × NT), one GEMM per task.

use super::MultiTaskGp;
use crate::engine::{self, PostState};
use crate::error::{GpError, Result};
use crate::kernel::Kernel;
use crate::mean::{MEAN_FD_STEP, finite_difference_jacobian};
use faer::{Mat, MatRef};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

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

/// Joint predictive distribution of all tasks at one base input (original units).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskPrediction {
    /// Mean of each task (prior mean included).
    pub mean: Vec<f64>,
    /// `n_tasks × n_tasks` row-major covariance: latent, or with each task's observation
    /// noise added on the diagonal. Diagonal round-off below 0 is clamped to 0.
    pub covariance: Vec<f64>,
}

/// [`TaskPrediction`] (latent) plus gradients with respect to the base input.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskPredictionGrad {
    /// The latent joint prediction at the input.
    pub prediction: TaskPrediction,
    /// `n_tasks × d` row-major: `∂mean_t/∂x_j` in original units, the prior mean's Jacobian
    /// included.
    pub mean_grad: Vec<f64>,
    /// `n_tasks × d` row-major: `∂var_t/∂x_j` of the latent marginal variance, original
    /// units (0 where the variance is clamped at 0); empty from
    /// [`MultiTaskGp::predict_tasks_mean_grad`].
    pub variance_grad: Vec<f64>,
}

/// Rows of X grouped by distinct base input.
struct Rows {
    /// Distinct base inputs, original units, `mu × d`.
    base: Vec<f64>,
    mu: usize,
    row_u: Vec<usize>,
    row_t: Vec<usize>,
}

/// Cross kernel of normalised queries against the training inputs.
struct Query {
    m: usize,
    /// Normalised inputs, `m × d`.
    u: Vec<f64>,
    /// `k(u_p, u_p)`.
    kss: Vec<f64>,
    /// `m × N`.
    kxs: Mat<f64>,
}

impl<K: Kernel + Clone> MultiTaskGp<K> {
    fn b(&self) -> MatRef<'_, f64> {
        engine::from_vec(&self.post.b, self.lay.t, self.lay.t)
    }

    fn group_rows(&self, x: &[f64]) -> Result<Rows> {
        let m = engine::validate(x, self.n_cols, None, self.lay.t)?;
        let d = self.n_cols - 1;
        let mut map: HashMap<Vec<u64>, usize> = HashMap::new();
        let mut base = Vec::new();
        let mut row_u = Vec::with_capacity(m);
        let mut row_t = Vec::with_capacity(m);
        for r in x.chunks_exact(self.n_cols) {
            let key: Vec<u64> = r[..d].iter().map(|v| (v + 0.0).to_bits()).collect();
            let next = map.len();
            let u = *map.entry(key).or_insert_with(|| {
                base.extend_from_slice(&r[..d]);
                next
            });
            row_u.push(u);
            row_t.push(engine::task_of(r));
        }
        Ok(Rows {
            base,
            mu: map.len(),
            row_u,
            row_t,
        })
    }

    /// Normalise `m` base inputs and form their cross kernel against the training inputs.
    fn query(&self, base: &[f64], m: usize) -> Query {
        let d = self.n_cols - 1;
        let mut u = Vec::with_capacity(m * d);
        for r in base.chunks_exact(d) {
            self.norm.apply(r, &mut u);
        }
        let kxs = engine::cross(&self.kernel, &u, m, &self.ts);
        let kss = (0..m)
            .map(|p| {
                let up = &u[p * d..(p + 1) * d];
                self.kernel.eval(up, up)
            })
            .collect();
        Query { m, u, kss, kxs }
    }

    /// Latent mean in standardised units, `m × T`.
    fn latent_mean(&self, q: &Query) -> Mat<f64> {
        let p = engine::from_vec(&self.post.p, self.ts.n_base, self.lay.t);
        engine::mul(q.kxs.as_ref(), p)
    }

    /// `k(p,p) B` at each query input, in the layout of [`Self::latent_task_cov`].
    fn prior_task_cov(&self, q: &Query, diag_only: bool) -> Vec<f64> {
        let (t, m) = (self.lay.t, q.m);
        let b = self.b();
        let per = if diag_only { t } else { t * t };
        let mut out = vec![0.0; m * per];
        for p in 0..m {
            for t1 in 0..t {
                if diag_only {
                    out[p * t + t1] = q.kss[p] * b[(t1, t1)];
                } else {
                    for t2 in 0..t {
                        out[p * t * t + t1 * t + t2] = q.kss[p] * b[(t1, t2)];
                    }
                }
            }
        }
        out
    }

    /// Latent covariance of the tasks at each query input, standardised units:
    /// `m × T × T` (`[p][t][t']`) or, with `diag_only`, `m × T` (`[p][t]`).
    ///
    /// With `truncate` (full task covariances only), a large Kronecker posterior may work in
    /// the leading eigenvectors of the input kernel, each query's error certified to
    /// [`FitOptions::predict_rel_tol`] and recomputed in full otherwise (see `lowrank`).
    ///
    /// [`FitOptions::predict_rel_tol`]: crate::FitOptions::predict_rel_tol
    fn latent_task_cov(&self, q: &Query, diag_only: bool, truncate: bool) -> Vec<f64> {
        let tol = self.opts.predict_rel_tol;
        let tr = if truncate && !diag_only && tol > 0.0 && q.m > 0 {
            self.post.trunc.get(&self.post, self.lay.t, tol)
        } else {
            None
        };
        let Some(tr) = tr else {
            return self.latent_task_cov_full(q, diag_only);
        };
        let t = self.lay.t;
        let per = t * t;
        let mut out = self.prior_task_cov(q, false);
        let failed = tr.task_cov(&q.kxs, &q.kss, t, tol, &mut out);
        if !failed.is_empty() {
            let d = self.n_cols - 1;
            let sub = Query {
                m: failed.len(),
                u: failed
                    .iter()
                    .flat_map(|&p| q.u[p * d..(p + 1) * d].iter().copied())
                    .collect(),
                kss: failed.iter().map(|&p| q.kss[p]).collect(),
                kxs: Mat::from_fn(failed.len(), q.kxs.ncols(), |k, j| q.kxs[(failed[k], j)]),
            };
            let full = self.latent_task_cov_full(&sub, false);
            for (k, &p) in failed.iter().enumerate() {
                out[p * per..(p + 1) * per].copy_from_slice(&full[k * per..(k + 1) * per]);
            }
        }
        out
    }

    /// [`Self::latent_task_cov`] with every eigenvector.
    fn latent_task_cov_full(&self, q: &Query, diag_only: bool) -> Vec<f64> {
        let (nb, t, m) = (self.ts.n_base, self.lay.t, q.m);
        let mut out = self.prior_task_cov(q, diag_only);
        match &self.post.state {
            PostState::Kron {
                qx,
                mtt,
                gap,
                n_gap,
                ..
            } => {
                let qx = engine::from_vec(qx, nb, nb);
                let mtt = engine::from_vec(mtt, nb, t * t);
                let um = engine::mul_rows(q.kxs.as_ref(), qx);
                let um2 = Mat::from_fn(m, nb, |p, i| um[(p, i)] * um[(p, i)]);
                if diag_only {
                    let rm = Mat::from_fn(nb, t, |i, tt| mtt[(i, tt * t + tt)]);
                    let c: Mat<f64> = um2.as_ref() * rm.as_ref();
                    for p in 0..m {
                        for tt in 0..t {
                            out[p * t + tt] -= c[(p, tt)];
                        }
                    }
                } else {
                    let c = engine::mul(um2.as_ref(), mtt);
                    for p in 0..m {
                        for col in 0..t * t {
                            out[p * t * t + col] -= c[(p, col)];
                        }
                    }
                }
                if let (Some(gh), Some(gc)) = (gap, self.post.gapcols.get(&self.post, t)) {
                    let mg = *n_gap;
                    let gh = engine::from_vec(gh, nb, t * mg);
                    // the non-zero columns only, scattered back to one contiguous
                    // `T·m` column per query
                    let zt = gc.scatter(t, engine::mul_rows(q.kxs.as_ref(), gc.columns(gh)));
                    for p in 0..m {
                        let zp = zt.col_as_slice(p);
                        // the empty cells carry no information: their correction adds
                        // variance back
                        if diag_only {
                            for t1 in 0..t {
                                let block = &zp[t1 * mg..(t1 + 1) * mg];
                                out[p * t + t1] += engine::dot4(block, block);
                            }
                        } else {
                            gc.add_vvt(zp, t, &mut out[p * t * t..(p + 1) * t * t]);
                        }
                    }
                }
            }
            PostState::Dense { w, .. } => {
                let w = engine::from_vec(w, nb * t, nb * t);
                for t1 in 0..t {
                    let rows = w.subrows(t1 * nb, nb);
                    let (cols_from, cols_n) = if diag_only {
                        (t1 * nb, nb)
                    } else {
                        (0, t * nb)
                    };
                    let y = engine::mul(q.kxs.as_ref(), rows.subcols(cols_from, cols_n));
                    for p in 0..m {
                        if diag_only {
                            let s: f64 = (0..nb).map(|j| y[(p, j)] * q.kxs[(p, j)]).sum();
                            out[p * t + t1] -= s;
                        } else {
                            for t2 in 0..t {
                                let s: f64 =
                                    (0..nb).map(|j| y[(p, t2 * nb + j)] * q.kxs[(p, j)]).sum();
                                out[p * t * t + t1 * t + t2] -= s;
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// Joint predictive distribution of all tasks at each of `m` base inputs (`base` is
    /// `m × d` row-major, original units, no task column). Computed once per input with
    /// matrix products over the whole batch: 256 inputs are one product against the
    /// training set, not 256 loops. `with_noise` adds each task's observation noise to the
    /// diagonal.
    ///
    /// On a Kronecker posterior of at least 256 base inputs whose input kernel's spectrum
    /// decays fast, the covariances are computed in its leading eigenvectors, each entry
    /// within [`FitOptions::predict_rel_tol`] (default 0.1 %) of `√(σ²_t σ²_t')` by a
    /// per-input bound, and in full for any input the bound does not certify; means are
    /// exact. [`MultiTaskGp::set_predict_rel_tol`]`(0.0)` turns it off.
    ///
    /// [`FitOptions::predict_rel_tol`]: crate::FitOptions::predict_rel_tol
    pub fn predict_tasks(&self, base: &[f64], with_noise: bool) -> Result<Vec<TaskPrediction>> {
        let _clean = crate::simd::UpperStateGuard;
        let d = self.n_cols - 1;
        let t = self.lay.t;
        let m = engine::validate_base(base, d)?;
        let mean = self.mean_fn()?;
        let prior = engine::mean_at(mean.as_ref(), base, d, t)?;
        let q = self.query(base, m);
        let mz = self.latent_mean(&q);
        let cz = self.latent_task_cov(&q, false, true);
        let mut out = Vec::with_capacity(m);
        for p in 0..m {
            let mut mu = Vec::with_capacity(t);
            for tt in 0..t {
                mu.push(prior[p * t + tt] + self.st.mean[tt] + self.st.std[tt] * mz[(p, tt)]);
            }
            let cov = self.task_cov_original(&cz[p * t * t..(p + 1) * t * t], with_noise);
            out.push(super::TaskPrediction {
                mean: mu,
                covariance: cov,
            });
        }
        Ok(out)
    }

    /// A standardised latent T×T covariance in original units: exactly symmetric, diagonal
    /// clamped at 0, plus the observation noise on the diagonal if asked.
    fn task_cov_original(&self, cz: &[f64], with_noise: bool) -> Vec<f64> {
        let t = self.lay.t;
        let mut cov = vec![0.0; t * t];
        for t1 in 0..t {
            for t2 in 0..=t1 {
                let mut v = 0.5 * (cz[t1 * t + t2] + cz[t2 * t + t1]);
                if t1 == t2 {
                    v = v.max(0.0);
                    if with_noise {
                        v += self.post.noise[t1];
                    }
                }
                let v = v * self.st.std[t1] * self.st.std[t2];
                cov[t1 * t + t2] = v;
                cov[t2 * t + t1] = v;
            }
        }
        cov
    }

    /// Mean of all tasks at each of `m` base inputs, `m × n_tasks` row-major, original
    /// units (the cheapest query).
    pub fn predict_tasks_mean(&self, base: &[f64]) -> Result<Vec<f64>> {
        let _clean = crate::simd::UpperStateGuard;
        let d = self.n_cols - 1;
        let t = self.lay.t;
        let m = engine::validate_base(base, d)?;
        let mean = self.mean_fn()?;
        let mut out = engine::mean_at(mean.as_ref(), base, d, t)?;
        let q = self.query(base, m);
        let mz = self.latent_mean(&q);
        for p in 0..m {
            for tt in 0..t {
                out[p * t + tt] += self.st.mean[tt] + self.st.std[tt] * mz[(p, tt)];
            }
        }
        Ok(out)
    }

    /// Latent joint prediction of all tasks at ONE base input (`d` values, original units)
    /// with the gradients of the means and marginal variances with respect to that input,
    /// through the input normalisation; the mean gradient includes the prior mean's
    /// Jacobian ([`crate::PriorMean::eval_with_jacobian`], or central differences with
    /// steps `MEAN_FD_STEP ×` the column's unit-cube width when the mean has none).
    pub fn predict_tasks_grad(&self, base: &[f64]) -> Result<TaskPredictionGrad> {
        let _clean = crate::simd::UpperStateGuard;
        self.tasks_grad(base)
    }

    /// [`MultiTaskGp::predict_tasks_grad`] without the variance gradients
    /// (`variance_grad` is empty): the joint prediction and the mean gradient, at a fraction
    /// of the cost (no `N² d` product with the posterior's eigenvectors), for callers that
    /// linearise the mean only. Its covariance is computed as in
    /// [`MultiTaskGp::predict_tasks`] (on a large posterior, within
    /// [`FitOptions::predict_rel_tol`]); [`MultiTaskGp::predict_tasks_grad`]'s is exact,
    /// like the variance gradient that goes with it.
    ///
    /// [`FitOptions::predict_rel_tol`]: crate::FitOptions::predict_rel_tol
    pub fn predict_tasks_mean_grad(&self, base: &[f64]) -> Result<TaskPredictionGrad> {
        let d = self.n_cols - 1;
        if engine::validate_base(base, d)? != 1 {
            return Err(GpError::ShapeMismatch(format!(
                "predict_tasks_mean_grad takes one base input of {d} values, got {}",
                base.len()
            )));
        }
        let mut out = self.predict_tasks_mean_grad_many(base)?;
        out.pop()
            .ok_or_else(|| GpError::ShapeMismatch("no base input".into()))
    }

    /// [`MultiTaskGp::predict_tasks_mean_grad`] at many base inputs (`m × d`, row-major) in
    /// one pass: the cross kernel, the means and the task covariances of all inputs are
    /// matrix products over the batch (on a large posterior the training set's factors are
    /// read once, not once per input), the mean gradients are per input. Each entry equals
    /// the single-input call up to the summation order of those products.
    ///
    /// ```
    /// use perfusio_gp::{GpParams, Tuning};
    /// let x: Vec<f64> = (0..12).flat_map(|i| [i as f64 / 4.0, (i % 2) as f64]).collect();
    /// let y: Vec<f64> = (0..12).map(|i| (i as f64 / 4.0).sin()).collect();
    /// let gp = GpParams::new(1, 2).tuning(Tuning::fixed()).check().unwrap().fit(&x, 2, &y).unwrap();
    /// let many = gp.predict_tasks_mean_grad_many(&[0.3, 1.7]).unwrap();
    /// let one = gp.predict_tasks_mean_grad(&[1.7]).unwrap();
    /// assert_eq!(many.len(), 2);
    /// for (a, b) in many[1].mean_grad.iter().zip(&one.mean_grad) {
    ///     assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0));
    /// }
    /// ```
    pub fn predict_tasks_mean_grad_many(&self, base: &[f64]) -> Result<Vec<TaskPredictionGrad>> {
        let _clean = crate::simd::UpperStateGuard;
        let d = self.n_cols - 1;
        let t = self.lay.t;
        let nb = self.ts.n_base;
        let m = engine::validate_base(base, d)?;
        if m == 0 {
            return Ok(Vec::new());
        }
        let mean = self.mean_fn()?;
        let mut priors = Vec::with_capacity(m);
        for r in base.chunks_exact(d) {
            priors.push(self.prior_with_jacobian(mean.as_ref(), r)?);
        }
        let q = self.query(base, m);
        let mz = self.latent_mean(&q);
        let cz = self.latent_task_cov(&q, false, true);
        let pmat = engine::from_vec(&self.post.p, nb, t);
        let inv = &self.norm.inv_range;
        let mut jk = Mat::<f64>::zeros(nb, d);
        let mut g = vec![0.0; d];
        let mut out = Vec::with_capacity(m);
        for (p, (prior, jac)) in priors.into_iter().enumerate() {
            self.cross_grad(&q.u[p * d..(p + 1) * d], &mut jk, &mut g);
            let dmean_z: Mat<f64> = pmat.transpose() * jk.as_ref(); // T × d
            let mut mean_out = Vec::with_capacity(t);
            let mut mean_grad = vec![0.0; t * d];
            for t1 in 0..t {
                let s1 = self.st.std[t1];
                mean_out.push(prior[t1] + self.st.mean[t1] + s1 * mz[(p, t1)]);
                for j in 0..d {
                    mean_grad[t1 * d + j] = jac[t1 * d + j] + s1 * dmean_z[(t1, j)] * inv[j];
                }
            }
            out.push(TaskPredictionGrad {
                prediction: super::TaskPrediction {
                    mean: mean_out,
                    covariance: self.task_cov_original(&cz[p * t * t..(p + 1) * t * t], false),
                },
                mean_grad,
                variance_grad: Vec::new(),
            });
        }
        Ok(out)
    }

    /// `∂k(u, x_i)/∂u` against every training input into `jk` (`N × d`; `g` is a `d`
    /// scratch), `u` a normalised query.
    fn cross_grad(&self, u: &[f64], jk: &mut Mat<f64>, g: &mut [f64]) {
        for i in 0..self.ts.n_base {
            self.kernel.eval_grad_x(u, self.ts.base_row(i), g);
            for (j, v) in g.iter().enumerate() {
                jk[(i, j)] = *v;
            }
        }
    }

    /// The prior mean at one base input and its Jacobian (`T × d`, row-major): analytic when
    /// the mean has one, else central differences with steps `MEAN_FD_STEP ×` each column's
    /// unit-cube width.
    fn prior_with_jacobian(
        &self,
        mean: &dyn crate::PriorMean,
        base: &[f64],
    ) -> Result<(Vec<f64>, Vec<f64>)> {
        let (d, t) = (self.n_cols - 1, self.lay.t);
        let mut prior = vec![0.0; t];
        let mut jac = vec![0.0; t * d];
        if let Some(c) = mean.as_constant() {
            prior.fill(c);
        } else {
            let analytic = mean.eval_with_jacobian(base, &mut prior, &mut jac)?;
            if !analytic {
                let steps: Vec<f64> = self
                    .norm
                    .widths()
                    .iter()
                    .map(|w| MEAN_FD_STEP * w)
                    .collect();
                finite_difference_jacobian(mean, base, &steps, &mut jac)?;
            }
            if let Some(i) = prior.iter().chain(&jac).position(|v| !v.is_finite()) {
                return Err(GpError::PriorMean(crate::MeanError(format!(
                    "non-finite value or Jacobian entry (index {i}) at base input {base:?}"
                ))));
            }
        }
        Ok((prior, jac))
    }

    /// [`MultiTaskGp::predict_tasks_grad`]: the exact covariance and its gradient.
    fn tasks_grad(&self, base: &[f64]) -> Result<TaskPredictionGrad> {
        let d = self.n_cols - 1;
        let t = self.lay.t;
        let nb = self.ts.n_base;
        if engine::validate_base(base, d)? != 1 {
            return Err(GpError::ShapeMismatch(format!(
                "predict_tasks_grad takes one base input of {d} values, got {}",
                base.len()
            )));
        }
        let mean = self.mean_fn()?;
        let (prior, jac) = self.prior_with_jacobian(mean.as_ref(), base)?;
        let q = self.query(base, 1);
        let u = &q.u;
        let mut jk = Mat::<f64>::zeros(nb, d);
        let mut g = vec![0.0; d];
        self.cross_grad(u, &mut jk, &mut g);
        self.kernel.eval_grad_x(u, u, &mut g);
        let dkss: Vec<f64> = g.iter().map(|v| 2.0 * v).collect();
        let kx: Vec<f64> = (0..nb).map(|i| q.kxs[(0, i)]).collect();
        let mz = self.latent_mean(&q);
        // the variance gradient is exact, so the variance it goes with is too
        let cz = self.latent_task_cov(&q, false, false);
        let pmat = engine::from_vec(&self.post.p, nb, t);
        let dmean_z: Mat<f64> = pmat.transpose() * jk.as_ref(); // T × d
        let b = self.b();
        // ∂corr_tt/∂u_j
        let mut dcorr = Mat::<f64>::zeros(t, d);
        match &self.post.state {
            PostState::Kron {
                qx,
                mtt,
                gap,
                n_gap,
                ..
            } => {
                let qx = engine::from_vec(qx, nb, nb);
                let mtt = engine::from_vec(mtt, nb, t * t);
                let um: Vec<f64> = (0..nb)
                    .map(|i| (0..nb).map(|l| qx[(l, i)] * kx[l]).sum())
                    .collect();
                let dum: Mat<f64> = qx.transpose() * jk.as_ref(); // N × d
                for tt in 0..t {
                    for j in 0..d {
                        dcorr[(tt, j)] = 2.0
                            * (0..nb)
                                .map(|i| um[i] * dum[(i, j)] * mtt[(i, tt * t + tt)])
                                .sum::<f64>();
                    }
                }
                if let (Some(gh), Some(gc)) = (gap, self.post.gapcols.get(&self.post, t)) {
                    let mg = *n_gap;
                    let g = gc.columns(engine::from_vec(gh, nb, t * mg));
                    for tt in 0..t {
                        // the task's non-zero columns (the others add nothing)
                        let js: Vec<usize> = (0..gc.cols.len())
                            .filter(|&j| gc.cols[j] / mg == tt)
                            .collect();
                        let z: Vec<f64> = js
                            .iter()
                            .map(|&j| (0..nb).map(|i| kx[i] * g[(i, j)]).sum())
                            .collect();
                        let qv: Vec<f64> = (0..nb)
                            .map(|i| js.iter().zip(&z).map(|(&j, zj)| zj * g[(i, j)]).sum())
                            .collect();
                        for j in 0..d {
                            dcorr[(tt, j)] -=
                                2.0 * (0..nb).map(|i| qv[i] * jk[(i, j)]).sum::<f64>();
                        }
                    }
                }
            }
            PostState::Dense { w, .. } => {
                let w = engine::from_vec(w, nb * t, nb * t);
                for tt in 0..t {
                    let wtt = w.submatrix(tt * nb, tt * nb, nb, nb);
                    let y: Vec<f64> = (0..nb)
                        .map(|i| (0..nb).map(|l| wtt[(i, l)] * kx[l]).sum())
                        .collect();
                    for j in 0..d {
                        dcorr[(tt, j)] = 2.0 * (0..nb).map(|i| y[i] * jk[(i, j)]).sum::<f64>();
                    }
                }
            }
        }
        let inv = &self.norm.inv_range;
        let mut mean_out = Vec::with_capacity(t);
        let cov = self.task_cov_original(&cz, false);
        let mut mean_grad = vec![0.0; t * d];
        let mut variance_grad = vec![0.0; t * d];
        for t1 in 0..t {
            let s1 = self.st.std[t1];
            mean_out.push(prior[t1] + self.st.mean[t1] + s1 * mz[(0, t1)]);
            let clamped = cz[t1 * t + t1] <= 0.0;
            for j in 0..d {
                mean_grad[t1 * d + j] = jac[t1 * d + j] + s1 * dmean_z[(t1, j)] * inv[j];
                variance_grad[t1 * d + j] = if clamped {
                    0.0
                } else {
                    s1 * s1 * (dkss[j] * b[(t1, t1)] - dcorr[(t1, j)]) * inv[j]
                };
            }
        }
        Ok(TaskPredictionGrad {
            prediction: super::TaskPrediction {
                mean: mean_out,
                covariance: cov,
            },
            mean_grad,
            variance_grad,
        })
    }

    /// Mean and marginal variance per row, original units.
    fn marginal(&self, x: &[f64], with_noise: bool, want_var: bool) -> Result<Prediction> {
        let rows = self.group_rows(x)?;
        let d = self.n_cols - 1;
        let t = self.lay.t;
        let mean = self.mean_fn()?;
        let prior = engine::mean_at(mean.as_ref(), &rows.base, d, t)?;
        let q = self.query(&rows.base, rows.mu);
        let mz = self.latent_mean(&q);
        let var = if want_var {
            self.latent_task_cov(&q, true, false)
        } else {
            Vec::new()
        };
        let n = rows.row_u.len();
        let mut out_m = Vec::with_capacity(n);
        let mut out_v = Vec::with_capacity(if want_var { n } else { 0 });
        for (&u, &tt) in rows.row_u.iter().zip(&rows.row_t) {
            let s = self.st.std[tt];
            out_m.push(prior[u * t + tt] + self.st.mean[tt] + s * mz[(u, tt)]);
            if want_var {
                let extra = if with_noise { self.post.noise[tt] } else { 0.0 };
                out_v.push(s * s * (var[u * t + tt].max(0.0) + extra));
            }
        }
        Ok(Prediction {
            mean: out_m,
            variance: out_v,
        })
    }

    /// Posterior mean and latent variance (without observation noise) of each row of `x`
    /// (`n_cols` columns, task id last), original units.
    pub fn predict(&self, x: &[f64]) -> Result<Prediction> {
        let _clean = crate::simd::UpperStateGuard;
        self.marginal(x, false, true)
    }

    /// Posterior mean and predictive variance of a new observation (latent variance plus the
    /// task's noise variance), original units.
    pub fn predict_observed(&self, x: &[f64]) -> Result<Prediction> {
        let _clean = crate::simd::UpperStateGuard;
        self.marginal(x, true, true)
    }

    /// Posterior mean only (cheapest query), original units.
    pub fn predict_mean(&self, x: &[f64]) -> Result<Vec<f64>> {
        let _clean = crate::simd::UpperStateGuard;
        self.marginal(x, false, false).map(|p| p.mean)
    }

    /// Joint latent posterior (mean and full covariance) of the rows of `x`, original units.
    pub fn predict_joint(&self, x: &[f64]) -> Result<JointPrediction> {
        let _clean = crate::simd::UpperStateGuard;
        let rows = self.group_rows(x)?;
        let (nb, t, d) = (self.ts.n_base, self.lay.t, self.n_cols - 1);
        let m = rows.row_u.len();
        let mean_fn = self.mean_fn()?;
        let prior = engine::mean_at(mean_fn.as_ref(), &rows.base, d, t)?;
        let q = self.query(&rows.base, rows.mu);
        let mz = self.latent_mean(&q);
        let b = self.b();
        let corr: Mat<f64> = match &self.post.state {
            PostState::Kron {
                qx,
                wv,
                lx,
                lb,
                gap,
                n_gap,
                ..
            } => {
                let qx = engine::from_vec(qx, nb, nb);
                let wv = engine::from_vec(wv, t, t);
                let um: Mat<f64> = q.kxs.as_ref() * qx;
                let v = Mat::from_fn(nb * t, m, |row, c| {
                    let (i, u) = (row % nb, row / nb);
                    um[(rows.row_u[c], i)] * wv[(u, rows.row_t[c])] / (lx[i] * lb[u] + 1.0).sqrt()
                });
                let mut corr: Mat<f64> = v.transpose() * v.as_ref();
                if let (Some(gh), Some(gc)) = (gap, self.post.gapcols.get(&self.post, t)) {
                    let mg = *n_gap;
                    let gh = engine::from_vec(gh, nb, t * mg);
                    let z = engine::mul_rows(q.kxs.as_ref(), gc.columns(gh));
                    let zs = Mat::from_fn(mg, m, |c, r| {
                        gc.pos[rows.row_t[r] * mg + c].map_or(0.0, |j| z[(rows.row_u[r], j)])
                    });
                    let zz: Mat<f64> = zs.transpose() * zs.as_ref();
                    corr -= &zz;
                }
                corr
            }
            PostState::Dense { w, .. } => {
                let w = engine::from_vec(w, nb * t, nb * t);
                let phi = Mat::from_fn(nb * t, m, |row, c| {
                    let (tt, i) = (row / nb, row % nb);
                    if tt == rows.row_t[c] {
                        q.kxs[(rows.row_u[c], i)]
                    } else {
                        0.0
                    }
                });
                let wp: Mat<f64> = w * phi.as_ref();
                phi.transpose() * wp.as_ref()
            }
        };
        let mut cov = vec![0.0; m * m];
        for c in 0..m {
            let (uc, tc) = (rows.row_u[c], rows.row_t[c]);
            for e in 0..m {
                let (ue, te) = (rows.row_u[e], rows.row_t[e]);
                let kss = if uc == ue {
                    q.kss[uc]
                } else {
                    self.kernel
                        .eval(&q.u[uc * d..(uc + 1) * d], &q.u[ue * d..(ue + 1) * d])
                };
                let mut val = kss * b[(tc, te)] - 0.5 * (corr[(c, e)] + corr[(e, c)]);
                if c == e {
                    val = val.max(0.0);
                }
                cov[c * m + e] = val * self.st.std[tc] * self.st.std[te];
            }
        }
        let mean = rows
            .row_u
            .iter()
            .zip(&rows.row_t)
            .map(|(&u, &tt)| prior[u * t + tt] + self.st.mean[tt] + self.st.std[tt] * mz[(u, tt)])
            .collect();
        Ok(JointPrediction {
            mean,
            covariance: cov,
        })
    }

    /// `n_samples` joint draws of the latent function at the rows of `x` (original units),
    /// from a `ChaCha8Rng` seeded with `seed`. Each inner vector has one value per row.
    pub fn sample(&self, x: &[f64], n_samples: usize, seed: u64) -> Result<Vec<Vec<f64>>> {
        let _clean = crate::simd::UpperStateGuard;
        let jp = self.predict_joint(x)?;
        let m = jp.mean.len();
        let cov = Mat::from_fn(m, m, |i, j| jp.covariance[i * m + j]);
        let (l, _) = engine::chol_jitter(cov, &self.opts)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut out = Vec::with_capacity(n_samples);
        let mut z = vec![0.0; m];
        for _ in 0..n_samples {
            for v in z.iter_mut() {
                *v = rand::RngExt::sample(&mut rng, rand_distr::StandardNormal);
            }
            let s: Vec<f64> = (0..m)
                .map(|i| jp.mean[i] + (0..=i).map(|j| l[(i, j)] * z[j]).sum::<f64>())
                .collect();
            out.push(s);
        }
        Ok(out)
    }
}
