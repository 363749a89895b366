//! The evaluation pipeline, small: every entry is scored, bad settings are refused by name.

use perfusio_hybrid::evaluate::{
    CALIBRATED_MODEL_NAMES, EvalConfig, MODEL_NAMES, TRANSFER_CALIBRATED_MODEL_NAMES,
    TRANSFER_MODEL_NAMES, TrainDesign, TransferConfig, evaluate,
};
use perfusio_hybrid::{ForecastMethod, HybridError};
use perfusio_mechanistic::{CloneKind, PlantSpec};

fn small() -> EvalConfig {
    EvalConfig {
        truth: PlantSpec::preset(CloneKind::CloneY),
        prior: PlantSpec::preset(CloneKind::CloneX),
        train: TrainDesign::Lhs(4),
        test_runs: 1,
        days: 10,
        horizons: vec![1, 3],
        paths: 16,
        method: ForecastMethod::MomentMatching,
        transfer: Some(TransferConfig {
            source: PlantSpec::preset(CloneKind::CloneX),
            target_runs: 2,
            target_days: 4,
        }),
        ..EvalConfig::default()
    }
}

#[test]
fn a_transfer_evaluation_scores_the_joint_and_both_single_line_models() {
    let mut stages = Vec::new();
    let report = evaluate(&small(), &mut |s| stages.push(s.to_string())).unwrap();
    assert!(
        stages.iter().any(|s| s.contains("days 0-4 of 2 runs")),
        "{stages:?}"
    );
    let json = report.to_json();
    for name in MODEL_NAMES.iter().chain(&TRANSFER_MODEL_NAMES) {
        for h in ["1", "3"] {
            let v = &json["models"][*name][h]["rrmse"]["mean"];
            let r = v.as_f64().unwrap_or(f64::NAN);
            assert!(r.is_finite() && r > 0.0, "{name} h{h}: {v}");
            let c = json["models"][*name][h]["coverage90"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&c), "{name} h{h}: coverage {c}");
        }
    }
}

#[test]
fn with_calibration_the_transfer_models_are_also_scored_with_calibrated_mechanisms() {
    let cfg = EvalConfig {
        calibrate: Some(perfusio_hybrid::CalibrationConfig::default()),
        transfer: Some(TransferConfig {
            source: PlantSpec::preset(CloneKind::CloneX),
            target_runs: 2,
            target_days: 6,
        }),
        ..small()
    };
    let mut stages = Vec::new();
    let report = evaluate(&cfg, &mut |s| stages.push(s.to_string())).unwrap();
    // the joint model calibrated each line on its own runs (2 × 6 target transitions)
    for line in ["source", "target"] {
        assert!(
            stages
                .iter()
                .any(|s| s.starts_with(&format!("line {line}:\ncalibration: "))),
            "{stages:?}"
        );
    }
    assert!(
        stages
            .iter()
            .any(|s| s.starts_with("line target:\ncalibration: 12 transitions")),
        "{stages:?}"
    );
    let json = report.to_json();
    for name in MODEL_NAMES
        .iter()
        .chain(&CALIBRATED_MODEL_NAMES)
        .chain(&TRANSFER_MODEL_NAMES)
        .chain(&TRANSFER_CALIBRATED_MODEL_NAMES)
    {
        let r = json["models"][*name]["3"]["rrmse"]["mean"]
            .as_f64()
            .unwrap_or(f64::NAN);
        assert!(r.is_finite() && r > 0.0, "{name}: {r}");
    }
}

#[test]
fn transfer_settings_out_of_range_are_refused_by_option_name() {
    for (runs, days, option) in [
        (0, 4, "--transfer-runs"),
        (2, 1, "--transfer-days"),
        (2, 11, "--transfer-days"),
    ] {
        let cfg = EvalConfig {
            transfer: Some(TransferConfig {
                source: PlantSpec::preset(CloneKind::CloneX),
                target_runs: runs,
                target_days: days,
            }),
            ..small()
        };
        match cfg.check() {
            Err(HybridError::Config(m)) => assert!(m.starts_with(option), "{m}"),
            other => panic!("expected a config error for {option}, got {other:?}"),
        }
    }
}
