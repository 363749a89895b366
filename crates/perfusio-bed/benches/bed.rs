//! Benchmarks of the hot pieces of perfusio-bed (inputs built outside the timed closures,
//! seeds fixed, nothing written to disk).
//!
//! * analytic LogEI per call, at several standardised improvements `z` (each branch);
//! * the inverse normal CDF per call;
//! * qEI and qLogEI over 128 scenarios × 24 candidates;
//! * exact hypervolume of 50-point fronts in 2 and 3 objectives;
//! * qEHVI over 128 scenarios of one candidate against a 20-point 3-D front;
//! * base samples (256 × 200 normals) and raw candidates (512 × 6 lattice points);
//! * the multistart maximiser on the 6-D Hartmann function (512 raw, 10 restarts);
//! * on the online model (one 28-day run, mechanism inputs on; `support/fixture.rs`), with a 3-day
//!   horizon: `decide()` with 512 raw candidates and 10 restarts (LogEI and qLogEI), and
//!   `decide_batch` for 24 reactors with qLogEI;
//! * a late day of a 24-reactor campaign (one model shared by 24 runs of 25 days, 600
//!   inputs with empty cells): `decide_batch` with qLogEI, and the 24 reactors' 14-day
//!   moment-matched forecasts as one batch and one at a time.
//!
//! `cargo bench -p perfusio-bed --bench bed -- policy` (`-- late_campaign`)

#[path = "support/fixture.rs"]
mod fixture;

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use perfusio_bed::analytic::{Predictive, log_expected_improvement};
use perfusio_bed::hypervolume::hypervolume;
use perfusio_bed::mc::{
    McParams, SampleMatrix, q_expected_improvement, q_log_expected_improvement,
};
use perfusio_bed::multi::{ObjectiveSamples, q_expected_hypervolume_improvement};
use perfusio_bed::objective::Harvest;
use perfusio_bed::optimize::{MaximizeOptions, maximize};
use perfusio_bed::qmc::{BaseSamples, uniform_points};
use perfusio_bed::special::norm_ppf;
use perfusio_bed::{BedPolicy, PolicyConfig};
use perfusio_core::{Acquisition, DEFAULT_AMBR250_DESIGN_SPACE as DS};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Shared group settings: short runs, the machine is shared.
fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

fn analytic(c: &mut Criterion) {
    let mut g = c.benchmark_group("analytic_log_ei");
    for z in [2.0, -0.5, -3.0, -20.0] {
        let pred = Predictive::new(z, 1.0).unwrap_or_else(|e| panic!("{e}"));
        g.bench_with_input(BenchmarkId::from_parameter(z), &pred, |b, p| {
            b.iter(|| log_expected_improvement(black_box(*p), black_box(0.0)))
        });
    }
    g.finish();
    c.bench_function("norm_ppf", |b| {
        let mut p: f64 = 0.0;
        b.iter(|| {
            p = (p + 0.618_033_988_749_895) % 1.0;
            norm_ppf(black_box(p.max(1e-300)))
        })
    });
}

fn monte_carlo(c: &mut Criterion) {
    let (n, q) = (128, 24);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let data: Vec<f64> = (0..n * q).map(|_| rng.random_range(-2.0..2.0)).collect();
    let samples = SampleMatrix::new(&data, n, q).unwrap_or_else(|e| panic!("{e}"));
    let params = McParams::default();
    c.bench_function("qlogei_128x24", |b| {
        b.iter(|| q_log_expected_improvement(black_box(samples), black_box(0.5), &[], &params))
    });
    c.bench_function("qei_128x24", |b| {
        b.iter(|| q_expected_improvement(black_box(samples), black_box(0.5), &[], &params))
    });
}

/// `n` points near the positive unit sphere in `m` objectives.
fn front(n: usize, m: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut pts = Vec::with_capacity(n * m);
    for _ in 0..n {
        let dir: Vec<f64> = (0..m).map(|_| rng.random_range(0.05..1.0)).collect();
        let norm = dir.iter().map(|d| d * d).sum::<f64>().sqrt();
        pts.extend(dir.iter().map(|d| d / norm));
    }
    pts
}

fn hypervolumes(c: &mut Criterion) {
    let mut g = c.benchmark_group("hypervolume_50");
    for m in [2, 3] {
        let pts = front(50, m, 2);
        let r = vec![0.0; m];
        g.bench_with_input(BenchmarkId::from_parameter(m), &pts, |b, p| {
            b.iter(|| hypervolume(black_box(p), &r))
        });
    }
    g.finish();
    let f = front(20, 3, 3);
    let eps = BaseSamples::new(128, 3, 4).unwrap_or_else(|e| panic!("{e}"));
    let y: Vec<f64> = eps.as_slice().iter().map(|e| 0.6 + 0.1 * e).collect();
    let ys = ObjectiveSamples::new(&y, 128, 1, 3).unwrap_or_else(|e| panic!("{e}"));
    c.bench_function("qehvi_128_q1_front20_3d", |b| {
        b.iter(|| q_expected_hypervolume_improvement(black_box(ys), &f, &[0.0; 3]))
    });
}

