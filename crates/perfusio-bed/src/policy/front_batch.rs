//! The greedy batch choice of [`BedPolicy::decide_batch`] over several objectives: q-batch
//! (noisy) expected hypervolume improvement.
//!
//! The baseline front is the reactors' holding courses. With qNEHVI it is sampled jointly
//! with the candidates (the model's errors at a holding course and at a candidate close to
//! it are correlated, so a candidate next to a holding course improves the front little in
//! every scenario); with qEHVI it is the holding courses' means. The batch is then chosen
//! reactor by reactor: the candidate that adds the most expected hypervolume to the front
//! of the baseline and the members chosen so far, under fixed quasi-random base samples.
//!
//! Joint samples: candidate `a`'s objectives are `μ_a + L_a e_a` with `L_a` the Cholesky
//! factor of its linearised objective covariance and `e_a ~ N(0, I_m)`; two candidates'
//! `e` are correlated objective by objective through the model
//! ([`HybridModel::input_correlation`] `ρ_ab` of their first-day inputs), so the joint
//! covariance is `diag(L) (R ⊗ I_m) diag(L)ᵀ`, positive semi-definite whenever `R` is.
//! Adding a member appends one row to the Cholesky factor of `R`.
//!
//! Objectives are standardised by the largest holding-course sd of each (hypervolumes
//! are in those units). The reference point is, per objective, the worst holding course's
//! mean less the larger of 10 % of it and two of its sds. Outcome constraints enter as in
//! BoTorch's constrained hypervolume acquisitions: a candidate's objectives are pulled
//! towards the reference point by its probability of feasibility.

use perfusio_hybrid::HybridModel;

use super::{
    BATCH_MIN_NEW_SD, BATCH_TIE_TOL, BatchCandidate, BatchReactor, BedPolicy, MIN_FEASIBILITY,
    cholesky_append_row,
};
use crate::error::{BedError, Result};
use crate::hypervolume::hypervolume;
use crate::qmc::BaseSamples;

/// Each reactor's chosen candidate (index into its candidates, 0 = holding course) and the
/// batch's expected hypervolume improvement over the baseline front (standardised units).
pub(super) fn choose(
    policy: &BedPolicy,
    model: &HybridModel,
    rs: &[BatchReactor],
    q: usize,
    noisy: bool,
) -> Result<(Vec<usize>, f64)> {
    let m = policy.objectives.len();
    let holding = |k: usize| rs.iter().map(move |r| r.cands[0].summaries[k]);
    let scale: Vec<f64> = (0..m)
        .map(|k| {
            let sd = holding(k).map(|h| h.sd).fold(0.0, f64::max);
            let mean = holding(k).map(|h| h.mean.abs()).fold(0.0, f64::max);
            sd.max(1e-6 * mean).max(1e-12)
        })
        .collect();
    let reference: Vec<f64> = (0..m)
        .map(|k| {
            holding(k)
                .map(|h| h.mean - (0.1 * h.mean.abs()).max(2.0 * h.sd).max(1e-9))
                .fold(f64::INFINITY, f64::min)
                / scale[k]
        })
        .collect();
    let cap = 2 * q;
    let base = BaseSamples::new(
        policy.config.screening_samples.max(64),
        cap * m,
        policy.config.seed ^ 0x6672_6f6e_7421,
    )?;
    let mut front = Front::new(base.n_samples(), cap, m, scale, reference);
    for r in rs {
        if noisy {
            front.push(model, &r.cands[0], &base)?;
        } else {
            front.push_mean(&r.cands[0]);
        }
    }
    let hv0 = front.mean_hv();
    let mut chosen = Vec::with_capacity(q);
    for r in rs {
        let (mut best_i, mut best_v, mut best_tie) = (0, f64::NEG_INFINITY, f64::NEG_INFINITY);
        for (i, c) in r.cands.iter().enumerate() {
            if i != 0 && c.feasible < MIN_FEASIBILITY {
                continue;
            }
            // holding course may be repeated; other copies of a member may not
            let v = front.improvement_with(model, c, &base, i == 0);
            // equal improvements (none of them extends the front): the candidate whose mean
            // dominates the larger box
            let tie = front.mean_box(c);
            let tol = if best_v.is_finite() {
                BATCH_TIE_TOL * best_v.abs().max(1.0)
            } else {
                0.0
            };
            let better = v > best_v + tol || (v.is_finite() && v >= best_v - tol && tie > best_tie);
            if better {
                best_v = best_v.max(v);
                best_i = i;
                best_tie = tie;
            }
        }
        front.push(model, &r.cands[best_i], &base)?;
        chosen.push(best_i);
    }
    Ok((chosen, front.mean_hv() - hv0))
}

