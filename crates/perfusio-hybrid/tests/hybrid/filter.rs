//! The state filter removes measurement noise.

use perfusio_core::{N_SPECIES, Species};
use perfusio_hybrid::{HybridConfig, HybridModel};
use perfusio_mechanistic::{KineticParams, NoiseModel};

use crate::common::{defaults, run};

/// Over 12 seeds of a 21-day run (noise on, 5 % missing), the filtered state is closer to
/// the clean truth than the raw sample, for every species that has noise.
#[test]
fn filtered_state_is_closer_to_the_truth_than_the_raw_sample() {
    let model = HybridModel::new(HybridConfig::default()).unwrap();
    let tr = model.config().transform;
    let mut se_raw = [0.0; N_SPECIES];
    let mut se_filt = [0.0; N_SPECIES];
    let mut n = [0usize; N_SPECIES];
    for seed in 0..12 {
        let r = run(
            KineticParams::clone_x(),
            defaults(),
            21,
            100 + seed,
            NoiseModel::default(),
        );
        let est = model.filter_sequence(0, &r.measured, &r.controls).unwrap();
        for (day, e) in est.iter().enumerate().skip(1) {
            let f = e.mean_species(&tr);
            for k in 0..N_SPECIES {
                if let Some(y) = r.measured[day][k] {
                    let t = r.truth[day][k];
                    se_raw[k] += (y - t).powi(2);
                    se_filt[k] += (f[k] - t).powi(2);
                    n[k] += 1;
                }
            }
        }
    }
    for s in Species::ALL {
        let k = s.index();
        if s == Species::Pyr {
            // no pyruvate in the medium: truth and samples are exactly 0 (no noise)
            continue;
        }
        let raw = (se_raw[k] / n[k] as f64).sqrt();
        let filt = (se_filt[k] / n[k] as f64).sqrt();
        eprintln!(
            "{s}: RMSE raw {raw:.4}, filtered {filt:.4} ({} samples)",
            n[k]
        );
        assert!(
            filt < raw,
            "{s}: filtered {filt} is not closer than raw {raw}"
        );
    }
}

/// A species that is never measured is still estimated, with an sd that reflects it.
#[test]
fn missing_species_are_estimated_with_their_uncertainty() {
    let model = HybridModel::new(HybridConfig::default()).unwrap();
    let tr = model.config().transform;
    let mut r = run(
        KineticParams::clone_x(),
        defaults(),
        10,
        3,
        NoiseModel::default(),
    );
    for m in &mut r.measured {
        m[Species::Amm.index()] = None;
    }
    let est = model.filter_sequence(0, &r.measured, &r.controls).unwrap();
    let last = &est[10];
    let amm = last.mean_species(&tr)[Species::Amm.index()];
    let truth = r.truth[10][Species::Amm.index()];
    let sd = last.sd_z()[Species::Amm.index()];
    assert!(amm > 0.0 && amm.is_finite());
    assert!(!last.measured[Species::Amm.index()]);
    // the mechanism is the truth here: the estimate is within 3 sd (in z) of the truth
    assert!(
        (tr.z(6, amm) - tr.z(6, truth)).abs() < 3.0 * sd,
        "{amm} vs {truth}, sd {sd}"
    );
    assert!(
        sd > last.sd_z()[Species::VCD.index()],
        "unmeasured is less certain"
    );
}
