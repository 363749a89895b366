//! Batched task covariances on large Kronecker training sets, in the leading eigenvectors
//! of the input kernel, with a certified error bound and an exact fallback.
//!
//! On the Kronecker path the latent task covariance at a query `p` is (standardised units)
//!
//! `C = k(p,p) B − Σ_i u_i² M_i + V Vᵀ`, `u = Q_xᵀ k_p`, `V[t,c] = Σ_i u_i Z[i,(t,c)]`,
//!
//! where `Z = Q_xᵀ Ĝ` is the empty-cell correction in the eigenbasis of `K_x`. Forming `u`
//! for all N eigenvectors costs `N²` per query and `V` another `N·T·m` (m empty cells): on
//! the 27-run design (N = 756, m = 337) that is 1.5 GFlop for 256 Monte-Carlo paths, per
//! day. The input kernel's spectrum decays fast, so only the `r` eigenvectors with
//! `λ_i > 10⁻⁸ Σλ` are kept (`r ≤ N/2`, else nothing is gained) and the rest is bounded
//! through two numbers per query: the exact norm of the left-out coordinates
//!
//! `‖u_∉R‖ = ‖k_p − Q_R u_R‖` (`Q_x` is orthogonal; one more product of the kept size,
//! formed only for the queries that `ρ` alone does not certify),
//!
//! and `ρ := k(p,p) − Σ_{i∈R} u_i²/λ_i ≥ Σ_{i∉R} u_i²/λ_i` (because `k_pᵀ K_x⁻¹ k_p ≤ k(p,p)`:
//! the noise-free posterior variance is not negative). Every left-out `u_i² ≤ min(ρ λ_i,
//! ‖u_∉R‖²)`, so
//!
//! * the left-out reduction `E_t = Σ_{i∉R} u_i² M_i[t,t] ≤ min(ρ · max_{i∉R} λ_i M_i[t,t],
//!   ‖u_∉R‖² · max_{i∉R} M_i[t,t])`, and `|E_{tt'}| ≤ √(E_t E_t')` (a sum of positive
//!   semi-definite terms);
//! * the left-out part of `V` obeys `|ΔV[t,c]| ≤ b_{t,c} := min(√ρ · w_{t,c}, ‖u_∉R‖ · ζ_{t,c})`
//!   with `w²_{t,c} = Σ_{i∉R} λ_i Z[i,(t,c)]²` and `ζ²_{t,c} = Σ_{i∉R} Z[i,(t,c)]²`
//!   (Cauchy–Schwarz), so
//!   `|(V Vᵀ − V_R V_Rᵀ)_{tt'}| ≤ Σ_c (|V_R[t,c]| b_{t',c} + b_{t,c} |V_R[t',c]| + b_{t,c} b_{t',c})`.
//!
//! `ρ` is small only near the data; `‖u_∉R‖` is small wherever `k_p` is smooth, which is
//! what the batch decision's exploratory candidates need. The weights `w` and `ζ` come with
//! the posterior (computed when it is built, where `Z` is at hand); a posterior read from an
//! older file derives them from the kept rows and the column norms of `Ĝ`. A query is
//! accepted when every entry's bound is at most `tol · √(σ²_t σ²_t')`, with `σ²_t` the
//! computed variance less its bound; otherwise it is recomputed in full. Means never use the
//! truncation.

use crate::engine::{self, PostState, Posterior};
use crate::model::Derived;
use crate::model::gapcols::GapCols;
use faer::Mat;
use std::sync::Arc;

/// Training sets below this many base inputs keep every eigenvector.
pub(crate) const TRUNC_MIN_INPUTS: usize = 256;
/// Eigenvalues at or below this fraction of the trace of `K_x` are left out.
pub(crate) const TRUNC_EIG_FRAC: f64 = 1e-8;
/// Relative round-off margin of `ρ` and of the left-out norms.
const ROUNDOFF: f64 = 1e-12;
/// Round-off margin of a residual norm `‖k_p − Q_R Q_Rᵀ k_p‖`, per input, relative to
/// `‖k_p‖` (a matrix–vector product's error grows with its length; `Q_x` is orthogonal to
/// round-off).
const RESIDUAL_ROUNDOFF: f64 = 1e-14;

