//! Process variance: the GP's fitted noise above the measurement noise model.

use perfusio_core::{Species, Trajectory};
use perfusio_hybrid::{GpSettings, HybridConfig, HybridModel};
use perfusio_mechanistic::{CloneKind, NoiseModel, VirtualReactorConfig, doe};

fn config() -> HybridConfig {
    HybridConfig {
        gp: GpSettings {
            process_noise: true,
            ..GpSettings::default()
        },
        ..HybridConfig::default()
    }
}

fn runs(cv_scale: f64) -> Vec<(Trajectory, Option<String>)> {
    let mut noise = NoiseModel::default();
    for c in &mut noise.cv {
        *c *= cv_scale;
    }
    noise.missing_prob = 0.0;
    let cfg = VirtualReactorConfig {
        clone: CloneKind::CloneX,
        noise,
        seed: 21,
        ..VirtualReactorConfig::default()
    };
    doe::simulate_design(&doe::training_design()[..6], &cfg, 21)
        .unwrap()
        .into_iter()
        .map(|t| (t, None))
        .collect()
}

/// Titer (CV 8 %, well above its log offset after the first days): `var_z ≈ cv²`.
#[test]
fn noise_above_the_measurement_model_becomes_process_variance() {
    let k = Species::Titer.index();
    // samples noisier than the model's measurement noise: twice the CV
    let (noisy, _) = HybridModel::fit_runs(config(), &runs(2.0)).unwrap();
    let excess = noisy.process_variance()[k];
    let cv = NoiseModel::default().cv[k];
    let want = (2.0 * cv).powi(2) - cv.powi(2); // 0.0192
    assert!(
        (0.5 * want..=2.0 * want).contains(&excess),
        "titer process variance {excess} vs expected about {want}"
    );
    // samples exactly as noisy as the model says: little left over
    let (matched, _) = HybridModel::fit_runs(config(), &runs(1.0)).unwrap();
    let left = matched.process_variance()[k];
    assert!(
        left < 0.25 * want,
        "titer process variance {left} with matched noise"
    );
    // a constant task (pyruvate without feed) claims none
    let pyr = matched.process_variance()[Species::Pyr.index()];
    assert!(pyr < 1e-10, "pyruvate process variance {pyr}");
    // off by default
    let (off, _) = HybridModel::fit_runs(HybridConfig::default(), &runs(2.0)).unwrap();
    assert!(off.process_variance().iter().all(|v| v.to_bits() == 0));
}
