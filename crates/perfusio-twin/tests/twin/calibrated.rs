//! A twin over a pre-trained, calibrated model: every `model_retrained` record names the
//! kinetic parameters in force, with standard errors when the retraining re-calibrated.

use perfusio_audit::event::ModelRetrained;
use perfusio_hybrid::{CalibrationConfig, HybridConfig, HybridModel};
use perfusio_mechanistic::{VirtualReactorConfig, doe};
use perfusio_twin::prelude::*;

use crate::common::{quick_config, records, virtual_reactor};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_retrained_records_name_the_calibrated_parameters() {
    let config = HybridConfig {
        calibrate: Some(CalibrationConfig {
            every_retrains: 1,
            ..CalibrationConfig::default()
        }),
        ..HybridConfig::default()
    };
    let runs: Vec<_> = doe::simulate_design(
        &doe::training_design()[..4],
        &VirtualReactorConfig::default(),
        10,
    )
    .unwrap()
    .into_iter()
    .map(|t| (t, None))
    .collect();
    let (model, fit) = HybridModel::fit_runs(config, &runs).unwrap();
    assert!(model.is_calibrated(), "{:?}", fit.calibration_skipped);
    assert_eq!(fit.calibrated.len(), 5);

    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let cfg = RunConfig {
        retrain_every: 2,
        ..quick_config(5, 3)
    };
    let report = DigitalTwin::builder(virtual_reactor(9), DEFAULT_AMBR250_DESIGN_SPACE, cfg)
        .model(model)
        .audit_path(&audit)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(report.completed, "{}", report.reason);
    let retrained: Vec<ModelRetrained> = records(&audit)
        .iter()
        .filter(|r| r.kind == "model_retrained")
        .map(|r| r.payload_as().unwrap())
        .collect();
    assert_eq!(retrained.len(), 2); // days 2 and 4
    for r in &retrained {
        let names: Vec<&str> = r.calibrated.keys().map(String::as_str).collect();
        assert_eq!(names, ["beta_p", "k_d", "mu_max", "q_glc_max", "q_gln_max"]);
        for (name, p) in &r.calibrated {
            assert!(p.value.is_finite() && p.value > 0.0, "{name}: {p:?}");
            // every retraining re-calibrated (K = 1): each estimate has its standard error
            assert!(p.std_error.is_some_and(f64::is_finite), "{name}: {p:?}");
        }
    }
}