/// The eigenvalue indices sorted from the largest, and how many are kept; `None` when
/// truncation would not pay (too few inputs, or more than half the spectrum is kept).
pub(crate) fn split(lx: &[f64]) -> Option<(Vec<usize>, usize)> {
    let nb = lx.len();
    if nb < TRUNC_MIN_INPUTS {
        return None;
    }
    let trace: f64 = lx.iter().sum();
    if !(trace.is_finite() && trace > 0.0) {
        return None;
    }
    let mut order: Vec<usize> = (0..nb).collect();
    order.sort_by(|&a, &b| lx[b].total_cmp(&lx[a]));
    let r = order
        .iter()
        .take_while(|&&i| lx[i] > TRUNC_EIG_FRAC * trace)
        .count()
        .max(1);
    (r <= nb / 2).then_some((order, r))
}

/// Per column of the eigenbasis correction `z` (N × T·m), `w²_{t,c} = Σ_{i∉R} λ_i Z[i,(t,c)]²`
/// and `ζ²_{t,c} = Σ_{i∉R} Z[i,(t,c)]²`, or `None` when nothing is truncated.
pub(crate) fn gap_tail_weights(
    lx: &[f64],
    z: faer::MatRef<'_, f64>,
) -> Option<(Vec<f64>, Vec<f64>)> {
    let (order, r) = split(lx)?;
    let tail = &order[r..];
    Some(
        (0..z.ncols())
            .map(|c| {
                tail.iter().fold((0.0, 0.0), |(w, n), &i| {
                    let z2 = z[(i, c)] * z[(i, c)];
                    (w + lx[i] * z2, n + z2)
                })
            })
            .unzip(),
    )
}

/// The lazily built truncated basis of a posterior.
pub(crate) type TruncCache = Derived<Truncated>;

impl TruncCache {
    /// The truncated basis of `post` for the tolerance `tol` (built once: the first
    /// tolerance asked for is the one tried), or `None` when it would not pay.
    pub(crate) fn get(&self, post: &Posterior, t: usize, tol: f64) -> Option<Arc<Truncated>> {
        self.get_or_build(|| build(post, t, tol))
    }
}

/// The kept eigenvectors of `K_x` and what the error bound needs of the rest.
#[derive(Debug)]
pub(crate) struct Truncated {
    /// Number of kept eigenvectors.
    pub(crate) r: usize,
    /// Kept eigenvectors, N × r.
    pub(crate) qr: Mat<f64>,
    /// Their eigenvalues.
    pub(crate) lr: Vec<f64>,
    /// Their rows of `M`, r × T² (column `t·T + t'`).
    pub(crate) mr: Mat<f64>,
    /// Kept rows of the non-zero columns of `Z = Q_xᵀ Ĝ` (r × nnz), and which columns
    /// those are, when the grid has empty cells.
    pub(crate) zr: Option<(Mat<f64>, Arc<GapCols>)>,
    /// Per column `(t,c)` of `Z`, with `zr`: `w_{t,c}` and `ζ_{t,c}`, the λ-weighted and the
    /// plain norms of its left-out rows.
    pub(crate) tails: Vec<(f64, f64)>,
    /// Number of empty cells `m` (0 without `zr`).
    pub(crate) n_gap: usize,
    /// Per task, `max_{i∉R} λ_i M_i[t,t]`.
    pub(crate) m_tail: Vec<f64>,
    /// Per task, `max_{i∉R} M_i[t,t]`.
    pub(crate) m_tail_u: Vec<f64>,
}

