//! Controls the training data never varied, left out of the GP's kernel.

use perfusio_core::{Control, N_CONTROLS, N_SPECIES};
use perfusio_hybrid::{GpSettings, HybridConfig, HybridModel};
use perfusio_mechanistic::CloneKind;

use crate::common::{defaults, unlabelled_design};

fn fitted(ignore: bool) -> HybridModel {
    let config = HybridConfig {
        calibrate: None,
        gp: GpSettings {
            ignore_unvaried_controls: ignore,
            ..GpSettings::default()
        },
        ..HybridConfig::default()
    };
    let runs = unlabelled_design(4, 14, CloneKind::CloneY, 5);
    HybridModel::fit_runs(config, &runs).unwrap().0
}

/// The first four runs of the training design vary perfusion and bleed and hold the glucose
/// setpoint, temperature, agitation and medium pyruvate: those four leave the kernel (their
/// input columns are 0 in every GP row) while the mechanism's prediction, also a GP input,
/// still sees their real values. The choice travels in the model file; a model without it
/// writes no such field.
#[test]
fn controls_the_design_never_varied_act_through_the_mechanism_only() {
    let on = fitted(true);
    let off = fitted(false);
    let mut want = [true; N_CONTROLS];
    want[Control::PerfusionRate.index()] = false;
    want[Control::BleedRate.index()] = false;
    assert_eq!(on.ignored_controls(), want);
    assert_eq!(off.ignored_controls(), [false; N_CONTROLS]);

    let tr = on.config().transform;
    let z = tr.to_z(&[8.0, 96.0, 3.0, 2.0, 1.0, 12.0, 3.0, 1.0, 300.0]);
    let mut u = defaults();
    u[Control::Agitation.index()] = 600.0;
    u[Control::PyruvateFeed.index()] = 3.0;
    let x = HybridModel::z_input(&z, &u, 8);
    let (a, b) = (on.gp_input(&x).unwrap(), off.gp_input(&x).unwrap());
    assert_eq!(a.len(), b.len());
    for (j, (p, q)) in a.iter().zip(&b).enumerate() {
        match j.checked_sub(N_SPECIES).filter(|c| *c < N_CONTROLS) {
            Some(c) if want[c] => {
                assert_eq!(p.to_bits(), 0f64.to_bits(), "GP input column {j}");
                assert_eq!(q.to_bits(), x[j].to_bits(), "GP input column {j}");
            }
            _ => assert_eq!(p.to_bits(), q.to_bits(), "GP input column {j}"),
        }
    }
    // predictions still respond to the two controls, through the mechanism
    let at = |m: &HybridModel, u| m.transitions(&[HybridModel::z_input(&z, &u, 8)]).unwrap();
    let (p0, p1) = (at(&on, defaults())[0].mean, at(&on, u)[0].mean);
    let pyr = perfusio_core::Species::Pyr.index();
    assert!(
        p1[pyr] > p0[pyr] + 0.5,
        "pyruvate in z: {} vs {}",
        p1[pyr],
        p0[pyr]
    );

    let loaded = HybridModel::from_json(&on.to_json().unwrap()).unwrap();
    assert_eq!(loaded.ignored_controls(), want);
    assert_eq!(loaded.fingerprint(), on.fingerprint());
    assert_ne!(on.fingerprint(), off.fingerprint());
    let text = off.to_json().unwrap();
    assert!(!text.contains("ignored_controls") && !text.contains("ignore_unvaried_controls"));
    assert!(!text.contains("centre_residuals"));
}
