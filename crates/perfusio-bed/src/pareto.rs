//! Pareto dominance and non-dominated filtering, for **maximisation** of every objective.
//!
//! Point sets are flat row-major slices of `n × m` values (`m` objectives per point).

use crate::error::{BedError, Result};

/// `true` when `a` Pareto-dominates `b` (maximisation): `a_k ≥ b_k` for every `k` and
/// `a_k > b_k` for at least one.
///
/// ```
/// use perfusio_bed::pareto::dominates;
/// assert!(dominates(&[2.0, 1.0], &[1.0, 1.0]));
/// assert!(!dominates(&[1.0, 1.0], &[1.0, 1.0]));
/// assert!(!dominates(&[2.0, 0.0], &[1.0, 1.0]));
/// ```
pub fn dominates(a: &[f64], b: &[f64]) -> bool {
    let mut strictly = false;
    for (x, y) in a.iter().zip(b) {
        if x < y {
            return false;
        }
        if x > y {
            strictly = true;
        }
    }
    strictly
}

/// Checks a flat point set: `m ≥ 1`, length a multiple of `m`, no NaN.
pub(crate) fn check_points(points: &[f64], m: usize, what: &str) -> Result<usize> {
    if m == 0 || !points.len().is_multiple_of(m) {
        return Err(BedError::ShapeMismatch(format!(
            "{what}: {} values are not a whole number of points with {m} objectives",
            points.len()
        )));
    }
    if let Some(&v) = points.iter().find(|v| v.is_nan()) {
        return Err(BedError::NonFinite {
            what: "objective values",
            value: v,
        });
    }
    Ok(points.len() / m)
}

/// Mask of the non-dominated points of a set (maximisation). Of several identical
/// non-dominated points only the first is marked, as BoTorch's `is_non_dominated` with
/// `deduplicate=True`.
///
/// ```
/// use perfusio_bed::pareto::non_dominated_mask;
/// let pts = [1.0, 3.0, 2.0, 2.0, 1.5, 1.5, 3.0, 1.0, 2.0, 2.0];
/// assert_eq!(non_dominated_mask(&pts, 2).unwrap(), [true, true, false, true, false]);
/// ```
pub fn non_dominated_mask(points: &[f64], m: usize) -> Result<Vec<bool>> {
    let n = check_points(points, m, "non_dominated_mask")?;
    let p = |i: usize| &points[i * m..(i + 1) * m];
    Ok((0..n)
        .map(|i| !(0..n).any(|j| j != i && (dominates(p(j), p(i)) || (j < i && p(j) == p(i)))))
        .collect())
}

/// The non-dominated points of a set, flat, in their original order.
pub fn pareto_front(points: &[f64], m: usize) -> Result<Vec<f64>> {
    let mask = non_dominated_mask(points, m)?;
    Ok(points
        .chunks_exact(m)
        .zip(mask)
        .filter(|(_, k)| *k)
        .flat_map(|(p, _)| p.iter().copied())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn front_points_are_mutually_non_dominated_and_cover_the_rest() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for m in 1..=4 {
            let pts: Vec<f64> = (0..60 * m).map(|_| rng.random_range(0.0..1.0)).collect();
            let front = pareto_front(&pts, m).unwrap();
            let f: Vec<&[f64]> = front.chunks_exact(m).collect();
            assert!(!f.is_empty());
            for a in &f {
                for b in &f {
                    assert!(!dominates(a, b));
                }
            }
            for p in pts.chunks_exact(m) {
                assert!(f.iter().any(|q| dominates(q, p) || *q == p));
            }
            if m == 1 {
                assert_eq!(f.len(), 1);
            }
        }
    }

    #[test]
    fn shape_errors() {
        assert!(non_dominated_mask(&[1.0, 2.0, 3.0], 2).is_err());
        assert!(non_dominated_mask(&[1.0, f64::NAN], 2).is_err());
        assert!(non_dominated_mask(&[1.0], 0).is_err());
        assert!(non_dominated_mask(&[], 2).unwrap().is_empty());
    }
}
