//! Exact hypervolume for 1, 2 and 3 objectives (maximisation).
//!
//! The hypervolume of a set `P` with respect to a reference point `r` is the Lebesgue
//! measure of `{v : r ≤ v ≤ p for some p ∈ P}` (Zitzler & Thiele 1998). Points that do not
//! strictly exceed `r` in every objective contribute nothing.
//!
//! * 2 objectives: sort by the first objective (descending) and sweep, `O(n log n)`.
//! * 3 objectives: the dimension sweep of Fonseca, Paquete & López-Ibáñez (2006), "An improved
//!   dimension-sweep algorithm for the hypervolume indicator", IEEE CEC, pp. 1157–1163,
//!   doi:10.1109/CEC.2006.1688440 (HV3D): sort by the third objective (descending) and keep the
//!   2-D staircase of the points seen so far with its area updated incrementally; the volume
//!   is `Σ_i A_i·(z_i − z_{i+1})`. A sorted `Vec` stands in for their balanced tree
//!   (`O(n²)` worst case, fast for the fronts of a daily decision).

use crate::error::{BedError, Result};
use crate::pareto::check_points;

/// Hypervolume of `points` (flat, `n × m`, `m = reference.len()` ∈ {1, 2, 3}) with respect
/// to `reference`, for maximisation.
///
/// ```
/// use perfusio_bed::hypervolume::hypervolume;
/// // two boxes [0,2]×[0,1] and [0,1]×[0,2] overlap in [0,1]²: 2 + 2 − 1
/// let hv = hypervolume(&[2.0, 1.0, 1.0, 2.0], &[0.0, 0.0]).unwrap();
/// assert!((hv - 3.0).abs() < 1e-15);
/// ```
pub fn hypervolume(points: &[f64], reference: &[f64]) -> Result<f64> {
    let m = reference.len();
    check_points(points, m.max(1), "hypervolume")?;
    if let Some(&v) = reference.iter().find(|v| !v.is_finite()) {
        return Err(BedError::NonFinite {
            what: "hypervolume reference point",
            value: v,
        });
    }
    match m {
        1 => Ok(points.iter().map(|&p| p - reference[0]).fold(0.0, f64::max)),
        2 => Ok(hv2(&collect::<2>(points, reference), reference)),
        3 => Ok(hv3(&mut collect::<3>(points, reference), reference)),
        _ => Err(BedError::UnsupportedObjectiveCount { m }),
    }
}

/// Hypervolume improvement `HV(front ∪ new) − HV(front)` of a set of new points.
pub fn hypervolume_improvement(new: &[f64], front: &[f64], reference: &[f64]) -> Result<f64> {
    let mut all = Vec::with_capacity(new.len() + front.len());
    all.extend_from_slice(front);
    all.extend_from_slice(new);
    Ok((hypervolume(&all, reference)? - hypervolume(front, reference)?).max(0.0))
}

/// The points strictly above the reference in every objective, as fixed-size arrays.
fn collect<const M: usize>(points: &[f64], r: &[f64]) -> Vec<[f64; M]> {
    points
        .chunks_exact(M)
        .filter(|p| p.iter().zip(r).all(|(a, b)| a > b))
        .map(|p| std::array::from_fn(|k| p[k]))
        .collect()
}

/// 2-D sweep: by `x` descending, each point raising the running maximum of `y` adds the
/// rectangle `[r_x, x] × [y_max, y]`.
fn hv2(points: &[[f64; 2]], r: &[f64]) -> f64 {
    let mut pts = points.to_vec();
    pts.sort_by(|a, b| b[0].total_cmp(&a[0]).then(b[1].total_cmp(&a[1])));
    let mut y_max = r[1];
    let mut area = 0.0;
    for p in &pts {
        if p[1] > y_max {
            area += (p[0] - r[0]) * (p[1] - y_max);
            y_max = p[1];
        }
    }
    area
}

/// A 2-D staircase of mutually non-dominated points, `x` strictly descending and `y`
/// strictly ascending, with incremental area updates.
struct Staircase {
    steps: Vec<(f64, f64)>,
    rx: f64,
    ry: f64,
}

impl Staircase {
    /// Inserts `(px, py)` and returns the area it adds to the dominated region.
    fn insert(&mut self, px: f64, py: f64) -> f64 {
        // points with x ≥ px form a prefix; the last of them has the largest y
        let idx = self.steps.partition_point(|e| e.0 >= px);
        let floor = if idx > 0 {
            self.steps[idx - 1].1
        } else {
            self.ry
        };
        if floor >= py {
            return 0.0; // weakly dominated
        }
        // steps with x == px (and smaller y) are dominated by the new point
        let mut start = idx;
        while start > 0 && self.steps[start - 1].0 <= px {
            start -= 1;
        }
        let mut gain = 0.0;
        let (mut cur_x, mut level) = (px, floor);
        let mut j = idx;
        while j < self.steps.len() && self.steps[j].1 <= py {
            gain += (cur_x - self.steps[j].0) * (py - level);
            cur_x = self.steps[j].0;
            level = self.steps[j].1;
            j += 1;
        }
        let next_x = if j < self.steps.len() {
            self.steps[j].0
        } else {
            self.rx
        };
        gain += (cur_x - next_x) * (py - level);
        self.steps.splice(start..j, [(px, py)]);
        gain
    }
}

