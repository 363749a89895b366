//! Integration tests of perfusio-gp: closed forms, an independent dense reference, path
//! agreement, gradients, calibration, online updates, persistence and bad input.
#![allow(clippy::unwrap_used)]

use approx::assert_relative_eq;
use perfusio_gp::kernel::{Kernel, KernelSpec, Matern, Nu, Rbf};
use perfusio_gp::{
    ConstantMean, FnMean, GpError, GpParams, HyperPriors, MultiTaskGp, PriorMean, SolverPath,
    Surrogate, Tune, Tuning,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

/// Synthetic multi-task data: `n` base points in `d` dims, `t` tasks, smooth correlated
/// targets plus noise; rows ordered by base point then task (optionally shuffled).
fn synth(n: usize, d: usize, t: usize, seed: u64, drop: f64) -> (Vec<f64>, Vec<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x = Vec::new();
    let mut y = Vec::new();
    for _ in 0..n {
        let base: Vec<f64> = (0..d).map(|_| rng.random_range(0.0..10.0)).collect();
        let f: f64 = base
            .iter()
            .enumerate()
            .map(|(j, v)| (0.3 * v + j as f64).sin())
            .sum();
        for task in 0..t {
            if drop > 0.0 && rng.random::<f64>() < drop {
                continue;
            }
            x.extend_from_slice(&base);
            x.push(task as f64);
            let g = (1.0 + 0.3 * task as f64) * f
                + 2.0 * task as f64
                + 0.05 * rng.random_range(-1.0..1.0);
            y.push(g);
        }
    }
    (x, y)
}

fn fixed_fit(x: &[f64], d: usize, t: usize, y: &[f64], dense: bool) -> MultiTaskGp {
    let mut k = KernelSpec::Matern(Matern::new(Nu::FiveHalves, d, 0.7));
    let p: Vec<f64> = (0..d).map(|j| (0.4 + 0.2 * j as f64).ln()).collect();
    k.set_params(&p);
    let w: Vec<f64> = (0..t * 2).map(|j| 0.3 + 0.1 * (j % 3) as f64).collect();
    let kappa: Vec<f64> = (0..t).map(|j| 0.2 + 0.05 * j as f64).collect();
    let noise: Vec<f64> = (0..t).map(|j| 0.01 * (1 + j) as f64).collect();
    GpParams::with_kernel(k, t)
        .rank(2)
        .task_init(w, kappa, noise)
        .tuning(Tuning::fixed())
        .force_dense(dense)
        .check()
        .unwrap()
        .fit(x, d + 1, y)
        .unwrap()
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(1e-300)
}

// ---------------------------------------------------------------- closed forms

#[test]
fn two_point_single_task_matches_closed_form() {
    // k = exp(-r²/2ℓ²), B = κ = 1 (rank 0), noise s; targets standardised to ±1/√2·√2 = ±1
    let (ls, s) = (0.5, 0.01);
    let x = [0.0, 0.0, 1.0, 0.0];
    let y = [1.0, 3.0];
    let gp = GpParams::with_kernel(KernelSpec::Rbf(Rbf::new(1, ls)), 1)
        .rank(0)
        .task_init(vec![], vec![1.0], vec![s])
        .tuning(Tuning::fixed())
        .check()
        .unwrap()
        .fit(&x, 2, &y)
        .unwrap();
    // standardisation: mean 2, sample std √2 → z = ±1/√2
    let (mu, sd) = (2.0, 2f64.sqrt());
    let z = [-1.0 / sd, 1.0 / sd];
    let c = (-0.5f64 / (ls * ls)).exp();
    let a = 1.0 + s;
    let det = a * a - c * c;
    let alpha = [(a * z[0] - c * z[1]) / det, (-c * z[0] + a * z[1]) / det];
    let xs = 0.3;
    let k1 = (-0.5 * xs * xs / (ls * ls)).exp();
    let k2 = (-0.5 * (1.0 - xs) * (1.0 - xs) / (ls * ls)).exp();
    let mean = mu + sd * (k1 * alpha[0] + k2 * alpha[1]);
    let quad = (a * k1 * k1 - 2.0 * c * k1 * k2 + a * k2 * k2) / det;
    let var = sd * sd * (1.0 - quad);
    let p = gp.predict(&[xs, 0.0]).unwrap();
    assert_relative_eq!(p.mean[0], mean, max_relative = 1e-12);
    assert_relative_eq!(p.variance[0], var, max_relative = 1e-10);
    let po = gp.predict_observed(&[xs, 0.0]).unwrap();
    assert_relative_eq!(po.variance[0], var + sd * sd * s, max_relative = 1e-10);
    // NLML of the 2×2 system
    let nlml = 0.5 * (z[0] * alpha[0] + z[1] * alpha[1])
        + 0.5 * det.ln()
        + (2.0 * std::f64::consts::PI).ln();
    assert_relative_eq!(gp.report().nlml, nlml, max_relative = 1e-12);
}

#[test]
fn interpolates_with_tiny_noise() {
    let xs: Vec<f64> = (0..15).map(|i| i as f64 / 14.0).collect();
    let x: Vec<f64> = xs.iter().flat_map(|v| [*v, 0.0]).collect();
    let y: Vec<f64> = xs.iter().map(|v| (6.0 * v).sin() * 4.0 + 10.0).collect();
    let gp = GpParams::new(1, 1)
        .rank(0)
        .noise_bounds(1e-6, 1e-5)
        .tuning(Tuning {
            noise: Tune::Fixed,
            ..Tuning::default()
        })
        .task_init(vec![], vec![1.0], vec![1e-6])
        .check()
        .unwrap()
        .fit(&x, 2, &y)
        .unwrap();
    let p = gp.predict(&x).unwrap();
    for (m, yy) in p.mean.iter().zip(&y) {
        assert!((m - yy).abs() < 1e-3 * 4.0, "mean {m} vs target {yy}");
    }
    for v in &p.variance {
        assert!(*v < 1e-4, "variance at a training input {v}");
    }
}

// ---------------------------------------------------------------- dense reference

/// Plain Cholesky, written independently of the crate.
fn cholesky(a: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let n = a.len();
    let mut l = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                l[i][i] = (a[i][i] - s).sqrt();
            } else {
                l[i][j] = (a[i][j] - s) / l[j][j];
            }
        }
    }
    l
}

