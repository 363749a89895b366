//! The empty-cell correction's columns that carry anything.
//!
//! On a Kronecker posterior with empty cells, the latent task covariance at a query `p`
//! gains `Σ_c V[t,c] V[t',c]` back, `V[t,c] = k_pᵀ Ĝ[:, (t,c)]` (see `predict`). `Ĝ` has
//! `T·m` columns (m empty cells), but a column is identically zero when cell `c`'s task is
//! uncorrelated with task `t`: with independent tasks (a diagonal task covariance, task
//! rank 0) only the column of the cell's own task is non-zero, `m` of `T·m`. The zeros are
//! exact (products with exact zeros of the task eigenvectors, and a Cholesky factor of a
//! block-diagonal Schur complement, which has no fill-in across blocks), so leaving them
//! out changes nothing but the summation order. Forming `V` for one query then reads
//! `N·nnz` numbers instead of `N·T·m`: on the 27-run design at rank 0, 2 MB instead of
//! 18 MB a day of a 28-day forecast.

use crate::engine::{self, PostState, Posterior};
use crate::model::Derived;
use faer::{Mat, MatRef};
use std::sync::Arc;

/// The non-zero columns of a posterior's empty-cell correction, built on first use.
pub(crate) type GapCache = Derived<GapCols>;

impl GapCache {
    /// The non-zero columns of `post`'s correction, or `None` without empty cells.
    pub(crate) fn get(&self, post: &Posterior, t: usize) -> Option<Arc<GapCols>> {
        self.get_or_build(|| build(post, t))
    }
}

/// Which columns of `Ĝ` (`N × T·m`, column `t·m + c`) are not identically zero, a compact
/// copy of them when some are, and which task pairs share a cell.
#[derive(Debug)]
pub(crate) struct GapCols {
    /// Number of empty cells `m`.
    pub(crate) m: usize,
    /// Indices `t·m + c` of the non-zero columns, ascending.
    pub(crate) cols: Vec<usize>,
    /// Per column `t·m + c` of `Ĝ`, its position in `cols` (`None`: identically zero).
    pub(crate) pos: Vec<Option<usize>>,
    /// Those columns (`N × cols.len()`), or `None` when every column is non-zero (then
    /// `Ĝ` itself is used).
    compact: Option<Mat<f64>>,
    /// `T × T` row-major: whether some cell has non-zero columns for both tasks, i.e.
    /// whether `Σ_c V[t,c] V[t',c]` can be non-zero.
    pub(crate) active: Vec<bool>,
}

fn build(post: &Posterior, t: usize) -> Option<GapCols> {
    let PostState::Kron {
        lx,
        gap: Some(gh),
        n_gap,
        ..
    } = &post.state
    else {
        return None;
    };
    let (nb, m) = (lx.len(), *n_gap);
    if m == 0 {
        return None;
    }
    let col = |k: usize| &gh[k * nb..(k + 1) * nb];
    let cols: Vec<usize> = (0..t * m)
        .filter(|&k| col(k).iter().any(|v| *v != 0.0))
        .collect();
    let mut active = vec![false; t * t];
    let mut tasks_of_cell = vec![Vec::new(); m];
    for &k in &cols {
        tasks_of_cell[k % m].push(k / m);
    }
    for tasks in &tasks_of_cell {
        for &a in tasks {
            for &b in tasks {
                active[a * t + b] = true;
            }
        }
    }
    let mut pos = vec![None; t * m];
    for (j, &k) in cols.iter().enumerate() {
        pos[k] = Some(j);
    }
    let compact =
        (cols.len() < t * m).then(|| Mat::from_fn(nb, cols.len(), |j, k| gh[cols[k] * nb + j]));
    Some(GapCols {
        m,
        cols,
        pos,
        compact,
        active,
    })
}

impl GapCols {
    /// The non-zero columns (`N × cols.len()`), given the posterior's whole `Ĝ`.
    pub(crate) fn columns<'a>(&'a self, gh: MatRef<'a, f64>) -> MatRef<'a, f64> {
        self.compact.as_ref().map_or(gh, |c| c.as_ref())
    }

