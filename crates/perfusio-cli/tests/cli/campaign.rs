//! `perfusio campaign run|report`, `perfusio approve|edit|reject`, `perfusio intervene`.

use crate::perfusio;

const TOML: &str = r#"
name = "cli"
output_dir = "out"
seed = 5
objective = "harvest"
medium_cost = 400.0

[approval]
mode = "auto"

[run]
duration_days = 2
retrain_every = 2
forecast_horizon_days = 4
decision_horizon_days = 3
mc_samples = 32
raw_samples = 64
optimizer_restarts = 2
allow_write = true

[[reactors]]
id = "R01"
connector = { kind = "virtual", truth = "CloneY", seed = 1 }

[[reactors]]
id = "R02"
connector = { kind = "virtual", truth = "CloneY", seed = 2 }
"#;

#[test]
fn a_campaign_runs_reports_and_takes_operator_actions_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("campaign.toml");
    std::fs::write(&cfg, TOML).unwrap();
    let out = dir.path().join("out");
    let (code, stdout, stderr) = perfusio(&["campaign", "run", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("campaign cli: 2 reactors"), "{stdout}");
    assert!(stdout.contains("day   0: 2 sampled, "), "{stdout}");
    assert!(stdout.contains("day   2: 2 sampled"), "{stdout}");
    assert!(stdout.contains("best operating point"), "{stdout}");
    for r in ["R01", "R02"] {
        let log = out.join(r).join("audit.jsonl");
        let (code, stdout, stderr) = perfusio(&["audit", "verify", log.to_str().unwrap()]);
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.starts_with("OK "), "{stdout}");
    }
    // a completed campaign cannot be resumed: refused with the reason, nothing written
    let (code, _, stderr) = perfusio(&["campaign", "run", cfg.to_str().unwrap(), "--resume"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("already completed"), "{stderr}");
    // the report, as text and JSON
    let d = out.to_str().unwrap();
    let (code, text, stderr) = perfusio(&["campaign", "report", d]);
    assert_eq!(code, 0, "{stderr}");
    assert!(text.contains("harvest (medium cost 400)"), "{text}");
    assert!(text.contains("rRMSE"), "{text}");
    let (code, json, _) = perfusio(&["campaign", "report", d, "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["reactors"].as_array().unwrap().len(), 2);
    // days 0 and 1 end with a write; the last day (2) is read and learned from only
    assert_eq!(v["reactors"][0]["days_completed"], 2);
    assert!(
        v["best_point"]["objective_mean"]
            .as_f64()
            .unwrap()
            .is_finite()
    );
    assert!(!v["accuracy"].as_array().unwrap().is_empty());
    // an edit outside the design space is refused at once, with the reason
    let (code, _, stderr) = perfusio(&[
        "edit",
        "--campaign",
        d,
        "--reactor",
        "R01",
        "--day",
        "3",
        "--actor",
        "ana",
        "perfusion_rate=50",
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("design space"), "{stderr}");
    // an unknown reactor is refused, naming the campaign's reactors
    let (code, _, stderr) =
        perfusio(&["approve", "--campaign", d, "--reactor", "R09", "--day", "3"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("R01, R02"), "{stderr}");
    // an action's command line: VERB --campaign DIR --reactor R --day D [ARGS…]
    let act =
        |verb: &'static str, reactor: &'static str, day: &'static str, args: &[&'static str]| {
            let mut v = vec![verb, "--campaign", d, "--reactor", reactor, "--day", day];
            v.extend_from_slice(args);
            v
        };
    // accepted actions are appended for the campaign to answer
    let ok = [
        act("approve", "R01", "3", &["--actor", "ana"]),
        act("edit", "R02", "3", &["--actor", "ana", "temperature=36"]),
        act("reject", "R02", "4", &["--reason", "foam"]),
        act("intervene", "R01", "3", &["glucose-bolus=5"]),
        act("intervene", "R01", "3", &["media-exchange=0.3"]),
        act(
            "intervene",
            "R01",
            "3",
            &["sample", "glucose=3.5", "lactate=20"],
        ),
        act("intervene", "R01", "3", &["setpoint", "agitation=900"]),
    ];
    for args in &ok {
        let (code, stdout, stderr) = perfusio(args);
        assert_eq!(code, 0, "{args:?}: {stderr}");
        // the campaign above has finished: the operator is told that nothing will answer
        assert!(stderr.contains("has finished (completed)"), "{stderr}");
        assert!(stdout.contains("recorded for"), "{stdout}");
    }
    let actions = perfusio_twin::campaign_files::read_actions(&out).unwrap();
    assert_eq!(actions.len(), ok.len());
    assert_eq!(actions[0].actor, "ana");
    assert!(matches!(
        actions[3].kind,
        perfusio_twin::campaign_files::ActionKind::GlucoseBolus { mmol_per_l } if (mmol_per_l - 5.0).abs() < 1e-12
    ));
    let bad = [
        act("intervene", "R01", "3", &["media-exchange=1.5"]),
        act("intervene", "R01", "3", &["glucose-bolus=500"]),
        act("intervene", "R01", "3", &["sample", "sugar=1"]),
        act("intervene", "R01", "3", &["setpoint", "temperature=90"]),
        act("intervene", "R01", "3", &["feed=2"]),
        act("approve", "R01", "3", &["temperature=36"]),
    ];
    for args in &bad {
        let (code, _, stderr) = perfusio(args);
        assert_eq!(code, 1, "{args:?}");
        assert!(!stderr.is_empty());
    }
    assert_eq!(
        perfusio_twin::campaign_files::read_actions(&out)
            .unwrap()
            .len(),
        ok.len()
    );
}

#[test]
fn an_unknown_field_in_the_campaign_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("campaign.toml");
    std::fs::write(
        &cfg,
        TOML.replace("seed = 5", "seed = 5\nreactor_count = 2"),
    )
    .unwrap();
    let (code, _, stderr) = perfusio(&["campaign", "run", cfg.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("reactor_count"), "{stderr}");
    assert!(!dir.path().join("out").exists());
}