#[test]
fn nlml_equals_independent_dense_reference() {
    let (d, t) = (2, 3);
    let (x, y) = synth(7, d, t, 11, 0.2);
    let gp = fixed_fit(&x, d, t, &y, false);
    assert_eq!(gp.path(), SolverPath::Dense);
    let theta = gp.hyperparameters().to_vec();
    // reference: normalise, standardise, build K row by row
    let n = y.len();
    let rows: Vec<&[f64]> = x.chunks(d + 1).collect();
    let lo: Vec<f64> = (0..d)
        .map(|j| rows.iter().map(|r| r[j]).fold(f64::INFINITY, f64::min))
        .collect();
    let hi: Vec<f64> = (0..d)
        .map(|j| rows.iter().map(|r| r[j]).fold(f64::NEG_INFINITY, f64::max))
        .collect();
    let xn: Vec<Vec<f64>> = rows
        .iter()
        .map(|r| (0..d).map(|j| (r[j] - lo[j]) / (hi[j] - lo[j])).collect())
        .collect();
    let task: Vec<usize> = rows.iter().map(|r| r[d] as usize).collect();
    let mut z = vec![0.0; n];
    for tt in 0..t {
        let idx: Vec<usize> = (0..n).filter(|&i| task[i] == tt).collect();
        let m = idx.iter().map(|&i| y[i]).sum::<f64>() / idx.len() as f64;
        let v = idx.iter().map(|&i| (y[i] - m).powi(2)).sum::<f64>() / (idx.len() - 1) as f64;
        for &i in &idx {
            z[i] = (y[i] - m) / v.sqrt();
        }
    }
    let ls: Vec<f64> = theta[..d].iter().map(|v| v.exp()).collect();
    let matern = |a: &[f64], b: &[f64]| {
        let r = a
            .iter()
            .zip(b)
            .zip(&ls)
            .map(|((p, q), l)| ((p - q) / l).powi(2))
            .sum::<f64>()
            .sqrt();
        let s5 = 5f64.sqrt() * r;
        (1.0 + s5 + 5.0 * r * r / 3.0) * (-s5).exp()
    };
    let w = &theta[d..d + 2 * t];
    let bmat = |a: usize, b: usize| {
        let mut v = w[2 * a] * w[2 * b] + w[2 * a + 1] * w[2 * b + 1];
        if a == b {
            v += theta[d + 2 * t + a].exp();
        }
        v
    };
    let kmat: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| {
                    let v = matern(&xn[i], &xn[j]) * bmat(task[i], task[j]);
                    if i == j {
                        v + theta[d + 3 * t + task[i]].exp()
                    } else {
                        v
                    }
                })
                .collect()
        })
        .collect();
    let l = cholesky(&kmat);
    let mut v = vec![0.0; n];
    for i in 0..n {
        v[i] = (z[i] - (0..i).map(|k| l[i][k] * v[k]).sum::<f64>()) / l[i][i];
    }
    let nlml_ref = 0.5 * v.iter().map(|a| a * a).sum::<f64>()
        + (0..n).map(|i| l[i][i].ln()).sum::<f64>()
        + 0.5 * n as f64 * (2.0 * std::f64::consts::PI).ln();
    let (nlml, _) = gp.nlml_and_grad(&theta).unwrap();
    assert_relative_eq!(nlml, nlml_ref, max_relative = 1e-12);
    assert_relative_eq!(gp.report().nlml, nlml_ref, max_relative = 1e-12);
}

