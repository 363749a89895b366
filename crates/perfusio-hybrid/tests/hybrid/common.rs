//! Shared fixtures: simulated runs and small trained models.

use perfusio_core::{Control, ControlArray, SpeciesArray, Trajectory};
use perfusio_hybrid::{HybridConfig, HybridModel};
use perfusio_mechanistic::{
    CloneKind, KineticParams, NoiseModel, VirtualReactor, VirtualReactorConfig, doe,
};

/// Noisy runs of the training design (first `n` runs), `days` days, truth `truth`.
pub(crate) fn design_runs(n: usize, days: u32, truth: CloneKind, seed: u64) -> Vec<Trajectory> {
    let cfg = VirtualReactorConfig {
        clone: truth,
        seed,
        ..VirtualReactorConfig::default()
    };
    doe::simulate_design(&doe::training_design()[..n], &cfg, days).unwrap()
}

/// [`design_runs`] without cell-line labels, as `HybridModel::fit_runs` takes them.
pub(crate) fn unlabelled_design(
    n: usize,
    days: u32,
    truth: CloneKind,
    seed: u64,
) -> Vec<(Trajectory, Option<String>)> {
    design_runs(n, days, truth, seed)
        .into_iter()
        .map(|t| (t, None))
        .collect()
}

/// A hybrid model (prior clone X) trained on `n` design runs of clone `truth`.
pub(crate) fn trained(n: usize, truth: CloneKind) -> HybridModel {
    let runs = unlabelled_design(n, 28, truth, 5);
    let (m, report) = HybridModel::fit_runs(HybridConfig::default(), &runs).unwrap();
    assert!(report.rows > 0);
    m
}

/// One run at constant controls: noisy samples, clean states and the controls.
pub(crate) struct Run {
    pub(crate) measured: Vec<SpeciesArray<Option<f64>>>,
    pub(crate) truth: Vec<SpeciesArray<f64>>,
    pub(crate) controls: Vec<ControlArray<f64>>,
}

pub(crate) fn run(
    params: KineticParams,
    controls: ControlArray<f64>,
    days: u32,
    seed: u64,
    noise: NoiseModel,
) -> Run {
    let mut r = VirtualReactor::new(VirtualReactorConfig {
        params: Some(params),
        setpoints: controls,
        noise,
        seed,
        ..VirtualReactorConfig::default()
    })
    .unwrap();
    r.advance_to(days).unwrap();
    let ds = perfusio_core::DEFAULT_AMBR250_DESIGN_SPACE;
    Run {
        measured: (0..=days)
            .map(|d| r.sample(d).unwrap().validate(&ds).sample.species)
            .collect(),
        truth: (0..=days).map(|d| r.clean_state_on(d).unwrap()).collect(),
        controls: vec![controls; days as usize],
    }
}

pub(crate) fn defaults() -> ControlArray<f64> {
    Control::defaults()
}
