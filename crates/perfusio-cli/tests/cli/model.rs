//! End-to-end tests of `perfusio train`, `perfusio forecast` and `perfusio simulate --params`.

use std::path::Path;

use crate::perfusio;

/// `(day, column values)` of a CSV written by `perfusio simulate` (header skipped).
fn rows(csv: &str) -> Vec<Vec<f64>> {
    csv.lines()
        .skip(1)
        .map(|l| {
            l.split(',')
                .map(|f| f.parse().unwrap_or(f64::NAN))
                .collect()
        })
        .collect()
}

fn simulate(extra: &[&str]) -> String {
    let mut args = vec!["simulate", "--noise", "off", "--out", "-"];
    args.extend_from_slice(extra);
    let (code, out, err) = perfusio(&args);
    assert_eq!(code, 0, "{err}");
    out
}

#[test]
fn simulate_params_file_sets_the_plant_and_rejects_bad_fields() {
    let dir = tempfile::tempdir().unwrap();
    let same = dir.path().join("same.toml");
    std::fs::write(&same, "clone = \"CloneX\"\n").unwrap();
    let slow = dir.path().join("slow.toml");
    std::fs::write(&slow, "clone = \"CloneX\"\nmu_max = 0.02\n").unwrap();
    let base = simulate(&["--clone", "CloneX", "--days", "7"]);
    // a plant file with no overrides is the preset, byte for byte
    assert_eq!(
        simulate(&["--params", same.to_str().unwrap(), "--days", "7"]),
        base
    );
    // a lower maximum growth rate gives fewer cells on day 7
    let vcd7 = |csv: &str| rows(csv)[7][1];
    let slow_out = simulate(&["--params", slow.to_str().unwrap(), "--days", "7"]);
    assert!(
        vcd7(&slow_out) < 0.9 * vcd7(&base),
        "VCD day 7: {} vs {}",
        vcd7(&slow_out),
        vcd7(&base)
    );
    for (text, name) in [
        ("clone = \"CloneX\"\nmu_maxx = 0.03\n", "mu_maxx"),
        ("clone = \"CloneX\"\nmu_max = -1.0\n", "mu_max"),
    ] {
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, text).unwrap();
        let (code, _, err) = perfusio(&["simulate", "--params", bad.to_str().unwrap()]);
        assert_eq!(code, 1, "{err}");
        assert!(
            err.starts_with("error: --params") && err.contains(name),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

/// Keeps the header and days `0..=last` of a culture CSV.
fn truncate_days(csv: &str, last: usize) -> String {
    csv.lines()
        .take(last + 2)
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn train_on_a_design_then_forecast_a_held_out_run() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let model = dir.path().join("model.json");
    let (code, _, err) = perfusio(&[
        "simulate",
        "--design",
        "lhs",
        "--runs",
        "5",
        "--days",
        "12",
        "--noise",
        "off",
        "--seed",
        "3",
        "--out",
        runs.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = perfusio(&[
        "train",
        "--runs",
        runs.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("read 5 runs (65 days"), "{err}");
    assert!(err.contains(" converged"), "fit must converge: {err}");
    // the Latin hypercube moves every control: none is left out of the GP's inputs
    assert!(!err.contains("left out of the GP's inputs"), "{err}");
    assert!(model.exists());

    // held-out run at controls inside the design space: history days 0..=5, truth 6..=8
    let controls = ["perfusion_rate=1.4", "bleed_rate=0.15"];
    let mut sim = vec!["--clone", "CloneX", "--days", "8"];
    for c in controls {
        sim.extend(["--set", c]);
    }
    let full = simulate(&sim);
    let truth = rows(&full);
    let history = dir.path().join("history.csv");
    std::fs::write(&history, truncate_days(&full, 5)).unwrap();
    let out = dir.path().join("fc");
    let mut args = vec![
        "forecast",
        "--model",
        model.to_str().unwrap(),
        "--history",
        history.to_str().unwrap(),
        "--days",
        "3",
        "--out",
        out.to_str().unwrap(),
    ];
    for c in controls {
        args.extend(["--controls", c]);
    }
    let (code, _, err) = perfusio(&args);
    assert_eq!(code, 0, "{err}");
    let csv = std::fs::read_to_string(out.join("forecast.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("day,species,mean,q05,q10,q50,q90,q95"));
    let body: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(body.len(), 3 * 9);
    let species = [
        "VCD", "Via", "Glc", "Gln", "Glu", "Lac", "Amm", "Pyr", "Titer",
    ];
    for r in &body {
        let v: Vec<f64> = r[2..].iter().map(|x| x.parse().unwrap()).collect();
        assert!(
            v[1] <= v[2] && v[2] <= v[3] && v[3] <= v[4] && v[4] <= v[5],
            "{r:?}"
        );
        let day: usize = r[0].parse().unwrap();
        assert!((6..=8).contains(&day));
        let k = species.iter().position(|s| *s == r[1]).unwrap();
        // VCD and titer within 10 % of the clean truth (column k + 1 of the simulate CSV)
        if matches!(r[1], "VCD" | "Titer") {
            let t = truth[day][k + 1];
            assert!(
                (v[0] - t).abs() / t < 0.10,
                "{} day {day}: {} vs {t}",
                r[1],
                v[0]
            );
        }
    }
    for s in species {
        let svg = std::fs::read_to_string(out.join(format!("{s}.svg"))).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("<polygon"), "{s}");
        // the six history days are drawn as points (plus the legend's one)
        assert_eq!(svg.matches("<circle").count(), 6 + 1, "{s}");
    }
}

#[test]
fn train_and_forecast_reject_bad_input_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    std::fs::create_dir_all(p("empty")).unwrap();
    let missing = p("nope.json");
    let hist = p("h.csv");
    std::fs::write(&hist, "day,VCD\n0,1.0\n").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "train".into(),
                "--runs".into(),
                p("empty"),
                "--out".into(),
                p("m.json"),
            ],
            "no run CSV files",
        ),
        (
            vec![
                "train".into(),
                "--runs".into(),
                p("absent"),
                "--out".into(),
                p("m.json"),
            ],
            "--runs",
        ),
        (
            vec![
                "forecast".into(),
                "--model".into(),
                missing.clone(),
                "--history".into(),
                hist.clone(),
                "--out".into(),
                p("o"),
            ],
            "--model",
        ),
        (
            vec![
                "forecast".into(),
                "--model".into(),
                missing,
                "--history".into(),
                hist,
                "--days".into(),
                "0".into(),
                "--out".into(),
                p("o"),
            ],
            "--days 0",
        ),
    ];
    for (args, needle) in cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, _, err) = perfusio(&a);
        assert_eq!(code, 1, "{a:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(needle),
            "{a:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{a:?}: {err}");
    }
    assert!(!Path::new(&p("m.json")).exists());
}