// ---------------------------------------------------------------- paths agree

#[test]
fn kronecker_and_dense_agree_on_complete_data() {
    let (d, t) = (3, 4);
    let (x, y) = synth(12, d, t, 5, 0.0);
    let kron = fixed_fit(&x, d, t, &y, false);
    let dense = fixed_fit(&x, d, t, &y, true);
    assert_eq!(kron.path(), SolverPath::Kronecker);
    assert_eq!(dense.path(), SolverPath::Dense);
    let theta = kron.hyperparameters().to_vec();
    let (n1, g1) = kron.nlml_and_grad(&theta).unwrap();
    let (n2, g2) = dense.nlml_and_grad(&theta).unwrap();
    assert!(rel(n1, n2) < 1e-8, "nlml {n1} vs {n2}");
    let gscale = g2.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    for (a, b) in g1.iter().zip(&g2) {
        assert!((a - b).abs() <= 1e-8 * gscale, "gradient {a} vs {b}");
    }
    let (xt, _) = synth(9, d, t, 99, 0.0);
    let p1 = kron.predict(&xt).unwrap();
    let p2 = dense.predict(&xt).unwrap();
    for c in 0..p1.mean.len() {
        assert!(rel(p1.mean[c], p2.mean[c]) < 1e-8);
        assert!((p1.variance[c] - p2.variance[c]).abs() < 1e-8 * p2.variance[c].max(1e-3));
    }
    let j1 = kron.predict_joint(&xt[..(d + 1) * 10]).unwrap();
    let j2 = dense.predict_joint(&xt[..(d + 1) * 10]).unwrap();
    let cs = j2.covariance.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    for (a, b) in j1.covariance.iter().zip(&j2.covariance) {
        assert!((a - b).abs() < 1e-8 * cs);
    }
    // the joint diagonal equals the marginal variance
    for c in 0..10 {
        assert_relative_eq!(
            j1.covariance[c * 10 + c],
            p1.variance[c],
            max_relative = 1e-8,
            epsilon = 1e-12
        );
    }
}

