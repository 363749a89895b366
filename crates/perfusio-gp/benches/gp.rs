//! Benchmarks of perfusio-gp on synthetic bioreactor-like data (seeded, built in memory).
//!
//! Layout as in the hybrid model: base inputs = 9 species at day t, 6 controls, day
//! (16 columns) + task id; target = species `task` at day t+1; 9 tasks.
//!
//! (a) online retrain of one run (14 / 28 transitions → 126 / 252 rows), from scratch and
//!     warm-started, complete and with 5 % of targets missing;
//! (b) offline fit on 27 runs × 27 transitions (6 561 rows, Kronecker path), and on
//!     27 runs × 28 transitions (6 804 rows) complete and with 3 % of targets missing
//!     (Kronecker path with gaps);
//! (c) posterior mean + variance at 256 inputs × 9 tasks for the (a) and (b) models;
//! (d) the all-task predictions of the forecasting hot path: the joint 9×9 covariance at
//!     256 base inputs (`predict_tasks`) and the means only (`predict_tasks_mean`) on the
//!     28-day and offline models, and the joint covariance at ONE input against nine
//!     separate calls and against `predict_joint` on the nine rows.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use perfusio_gp::{GpParams, MultiTaskGp};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;

#[path = "support/process.rs"]
mod process;
use process::{D, SPECIES, dataset, run};

/// 256 query base inputs (no task column) from fresh runs.
fn base_queries(seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x = Vec::new();
    let mut count = 0;
    while count < 256 {
        let (inp, _) = run(&mut rng, 16);
        for row in inp {
            if count == 256 {
                break;
            }
            x.extend_from_slice(&row);
            count += 1;
        }
    }
    x
}

/// 256 query inputs × 9 tasks from fresh runs.
fn queries(seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x = Vec::new();
    let mut count = 0;
    while count < 256 {
        let (inp, _) = run(&mut rng, 16);
        for row in inp {
            if count == 256 {
                break;
            }
            for t in 0..SPECIES {
                x.extend_from_slice(&row);
                x.push(t as f64);
            }
            count += 1;
        }
    }
    x
}

fn fit(x: &[f64], y: &[f64]) -> MultiTaskGp {
    GpParams::new(D, SPECIES)
        .check()
        .and_then(|p| p.fit(x, D + 1, y))
        .unwrap_or_else(|e| panic!("fit failed: {e}"))
}

#[allow(clippy::print_stderr)]
fn retrain(c: &mut Criterion) {
    let mut g = c.benchmark_group("retrain");
    g.sample_size(20);
    let params = GpParams::new(D, SPECIES)
        .check()
        .unwrap_or_else(|e| panic!("{e}"));
    for days in [14usize, 28] {
        for (label, drop) in [("complete", 0.0), ("missing5", 0.05)] {
            let (x, y) = dataset(1, days, drop, 1000 + days as u64);
            // previous model: the same run one day earlier
            let (xp, yp) = dataset(1, days - 1, drop, 1000 + days as u64);
            let prev = fit(&xp, &yp);
            let m = fit(&x, &y);
            let r = m.report();
            eprintln!(
                "retrain {label} {days}d: rows {}, path {:?}, nlml {:.3}, iters {}, evals {}, converged {} ({}), {:.1} ms",
                y.len(),
                r.path,
                r.nlml,
                r.iterations,
                r.evaluations,
                r.converged,
                r.termination,
                r.wall_time.as_secs_f64() * 1e3
            );
            let w = params
                .fit_warm(&x, D + 1, &y, &prev)
                .unwrap_or_else(|e| panic!("{e}"));
            let rw = w.report();
            eprintln!(
                "  warm: iters {}, evals {}, nlml {:.3}, converged {}",
                rw.iterations, rw.evaluations, rw.nlml, rw.converged
            );
            g.bench_with_input(
                BenchmarkId::new(format!("scratch/{label}"), days),
                &days,
                |b, _| b.iter(|| params.fit(black_box(&x), D + 1, black_box(&y))),
            );
            g.bench_with_input(
                BenchmarkId::new(format!("warm/{label}"), days),
                &days,
                |b, _| {
                    b.iter(|| {
                        params.fit_warm(black_box(&x), D + 1, black_box(&y), black_box(&prev))
                    })
                },
            );
        }
    }
    g.finish();
}

