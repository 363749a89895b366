//! The twin's learning and deciding steps on their own, with the T06 settings: GP
//! retraining of the online model on 14 and 28 days of one run (from scratch and warm, as
//! the daily loop does every `retrain_every` days), the offline fit on the 27-run
//! Box–Behnken design, and one `decide()` (LogEI, 512 raw candidates × 10 restarts,
//! 3-day horizon, `Harvest`).
//!
//! `cargo bench -p perfusio-benches --bench learn`. The offline fit takes minutes per
//! iteration, so it runs only with `PERFUSIO_BENCH_OFFLINE=1`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use perfusio_twin::layers::bed::{BedPolicy, PolicyConfig};
use perfusio_twin::layers::core::Trajectory;
use perfusio_twin::layers::mechanistic::doe;
use perfusio_twin::prelude::*;

/// `n` runs of the training design on clone Y (noisy, `seed`), `days` days each.
fn design(n: usize, days: u32, seed: u64) -> Vec<(Trajectory, Option<String>)> {
    let cfg = VirtualReactorConfig {
        clone: CloneKind::CloneY,
        seed,
        ..VirtualReactorConfig::default()
    };
    doe::simulate_design(&doe::training_design()[..n], &cfg, days)
        .expect("simulation")
        .into_iter()
        .map(|t| (t, None))
        .collect()
}

fn retrain(c: &mut Criterion) {
    let mut g = c.benchmark_group("retrain");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    for days in [14u32, 28] {
        let run = design(1, days, 11);
        g.bench_function(format!("online {days} days, from scratch"), |b| {
            b.iter(|| HybridModel::fit_runs(HybridConfig::online(), black_box(&run)).expect("fit"))
        });
        let (model, report) = HybridModel::fit_runs(HybridConfig::online(), &run).expect("fit");
        assert!(report.converged, "the online fit must converge: {report:?}");
        g.bench_function(format!("online {days} days, warm"), |b| {
            b.iter_batched(
                || model.clone(),
                |mut m| m.retrain(true).expect("retrain"),
                BatchSize::SmallInput,
            )
        });
    }
    if std::env::var_os("PERFUSIO_BENCH_OFFLINE").is_some() {
        let runs = design(27, 28, 1);
        g.sample_size(10).measurement_time(Duration::from_secs(60));
        g.bench_function("offline 27-run design, from scratch", |b| {
            b.iter(|| {
                HybridModel::fit_runs(HybridConfig::default(), black_box(&runs)).expect("fit")
            })
        });
    } else {
        eprintln!(
            "retrain/offline 27-run design: skipped (minutes per fit; set PERFUSIO_BENCH_OFFLINE=1)"
        );
    }
    g.finish();
}

fn decide(c: &mut Criterion) {
    let run = design(1, 14, 11);
    let (model, _) = HybridModel::fit_runs(HybridConfig::online(), &run).expect("fit");
    let rows = run[0].0.rows();
    let measured: Vec<_> = rows.iter().map(|r| r.species).collect();
    let controls: Vec<_> = rows.iter().map(|r| r.controls).collect();
    let est = model
        .filter_sequence(0, &measured, &controls)
        .expect("filter");
    let state = est.last().expect("estimate").clone();
    let current = *controls.last().expect("controls");
    let rc = RunConfig::default();
    let space = DEFAULT_AMBR250_DESIGN_SPACE;
    let policy = BedPolicy::new(
        space.clone(),
        vec![Box::new(Harvest::new(0.0).expect("objective"))],
        PolicyConfig {
            acquisition: Acquisition::LogEI,
            horizon_days: rc.decision_horizon_days,
            raw_samples: rc.raw_samples as usize,
            restarts: rc.optimizer_restarts as usize,
            mc_samples: rc.mc_samples as usize,
            seed: 6,
            threads: 2,
            ..PolicyConfig::new(&space)
        },
    )
    .expect("policy");
    let mut g = c.benchmark_group("decide");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function("LogEI, 512 raw x 10 restarts, online 14-day model", |b| {
        b.iter(|| {
            policy
                .decide(&model, black_box(&state), &current)
                .expect("decide")
        })
    });
    g.finish();
}

criterion_group!(benches, retrain, decide);
criterion_main!(benches);
