//! Online updates: conditioning on new rows with frozen hyperparameters (rank-k extension
//! of the Cholesky factor) and warm-started refits. Both keep the model's input map.

use super::{FitReport, MultiTaskGp};
use crate::engine::{self, PostState, SolverPath, TrainSet};
use crate::error::{GpError, Result};
use crate::kernel::Kernel;
use faer::{Mat, Par};

impl<K: Kernel + Clone> MultiTaskGp<K> {
    /// Condition on the rows `(x, y)` from scratch with this model's hyperparameters, input
    /// map and standardisation (no refit). Chooses the path as a fit would.
    pub fn condition_from_scratch(&self, x: &[f64], y: &[f64]) -> Result<Self> {
        let _clean = crate::simd::UpperStateGuard;
        let n = engine::validate(x, self.n_cols, Some(y), self.lay.t)?;
        if n < 1 {
            return Err(GpError::TooFewPoints { got: n, need: 1 });
        }
        let mean = self.mean_fn()?;
        let prior = engine::mean_rows(mean.as_ref(), x, self.n_cols, self.lay.t)?;
        let mut ts = TrainSet {
            base: Vec::new(),
            n_base: 0,
            row_base: Vec::new(),
            row_task: Vec::new(),
            z: Vec::new(),
            ..self.ts.clone()
        };
        ts.extend(x, self.n_cols, y, &self.norm, &self.st, &prior);
        let (post, path, _, _) = engine::build_posterior(
            &self.kernel,
            &ts,
            &self.theta,
            &self.lay,
            &self.opts,
            &super::fit::no_pause,
        )?;
        Ok(Self {
            x: x.to_vec(),
            y: y.to_vec(),
            ts,
            post,
            path,
            ..self.clone()
        })
    }

    /// Condition on extra rows with the hyperparameters, input map and standardisation
    /// frozen, by extending the Cholesky factor (rank-k update: O(n²k + k³), no
    /// refactorisation of the existing rows). A model on a Kronecker path is first turned
    /// into its dense factorisation (one O((NT)³) factorisation), after which appends are
    /// incremental. On error the model is left unchanged.
    pub fn condition_on(&mut self, x: &[f64], y: &[f64]) -> Result<()> {
        let _clean = crate::simd::UpperStateGuard;
        let k_new = engine::validate(x, self.n_cols, Some(y), self.lay.t)?;
        if k_new == 0 {
            return Ok(());
        }
        let mean = self.mean_fn()?;
        let prior = engine::mean_rows(mean.as_ref(), x, self.n_cols, self.lay.t)?;
        let n_old = self.ts.n();
        let b = engine::task_matrix(&self.theta, &self.lay);
        let noise = self.post.noise.clone();
        let (l_old, kinv_old, jitter) = match &self.post.state {
            PostState::Dense {
                l, kinv, jitter, ..
            } => (
                engine::from_vec(l, n_old, n_old).to_owned(),
                engine::from_vec(kinv, n_old, n_old).to_owned(),
                *jitter,
            ),
            PostState::Kron { .. } => {
                let kx = engine::kx_matrix(&self.kernel, &self.ts);
                let (l, j) = engine::chol_jitter(
                    engine::dense_k(&self.ts, kx.as_ref(), b.as_ref(), &noise),
                    &self.opts,
                )?;
                let kinv = engine::inverse_from_l(l.as_ref());
                (l, kinv, j)
            }
        };
        let mut ts = self.ts.clone();
        ts.extend(x, self.n_cols, y, &self.norm, &self.st, &prior);
        let n = ts.n();
        let kfun = |r: usize, s: usize| {
            let v = self
                .kernel
                .eval(ts.base_row(ts.row_base[r]), ts.base_row(ts.row_base[s]))
                * b[(ts.row_task[r], ts.row_task[s])];
            if r == s {
                v + noise[ts.row_task[r]] + jitter
            } else {
                v
            }
        };
        let k12 = Mat::from_fn(n_old, k_new, |r, s| kfun(r, n_old + s));
        let k22 = Mat::from_fn(k_new, k_new, |r, s| kfun(n_old + r, n_old + s));
        let mut x12 = k12.clone();
        faer::linalg::triangular_solve::solve_lower_triangular_in_place(
            l_old.as_ref(),
            x12.as_mut(),
            Par::Seq,
        );
        let xtx: Mat<f64> = x12.transpose() * x12.as_ref();
        let schur = &k22 - &xtx;
        // the Schur complement of the new rows gets the usual bounded jitter escalation
        let (l22, j2) = engine::chol_jitter(schur, &self.opts)?;
        let mut l = Mat::<f64>::zeros(n, n);
        l.as_mut()
            .submatrix_mut(0, 0, n_old, n_old)
            .copy_from(l_old.as_ref());
        l.as_mut()
            .submatrix_mut(n_old, 0, k_new, n_old)
            .copy_from(x12.transpose());
        l.as_mut()
            .submatrix_mut(n_old, n_old, k_new, k_new)
            .copy_from(l22.as_ref());
        // block inverse: Y = K11⁻¹ K12, S⁻¹ from L22
        let yk: Mat<f64> = kinv_old.as_ref() * k12.as_ref();
        let sinv = engine::inverse_from_l(l22.as_ref());
        let ys: Mat<f64> = yk.as_ref() * sinv.as_ref();
        let ysy: Mat<f64> = ys.as_ref() * yk.transpose();
        let mut kinv = Mat::<f64>::zeros(n, n);
        kinv.as_mut()
            .submatrix_mut(0, 0, n_old, n_old)
            .copy_from(&kinv_old + &ysy);
        kinv.as_mut()
            .submatrix_mut(0, n_old, n_old, k_new)
            .copy_from(-&ys);
        kinv.as_mut()
            .submatrix_mut(n_old, 0, k_new, n_old)
            .copy_from((-&ys).transpose());
        kinv.as_mut()
            .submatrix_mut(n_old, n_old, k_new, k_new)
            .copy_from(&sinv);
        let alpha = engine::chol_solve(l.as_ref(), &ts.z);
        self.post = engine::dense_posterior(
            &ts,
            l.as_ref(),
            kinv.as_ref(),
            alpha,
            b.as_ref(),
            noise,
            jitter.max(j2),
        );
        self.ts = ts;
        self.path = SolverPath::Dense;
        self.x.extend_from_slice(x);
        self.y.extend_from_slice(y);
        Ok(())
    }

    /// Append rows and refit warm-started from the current hyperparameters (one start,
    /// `warm_iters` iterations). The input map is kept (so the length-scales keep their
    /// meaning); the standardisation is recomputed from all rows. On error the model is
    /// left unchanged.
    pub fn append_and_refit(&mut self, x: &[f64], y: &[f64]) -> Result<&FitReport> {
        let _clean = crate::simd::UpperStateGuard;
        engine::validate(x, self.n_cols, Some(y), self.lay.t)?;
        let mut xa = self.x.clone();
        xa.extend_from_slice(x);
        let mut ya = self.y.clone();
        ya.extend_from_slice(y);
        let params = self.params()?;
        *self = params.fit_warm(&xa, self.n_cols, &ya, self)?;
        Ok(&self.report)
    }
}