/// The training design holds agitation and medium pyruvate at their defaults: the trained
/// model leaves them out of the GP's inputs, says so, and keeps the choice in its file.
#[test]
fn train_leaves_the_controls_a_design_never_moves_to_the_mechanism() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let model = dir.path().join("model.json");
    let (code, _, err) = perfusio(&[
        "simulate",
        "--design",
        "box-behnken",
        "--days",
        "3",
        "--noise",
        "off",
        "--out",
        runs.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = perfusio(&[
        "train",
        "--runs",
        runs.to_str().unwrap(),
        "--no-calibrate",
        "--out",
        model.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(
            "constant in every run, left out of the GP's inputs (they act through the \
             mechanism): agitation, pyruvate_feed\n"
        ),
        "{err}"
    );
    let m = perfusio_hybrid::HybridModel::load(&model).unwrap();
    assert_eq!(
        m.ignored_controls(),
        [false, false, false, false, true, true]
    );
    assert!(m.config().gp.ignore_unvaried_controls);
    // uncalibrated, the mechanism's one-day sd is matched to the runs first: noise-free runs
    // of the prior's own plant put every species at the floor
    assert!(
        err.contains("the mechanism's one-day sd in log units, matched to the runs' innovations"),
        "{err}"
    );
    let (lo, _) = perfusio_hybrid::MATCHED_SD_BOUNDS;
    for sd in m.mechanism_sd() {
        assert!((lo..1.02 * lo).contains(&sd), "{:?}", m.mechanism_sd());
    }
    // the mechanism's weight in the GP's prior mean, fitted per species, printed and stored
    let w = m.mechanism_weights().expect("weights in the model file");
    let shown: Vec<String> = perfusio_core::Species::ALL
        .iter()
        .map(|s| format!("{} {:.3}", s.name(), w[s.index()]))
        .collect();
    assert!(
        err.contains(&format!(
            "the fraction of the mechanism's one-day change in the GP's prior mean (1: all of \
             it, 0: tomorrow equals today): {}\n",
            shown.join(", ")
        )),
        "{err}"
    );
}

#[test]
fn train_calibrates_the_named_parameters_and_writes_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let p = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let (code, _, err) = perfusio(&[
        "simulate",
        "--design",
        "lhs",
        "--runs",
        "4",
        "--days",
        "12",
        "--seed",
        "5",
        "--out",
        runs.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let runs = runs.to_str().unwrap();
    let (code, _, err) = perfusio(&[
        "train",
        "--runs",
        runs,
        "--out",
        &p("m.json"),
        "--calibrate",
        "mu_max,K_D",
        "--json",
        &p("fit.json"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("calibration: 48 transitions"), "{err}");
    // a calibrated fit keeps the configured one-day sd (no matching after a calibration)
    assert!(!err.contains("matched to the runs' innovations"), "{err}");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p("fit.json")).unwrap()).unwrap();
    let cal = &doc["fit"]["calibration"];
    let names: Vec<&str> = cal["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["mu_max", "k_d"]);
    assert_eq!(cal["correlation"].as_array().unwrap().len(), 2);
    let calibrated = doc["fit"]["calibrated"].as_object().unwrap();
    assert_eq!(calibrated.len(), 2);
    assert!(calibrated["mu_max"].as_f64().unwrap() > 0.0);

    // the bare flag: the default five; --no-calibrate: none
    let (code, _, err) = perfusio(&[
        "train",
        "--runs",
        runs,
        "--out",
        &p("m2.json"),
        "--calibrate",
        "--json",
        &p("f2.json"),
    ]);
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p("f2.json")).unwrap()).unwrap();
    assert_eq!(doc["fit"]["calibrated"].as_object().unwrap().len(), 5);
    let factors = |doc: &serde_json::Value| -> Vec<f64> {
        doc["fit"]["calibration"]["species_factors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    // weights from the noise model alone: every factor is 1
    assert_eq!(factors(&doc).len(), 9);
    assert!(factors(&doc).iter().all(|f| f.to_bits() == 1f64.to_bits()));
    // --species-weights: each species' factor is its misfit ratio where above 1
    let (code, _, err) = perfusio(&[
        "train",
        "--runs",
        runs,
        "--out",
        &p("m5.json"),
        "--calibrate",
        "--species-weights",
        "--json",
        &p("f5.json"),
    ]);
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p("f5.json")).unwrap()).unwrap();
    let f = factors(&doc);
    assert!(f.iter().all(|v| *v >= 1.0), "{f:?}");
    assert!(f.iter().any(|v| *v > 1.0), "{f:?}");
    assert!(err.contains("species variance factors"), "{err}");
    assert!(doc["fit"]["calibration"]["simex"].is_null());
    // --simex N: the SIMEX correction, reported; out of range: one error line
    let (code, _, err) = perfusio(&[
        "train",
        "--runs",
        runs,
        "--out",
        &p("m7.json"),
        "--calibrate",
        "mu_max",
        "--simex",
        "1",
        "--json",
        &p("f7.json"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("input-noise correction (SIMEX, 1 refits"),
        "{err}"
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p("f7.json")).unwrap()).unwrap();
    let simex = &doc["fit"]["calibration"]["simex"];
    assert_eq!(simex["replicates"], 1);
    assert_eq!(simex["naive"].as_array().unwrap().len(), 1);
    let (code, _, err) = perfusio(&[
        "train",
        "--runs",
        runs,
        "--out",
        &p("m8.json"),
        "--simex",
        "1000",
    ]);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("simex_replicates = 1000"), "{err}");
    // it needs a calibration
    let (code, _, err) = perfusio(&[
        "train",
        "--runs",
        runs,
        "--out",
        &p("m6.json"),
        "--no-calibrate",
        "--species-weights",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("--species-weights"), "{err}");
    let (code, _, err) = perfusio(&["evaluate", "--species-weights"]);
    assert_ne!(code, 0);
    assert!(err.contains("--calibrate"), "{err}");
    let (code, _, err) = perfusio(&[
        "train",
        "--runs",
        runs,
        "--out",
        &p("m3.json"),
        "--no-calibrate",
        "--json",
        &p("f3.json"),
    ]);
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p("f3.json")).unwrap()).unwrap();
    assert!(doc["fit"]["calibration"].is_null());

    // an unknown name: one line naming the valid ones
    let (code, _, err) = perfusio(&[
        "train",
        "--runs",
        runs,
        "--out",
        &p("m4.json"),
        "--calibrate",
        "mu_max,growth",
    ]);
    assert_ne!(code, 0);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("--calibrate mu_max,growth: unknown kinetic parameter \"growth\"; valid names: mu_max, k_glc"),
        "{err}"
    );
}