fn sampling(c: &mut Criterion) {
    c.bench_function("base_samples_256x200", |b| {
        b.iter(|| BaseSamples::new(black_box(256), 200, 5))
    });
    c.bench_function("raw_candidates_512x6", |b| {
        b.iter(|| uniform_points(black_box(512), 6, 5))
    });
}

fn hartmann6(x: &[f64]) -> f64 {
    const ALPHA: [f64; 4] = [1.0, 1.2, 3.0, 3.2];
    const A: [[f64; 6]; 4] = [
        [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
        [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
        [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
        [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
    ];
    const P: [[f64; 6]; 4] = [
        [1312.0, 1696.0, 5569.0, 124.0, 8283.0, 5886.0],
        [2329.0, 4135.0, 8307.0, 3736.0, 1004.0, 9991.0],
        [2348.0, 1451.0, 3522.0, 2883.0, 3047.0, 6650.0],
        [4047.0, 8828.0, 8732.0, 5743.0, 1091.0, 381.0],
    ];
    (0..4)
        .map(|i| {
            let r: f64 = (0..6)
                .map(|j| A[i][j] * (x[j] - P[i][j] * 1e-4).powi(2))
                .sum();
            ALPHA[i] * (-r).exp()
        })
        .sum()
}

fn optimiser(c: &mut Criterion) {
    let opts = MaximizeOptions::default();
    c.bench_function("maximize_hartmann6_512raw_10restarts", |b| {
        b.iter(|| maximize(6, &hartmann6, black_box(&opts), &[]))
    });
}

fn policy_for(acquisition: Acquisition) -> BedPolicy {
    let cfg = PolicyConfig {
        acquisition,
        ..PolicyConfig::new(&DS)
    };
    BedPolicy::new(DS, vec![Box::new(Harvest::default())], cfg).unwrap_or_else(|e| panic!("{e}"))
}

fn policy(c: &mut Criterion) {
    let (model, run) = fixture::online_model();
    let (state, current) = fixture::day14(&model, &run);
    let reactors = fixture::batch24(&model, &run);
    let mut g = c.benchmark_group("policy");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    for acq in [Acquisition::LogEI, Acquisition::QLogEI] {
        let p = policy_for(acq);
        g.bench_function(
            BenchmarkId::new("decide_512raw_10restarts", acq.name()),
            |b| {
                b.iter(|| {
                    p.decide(&model, black_box(&state), &current)
                        .unwrap_or_else(|e| panic!("{e}"))
                })
            },
        );
    }
    // the acquisition on the linearised forecast, per 64 candidates (one screening batch)
    let space =
        perfusio_bed::space::DecisionSpace::new(&DS, current).unwrap_or_else(|e| panic!("{e}"));
    let cands: Vec<_> = uniform_points(64, space.dim(), 3)
        .unwrap_or_else(|e| panic!("{e}"))
        .chunks_exact(space.dim())
        .map(|u| space.to_controls(u).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    for acq in [Acquisition::LogEI, Acquisition::QLogEI] {
        let p = policy_for(acq);
        g.bench_function(BenchmarkId::new("screen_64_candidates", acq.name()), |b| {
            b.iter(|| {
                p.screen(&model, black_box(&state), &current, &cands)
                    .unwrap_or_else(|e| panic!("{e}"))
            })
        });
    }
    let p = policy_for(Acquisition::QLogEI);
    g.bench_function("decide_batch_q24_qLogEI", |b| {
        b.iter(|| {
            p.decide_batch(&model, black_box(&reactors))
                .unwrap_or_else(|e| panic!("{e}"))
        })
    });
    // two objectives: harvest and final titer traded off by qNEHVI
    let p = BedPolicy::new(
        DS,
        vec![
            Box::new(Harvest::default()),
            Box::new(perfusio_bed::objective::FinalTiter),
        ],
        PolicyConfig {
            acquisition: Acquisition::QNEHVI,
            ..PolicyConfig::new(&DS)
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    g.bench_function("decide_batch_q24_qNEHVI_2_objectives", |b| {
        b.iter(|| {
            p.decide_batch(&model, black_box(&reactors))
                .unwrap_or_else(|e| panic!("{e}"))
        })
    });
    g.finish();
}

/// A late campaign day ([`fixture::late24`]): 600 shared inputs, where the task covariances
/// of every candidate dominate the batch decision, and the reactors' forecasts.
fn late_campaign(c: &mut Criterion) {
    let (model, reactors) = fixture::late24();
    let mut g = c.benchmark_group("late_campaign");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    let p = policy_for(Acquisition::QLogEI);
    g.bench_function("decide_batch_q24_qLogEI", |b| {
        b.iter(|| {
            p.decide_batch(&model, black_box(&reactors))
                .unwrap_or_else(|e| panic!("{e}"))
        })
    });
    let schedules = fixture::schedules14(&reactors);
    let jobs = fixture::jobs(&reactors, &schedules);
    let opts = fixture::mm_options();
    g.bench_function("forecast_many_24x14d_moment_matching", |b| {
        b.iter(|| model.forecast_many(black_box(&jobs), &opts))
    });
    g.bench_function("forecast_24x14d_moment_matching_one_at_a_time", |b| {
        b.iter(|| fixture::one_at_a_time(&model, black_box(&jobs), &opts))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = analytic, monte_carlo, hypervolumes, sampling, optimiser, policy, late_campaign
}
criterion_main!(benches);
