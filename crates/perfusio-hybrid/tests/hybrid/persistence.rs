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

/// Adopting a fit: on the data it was fitted on, the model predicts as the fit does; with
/// more data, the hyperparameters stay the fit's and the posterior takes the new data in.
#[test]
fn an_adopted_fit_keeps_its_hyperparameters_and_conditions_on_all_the_data() {
    use perfusio_hybrid::HybridModel;
    let fitted = trained(3, CloneKind::CloneY);
    let x0 = [5.0, 97.0, 3.0, 2.0, 1.0, 9.0, 2.0, 0.0, 120.0];
    let same = {
        let mut m = fitted.clone();
        m.adopt_fit(&fitted).unwrap();
        m
    };
    let a = fitted.predict_next_state(&x0, &defaults(), 6).unwrap();
    let b = same.predict_next_state(&x0, &defaults(), 6).unwrap();
    for k in 0..N_SPECIES {
        assert!(
            (a.species[k].mean - b.species[k].mean).abs()
                <= 1e-9 * a.species[k].mean.abs().max(1.0),
            "{k}: {} vs {}",
            a.species[k].mean,
            b.species[k].mean
        );
    }
    // two more runs of the design: the same hyperparameters, more rows, other predictions
    let mut more: HybridModel = fitted.clone();
    let extra: Vec<_> = crate::common::design_runs(5, 28, CloneKind::CloneY, 5)
        .into_iter()
        .skip(3)
        .map(|t| (t, None))
        .collect();
    more.add_runs(&extra).unwrap();
    let report = more.adopt_fit(&fitted).unwrap();
    assert_eq!(
        more.gp().unwrap().hyperparameters(),
        fitted.gp().unwrap().hyperparameters()
    );
    assert!(report.rows > fitted.last_fit().unwrap().rows);
    assert_eq!(report.iterations, fitted.last_fit().unwrap().iterations);
    let c = more.predict_next_state(&x0, &defaults(), 6).unwrap();
    assert!(
        (0..N_SPECIES).any(|k| (c.species[k].mean - a.species[k].mean).abs()
            > 1e-6 * a.species[k].mean.abs().max(1.0))
    );
    // an unfitted model has nothing to adopt
    let fresh = HybridModel::new(perfusio_hybrid::HybridConfig::default()).unwrap();
    assert!(fresh.clone().adopt_fit(&fresh).is_err());
}