/// The points of the front so far in every scenario, and the correlation Cholesky factor
/// of the sampled members.
struct Front {
    n: usize,
    cap: usize,
    m: usize,
    scale: Vec<f64>,
    reference: Vec<f64>,
    /// Lower Cholesky factor of the sampled members' correlation `R`, `k × k` in a
    /// `cap × cap` buffer.
    l: Vec<f64>,
    inputs: Vec<Vec<f64>>,
    k: usize,
    /// `points[(s * cap + p) * m + j]`: objective `j` of point `p` in scenario `s`.
    points: Vec<f64>,
    np: usize,
    /// Hypervolume of each scenario's points.
    hv: Vec<f64>,
}

impl Front {
    fn new(n: usize, cap: usize, m: usize, scale: Vec<f64>, reference: Vec<f64>) -> Self {
        Self {
            n,
            cap,
            m,
            scale,
            reference,
            l: vec![0.0; cap * cap],
            inputs: Vec::with_capacity(cap),
            k: 0,
            points: vec![0.0; n * cap * m],
            np: 0,
            hv: vec![0.0; n],
        }
    }

    fn mean_hv(&self) -> f64 {
        self.hv.iter().sum::<f64>() / self.n.max(1) as f64
    }

    /// The new member's row of the correlation Cholesky factor (`k + 1` values), or `None`
    /// when it is not finite.
    fn new_row(&self, model: &HybridModel, c: &BatchCandidate) -> Option<Vec<f64>> {
        cholesky_append_row(&self.l, self.cap, self.k, 1.0, |a| {
            model
                .input_correlation(&self.inputs[a], &c.input)
                .clamp(-1.0, 1.0)
        })
    }

    /// Candidate `c`'s standardised objectives in the scenario of base sample `eps`, given
    /// its correlation row, pulled towards the reference by its probability of feasibility.
    fn sample(&self, c: &BatchCandidate, row: &[f64], eps: &[f64], out: &mut [f64]) {
        let m = self.m;
        let mut e = [0.0; 3];
        for (j, ej) in e.iter_mut().enumerate().take(m) {
            *ej = row
                .iter()
                .enumerate()
                .map(|(b, r)| r * eps[b * m + j])
                .sum();
        }
        for (a, o) in out.iter_mut().enumerate().take(m) {
            let mut y = c.summaries[a].mean;
            for (b, eb) in e.iter().enumerate().take(a + 1) {
                y += c.chol[a * m + b] * eb;
            }
            let y = y / self.scale[a];
            *o = self.reference[a] + (y - self.reference[a]) * c.feasible;
        }
    }

    /// The volume of the box between the reference and `c`'s (feasibility-weighted) mean.
    fn mean_box(&self, c: &BatchCandidate) -> f64 {
        (0..self.m)
            .map(|a| {
                let y = c.summaries[a].mean / self.scale[a];
                ((y - self.reference[a]) * c.feasible).max(0.0)
            })
            .product()
    }

    /// Expected hypervolume that `c` adds to the front (`-∞` for a copy of a sampled member
    /// unless `allow_copy`): per scenario `vol(box(y)) − HV({min(y, p)})`, the part of
    /// `y`'s box that no point `p` of the front dominates.
    fn improvement_with(
        &self,
        model: &HybridModel,
        c: &BatchCandidate,
        base: &BaseSamples,
        allow_copy: bool,
    ) -> f64 {
        let Some(row) = self.new_row(model, c) else {
            return f64::NEG_INFINITY;
        };
        if !allow_copy && row[self.k] < BATCH_MIN_NEW_SD {
            return f64::NEG_INFINITY;
        }
        let m = self.m;
        let mut y = vec![0.0; m];
        let mut mins = vec![0.0; self.np * m];
        let mut total = 0.0;
        for (s, eps) in base.rows().enumerate() {
            self.sample(c, &row, eps, &mut y);
            total += self.improvement_in(s, &y, &mut mins);
        }
        total / self.n.max(1) as f64
    }