#[test]
fn kronecker_with_gaps_agrees_with_dense() {
    let (d, t) = (3, 4);
    let (x, y) = synth(12, d, t, 15, 0.1);
    let gappy = fixed_fit(&x, d, t, &y, false);
    let dense = fixed_fit(&x, d, t, &y, true);
    let missing = 12 * t - y.len();
    assert!(missing > 0 && missing as f64 <= perfusio_gp::MAX_GAP_FRACTION * (12 * t) as f64);
    assert_eq!(gappy.report().objective_path, SolverPath::KroneckerWithGaps);
    assert_eq!(dense.report().objective_path, SolverPath::Dense);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for _ in 0..3 {
        let theta: Vec<f64> = gappy
            .hyperparameters()
            .iter()
            .map(|v| v + rng.random_range(-0.5..0.5))
            .collect();
        let (n1, g1) = gappy.nlml_and_grad(&theta).unwrap();
        let (n2, g2) = dense.nlml_and_grad(&theta).unwrap();
        assert!(rel(n1, n2) < 1e-8, "nlml {n1} vs {n2}");
        let gscale = g2.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        for (a, b) in g1.iter().zip(&g2) {
            assert!((a - b).abs() <= 1e-8 * gscale, "gradient {a} vs {b}");
        }
    }
    check_nlml_gradient(&gappy, 5);
}

#[test]
fn unordered_complete_rows_still_use_kronecker() {
    let (d, t) = (2, 3);
    let (x, y) = synth(8, d, t, 3, 0.0);
    // reverse the row order
    let xr: Vec<f64> = x.chunks(d + 1).rev().flatten().copied().collect();
    let yr: Vec<f64> = y.iter().rev().copied().collect();
    let a = fixed_fit(&x, d, t, &y, false);
    let b = fixed_fit(&xr, d, t, &yr, false);
    assert_eq!(b.path(), SolverPath::Kronecker);
    assert!(rel(a.report().nlml, b.report().nlml) < 1e-10);
}

// ---------------------------------------------------------------- NLML gradient

fn check_nlml_gradient(gp: &MultiTaskGp, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let theta: Vec<f64> = gp
        .hyperparameters()
        .iter()
        .map(|v| v + rng.random_range(-0.3..0.3))
        .collect();
    let (_, g) = gp.nlml_and_grad(&theta).unwrap();
    let h = 1e-5;
    for j in 0..theta.len() {
        let mut tp = theta.clone();
        tp[j] += h;
        let up = gp.nlml_and_grad(&tp).unwrap().0;
        tp[j] -= 2.0 * h;
        let dn = gp.nlml_and_grad(&tp).unwrap().0;
        let fd = (up - dn) / (2.0 * h);
        let err = (g[j] - fd).abs() / fd.abs().max(1e-3);
        assert!(err < 1e-5, "θ[{j}]: analytic {} fd {fd} rel {err}", g[j]);
    }
}

#[test]
fn nlml_gradient_matches_finite_differences_dense_and_kronecker() {
    let (d, t) = (2, 3);
    let (x, y) = synth(9, d, t, 21, 0.0);
    for seed in 0..3 {
        check_nlml_gradient(&fixed_fit(&x, d, t, &y, false), seed);
        check_nlml_gradient(&fixed_fit(&x, d, t, &y, true), seed);
    }
    let (x, y) = synth(9, d, t, 22, 0.15);
    check_nlml_gradient(&fixed_fit(&x, d, t, &y, false), 7);
}

#[test]
fn nlml_gradient_with_composite_kernel() {
    let (d, t) = (2, 2);
    let (x, y) = synth(8, d, t, 4, 0.1);
    let k = KernelSpec::sum(vec![
        KernelSpec::scaled(Rbf::new(d, 0.5), 0.8),
        KernelSpec::product(vec![
            KernelSpec::Linear(perfusio_gp::Linear::new(d, 0.3, 0.5)),
            KernelSpec::Matern(Matern::on_dims(Nu::ThreeHalves, vec![1], 0.6)),
        ]),
    ]);
    let gp = GpParams::with_kernel(k, t)
        .tuning(Tuning::fixed())
        .check()
        .unwrap()
        .fit(&x, d + 1, &y)
        .unwrap();
    check_nlml_gradient(&gp, 1);
}

// ---------------------------------------------------------------- fitting

