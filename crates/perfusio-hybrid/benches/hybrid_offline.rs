//! Benchmarks of the offline hybrid model: training on the 27-run Box–Behnken design
//! (6 804 rows, converged), and 28-day forecasts on the trained model.
//!
//! `cargo bench -p perfusio-hybrid --bench hybrid_offline`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use perfusio_core::Trajectory;
use perfusio_hybrid::{HybridConfig, HybridModel};
use perfusio_mechanistic::{CloneKind, KineticParams};

#[path = "hybrid.rs"]
#[allow(dead_code)]
mod online;

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("hybrid offline");
    g.sample_size(10).measurement_time(Duration::from_secs(30));
    let runs27 = online::design(CloneKind::CloneY, 27, 1);
    g.bench_function("offline fit, 27-run design (6 804 rows)", |b| {
        b.iter(|| HybridModel::fit_runs(HybridConfig::default(), black_box(&runs27)).expect("fit"))
    });
    // as `perfusio train` fits: agitation and medium pyruvate, which the design holds, left
    // out of the GP's inputs
    let as_train = HybridConfig::for_design(KineticParams::clone_x(), "CloneX");
    g.bench_function(
        "offline fit, 27-run design, unvaried controls left out",
        |b| b.iter(|| HybridModel::fit_runs(as_train.clone(), black_box(&runs27)).expect("fit")),
    );
    let (trained, rep) = HybridModel::fit_runs(as_train.clone(), &runs27).expect("fit");
    assert!(rep.converged, "the offline fit must converge: {rep:?}");
    // as `perfusio evaluate` fits its `hybrid` entry: no calibration, so the mechanism's
    // one-day sd is matched to the runs first
    let as_evaluate = HybridConfig {
        calibrate: None,
        ..as_train
    };
    g.bench_function(
        "offline fit, 27-run design, matched sd, no calibration",
        |b| b.iter(|| HybridModel::fit_runs(as_evaluate.clone(), black_box(&runs27)).expect("fit")),
    );
    let (_, rep) = HybridModel::fit_runs(as_evaluate.clone(), &runs27).expect("fit");
    assert!(rep.converged, "the offline fit must converge: {rep:?}");
    let mut unfitted = HybridModel::new(as_evaluate).expect("model");
    unfitted.add_runs(&runs27).expect("runs");
    g.bench_function("match the mechanism's sd, 27-run design", |b| {
        b.iter(|| unfitted.clone().match_mechanism_sd().expect("match"))
    });
    let (offline, rep) = HybridModel::fit_runs(HybridConfig::default(), &runs27).expect("fit");
    assert!(rep.converged, "the offline fit must converge: {rep:?}");
    let run: &Trajectory = &online::design(CloneKind::CloneY, 1, 11)[0].0;
    let measured: Vec<_> = run.rows().iter().map(|r| r.species).collect();
    let controls: Vec<_> = run.rows().iter().map(|r| r.controls).collect();
    online::forecasts(&mut g, "offline", &offline, &measured, &controls);
    // the model `perfusio train` writes (calibrated, unvaried controls left out, fitted
    // mechanism weights, independent species)
    online::forecasts(
        &mut g,
        "offline as train fits",
        &trained,
        &measured,
        &controls,
    );
    g.finish();
}

criterion_group!(hybrid_offline, benches);
criterion_main!(hybrid_offline);