#[allow(clippy::print_stderr)]
fn offline(c: &mut Criterion) {
    let mut g = c.benchmark_group("offline");
    g.sample_size(10);
    let params = GpParams::new(D, SPECIES)
        .check()
        .unwrap_or_else(|e| panic!("{e}"));
    for (label, days, drop) in [
        ("fit_6561", 27usize, 0.0),
        ("fit_6804", 28, 0.0),
        ("fit_6804_missing3", 28, 0.03),
    ] {
        let (x, y) = dataset(27, days, drop, 7);
        let m = fit(&x, &y);
        let r = m.report();
        eprintln!(
            "offline {label}: rows {}, path {:?}, nlml {:.3}, iters {}, evals {}, converged {} ({}), {:.2} s",
            y.len(),
            r.path,
            r.nlml,
            r.iterations,
            r.evaluations,
            r.converged,
            r.termination,
            r.wall_time.as_secs_f64()
        );
        g.bench_function(label, |b| {
            b.iter(|| params.fit(black_box(&x), D + 1, black_box(&y)))
        });
    }
    g.finish();
}

/// All-task predictions: the forecasting hot path.
fn predict_tasks(c: &mut Criterion) {
    let mut g = c.benchmark_group("predict_tasks");
    let q = base_queries(77);
    let (x, y) = dataset(1, 28, 0.0, 1028);
    let online = fit(&x, &y);
    let (x, y) = dataset(1, 28, 0.05, 1028);
    let online_missing = fit(&x, &y);
    let (x, y) = dataset(27, 28, 0.0, 7);
    let off = quick_fit(&x, &y);
    let (x, y) = dataset(27, 28, 0.03, 7);
    let off_missing = quick_fit(&x, &y);
    for (label, m) in [
        ("a_28d_complete", &online),
        ("a_28d_missing5", &online_missing),
        ("b_offline_6804", &off),
        ("b_offline_6804_missing3", &off_missing),
    ] {
        g.bench_function(format!("joint_256/{label}"), |b| {
            b.iter(|| m.predict_tasks(black_box(&q), false))
        });
        g.bench_function(format!("mean_256/{label}"), |b| {
            b.iter(|| m.predict_tasks_mean(black_box(&q)))
        });
        // one input: the joint 9×9 covariance in one call, against nine separate calls
        // and against predict_joint on the nine rows
        let one = &q[..D];
        let rows: Vec<Vec<f64>> = (0..SPECIES)
            .map(|t| one.iter().copied().chain([t as f64]).collect())
            .collect();
        let flat: Vec<f64> = rows.iter().flatten().copied().collect();
        g.bench_function(format!("one_input_joint/{label}"), |b| {
            b.iter(|| m.predict_tasks(black_box(one), false))
        });
        g.bench_function(format!("one_input_9_calls/{label}"), |b| {
            b.iter(|| {
                rows.iter()
                    .map(|r| m.predict(black_box(r)))
                    .collect::<Vec<_>>()
            })
        });
        g.bench_function(format!("one_input_predict_joint/{label}"), |b| {
            b.iter(|| m.predict_joint(black_box(&flat)))
        });
        g.bench_function(format!("one_input_grad/{label}"), |b| {
            b.iter(|| m.predict_tasks_grad(black_box(one)))
        });
    }
    g.finish();
}

/// A cheaply fitted offline model for the prediction benches (hyperparameters need not be
/// optimal to time a prediction).
fn quick_fit(x: &[f64], y: &[f64]) -> MultiTaskGp {
    GpParams::new(D, SPECIES)
        .max_iters(15)
        .n_starts(1)
        .check()
        .and_then(|p| p.fit(x, D + 1, y))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn predict(c: &mut Criterion) {
    let mut g = c.benchmark_group("predict_256x9");
    let q = queries(77);
    let (x, y) = dataset(1, 28, 0.0, 1028);
    let a_complete = fit(&x, &y);
    let (x, y) = dataset(1, 28, 0.05, 1028);
    let a_missing = fit(&x, &y);
    g.bench_function("a_28d_complete", |b| {
        b.iter(|| a_complete.predict(black_box(&q)))
    });
    g.bench_function("a_28d_missing5", |b| {
        b.iter(|| a_missing.predict(black_box(&q)))
    });
    let (x, y) = dataset(27, 27, 0.0, 7);
    let off = quick_fit(&x, &y);
    g.bench_function("b_offline_6561", |b| b.iter(|| off.predict(black_box(&q))));
    g.finish();
}

criterion_group!(benches, retrain, predict, predict_tasks, offline);
criterion_main!(benches);