#[test]
fn fit_improves_objective_and_reports() {
    let (d, t) = (3, 3);
    let (x, y) = synth(14, d, t, 8, 0.0);
    let params = GpParams::new(d, t).check().unwrap();
    let gp = params.fit(&x, d + 1, &y).unwrap();
    let r = gp.report();
    assert!(r.evaluations > 3 && r.iterations > 0);
    assert_eq!(r.n_starts, 2);
    assert_eq!(r.path, SolverPath::Kronecker);
    // the optimum is better than the configured start
    let start = GpParams::new(d, t)
        .tuning(Tuning::fixed())
        .check()
        .unwrap()
        .fit(&x, d + 1, &y)
        .unwrap();
    assert!(
        r.objective < start.report().objective - 1.0,
        "{} vs {}",
        r.objective,
        start.report().objective
    );
    // the gradient (plus prior) is small at the optimum if it converged
    assert!(r.wall_time.as_secs_f64() < 10.0);
    // same seed, same result
    let gp2 = params.fit(&x, d + 1, &y).unwrap();
    assert_eq!(gp.hyperparameters(), gp2.hyperparameters());
}

#[test]
fn dense_fit_with_missing_targets_predicts_held_out() {
    let (d, t) = (2, 3);
    let (x, y) = synth(20, d, t, 12, 0.1);
    let gp = GpParams::new(d, t)
        .check()
        .unwrap()
        .fit(&x, d + 1, &y)
        .unwrap();
    assert_eq!(gp.path(), SolverPath::Dense);
    let (xt, yt) = synth(10, d, t, 13, 0.0);
    let p = gp.predict_observed(&xt).unwrap();
    let scale = yt.iter().map(|v| v.abs()).fold(0.0, f64::max);
    let rmse = (p
        .mean
        .iter()
        .zip(&yt)
        .map(|(a, b)| (a - b).powi(2))
        .sum::<f64>()
        / yt.len() as f64)
        .sqrt();
    assert!(rmse < 0.25 * scale, "rmse {rmse} scale {scale}");
}

// ---------------------------------------------------------------- calibration

/// Draws from a known GP (RBF ℓ = 0.2, unit variance, noise sd 0.1) on [0, 1]; the fitted
/// model's 90 % predictive intervals must cover 85–95 % of held-out noisy points.
#[test]
fn calibrated_on_draws_from_a_known_gp() {
    let (n_train, n_test, draws) = (25, 10, 200);
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let mut inside = 0usize;
    let mut total = 0usize;
    let z90 = 1.644_853_626_951_472_2;
    for _ in 0..draws {
        let n = n_train + n_test;
        let xs: Vec<f64> = (0..n).map(|_| rng.random_range(0.0..1.0)).collect();
        let k: Vec<Vec<f64>> = (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| {
                        (-0.5 * (xs[i] - xs[j]).powi(2) / 0.04).exp()
                            + if i == j { 1e-9 } else { 0.0 }
                    })
                    .collect()
            })
            .collect();
        let l = cholesky(&k);
        let e: Vec<f64> = (0..n)
            .map(|_| rng.sample::<f64, _>(rand_distr::StandardNormal))
            .collect();
        let f: Vec<f64> = (0..n)
            .map(|i| (0..=i).map(|j| l[i][j] * e[j]).sum())
            .collect();
        let y: Vec<f64> = f
            .iter()
            .map(|v| v + 0.1 * rng.sample::<f64, _>(rand_distr::StandardNormal))
            .collect();
        let x: Vec<f64> = xs.iter().flat_map(|v| [*v, 0.0]).collect();
        let gp = GpParams::with_kernel(KernelSpec::Rbf(Rbf::new(1, 0.3)), 1)
            .rank(0)
            .n_starts(1)
            .check()
            .unwrap()
            .fit(&x[..2 * n_train], 2, &y[..n_train])
            .unwrap();
        let p = gp.predict_observed(&x[2 * n_train..]).unwrap();
        for (c, yy) in y[n_train..].iter().enumerate() {
            let half = z90 * p.variance[c].sqrt();
            total += 1;
            if (yy - p.mean[c]).abs() <= half {
                inside += 1;
            }
        }
    }
    let cover = inside as f64 / total as f64;
    assert!((0.85..=0.95).contains(&cover), "coverage {cover}");
}

// ---------------------------------------------------------------- prior mean

