//! Benchmarks of the online hybrid model (one 28-day run, the twin's own data): retraining
//! from scratch and warm, `predict_next_state`, one filter update, 28-day forecasts (Monte
//! Carlo with 256 paths and moment matching). The offline model's benches are in
//! `hybrid_offline` (they start with a fit on the 27-run design).
//!
//! `cargo bench -p perfusio-hybrid --bench hybrid`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use perfusio_core::{Control, Trajectory};
use perfusio_hybrid::{ForecastMethod, ForecastOptions, HybridConfig, HybridModel};
use perfusio_mechanistic::{CloneKind, VirtualReactorConfig, doe};

pub(crate) fn design(truth: CloneKind, n: usize, seed: u64) -> Vec<(Trajectory, Option<String>)> {
    let cfg = VirtualReactorConfig {
        clone: truth,
        seed,
        ..VirtualReactorConfig::default()
    };
    doe::simulate_design(&doe::training_design()[..n], &cfg, 28)
        .expect("simulation")
        .into_iter()
        .map(|t| (t, None))
        .collect()
}

/// An online model: one 28-day run (the twin's own data).
fn online() -> (HybridModel, Trajectory) {
    let runs = design(CloneKind::CloneY, 1, 11);
    let (m, _) = HybridModel::fit_runs(HybridConfig::online(), &runs).expect("fit");
    (m, runs[0].0.clone())
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("hybrid");
    g.sample_size(10).measurement_time(Duration::from_secs(5));

    let one = design(CloneKind::CloneY, 1, 11);
    g.bench_function("online retrain 28 days, from scratch", |b| {
        b.iter(|| HybridModel::fit_runs(HybridConfig::online(), black_box(&one)).expect("fit"))
    });
    let (model, run) = online();
    g.bench_function("online retrain 28 days, warm", |b| {
        b.iter_batched(
            || model.clone(),
            |mut m| m.retrain(true).expect("retrain"),
            criterion::BatchSize::SmallInput,
        )
    });
    let state = [8.0, 97.0, 2.0, 1.5, 1.0, 12.0, 2.5, 0.0, 250.0];
    g.bench_function("predict_next_state (online model)", |b| {
        b.iter(|| {
            model
                .predict_next_state(black_box(&state), &Control::defaults(), 14)
                .expect("predict")
        })
    });
    let measured: Vec<_> = run.rows().iter().map(|r| r.species).collect();
    let controls: Vec<_> = run.rows().iter().map(|r| r.controls).collect();
    let est = model
        .filter_sequence(0, &measured[..15], &controls[..15])
        .expect("filter");
    g.bench_function("filter update (predict + update, online model)", |b| {
        b.iter(|| {
            let p = model
                .filter_predict(black_box(&est[13]), &controls[13])
                .expect("predict");
            model
                .filter_update(Some(p), 14, &measured[14])
                .expect("update")
        })
    });
    forecasts(&mut g, "online", &model, &measured, &controls);
    g.finish();
}

/// 28-day forecasts from day 7 of `measured` at the default controls.
pub(crate) fn forecasts(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    m: &HybridModel,
    measured: &[perfusio_core::SpeciesArray<Option<f64>>],
    controls: &[perfusio_core::ControlArray<f64>],
) {
    let schedule = vec![Control::defaults(); 28];
    let est = m
        .filter_sequence(0, &measured[..8], &controls[..8])
        .expect("filter");
    let start = est.last().expect("estimate").clone();
    g.bench_function(format!("forecast 28 d, MC 256 paths ({name} model)"), |b| {
        b.iter(|| {
            m.forecast(black_box(&start), &schedule, &ForecastOptions::default())
                .expect("forecast")
        })
    });
    let mm = ForecastOptions {
        method: ForecastMethod::MomentMatching,
        ..ForecastOptions::default()
    };
    g.bench_function(
        format!("forecast 28 d, moment matching ({name} model)"),
        |b| {
            b.iter(|| {
                m.forecast(black_box(&start), &schedule, &mm)
                    .expect("forecast")
            })
        },
    );
}

criterion_group!(hybrid, benches);
criterion_main!(hybrid);
