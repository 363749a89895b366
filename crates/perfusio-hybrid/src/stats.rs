//! Small statistics and linear-algebra helpers on fixed-size arrays (no allocation on the
//! forecast's hot path).

use perfusio_core::N_SPECIES;

/// Probability levels of the reported quantile bands.
pub const Q_LEVELS: [f64; 5] = [0.05, 0.10, 0.50, 0.90, 0.95];

/// Standard-normal quantiles at [`Q_LEVELS`].
pub const Z_QUANTILES: [f64; 5] = [
    -1.644_853_626_951_472_2,
    -1.281_551_565_544_600_5,
    0.0,
    1.281_551_565_544_600_5,
    1.644_853_626_951_472_2,
];

/// A 9×9 matrix.
pub type Mat9 = [[f64; N_SPECIES]; N_SPECIES];

/// Lower Cholesky factor of a symmetric positive semi-definite 9×9 matrix, with a diagonal
/// jitter (relative `1e-12` of the mean diagonal, then ×100 up to `1e-4`) when needed.
/// Returns `None` if it stays indefinite.
pub(crate) fn cholesky9(a: &Mat9) -> Option<Mat9> {
    let mean_diag = (0..N_SPECIES).map(|i| a[i][i].abs()).sum::<f64>() / N_SPECIES as f64;
    let mut jitter = 0.0;
    for attempt in 0..6 {
        if let Some(l) = try_cholesky(a, jitter) {
            return Some(l);
        }
        jitter = mean_diag.max(1e-300) * 1e-12 * 100f64.powi(attempt);
    }
    None
}

fn try_cholesky(a: &Mat9, jitter: f64) -> Option<Mat9> {
    let mut l = [[0.0; N_SPECIES]; N_SPECIES];
    for i in 0..N_SPECIES {
        for j in 0..=i {
            let mut s = a[i][j];
            for k in 0..j {
                s -= l[i][k] * l[j][k];
            }
            if i == j {
                let d = s + jitter;
                if d < 0.0 || !d.is_finite() {
                    return None;
                }
                l[i][i] = d.sqrt();
            } else if l[j][j] > 0.0 {
                l[i][j] = s / l[j][j];
            } else {
                l[i][j] = 0.0;
            }
        }
    }
    Some(l)
}

/// `L z` for a lower-triangular `L`.
pub(crate) fn lower_mul(l: &Mat9, z: &[f64; N_SPECIES]) -> [f64; N_SPECIES] {
    std::array::from_fn(|i| (0..=i).map(|j| l[i][j] * z[j]).sum())
}

/// `A B Aᵀ`.
pub(crate) fn sandwich(a: &Mat9, b: &Mat9) -> Mat9 {
    let mut ab = [[0.0; N_SPECIES]; N_SPECIES];
    for i in 0..N_SPECIES {
        for j in 0..N_SPECIES {
            ab[i][j] = (0..N_SPECIES).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    let mut out = [[0.0; N_SPECIES]; N_SPECIES];
    for i in 0..N_SPECIES {
        for j in 0..=i {
            let v: f64 = (0..N_SPECIES).map(|k| ab[i][k] * a[j][k]).sum();
            out[i][j] = v;
            out[j][i] = v;
        }
    }
    out
}

/// Symmetrises in place and floors the diagonal at 0.
pub(crate) fn symmetrise(a: &mut Mat9) {
    for i in 0..N_SPECIES {
        a[i][i] = a[i][i].max(0.0);
        for j in 0..i {
            let v = 0.5 * (a[i][j] + a[j][i]);
            a[i][j] = v;
            a[j][i] = v;
        }
    }
}

/// Empirical quantile (type 7, linear interpolation) of sorted data.
pub(crate) fn quantile_sorted(sorted: &[f64], p: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let h = p.clamp(0.0, 1.0) * (n - 1) as f64;
            let lo = h.floor() as usize;
            let hi = (lo + 1).min(n - 1);
            sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
        }
    }
}

/// Mean and sample standard deviation.
pub(crate) fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let m = v.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return (m, 0.0);
    }
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64;
    (m, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn cholesky_reconstructs() {
        let mut a = [[0.0; N_SPECIES]; N_SPECIES];
        for i in 0..N_SPECIES {
            for j in 0..N_SPECIES {
                a[i][j] = 0.3f64.powi((i as i32 - j as i32).abs()) * (1.0 + i as f64);
            }
        }
        // make symmetric
        symmetrise(&mut a);
        let l = cholesky9(&a).unwrap();
        for i in 0..N_SPECIES {
            for j in 0..N_SPECIES {
                let v: f64 = (0..N_SPECIES).map(|k| l[i][k] * l[j][k]).sum();
                assert_relative_eq!(v, a[i][j], epsilon = 1e-12);
            }
        }
        // rank-deficient PSD matrix still factorises (jitter)
        let z = [[1.0; N_SPECIES]; N_SPECIES];
        assert!(cholesky9(&z).is_some());
    }

    #[test]
    fn quantiles_and_normal_cdf() {
        let v: Vec<f64> = (0..=100).map(f64::from).collect();
        assert_relative_eq!(quantile_sorted(&v, 0.05), 5.0);
        assert_relative_eq!(quantile_sorted(&v, 0.5), 50.0);
        // the quantile constants are symmetric and ordered
        for i in 0..5 {
            assert_relative_eq!(Z_QUANTILES[i], -Z_QUANTILES[4 - i]);
        }
        let (m, s) = mean_sd(&[1.0, 2.0, 3.0]);
        assert_relative_eq!(m, 2.0);
        assert_relative_eq!(s, 1.0);
    }
}