fn build(post: &Posterior, t: usize, tol: f64) -> Option<Truncated> {
    let PostState::Kron {
        qx,
        lx,
        mtt,
        gap,
        n_gap,
        gap_tail,
        gap_tail_norm,
        ..
    } = &post.state
    else {
        return None;
    };
    let nb = lx.len();
    let (order, r) = split(lx)?;
    let (head, tail) = order.split_at(r);
    let qx = engine::from_vec(qx, nb, nb);
    let mtt = engine::from_vec(mtt, nb, t * t);
    let qr = Mat::from_fn(nb, r, |j, k| qx[(j, head[k])]);
    let mr = Mat::from_fn(r, t * t, |k, c| mtt[(head[k], c)]);
    let l_tail = tail.iter().map(|&i| lx[i]).fold(0.0, f64::max);
    let m_tail = (0..t)
        .map(|tt| {
            tail.iter()
                .map(|&i| lx[i] * mtt[(i, tt * t + tt)])
                .fold(0.0, f64::max)
        })
        .collect();
    let m_tail_u = (0..t)
        .map(|tt| {
            tail.iter()
                .map(|&i| mtt[(i, tt * t + tt)])
                .fold(0.0, f64::max)
        })
        .collect();
    let (zr, tails) = match (gap, post.gapcols.get(post, t)) {
        (Some(gh), Some(gc)) if *n_gap > 0 => {
            let mg = *n_gap;
            let gh = engine::from_vec(gh, nb, t * mg);
            // the kept rows of the non-zero columns of Z (the others are zero)
            let zr = engine::mul(qr.transpose(), gc.columns(gh));
            // ‖Ĝ col‖² = ‖Z col‖² (Q_x is orthogonal): without the stored tails (an older
            // file), a tail is the total less the kept rows, with a round-off margin
            let stored = |v: &Option<Vec<f64>>| v.as_ref().filter(|v| v.len() == t * mg).cloned();
            let (w2, z2) = match (stored(gap_tail), stored(gap_tail_norm)) {
                (Some(w2), Some(z2)) => (w2, z2),
                (w2, z2) => {
                    let mut derived = vec![0.0; t * mg];
                    for (j, &c) in gc.cols.iter().enumerate() {
                        let total: f64 = (0..nb).map(|i| gh[(i, c)] * gh[(i, c)]).sum();
                        let kept: f64 = (0..r).map(|k| zr[(k, j)] * zr[(k, j)]).sum();
                        derived[c] = (total - kept).max(0.0) + ROUNDOFF * total;
                    }
                    (
                        w2.unwrap_or_else(|| derived.iter().map(|v| l_tail * v).collect()),
                        z2.unwrap_or(derived),
                    )
                }
            };
            let tails = w2
                .iter()
                .zip(&z2)
                .map(|(w, z)| (w.max(0.0).sqrt(), z.max(0.0).sqrt()))
                .collect();
            (Some((zr, gc)), tails)
        }
        _ => (None, Vec::new()),
    };
    let tr = Truncated {
        r,
        qr,
        lr: head.iter().map(|&i| lx[i]).collect(),
        mr,
        n_gap: if zr.is_some() { *n_gap } else { 0 },
        zr,
        tails,
        m_tail,
        m_tail_u,
    };
    // keep it only if it certifies most inputs like the training inputs: otherwise a
    // prediction would pay for the truncated pass and then for the full one
    let probe: Vec<usize> = (0..PROBE_INPUTS.min(nb))
        .map(|k| k * nb / PROBE_INPUTS.min(nb))
        .collect();
    // rows of K_x = Q Λ Qᵀ at the probe inputs, and their diagonal
    let ql = Mat::from_fn(probe.len(), nb, |a, i| qx[(probe[a], i)] * lx[i]);
    let kxs = engine::mul(ql.as_ref(), qx.transpose());
    let kss: Vec<f64> = (0..probe.len()).map(|a| kxs[(a, probe[a])]).collect();
    let b = engine::from_vec(&post.b, t, t);
    let mut out = vec![0.0; probe.len() * t * t];
    for (a, &k) in kss.iter().enumerate() {
        for c in 0..t * t {
            out[a * t * t + c] = k * b[(c / t, c % t)];
        }
    }
    let failed = tr.task_cov(&kxs, &kss, t, tol, &mut out);
    (failed.len() * 4 <= probe.len()).then_some(tr)
}

/// Training inputs on which a new truncated basis is tried before it is kept.
const PROBE_INPUTS: usize = 64;