    fn improvement_in(&self, s: usize, y: &[f64], mins: &mut [f64]) -> f64 {
        let m = self.m;
        let vol: f64 = y
            .iter()
            .zip(&self.reference)
            .map(|(v, r)| (v - r).max(0.0))
            .product();
        if vol <= 0.0 {
            return 0.0;
        }
        let pts = &self.points[s * self.cap * m..(s * self.cap + self.np) * m];
        for (mn, (p, yy)) in mins.iter_mut().zip(pts.iter().zip(y.iter().cycle())) {
            *mn = p.min(*yy);
        }
        match hypervolume(&mins[..self.np * m], &self.reference) {
            Ok(covered) => (vol - covered).max(0.0),
            Err(_) => 0.0,
        }
    }

    /// Appends `c` as a sampled member.
    fn push(&mut self, model: &HybridModel, c: &BatchCandidate, base: &BaseSamples) -> Result<()> {
        if self.np >= self.cap || self.k >= self.cap {
            return Err(BedError::Model("the batch front is full".into()));
        }
        let row = self
            .new_row(model, c)
            .ok_or_else(|| BedError::Model("the batch correlation is not finite".into()))?;
        let k = self.k;
        self.l[k * self.cap..k * self.cap + k + 1].copy_from_slice(&row);
        let m = self.m;
        let mut y = vec![0.0; m];
        let mut mins = vec![0.0; self.np * m];
        for (s, eps) in base.rows().enumerate() {
            self.sample(c, &row, eps, &mut y);
            self.hv[s] += self.improvement_in(s, &y, &mut mins);
            let at = (s * self.cap + self.np) * m;
            self.points[at..at + m].copy_from_slice(&y);
        }
        self.inputs.push(c.input.clone());
        self.k += 1;
        self.np += 1;
        Ok(())
    }

    /// Appends `c`'s mean as a point known in every scenario (qEHVI's baseline).
    fn push_mean(&mut self, c: &BatchCandidate) {
        if self.np >= self.cap {
            return;
        }
        let m = self.m;
        let y: Vec<f64> = (0..m)
            .map(|a| {
                let y = c.summaries[a].mean / self.scale[a];
                self.reference[a] + (y - self.reference[a]) * c.feasible
            })
            .collect();
        let mut mins = vec![0.0; self.np * m];
        for s in 0..self.n {
            self.hv[s] += self.improvement_in(s, &y, &mut mins);
            let at = (s * self.cap + self.np) * m;
            self.points[at..at + m].copy_from_slice(&y);
        }
        self.np += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypervolume::hypervolume_improvement;

    /// `vol(box(y)) − HV({min(y, p)})` is the hypervolume improvement of `y` over the front,
    /// checked against `HV(front ∪ {y}) − HV(front)` for 2 and 3 objectives on random
    /// fronts, including points below the reference and duplicates.
    #[test]
    fn improvement_of_a_point_is_the_hypervolume_difference() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for m in [2usize, 3] {
            for trial in 0..200 {
                let np = 1 + trial % 9;
                let reference = vec![-0.5; m];
                let mut front = Front::new(1, np + 1, m, vec![1.0; m], reference.clone());
                let mut flat = Vec::new();
                for p in 0..np {
                    let y: Vec<f64> = if p > 0 && trial % 5 == 0 {
                        flat[..m].to_vec() // a duplicate
                    } else {
                        (0..m).map(|_| rng.random_range(-1.0..2.0)).collect()
                    };
                    front.points[p * m..(p + 1) * m].copy_from_slice(&y);
                    flat.extend_from_slice(&y);
                }
                front.np = np;
                let y: Vec<f64> = (0..m).map(|_| rng.random_range(-1.0..2.5)).collect();
                let mut mins = vec![0.0; np * m];
                let got = front.improvement_in(0, &y, &mut mins);
                let want = hypervolume_improvement(&y, &flat, &reference).unwrap();
                assert!(
                    (got - want).abs() <= 1e-12 * want.abs().max(1.0),
                    "m = {m}, trial {trial}: {got} vs {want}"
                );
            }
        }
    }
}
