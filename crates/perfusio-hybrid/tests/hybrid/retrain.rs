//! Retraining with a pause hook (what a campaign's background fit uses).

use std::sync::atomic::{AtomicU64, Ordering};

use perfusio_gp::SolverPath;
use perfusio_mechanistic::CloneKind;

use crate::common::{design_runs, trained};

#[test]
fn a_pausable_retrain_calls_its_hook_and_gives_the_same_model() {
    let mut a = trained(4, CloneKind::CloneY);
    let extra: Vec<_> = design_runs(6, 28, CloneKind::CloneY, 5)[4..]
        .iter()
        .cloned()
        .map(|t| (t, None))
        .collect();
    a.add_runs(&extra).unwrap();
    let mut b = a.clone();
    let plain = a.retrain(true).unwrap();
    let calls = AtomicU64::new(0);
    let count = || {
        calls.fetch_add(1, Ordering::Relaxed);
    };
    let paused = b.retrain_pausable(true, &count).unwrap();
    assert_eq!(a.fingerprint(), b.fingerprint());
    assert_eq!(plain.nlml.to_bits(), paused.nlml.to_bits());
    assert_eq!(plain.evaluations, paused.evaluations);
    // the stages (state estimation, calibration, fit, process variance), each evaluation
    // of the GP's objective (and three points inside it on the Kronecker paths) and its
    // final factorisation (and one point inside it on the Kronecker paths)
    let (per_eval, last) = match b.gp().map(|g| g.path()) {
        Some(SolverPath::Dense) => (1, 1),
        _ => (4, 2),
    };
    assert_eq!(
        calls.load(Ordering::Relaxed),
        per_eval * paused.evaluations + 4 + last,
        "{paused:?}"
    );
}

/// One online run at constant controls, retrained every 3 days warm-started (as the
/// daily-loop example does), of a cell line that grows faster and takes up less glucose
/// than the prior says: the mean glucose residual of its days is that regime's error.
/// Under controls the run has never seen (more perfusion, a richer medium), the centred
/// model carries that offset; the uncentred one stays closer to the mechanism. Near the
/// data the two agree. The setting reaches the GP and travels in the model file.
#[test]
fn uncentred_residuals_return_to_the_mechanism_under_new_controls() {
    use perfusio_core::{Control, Species};
    use perfusio_hybrid::{GpSettings, HybridConfig, HybridModel};
    use perfusio_mechanistic::{KineticParams, NoiseModel};

    use crate::common::{defaults, run};

    let mut truth = KineticParams::clone_x();
    truth.mu_max *= 1.08;
    truth.q_glc_max *= 0.9;
    truth.beta_p *= 1.15;
    let days = 9;
    let r = run(truth, defaults(), days, 3, NoiseModel::default());
    let model = |centre: bool| {
        let config = HybridConfig {
            gp: GpSettings {
                centre_residuals: centre,
                process_noise: true,
                ..GpSettings::default()
            },
            ..HybridConfig::default()
        };
        let mut m = HybridModel::new(config).unwrap();
        for d in 0..=days {
            m.record_day("R1", None, d, r.measured[d as usize]).unwrap();
            m.record_applied("R1", d, defaults()).unwrap();
            if d >= 3 && d % 3 == 0 {
                m.retrain(d > 3).unwrap();
            }
        }
        m
    };
    let (centred, uncentred) = (model(true), model(false));
    let mechanism = HybridModel::new(HybridConfig::default()).unwrap();
    assert!(centred.gp().unwrap().options().centre_targets);
    assert!(!uncentred.gp().unwrap().options().centre_targets);
    let loaded = HybridModel::from_json(&uncentred.to_json().unwrap()).unwrap();
    assert!(!loaded.config().gp.centre_residuals);
    assert_eq!(loaded.fingerprint(), uncentred.fingerprint());

    let state = r.truth[days as usize];
    let g = Species::Glc.index();
    let at = |m: &HybridModel, u| m.predict_next_state(&state, &u, days).unwrap().species[g].mean;
    // measured: centred 2.71, uncentred 1.93, mechanism 1.25 g/L
    let mut new = defaults();
    new[Control::GlucoseSetpoint.index()] = 6.5;
    new[Control::PerfusionRate.index()] = 1.5;
    let (c, u, mech) = (at(&centred, new), at(&uncentred, new), at(&mechanism, new));
    assert!(
        (u - mech).abs() < 0.6 * (c - mech).abs(),
        "glucose under new controls: uncentred {u}, centred {c}, mechanism {mech}"
    );
    // measured: 0.190 and 0.187 g/L (the mechanism 0.070)
    let (c, u) = (at(&centred, defaults()), at(&uncentred, defaults()));
    assert!(
        (u - c).abs() < 0.05 * c,
        "glucose under the run's controls: uncentred {u}, centred {c}"
    );
}

/// The replicated centre points of a noise-free design are identical runs: their rows are
/// fitted once, so the GP stays on its Kronecker path (repeated inputs would send it to the
/// dense one) and trains on exactly the rows of the distinct runs.
#[test]
fn identical_runs_are_fitted_once_and_keep_the_kronecker_path() {
    use perfusio_hybrid::{HybridConfig, HybridModel};
    use perfusio_mechanistic::{NoiseModel, VirtualReactorConfig, doe};
    let cfg = VirtualReactorConfig {
        clone: CloneKind::CloneY,
        noise: NoiseModel::none(),
        ..VirtualReactorConfig::default()
    };
    let design = doe::training_design();
    // run 0 and the three centre points (runs 25-27 of the design)
    let picked = [0, 24, 25, 26].map(|i| design[i]);
    let runs: Vec<_> = doe::simulate_design(&picked, &cfg, 12)
        .unwrap()
        .into_iter()
        .map(|t| (t, None))
        .collect();
    assert_eq!(runs[1].0.rows(), runs[3].0.rows(), "centre points differ");
    let (all, report) = HybridModel::fit_runs(HybridConfig::default(), &runs).unwrap();
    let (distinct, _) = HybridModel::fit_runs(HybridConfig::default(), &runs[..2]).unwrap();
    let (gp_all, gp_distinct) = (all.gp().unwrap(), distinct.gp().unwrap());
    assert_eq!(report.runs, 4);
    assert_eq!(gp_all.n_train(), gp_distinct.n_train());
    assert_eq!(gp_all.n_train(), 2 * 12 * 9);
    assert_ne!(gp_all.path(), SolverPath::Dense);
}