impl Truncated {
    /// Latent task covariances of `m` queries (cross kernel `kxs`, m × N; `kss` their prior
    /// variances) in the kept basis, `m × T × T` row-major per query, added to `out`, which
    /// holds `k(p,p) B`. Returns the queries whose certified error exceeds `tol`; their
    /// entries must be recomputed in full.
    pub(crate) fn task_cov(
        &self,
        kxs: &Mat<f64>,
        kss: &[f64],
        t: usize,
        tol: f64,
        out: &mut [f64],
    ) -> Vec<usize> {
        let m = kxs.nrows();
        let r = self.r;
        let per = t * t;
        let um = engine::mul_rows(kxs.as_ref(), self.qr.as_ref());
        let um2 = Mat::from_fn(m, r, |p, i| um[(p, i)] * um[(p, i)]);
        let red = engine::mul(um2.as_ref(), self.mr.as_ref());
        for p in 0..m {
            for col in 0..per {
                out[p * per + col] -= red[(p, col)];
            }
        }
        // Σ_kept u_i²/λ_i of every query, down um2's (contiguous) columns
        let mut kept_w = vec![0.0; m];
        for (i, l) in self.lr.iter().enumerate() {
            for (w, u2) in kept_w.iter_mut().zip(um2.col_as_slice(i)) {
                *w += u2 / l;
            }
        }
        let rho: Vec<f64> = kss
            .iter()
            .zip(&kept_w)
            .map(|(k, w)| (k - w).max(0.0) + ROUNDOFF * k.abs())
            .collect();
        // V = u_R Z_R, transposed (`T·m × queries`, one contiguous slice per query, zero in
        // the columns that are): its contribution to every query, and |V| for the bounds
        let mg = self.n_gap;
        let vt = match &self.zr {
            Some((zr, gc)) => {
                let vt = gc.scatter(t, engine::mul_rows(um.as_ref(), zr.as_ref()));
                for p in 0..m {
                    gc.add_vvt(vt.col_as_slice(p), t, &mut out[p * per..(p + 1) * per]);
                }
                vt
            }
            None => Mat::zeros(0, m),
        };
        // first with ρ alone (enough near the data), then with the residual norm for the
        // queries that failed (one more product of the kept size, for those only)
        let mut scratch = Scratch::new(t, mg);
        let mut failed: Vec<usize> = (0..m)
            .filter(|&p| {
                let c = &out[p * per..(p + 1) * per];
                !self.row_certified(vt.col_as_slice(p), rho[p], None, c, t, tol, &mut scratch)
            })
            .collect();
        if !failed.is_empty() {
            // residuals `k_p − Q_R u_R` of the failed queries, one contiguous column each
            let (nb, f) = (kxs.ncols(), failed.len());
            let mut res = Mat::from_fn(nb, f, |j, k| kxs[(failed[k], j)]);
            let uf = Mat::from_fn(r, f, |i, k| um[(failed[k], i)]);
            engine::gemm(res.as_mut(), true, self.qr.as_ref(), uf.as_ref(), -1.0);
            let norm2 = |x: &[f64]| engine::dot4(x, x);
            // ‖k_p‖ of every query, accumulated down kxs's (contiguous) columns
            let mut kn2 = vec![0.0; m];
            for j in 0..nb {
                for (acc, x) in kn2.iter_mut().zip(kxs.col_as_slice(j)) {
                    *acc += x * x;
                }
            }
            failed = failed
                .into_iter()
                .enumerate()
                .filter(|&(k, p)| {
                    let rn = norm2(res.col_as_slice(k));
                    let ut = rn.sqrt() + RESIDUAL_ROUNDOFF * nb as f64 * kn2[p].sqrt();
                    let c = &out[p * per..(p + 1) * per];
                    !self.row_certified(
                        vt.col_as_slice(p),
                        rho[p],
                        Some(ut),
                        c,
                        t,
                        tol,
                        &mut scratch,
                    )
                })
                .map(|(_, p)| p)
                .collect();
        }
        failed
    }