#[derive(Debug)]
struct Line;
impl PriorMean for Line {
    fn mean(&self, x: &[f64], task: usize) -> f64 {
        50.0 * x[0] - 20.0 * x[1] + task as f64
    }
    fn label(&self) -> String {
        "line".into()
    }
}

#[test]
fn prior_mean_is_used_in_fit_predict_and_sampling() {
    let (d, t) = (2, 2);
    let (x, _) = synth(10, d, t, 31, 0.0);
    // targets = prior mean + task offset exactly: residual is constant per task
    let y: Vec<f64> = x
        .chunks(d + 1)
        .map(|r| Line.mean(&r[..d], r[d] as usize) + 3.0 + r[d])
        .collect();
    let gp = GpParams::new(d, t)
        .prior_mean(Arc::new(Line))
        .check()
        .unwrap()
        .fit(&x, d + 1, &y)
        .unwrap();
    // far outside the data the GP reverts to m(x) + residual mean
    let far = [100.0, -40.0, 1.0];
    let p = gp.predict(&far).unwrap();
    assert_relative_eq!(
        p.mean[0],
        Line.mean(&far[..2], 1) + 4.0,
        max_relative = 1e-9
    );
    let s = gp.sample(&far, 3, 1).unwrap();
    for v in s {
        // residual std is 0 → unit scale; samples stay within a few units of the mean
        assert!((v[0] - p.mean[0]).abs() < 10.0);
    }
    let with_closure = FnMean::new("line", |x: &[f64], t: usize| Line.mean(x, t));
    let gp2 = GpParams::new(d, t)
        .prior_mean(Arc::new(with_closure))
        .check()
        .unwrap()
        .fit(&x, d + 1, &y)
        .unwrap();
    assert_relative_eq!(
        gp2.predict(&far).unwrap().mean[0],
        p.mean[0],
        max_relative = 1e-12
    );
}

// ---------------------------------------------------------------- online

#[test]
fn condition_on_equals_from_scratch() {
    let (d, t) = (2, 3);
    for drop in [0.0, 0.2] {
        let (x, y) = synth(12, d, t, 41, drop);
        let (xn, yn) = synth(3, d, t, 42, 0.0);
        let mut gp = GpParams::new(d, t)
            .max_iters(20)
            .check()
            .unwrap()
            .fit(&x, d + 1, &y)
            .unwrap();
        let mut xa = x.clone();
        xa.extend_from_slice(&xn);
        let mut ya = y.clone();
        ya.extend_from_slice(&yn);
        let scratch = gp.condition_from_scratch(&xa, &ya).unwrap();
        gp.condition_on(&xn, &yn).unwrap();
        assert_eq!(gp.n_train(), ya.len());
        let (xt, _) = synth(6, d, t, 43, 0.0);
        let a = gp.predict(&xt).unwrap();
        let b = scratch.predict(&xt).unwrap();
        for c in 0..a.mean.len() {
            assert!(
                (a.mean[c] - b.mean[c]).abs() <= 1e-9 * b.mean[c].abs().max(1.0),
                "mean {} vs {}",
                a.mean[c],
                b.mean[c]
            );
            assert!((a.variance[c] - b.variance[c]).abs() <= 1e-9 * b.variance[c].max(1.0));
        }
        // a second increment keeps agreeing
        let (xn2, yn2) = synth(2, d, t, 44, 0.0);
        xa.extend_from_slice(&xn2);
        ya.extend_from_slice(&yn2);
        gp.condition_on(&xn2, &yn2).unwrap();
        let scratch = gp.condition_from_scratch(&xa, &ya).unwrap();
        let a = gp.predict(&xt).unwrap();
        let b = scratch.predict(&xt).unwrap();
        for c in 0..a.mean.len() {
            assert!((a.mean[c] - b.mean[c]).abs() <= 1e-9 * b.mean[c].abs().max(1.0));
            assert!((a.variance[c] - b.variance[c]).abs() <= 1e-9 * b.variance[c].max(1.0));
        }
    }
}