#[test]
fn train_learns_several_lines_and_extends_a_saved_model_with_another() {
    let dir = tempfile::tempdir().unwrap();
    let sim = |name: &str, clone: &str, seed: &str| {
        let out = dir.path().join(name);
        let (code, _, err) = perfusio(&[
            "simulate",
            "--design",
            "lhs",
            "--runs",
            "3",
            "--days",
            "8",
            "--clone",
            clone,
            "--seed",
            seed,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{err}");
        out
    };
    let (x, y, z) = (
        sim("x", "CloneX", "1"),
        sim("y", "CloneY", "2"),
        sim("z", "CloneY", "3"),
    );
    let model = dir.path().join("xy.json");
    let (code, _, err) = perfusio(&[
        "train",
        "--runs",
        x.to_str().unwrap(),
        "--line",
        "X",
        "--runs",
        y.to_str().unwrap(),
        "--line",
        "Y",
        "--no-calibrate",
        "--out",
        model.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("cell lines (learned embedding): X, Y"),
        "{err}"
    );
    let extended = dir.path().join("xyz.json");
    let (code, _, err) = perfusio(&[
        "train",
        "--extend",
        model.to_str().unwrap(),
        "--runs",
        z.to_str().unwrap(),
        "--line",
        "Z",
        "--json",
        dir.path().join("fit.json").to_str().unwrap(),
        "--out",
        extended.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("cell lines (learned embedding): X, Y, Z"),
        "{err}"
    );
    let fit: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("fit.json")).unwrap())
            .unwrap();
    assert_eq!(fit["fit"]["warm_start"], serde_json::json!(true), "{fit}");
    // a mechanism per line, each calibrated on its own runs
    let per_line = dir.path().join("per-line.json");
    let (code, _, err) = perfusio(&[
        "train",
        "--runs",
        x.to_str().unwrap(),
        "--line",
        "X",
        "--runs",
        y.to_str().unwrap(),
        "--line",
        "Y",
        "--per-line",
        "--json",
        dir.path().join("fit-per-line.json").to_str().unwrap(),
        "--out",
        per_line.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    for line in ["X", "Y"] {
        assert!(
            err.contains(&format!(
                "mechanism of line {line}, calibrated on its runs alone:\ncalibration: 24 transitions"
            )),
            "{err}"
        );
    }
    let fit: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("fit-per-line.json")).unwrap(),
    )
    .unwrap();
    let cals = fit["fit"]["line_calibrations"].as_object().unwrap();
    assert_eq!(cals.keys().collect::<Vec<_>>(), ["X", "Y"], "{fit}");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&per_line).unwrap()).unwrap();
    let params = saved["line_params"].as_object().unwrap();
    assert_eq!(params.keys().collect::<Vec<_>>(), ["X", "Y"]);
    for (line, c) in cals {
        assert_eq!(
            params[line]["mu_max"], c["parameters"][0]["estimate"],
            "line {line}"
        );
    }
    let (code, _, err) = perfusio(&[
        "train",
        "--runs",
        x.to_str().unwrap(),
        "--per-line",
        "--no-calibrate",
        "--out",
        per_line.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--per-line"), "{err}");
    // one --line per --runs, or none
    let (code, _, err) = perfusio(&[
        "train",
        "--runs",
        x.to_str().unwrap(),
        "--runs",
        y.to_str().unwrap(),
        "--line",
        "X",
        "--out",
        model.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.starts_with("error: --line: give one --line per --runs"),
        "{err}"
    );
}
