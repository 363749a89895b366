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
