//! End-to-end tests of `perfusio recommend` (issue 11).

use perfusio_core::{Control, DEFAULT_AMBR250_DESIGN_SPACE as DS};
use perfusio_hybrid::{HybridConfig, HybridModel};
use perfusio_mechanistic::{CloneKind, VirtualReactorConfig, doe};

use crate::perfusio;

/// An online model (one 28-day CloneY run) saved as JSON, and a 15-day history written by
/// `perfusio simulate` (species only: the controls default).
fn fixture(dir: &std::path::Path) -> (String, String) {
    let cfg = VirtualReactorConfig {
        clone: CloneKind::CloneY,
        seed: 11,
        ..VirtualReactorConfig::default()
    };
    let run = doe::simulate_design(&doe::training_design()[..1], &cfg, 28)
        .unwrap()
        .remove(0);
    let (model, _) = HybridModel::fit_runs(HybridConfig::online(), &[(run, None)]).unwrap();
    let model_path = dir.join("model.json");
    model.save(&model_path).unwrap();
    let history = dir.join("run.csv");
    let (code, csv, err) = perfusio(&[
        "simulate", "--clone", "CloneY", "--days", "14", "--out", "-",
    ]);
    assert_eq!(code, 0, "{err}");
    std::fs::write(&history, csv).unwrap();
    (
        model_path.display().to_string(),
        history.display().to_string(),
    )
}

/// `perfusio recommend --model MODEL --history HISTORY` with `extra` options.
fn recommend(model: &str, history: &str, extra: &[&str]) -> (i32, String, String) {
    let mut a = vec!["recommend", "--model", model, "--history", history];
    a.extend_from_slice(extra);
    perfusio(&a)
}

#[test]
fn recommend_prints_one_decision_as_json_and_text() {
    let dir = tempfile::tempdir().unwrap();
    let (model, history) = fixture(dir.path());
    let (code, out, err) = recommend(
        &model,
        &history,
        &["--objective", "harvest", "--medium-cost", "10", "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["day"], 14);
    assert_eq!(v["acquisition"], "LogEI");
    assert_eq!(v["objective"], "harvest (medium cost 10)");
    let mut u = [0.0; 6];
    for c in Control::ALL {
        u[c.index()] = v["setpoints"][c.name()].as_f64().unwrap();
        let held = v["current"][c.name()].as_f64().unwrap();
        assert!((held - DS.clamp(&Control::defaults())[c.index()]).abs() < 1e-12);
    }
    assert!(DS.check_setpoints(&u).is_empty(), "{u:?}");
    assert!(u[Control::BleedRate.index()] <= u[Control::PerfusionRate.index()]);
    let p = v["probability_feasible"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p));
    assert!(v["reason"].as_str().unwrap().starts_with("LogEI: "));
    assert!(v["recommended"]["mean"].as_f64().unwrap().is_finite());
    assert!(v["holding"]["sd"].as_f64().unwrap() >= 0.0);
    let f = v["forecast"].as_array().unwrap();
    assert_eq!(f.len(), 3);
    assert_eq!(f[0]["day"], 15);
    assert!(f[2]["q05"]["Titer"].as_f64().unwrap() <= f[2]["q95"]["Titer"].as_f64().unwrap());
    assert_eq!(v["restarts"].as_array().unwrap().len(), 10);
    assert!(v["elapsed_ms"].as_f64().unwrap() > 0.0);

    // the same decision as text; another objective and acquisition
    let (code, out, err) = recommend(
        &model,
        &history,
        &["--objective", "track:VCV=10", "--acquisition", "qLogEI"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("day 14: qLogEI: "), "{out}");
    assert!(out.contains("perfusion_rate"), "{out}");

    // a longer horizon, and one cut at the run's last day
    let days_ahead = |extra: &[&str]| -> Vec<u64> {
        let mut a = vec!["--objective", "final-titer", "--json"];
        a.extend_from_slice(extra);
        let (code, out, err) = recommend(&model, &history, &a);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["forecast"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["day"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(days_ahead(&["--horizon", "5"]), [15, 16, 17, 18, 19]);
    assert_eq!(days_ahead(&["--horizon", "5", "--end-day", "16"]), [15, 16]);
}

#[test]
fn recommend_errors_name_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let (model, history) = fixture(dir.path());
    for (flag, value, want) in [
        ("--objective", "titer", "error: --objective titer: "),
        ("--acquisition", "qEHVI", "error: --acquisition qEHVI: "),
        (
            "--medium-cost",
            "cheap",
            "error: --medium-cost cheap: not a valid number",
        ),
        ("--horizon", "0", "error: --horizon 0: "),
        ("--horizon", "29", "error: --horizon 29: "),
        (
            "--end-day",
            "14",
            "error: --end-day 14: the history's last day is 14",
        ),
    ] {
        let (code, _, err) = recommend(&model, &history, &[flag, value]);
        assert_eq!(code, 1, "{flag} {value}");
        assert!(err.starts_with(want), "{err}");
    }
    let (code, _, err) = recommend("nope.json", &history, &[]);
    assert_eq!(code, 1);
    assert!(err.starts_with("error: --model nope.json"), "{err}");
}
