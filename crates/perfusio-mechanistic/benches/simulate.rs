//! Benchmarks of the plant model: one clean 28-day run, and the 27-run noisy training design.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use perfusio_core::Control;
use perfusio_mechanistic::{KineticParams, PlantModel, VirtualReactorConfig, doe, initial_state};

fn bench_clean_run(c: &mut Criterion) {
    let model = PlantModel::new(KineticParams::clone_x());
    let y0 = initial_state();
    let controls = vec![Control::defaults(); 28];
    c.bench_function("clean_28_day_run", |b| {
        b.iter(|| model.simulate(black_box(&y0), black_box(&controls)))
    });
    c.bench_function("one_day_step", |b| {
        let c0 = Control::defaults();
        b.iter(|| model.step(black_box(&y0), black_box(&c0), 24.0))
    });
}

fn bench_design(c: &mut Criterion) {
    let design = doe::training_design();
    let config = VirtualReactorConfig {
        seed: 7,
        ..VirtualReactorConfig::default()
    };
    c.bench_function("noisy_27_run_design_28_days", |b| {
        b.iter(|| doe::simulate_design(black_box(&design), black_box(&config), 28))
    });
}

criterion_group!(benches, bench_clean_run, bench_design);
criterion_main!(benches);