    /// Whether a query's computed covariance `c` (`T × T`) is within `tol` of the exact
    /// one: bounds the left-out part with `ρ` and, when given, the residual norm
    /// `ut = ‖u_∉R‖` (each left-out `u_i² ≤ min(ρ λ_i, ut²)`), and accepts when every entry's
    /// bound is at most `tol · √(σ²_t σ²_t')` with `σ²_t` the variance less its bound. `vp` is
    /// the query's `V` (`T·m`, task-major). The variances are checked first, so a query that
    /// fails there costs `T` of the `T(T+1)/2` pair bounds.
    #[allow(clippy::too_many_arguments)]
    fn row_certified(
        &self,
        vp: &[f64],
        rho: f64,
        ut: Option<f64>,
        c: &[f64],
        t: usize,
        tol: f64,
        s: &mut Scratch,
    ) -> bool {
        let mg = self.n_gap;
        for (tt, e) in s.e.iter_mut().enumerate() {
            let by_rho = rho * self.m_tail[tt];
            *e = ut.map_or(by_rho, |u| by_rho.min(u * u * self.m_tail_u[tt]));
        }
        for (k, b) in s.bound.iter_mut().enumerate() {
            *b = (s.e[k / t] * s.e[k % t]).sqrt();
        }
        if mg > 0 {
            let sr = rho.sqrt();
            for (k, (a, b)) in s.ap.iter_mut().zip(s.bp.iter_mut()).enumerate() {
                *a = vp[k].abs();
                let (w, zeta) = self.tails[k];
                *b = ut.map_or(sr * w, |u| (sr * w).min(u * zeta));
            }
        }
        // |(V Vᵀ − V_R V_Rᵀ)_{t1 t2}| ≤ Σ_c (|V_R| b + b |V_R| + b b): exact on the
        // diagonal; off it, first through the norms (Cauchy–Schwarz, T·m work for all
        // pairs), and only a pair that this does not certify pays for its three products
        let pair = |s: &Scratch, t1: usize, t2: usize| -> f64 {
            if mg == 0 {
                return 0.0;
            }
            let (a1, b1) = (&s.ap[t1 * mg..(t1 + 1) * mg], &s.bp[t1 * mg..(t1 + 1) * mg]);
            let (a2, b2) = (&s.ap[t2 * mg..(t2 + 1) * mg], &s.bp[t2 * mg..(t2 + 1) * mg]);
            engine::dot4(a1, b2) + engine::dot4(b1, a2) + engine::dot4(b1, b2)
        };
        for t1 in 0..t {
            let b = s.bound[t1 * t + t1] + pair(s, t1, t1);
            let var = c[t1 * t + t1];
            s.lower[t1] = var - b;
            if !(var.is_finite() && s.lower[t1] > 0.0 && b <= tol * s.lower[t1]) {
                return false;
            }
        }
        if mg > 0 {
            for t1 in 0..t {
                let (a1, b1) = (&s.ap[t1 * mg..(t1 + 1) * mg], &s.bp[t1 * mg..(t1 + 1) * mg]);
                s.norm_a[t1] = engine::dot4(a1, a1).sqrt();
                s.norm_b[t1] = engine::dot4(b1, b1).sqrt();
            }
        }
        for t1 in 0..t {
            for t2 in 0..t1 {
                let limit = tol * (s.lower[t1] * s.lower[t2]).sqrt();
                let base = s.bound[t1 * t + t2];
                // tasks that share no cell: every term of the sum has a zero factor
                if !self
                    .zr
                    .as_ref()
                    .is_some_and(|(_, gc)| gc.active[t1 * t + t2])
                {
                    if base > limit {
                        return false;
                    }
                    continue;
                }
                let (na1, nb1, na2, nb2) = (s.norm_a[t1], s.norm_b[t1], s.norm_a[t2], s.norm_b[t2]);
                if base + na1 * nb2 + nb1 * na2 + nb1 * nb2 <= limit {
                    continue;
                }
                if base + pair(s, t1, t2) > limit {
                    return false;
                }
            }
        }
        true
    }
}

/// Per-query buffers of [`Truncated::row_certified`], reused across the queries of a call.
struct Scratch {
    /// Per task, the bound on the left-out reduction.
    e: Vec<f64>,
    /// `T × T` bound on the left-out part.
    bound: Vec<f64>,
    /// `|V|` of the query, `T·m`.
    ap: Vec<f64>,
    /// Per column, the bound on the left-out part of `V`, `T·m`.
    bp: Vec<f64>,
    /// Per task, the computed variance less its bound.
    lower: Vec<f64>,
    /// Per task, `‖|V_R|‖` and `‖b‖` over the empty cells.
    norm_a: Vec<f64>,
    norm_b: Vec<f64>,
}

impl Scratch {
    fn new(t: usize, mg: usize) -> Self {
        Self {
            e: vec![0.0; t],
            bound: vec![0.0; t * t],
            ap: vec![0.0; t * mg],
            bp: vec![0.0; t * mg],
            lower: vec![0.0; t],
            norm_a: vec![0.0; t],
            norm_b: vec![0.0; t],
        }
    }
}
