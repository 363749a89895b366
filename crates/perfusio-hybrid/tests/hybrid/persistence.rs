//! Save/load round trips.

use perfusio_core::N_SPECIES;
use perfusio_hybrid::{ForecastMethod, ForecastOptions, HybridModel, StateEstimate};
use perfusio_mechanistic::CloneKind;

use crate::common::{defaults, trained};

#[test]
fn a_loaded_model_predicts_bit_identically() {
    let model = trained(4, CloneKind::CloneY);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.json");
    model.save(&path).unwrap();
    let loaded = HybridModel::load(&path).unwrap();
    assert_eq!(loaded.fingerprint(), model.fingerprint());
    let tr = model.config().transform;
    let start = StateEstimate::known(6, &[5.0, 97.0, 3.0, 2.0, 1.0, 9.0, 2.0, 0.0, 120.0], &tr);
    for method in [ForecastMethod::MonteCarlo, ForecastMethod::MomentMatching] {
        let o = ForecastOptions {
            method,
            paths: 64,
            seed: 3,
            ..ForecastOptions::default()
        };
        let a = model.forecast(&start, &vec![defaults(); 7], &o).unwrap();
        let b = loaded.forecast(&start, &vec![defaults(); 7], &o).unwrap();
        for (x, y) in a.state.iter().zip(&b.state) {
            for k in 0..N_SPECIES {
                assert_eq!(x.mean[k].to_bits(), y.mean[k].to_bits());
                assert_eq!(x.quantiles[0][k].to_bits(), y.quantiles[0][k].to_bits());
            }
        }
    }
    let p = model
        .predict_next_state(
            &[5.0, 97.0, 3.0, 2.0, 1.0, 9.0, 2.0, 0.0, 120.0],
            &defaults(),
            6,
        )
        .unwrap();
    let q = loaded
        .predict_next_state(
            &[5.0, 97.0, 3.0, 2.0, 1.0, 9.0, 2.0, 0.0, 120.0],
            &defaults(),
            6,
        )
        .unwrap();
    assert_eq!(p, q);
}