    /// `V` of every query, `T·m × queries` (one contiguous column per query, zero in the
    /// left-out columns), from the non-zero columns' values `vc` (`queries × cols.len()`).
    pub(crate) fn scatter(&self, t: usize, vc: Mat<f64>) -> Mat<f64> {
        let mut out = Mat::zeros(t * self.m, vc.nrows());
        for p in 0..vc.nrows() {
            let dst = out.col_as_slice_mut(p);
            for (j, &k) in self.cols.iter().enumerate() {
                dst[k] = vc[(p, j)];
            }
        }
        out
    }

    /// Adds `Σ_c V[t1,c] V[t2,c]` (`vp` one query's `V`, task-major) to the `T × T`
    /// row-major `out`, for the task pairs that share a cell.
    pub(crate) fn add_vvt(&self, vp: &[f64], t: usize, out: &mut [f64]) {
        let m = self.m;
        for t1 in 0..t {
            for t2 in 0..=t1 {
                if !self.active[t1 * t + t2] {
                    continue;
                }
                let s = engine::dot4(&vp[t1 * m..(t1 + 1) * m], &vp[t2 * m..(t2 + 1) * m]);
                out[t1 * t + t2] += s;
                if t2 != t1 {
                    out[t2 * t + t1] += s;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use crate::kernel::{Kernel, KernelSpec, Matern, Nu};
    use crate::{GpParams, MultiTaskGp, SolverPath, Tuning};

    /// 40 inputs × 4 tasks, every fifth cell empty, fixed hyperparameters of task rank `rank`.
    fn gapped(rank: usize) -> (MultiTaskGp, usize) {
        let t = 4;
        let (mut x, mut y, mut empty) = (Vec::new(), Vec::new(), 0);
        for i in 0..40 {
            let u = i as f64 / 4.0;
            for task in 0..t {
                if (i * t + task) % 5 == 3 {
                    empty += 1;
                    continue;
                }
                x.extend_from_slice(&[u, task as f64]);
                y.push((0.7 * u + task as f64).sin() + 0.1 * task as f64);
            }
        }
        let mut k = KernelSpec::Matern(Matern::new(Nu::FiveHalves, 1, 0.7));
        k.set_params(&[0.5f64.ln()]).unwrap();
        let gp = GpParams::with_kernel(k, t)
            .rank(rank)
            .task_init(vec![0.4; t * rank], vec![0.3; t], vec![0.01; t])
            .tuning(Tuning::fixed())
            .check()
            .unwrap()
            .fit(&x, 2, &y)
            .unwrap();
        assert_eq!(gp.path(), SolverPath::KroneckerWithGaps);
        (gp, empty)
    }

    /// Independent tasks: only each cell's own task's column is non-zero, and only the
    /// diagonal task pairs share cells; correlated tasks keep every column (no copy).
    #[test]
    fn independent_tasks_keep_one_column_per_empty_cell() {
        let (gp, empty) = gapped(0);
        let t = 4;
        let gc = gp.post.gapcols.get(&gp.post, t).unwrap();
        assert_eq!(gc.m, empty);
        assert_eq!(gc.cols.len(), empty);
        assert!(gc.compact.is_some());
        for a in 0..t {
            for b in 0..t {
                assert_eq!(gc.active[a * t + b], a == b, "tasks {a}, {b}");
            }
        }
        for (j, &k) in gc.cols.iter().enumerate() {
            assert_eq!(gc.pos[k], Some(j));
        }
        assert_eq!(gc.pos.iter().filter(|p| p.is_some()).count(), empty);
        let (gp, empty) = gapped(2);
        let gc = gp.post.gapcols.get(&gp.post, t).unwrap();
        assert_eq!(gc.cols.len(), t * empty);
        assert!(gc.compact.is_none());
        assert!(gc.active.iter().all(|a| *a));
    }
}