#[test]
fn append_and_refit_is_warm_started_and_bounded() {
    let (d, t) = (2, 3);
    let (x, y) = synth(12, d, t, 51, 0.0);
    let (xn, yn) = synth(2, d, t, 52, 0.0);
    let mut gp = GpParams::new(d, t)
        .warm_iters(5)
        .check()
        .unwrap()
        .fit(&x, d + 1, &y)
        .unwrap();
    let before = gp.hyperparameters().to_vec();
    let r = gp.append_and_refit(&xn, &yn).unwrap().clone();
    assert!(r.iterations <= 5);
    assert_eq!(r.n_starts, 1);
    assert_eq!(gp.n_train(), y.len() + yn.len());
    // warm start: stays close to the previous optimum
    let moved = gp
        .hyperparameters()
        .iter()
        .zip(&before)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(moved < 2.0, "moved {moved}");
}

// ---------------------------------------------------------------- posterior and samples

#[test]
fn seeded_samples_reproduce_and_match_the_joint() {
    let (d, t) = (2, 2);
    let (x, y) = synth(10, d, t, 61, 0.0);
    let gp = GpParams::new(d, t)
        .check()
        .unwrap()
        .fit(&x, d + 1, &y)
        .unwrap();
    let (xt, _) = synth(2, d, t, 62, 0.0);
    let s1 = gp.sample(&xt, 4000, 9).unwrap();
    let s2 = gp.sample(&xt, 4000, 9).unwrap();
    assert_eq!(s1, s2);
    let jp = gp.predict_joint(&xt).unwrap();
    let m = jp.mean.len();
    for c in 0..m {
        let mean = s1.iter().map(|s| s[c]).sum::<f64>() / 4000.0;
        let sd = jp.covariance[c * m + c].sqrt();
        assert!(
            (mean - jp.mean[c]).abs() < 4.0 * sd / 4000f64.sqrt() + 1e-12,
            "sample mean {mean} vs {}",
            jp.mean[c]
        );
        let var = s1.iter().map(|s| (s[c] - mean).powi(2)).sum::<f64>() / 3999.0;
        assert!(
            (var / (sd * sd) - 1.0).abs() < 0.15,
            "sample var {var} vs {}",
            sd * sd
        );
    }
}

// ---------------------------------------------------------------- persistence

#[test]
fn serde_round_trip_is_bit_identical() {
    let (d, t) = (2, 3);
    for drop in [0.0, 0.2] {
        let (x, y) = synth(10, d, t, 71, drop);
        let gp = GpParams::new(d, t)
            .check()
            .unwrap()
            .fit(&x, d + 1, &y)
            .unwrap();
        let json = serde_json::to_string(&gp).unwrap();
        let back: MultiTaskGp = serde_json::from_str(&json).unwrap();
        let (xt, _) = synth(5, d, t, 72, 0.0);
        let a = gp.predict(&xt).unwrap();
        let b = back.predict(&xt).unwrap();
        for c in 0..a.mean.len() {
            assert_eq!(a.mean[c].to_bits(), b.mean[c].to_bits());
            assert_eq!(a.variance[c].to_bits(), b.variance[c].to_bits());
        }
        assert_eq!(
            gp.sample(&xt, 2, 3).unwrap(),
            back.sample(&xt, 2, 3).unwrap()
        );
    }
}

#[test]
fn external_prior_mean_must_be_handed_back_after_loading() {
    let (d, t) = (2, 2);
    let (x, y) = synth(8, d, t, 81, 0.0);
    let gp = GpParams::new(d, t)
        .prior_mean(Arc::new(Line))
        .check()
        .unwrap()
        .fit(&x, d + 1, &y)
        .unwrap();
    let mut back: MultiTaskGp = serde_json::from_str(&serde_json::to_string(&gp).unwrap()).unwrap();
    assert_eq!(
        back.predict(&x[..3]).unwrap_err(),
        GpError::PriorMeanMissing("line".into())
    );
    back.set_prior_mean(Arc::new(Line));
    assert_eq!(
        back.predict(&x[..3]).unwrap().mean[0].to_bits(),
        gp.predict(&x[..3]).unwrap().mean[0].to_bits()
    );
    let _ = ConstantMean::default();
}

// ---------------------------------------------------------------- bad input