/// 3-D dimension sweep (HV3D).
fn hv3(points: &mut [[f64; 3]], r: &[f64]) -> f64 {
    points.sort_by(|a, b| b[2].total_cmp(&a[2]));
    let mut stairs = Staircase {
        steps: Vec::with_capacity(points.len()),
        rx: r[0],
        ry: r[1],
    };
    let mut area = 0.0;
    let mut volume = 0.0;
    for i in 0..points.len() {
        let p = points[i];
        area += stairs.insert(p[0], p[1]);
        let z_next = points.get(i + 1).map_or(r[2], |q| q[2]);
        volume += area * (p[2] - z_next);
    }
    volume
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Exact hypervolume by inclusion–exclusion over all subsets (small n only).
    fn inclusion_exclusion(points: &[f64], r: &[f64]) -> f64 {
        let m = r.len();
        let n = points.len() / m;
        let mut total = 0.0;
        for mask in 1u32..(1 << n) {
            let mut vol = 1.0;
            for k in 0..m {
                let lo = (0..n)
                    .filter(|i| mask & (1 << i) != 0)
                    .map(|i| points[i * m + k])
                    .fold(f64::INFINITY, f64::min);
                vol *= (lo - r[k]).max(0.0);
            }
            let sign = if mask.count_ones() % 2 == 1 {
                1.0
            } else {
                -1.0
            };
            total += sign * vol;
        }
        total
    }

    /// Random front-like set: points near the positive unit sphere, some dominated.
    fn random_front(rng: &mut ChaCha8Rng, n: usize, m: usize) -> Vec<f64> {
        let mut pts = Vec::with_capacity(n * m);
        for _ in 0..n {
            let dir: Vec<f64> = (0..m).map(|_| rng.random_range(0.05..1.0)).collect();
            let norm = dir.iter().map(|d| d * d).sum::<f64>().sqrt();
            let radius = rng.random_range(0.7..1.0);
            pts.extend(dir.iter().map(|d| radius * d / norm));
        }
        pts
    }

    #[test]
    fn matches_inclusion_exclusion_exactly() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for m in 1..=3 {
            for n in [1, 2, 5, 11] {
                for _ in 0..5 {
                    let pts = random_front(&mut rng, n, m);
                    let r = vec![0.1; m];
                    let hv = hypervolume(&pts, &r).unwrap();
                    let ie = inclusion_exclusion(&pts, &r);
                    assert!((hv - ie).abs() < 1e-12, "m = {m}, n = {n}: {hv} vs {ie}");
                }
            }
        }
    }

    #[test]
    fn matches_brute_force_monte_carlo() {
        // uniform samples in the bounding box; tolerance 4 standard errors
        for seed in 0..4u64 {
            let mut rng = ChaCha8Rng::seed_from_u64(10 + seed);
            for (m, n) in [(2, 50), (3, 20), (3, 50)] {
                let pts = random_front(&mut rng, n, m);
                let r = vec![0.0; m];
                let hv = hypervolume(&pts, &r).unwrap();
                let draws = 100_000;
                let mut hits = 0usize;
                for _ in 0..draws {
                    let v: Vec<f64> = (0..m).map(|_| rng.random_range(0.0..1.0)).collect();
                    if pts
                        .chunks_exact(m)
                        .any(|p| p.iter().zip(&v).all(|(a, b)| a >= b))
                    {
                        hits += 1;
                    }
                }
                let p = hits as f64 / draws as f64;
                let se = (p * (1.0 - p) / draws as f64).sqrt();
                assert!(
                    (hv - p).abs() < 4.0 * se,
                    "seed {seed}, m = {m}, n = {n}: {hv} vs {p} ± {se}"
                );
            }
        }
    }

    #[test]
    fn invariances_and_edge_cases() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let pts = random_front(&mut rng, 30, 3);
        let r = [0.0; 3];
        let hv = hypervolume(&pts, &r).unwrap();
        // permutation invariance
        let mut rev: Vec<f64> = pts.chunks_exact(3).rev().flatten().copied().collect();
        assert!((hypervolume(&rev, &r).unwrap() - hv).abs() < 1e-14);
        // adding a dominated point or a duplicate changes nothing
        rev.extend([0.01, 0.01, 0.01]);
        rev.extend_from_slice(&pts[..3]);
        assert!((hypervolume(&rev, &r).unwrap() - hv).abs() < 1e-14);
        // ties in every coordinate
        let tied = [1.0, 1.0, 1.0, 1.0, 2.0, 1.0, 2.0, 1.0, 1.0];
        assert!((hypervolume(&tied, &r).unwrap() - inclusion_exclusion(&tied, &r)).abs() < 1e-15);
        // points not above the reference contribute nothing
        assert!(hypervolume(&[1.0, -1.0], &[0.0, 0.0]).unwrap().abs() < 1e-300);
        assert!(hypervolume(&[], &[0.0, 0.0]).unwrap().abs() < 1e-300);
        // improvement
        let hvi = hypervolume_improvement(&[2.0, 2.0], &[1.0, 1.0], &[0.0, 0.0]).unwrap();
        assert!((hvi - 3.0).abs() < 1e-15);
        assert_eq!(
            hypervolume(&[1.0; 4], &[0.0; 4]).unwrap_err().to_string(),
            "exact hypervolume supports 1 to 3 objectives, got 4; scalarise with qNParEGO for more objectives"
        );
        assert!(hypervolume(&[1.0, 2.0, 3.0], &[0.0, 0.0]).is_err());
        assert!(hypervolume(&[1.0, 2.0], &[0.0, f64::NAN]).is_err());
    }
}
