//! `perfusio run`: the closed loop on the virtual reactor, its summary JSON, and `kill -9`
//! followed by `--resume` giving the same result as no crash.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use perfusio_core::RunConfig;
use serde_json::Value;

use crate::perfusio;

const KEYS: [&str; 16] = [
    "run_id",
    "days_completed",
    "objective",
    "objective_value",
    "harvest_mg_per_l",
    "medium_l_per_l",
    "setpoints",
    "min_viability",
    "decisions",
    "written",
    "withheld",
    "alarms",
    "retrains",
    "audit_head",
    "seconds",
    "true_states",
];

/// A quick run configuration file (fewer candidates and paths than the defaults).
fn quick_toml(dir: &Path) -> String {
    let cfg = RunConfig {
        duration_days: 6,
        forecast_horizon_days: 7,
        decision_horizon_days: 3,
        mc_samples: 32,
        raw_samples: 64,
        optimizer_restarts: 2,
        ..RunConfig::default()
    };
    let path = dir.join("run.toml");
    std::fs::write(&path, cfg.to_toml_string().unwrap()).unwrap();
    path.to_str().unwrap().to_string()
}

fn args<'a>(config: &'a str, audit: &'a str, summary: &'a str) -> Vec<&'a str> {
    vec![
        "run",
        "--connector",
        "virtual",
        "--truth",
        "CloneY",
        "--prior",
        "CloneX",
        "--config",
        config,
        "--seed",
        "9",
        "--objective",
        "harvest",
        "--medium-cost",
        "20",
        "--allow-write",
        "--audit",
        audit,
        "--summary-json",
        summary,
    ]
}

fn summary(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn run_kill_9_and_resume_ends_like_a_run_without_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let config = quick_toml(dir.path());
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let (a_audit, a_sum, b_audit, b_sum) = (p("a.jsonl"), p("a.json"), p("b.jsonl"), p("b.json"));

    // without a crash
    let (code, out, err) = perfusio(&args(&config, &a_audit, &a_sum));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("completed on day 6"), "{out}");
    let a = summary(Path::new(&a_sum));
    let obj = a.as_object().unwrap();
    for k in KEYS {
        assert!(obj.contains_key(k), "summary lacks {k}: {a}");
    }
    assert_eq!(obj.len(), 16, "exactly the summary keys: {a}");
    assert_eq!(a["days_completed"], 6);
    assert_eq!(a["decisions"], 6);
    assert_eq!(a["written"], 6);
    assert_eq!(a["withheld"], 0);
    assert_eq!(a["retrains"], 1);
    assert_eq!(a["objective"], "harvest (medium cost 20)");
    assert_eq!(a["setpoints"].as_array().unwrap().len(), 6);
    assert_eq!(a["true_states"].as_array().unwrap().len(), 7);
    assert_eq!(a["setpoints"][0]["day"], 0);
    assert!(a["setpoints"][0]["perfusion_rate"].is_f64());
    assert!(a["true_states"][6]["Titer"].as_f64().unwrap() > 0.0);

    killed_and_resumed_ends_like(&a, &args(&config, &b_audit, &b_sum), &b_audit, &b_sum, 3);
}