#[test]
fn bad_input_gives_typed_errors() {
    let params = GpParams::new(1, 2).check().unwrap();
    let x = [0.0, 0.0, 0.5, 1.0, 1.0, 0.0];
    let y = [1.0, 2.0, 3.0];
    let mut xn = x;
    xn[2] = f64::NAN;
    assert_eq!(
        params.fit(&xn, 2, &y).unwrap_err(),
        GpError::NonFinite {
            what: "X",
            row: 1,
            col: 0
        }
    );
    let yi = [1.0, f64::INFINITY, 3.0];
    assert_eq!(
        params.fit(&x, 2, &yi).unwrap_err(),
        GpError::NonFinite {
            what: "y",
            row: 1,
            col: 0
        }
    );
    assert!(matches!(
        params.fit(&x, 2, &y[..2]),
        Err(GpError::ShapeMismatch(_))
    ));
    assert!(matches!(
        params.fit(&x[..5], 2, &y),
        Err(GpError::ShapeMismatch(_))
    ));
    let mut xt = x;
    xt[3] = 2.0;
    assert_eq!(
        params.fit(&xt, 2, &y).unwrap_err(),
        GpError::TaskOutOfRange {
            row: 1,
            value: 2.0,
            n_tasks: 2
        }
    );
    xt[3] = 0.5;
    assert!(matches!(
        params.fit(&xt, 2, &y),
        Err(GpError::TaskOutOfRange { .. })
    ));
    xt[3] = -1.0;
    assert!(matches!(
        params.fit(&xt, 2, &y),
        Err(GpError::TaskOutOfRange { .. })
    ));
    assert_eq!(
        params.fit(&x[..2], 2, &y[..1]).unwrap_err(),
        GpError::TooFewPoints { got: 1, need: 2 }
    );
    // kernel wider than X
    assert!(matches!(
        GpParams::new(3, 2).check().unwrap().fit(&x, 2, &y),
        Err(GpError::ShapeMismatch(_))
    ));
    // prediction side
    let gp = params.fit(&x, 2, &y).unwrap();
    assert!(matches!(
        gp.predict(&[0.1, 5.0]),
        Err(GpError::TaskOutOfRange { .. })
    ));
    assert!(matches!(
        gp.predict(&[0.1, 0.0, 0.2]),
        Err(GpError::ShapeMismatch(_))
    ));
    assert!(matches!(
        gp.predict(&[f64::NAN, 0.0]),
        Err(GpError::NonFinite { .. })
    ));
}

#[test]
fn invalid_params_are_rejected_with_messages() {
    let e = GpParams::new(2, 3).rank(4).check().unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid parameter `rank`: 4 exceeds n_tasks = 3; use rank ≤ n_tasks"
    );
    assert!(matches!(
        GpParams::new(2, 0).check(),
        Err(GpError::InvalidParameter {
            name: "n_tasks",
            ..
        })
    ));
    assert!(matches!(
        GpParams::new(2, 2).n_starts(0).check(),
        Err(GpError::InvalidParameter {
            name: "n_starts",
            ..
        })
    ));
    assert!(matches!(
        GpParams::new(2, 2).noise_bounds(0.0, 1.0).check(),
        Err(GpError::InvalidParameter {
            name: "noise_bounds",
            ..
        })
    ));
    assert!(matches!(
        GpParams::new(2, 2)
            .task_init(vec![1.0], vec![1.0; 2], vec![0.1; 2])
            .check(),
        Err(GpError::InvalidParameter {
            name: "task_init",
            ..
        })
    ));
    assert!(matches!(
        GpParams::new(2, 2)
            .priors(HyperPriors {
                lengthscale: Some((None, -1.0)),
                noise: None
            })
            .check(),
        Err(GpError::InvalidParameter {
            name: "priors.lengthscale",
            ..
        })
    ));
}

#[test]
fn public_types_are_send_sync_clone() {
    fn ok<T: Send + Sync + Clone>() {}
    ok::<MultiTaskGp>();
    ok::<GpParams>();
    ok::<KernelSpec>();
    ok::<GpError>();
    ok::<perfusio_gp::FitReport>();
    fn obj(_: Box<dyn Surrogate>) {}
    let _ = obj;
}
