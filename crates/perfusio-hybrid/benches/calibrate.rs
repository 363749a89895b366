//! Benchmarks of the mechanism's calibration (issue 13): the offline calibration on the
//! 27-run Box–Behnken design (all rounds, state estimation included; target < 5 s) and one
//! warm-started online re-calibration on a single run's data (target < 200 ms).
//!
//! Data: clone X with μ_max ×1.3, q_glc,max ×0.8, q_gln,max ×1.2, K_d ×0.8, β_P ×1.3, the
//! ambr250 noise (seed 1), 28 days; prior clone X; default calibration settings.
//!
//! Medians on the 2-core machine with nothing else running: offline 1.86 s (4 rounds, 40
//! residual evaluations; target < 5 s), online 4.86 ms (target < 200 ms). An earlier
//! measurement while another evaluation ran on the machine gave 13.4 s and 40 ms.
//!
//! `cargo bench -p perfusio-hybrid --bench calibrate`

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use perfusio_core::Trajectory;
use perfusio_hybrid::{CalibrationConfig, Calibrator, Dataset, HybridConfig, HybridModel};
use perfusio_mechanistic::{KineticParams, VirtualReactorConfig, doe};

fn perturbed() -> KineticParams {
    let mut p = KineticParams::clone_x();
    p.mu_max *= 1.3;
    p.q_glc_max *= 0.8;
    p.q_gln_max *= 1.2;
    p.k_d *= 0.8;
    p.beta_p *= 1.3;
    p
}

fn runs(n: usize, days: u32) -> Vec<Trajectory> {
    let cfg = VirtualReactorConfig {
        params: Some(perturbed()),
        seed: 1,
        ..VirtualReactorConfig::default()
    };
    doe::simulate_design(&doe::training_design()[..n], &cfg, days).expect("simulation")
}

fn model(runs: &[Trajectory]) -> HybridModel {
    let mut d = Dataset::default();
    for t in runs {
        d.add_trajectory(t, None).expect("data");
    }
    HybridModel::with_dataset(HybridConfig::default(), d).expect("model")
}

/// A model over the days `0..=last` of one run.
fn model_upto(run: &Trajectory, last: u32) -> HybridModel {
    let mut d = Dataset::default();
    for row in run.rows().iter().filter(|r| r.day <= last) {
        d.record_day(&run.run_id, None, row.day, row.species)
            .expect("data");
        d.record_applied(&run.run_id, row.day, row.controls)
            .expect("data");
    }
    HybridModel::with_dataset(HybridConfig::default(), d).expect("model")
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("calibration");
    g.sample_size(10).measurement_time(Duration::from_secs(60));
    let design = model(&runs(27, 28));
    g.bench_function(
        "offline calibration, 27-run design (756 transitions)",
        |b| {
            b.iter_batched(
                || design.clone(),
                |mut m| m.calibrate_offline().expect("calibration"),
                BatchSize::LargeInput,
            )
        },
    );

    // the same with the SIMEX correction of the input noise (4 refits per level)
    let mut simex = design.clone();
    let mut cfg = simex.config().clone();
    cfg.calibrate = Some(CalibrationConfig {
        simex_replicates: 4,
        ..CalibrationConfig::default()
    });
    simex = HybridModel::with_dataset(cfg, simex.dataset().clone()).expect("model");
    g.bench_function(
        "offline calibration with SIMEX (4 refits per level), 27-run design",
        |b| {
            b.iter_batched(
                || simex.clone(),
                |mut m| m.calibrate_offline().expect("calibration"),
                BatchSize::LargeInput,
            )
        },
    );

    // online: one run, calibrated on its first 20 days, re-calibrated on 21 warm-started
    let run = &runs(1, 28)[0];
    let mut m = model_upto(run, 20);
    m.calibrate_offline()
        .expect("calibration")
        .expect("enough data");
    let current = *m.mechanism_params();
    let mut day21 = model_upto(run, 21);
    day21.estimate_states().expect("states");
    let cfg = HybridConfig::default();
    let cal = Calibrator::new(&cfg, &CalibrationConfig::default()).expect("calibrator");
    let data = day21.calibration_data();
    g.measurement_time(Duration::from_secs(10));
    g.bench_function(
        "online re-calibration, one run, 21 transitions, warm",
        |b| {
            b.iter(|| {
                cal.run(black_box(&data), black_box(&current), true)
                    .expect("calibration")
            })
        },
    );
    g.finish();
}

criterion_group!(calibration, benches);
criterion_main!(calibration);