/// Runs `run_args` (writing `audit` and `summary`), kills it (SIGKILL) in the middle of day
/// `kill_day`, after its forecast, resumes it and checks that it ends like `uninterrupted`
/// (the summary of the same run without a crash) and that its audit log verifies.
fn killed_and_resumed_ends_like(
    uninterrupted: &Value,
    run_args: &[&str],
    audit: &str,
    summary_path: &str,
    kill_day: u32,
) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_perfusio"))
        .args(run_args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let marker = format!("\"day\":{kill_day}.0,");
    let t0 = Instant::now();
    loop {
        let text = std::fs::read_to_string(audit).unwrap_or_default();
        if text
            .lines()
            .any(|l| l.contains("\"kind\":\"forecast\"") && l.contains(&marker))
        {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(50),
            "day {kill_day} never came"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let text = std::fs::read_to_string(audit).unwrap();
    assert!(
        !text.contains("run_finished"),
        "the run ended before the kill"
    );

    let mut resume = run_args.to_vec();
    resume.push("--resume");
    let (code, out, err) = perfusio(&resume);
    assert_eq!(code, 0, "{out}\n{err}");
    let a = uninterrupted;
    let b = summary(Path::new(summary_path));
    // the same setpoints, plant states and objective, from day 0
    assert_eq!(a["setpoints"], b["setpoints"]);
    assert_eq!(a["true_states"], b["true_states"]);
    assert_eq!(a["objective_value"], b["objective_value"]);
    assert_eq!(b["days_completed"], a["days_completed"]);
    let (code, out, err) = perfusio(&["audit", "verify", audit]);
    assert_eq!(code, 0, "{out}\n{err}");
}

#[test]
fn run_calibrates_the_named_parameters_online_from_the_prior_and_resumes_alike() {
    let dir = tempfile::tempdir().unwrap();
    // 14 days: the kill on day 11 leaves three days of work, so the run cannot end before
    // the test has read the day-11 forecast and killed it (12 days lost that race under load)
    let cfg = RunConfig {
        duration_days: 14,
        retrain_every: 1,
        forecast_horizon_days: 3,
        decision_horizon_days: 3,
        mc_samples: 16,
        raw_samples: 32,
        optimizer_restarts: 1,
        ..RunConfig::default()
    };
    let config = dir.path().join("run.toml");
    std::fs::write(&config, cfg.to_toml_string().unwrap()).unwrap();
    let audit = dir.path().join("audit.jsonl");
    let summary = dir.path().join("s.json");
    let mut a = args(
        config.to_str().unwrap(),
        audit.to_str().unwrap(),
        summary.to_str().unwrap(),
    );
    a.extend(["--calibrate", "mu_max"]);
    let (code, out, err) = perfusio(&a);
    assert_eq!(code, 0, "{out}\n{err}");
    // retrains from day 3; the one of day 10 has 10 one-day transitions and calibrates
    // μ_max from the prior (with a standard error); before it the mechanism is the prior's
    // (no calibrated parameters), after it every retrain names the value in force
    let text = std::fs::read_to_string(&audit).unwrap();
    let retrains: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["kind"] == "model_retrained")
        .collect();
    assert!(!retrains.is_empty());
    for r in &retrains {
        let mu = &r["payload"]["calibrated"]["mu_max"];
        let day = r["day"].as_f64().unwrap();
        if day < 10.0 {
            assert!(mu.is_null(), "day {day}: {r}");
        } else {
            let v = mu["value"].as_f64().unwrap();
            assert!(v > 0.0 && (v / 0.04 - 1.0).abs() > 1e-6, "day {day}: {mu}");
        }
        if r["day"] == 10.0 {
            assert!(mu["std_error"].as_f64().unwrap() > 0.0, "day {day}: {mu}");
        }
    }
    assert!(
        retrains.iter().any(|r| r["day"] == 10.0),
        "no retrain on day 10"
    );
    // killed on day 11, after the calibration, and resumed: the replayed retrains calibrate
    // alike (their model hashes are checked against the log) and the run ends the same
    let (b_audit, b_sum) = (dir.path().join("b.jsonl"), dir.path().join("b.json"));
    let (b_audit, b_sum) = (b_audit.to_str().unwrap(), b_sum.to_str().unwrap());
    let mut b = args(config.to_str().unwrap(), b_audit, b_sum);
    b.extend(["--calibrate", "mu_max"]);
    killed_and_resumed_ends_like(&self::summary(&summary), &b, b_audit, b_sum, 11);
    // names are checked before the run starts; a pre-trained model keeps its own mechanism
    let (code, _, err) = perfusio(&["run", "--connector", "virtual", "--calibrate", "mumax"]);
    assert_eq!(code, 1);
    assert!(err.contains("valid names: mu_max"), "{err}");
    let (code, _, err) = perfusio(&[
        "run",
        "--connector",
        "virtual",
        "--calibrate",
        "mu_max",
        "--model",
        "m.json",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot be used with"), "{err}");
    // species weights belong to a calibration
    let (code, _, err) = perfusio(&["run", "--connector", "virtual", "--species-weights"]);
    assert_eq!(code, 2);
    assert!(err.contains("--calibrate"), "{err}");
}

#[test]
fn run_rejects_an_unknown_connector() {
    let (code, _, err) = perfusio(&["run", "--connector", "serial:/dev/ttyS0"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("expected file:PATH, virtual or opcua:URL"),
        "{err}"
    );
}

/// A reader that stops after the first line (`perfusio run … | head -1`) neither panics
/// the run nor cuts it short: the run completes and its audit log verifies.
#[test]
fn run_survives_a_reader_that_closes_the_pipe() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let config = quick_toml(dir.path());
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let (audit, sum) = (p("a.jsonl"), p("a.json"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_perfusio"))
        .args(args(&config, &audit, &sum))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    let stdout = child.stdout.take().unwrap();
    BufReader::new(stdout).read_line(&mut first).unwrap();
    // the reader is dropped here: every later line meets a closed pipe
    assert!(!first.is_empty());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(summary(Path::new(&sum))["days_completed"], 6);
    let (code, out, err) = perfusio(&["audit", "verify", &audit]);
    assert_eq!(code, 0, "{out}\n{err}");
}
