//! End-to-end tests of `perfusio simulate`.

use crate::perfusio;

/// Parses the CSV into the header and rows of optional numbers.
fn parse(csv: &str) -> (Vec<String>, Vec<Vec<Option<f64>>>) {
    let mut lines = csv.lines();
    let header = lines.next().unwrap().split(',').map(String::from).collect();
    let rows = lines
        .map(|l| {
            l.split(',')
                .map(|f| {
                    if f.is_empty() {
                        None
                    } else {
                        Some(f.parse().unwrap())
                    }
                })
                .collect()
        })
        .collect();
    (header, rows)
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

#[test]
fn clean_28_day_run_prints_29_rows_matching_the_reference() {
    let (code, out, err) = perfusio(&[
        "simulate", "--clone", "CloneX", "--days", "28", "--noise", "off", "--out", "-",
    ]);
    assert_eq!(code, 0, "{err}");
    let (header, rows) = parse(&out);
    assert_eq!(
        header.join(","),
        "day,VCD,Via,Glc,Gln,Glu,Lac,Amm,Pyr,Titer,VCV,Diam"
    );
    assert_eq!(rows.len(), 29);
    assert!(
        rows.iter()
            .all(|r| r.len() == 12 && r.iter().all(Option::is_some))
    );
    let d14 = &rows[14];
    assert_eq!(d14[0], Some(14.0));
    let v = |i: usize| d14[i].unwrap();
    assert!(rel(v(1), 10.0) < 0.01, "VCD {}", v(1));
    assert!(rel(v(4), 0.55) < 0.01, "Gln {}", v(4));
    assert!(rel(v(9), 436.0) < 0.01, "Titer {}", v(9));
    assert!((v(3) - 0.07).abs() <= 0.005, "Glc {}", v(3));
    assert!((v(7) - 2.9).abs() <= 0.05, "Amm {}", v(7));
    // VCV ≈ 0.45 % per 1e6 cells/mL at ~20.6 µm
    assert!(rel(v(10), perfusio_vcv(v(1), v(2))) < 1e-9);
}

fn perfusio_vcv(vcd: f64, via: f64) -> f64 {
    let d = 20.5 + 4.0 * (1.0 - via / 100.0);
    vcd * 1e6 * std::f64::consts::PI / 6.0 * d.powi(3) * 1e-12 * 100.0
}

#[test]
fn high_operating_point_matches_the_reference() {
    let (code, out, err) = perfusio(&[
        "simulate",
        "--days",
        "14",
        "--noise",
        "off",
        "--set",
        "perfusion_rate=2.0",
        "--set",
        "bleed_rate=0.10",
        "--set",
        "glucose_setpoint=8",
        "--set",
        "pyruvate_feed=2",
    ]);
    assert_eq!(code, 0, "{err}");
    let (_, rows) = parse(&out);
    assert_eq!(rows.len(), 15);
    assert!(rel(rows[14][1].unwrap(), 26.0) < 0.01);
    assert!(rel(rows[14][9].unwrap(), 560.0) < 0.01);
}

#[test]
fn init_override_changes_day_zero() {
    let (code, out, err) = perfusio(&[
        "simulate",
        "--days",
        "1",
        "--noise",
        "off",
        "--init",
        "VCD=2.5",
        "--init",
        "lactate=4",
    ]);
    assert_eq!(code, 0, "{err}");
    let (_, rows) = parse(&out);
    assert_eq!(rows[0][1], Some(2.5));
    assert_eq!(rows[0][6], Some(4.0));
}

#[test]
fn noise_is_seeded_and_has_missing_values() {
    let a = perfusio(&["simulate", "--seed", "3"]);
    let b = perfusio(&["simulate", "--seed", "3"]);
    let c = perfusio(&["simulate", "--seed", "4"]);
    assert_eq!(a.0, 0);
    assert_eq!(a.1, b.1);
    assert_ne!(a.1, c.1);
    let (_, rows) = parse(&a.1);
    assert_eq!(rows.len(), 29);
    let missing = rows.iter().flatten().filter(|v| v.is_none()).count();
    // 29 × 11 values at 5 %: about 16 missing
    assert!((3..=40).contains(&missing), "{missing}");
}

#[test]
fn box_behnken_design_writes_one_file_per_run_and_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("runs");
    let (code, out, err) = perfusio(&[
        "simulate",
        "--design",
        "box-behnken",
        "--days",
        "5",
        "--set",
        "agitation=900",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.is_empty());
    let mut files: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files.len(), 28);
    assert_eq!(files[0], "design.csv");
    assert_eq!(files[27], "run-027.csv");
    let summary = std::fs::read_to_string(out_dir.join("design.csv")).unwrap();
    let lines: Vec<_> = summary.lines().collect();
    assert_eq!(
        lines[0],
        "run,perfusion_rate,bleed_rate,glucose_setpoint,temperature,agitation,pyruvate_feed"
    );
    assert_eq!(lines.len(), 28);
    assert!(lines[1..].iter().all(|l| l.contains(",900,")), "{summary}");
    let run = std::fs::read_to_string(out_dir.join("run-001.csv")).unwrap();
    assert_eq!(run.lines().count(), 7);
}

#[test]
fn lhs_design_respects_runs_and_fixed_controls() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = perfusio(&[
        "simulate",
        "--design",
        "lhs",
        "--runs",
        "4",
        "--days",
        "2",
        "--set",
        "temperature=36",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let summary = std::fs::read_to_string(dir.path().join("design.csv")).unwrap();
    let rows: Vec<Vec<f64>> = summary
        .lines()
        .skip(1)
        .map(|l| l.split(',').skip(1).map(|f| f.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 4);
    for r in &rows {
        assert!((r[3] - 36.0).abs() < 1e-12);
        assert!((0.5..=2.0).contains(&r[0]) && (700.0..=1050.0).contains(&r[4]));
    }
    assert!(dir.path().join("run-004.csv").exists());
}

#[test]
fn invalid_input_gives_one_line_error_and_non_zero_exit() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--set", "agitation=1200"],
            "error: invalid setpoints: agitation = 1200 rpm is above 1050",
        ),
        (
            &["--set", "speed=3"],
            "error: --set speed=3: unknown control 'speed'",
        ),
        (
            &["--set", "perfusion_rate=0.5", "--set", "bleed_rate=0.8"],
            "exceeds perfusion_rate",
        ),
        (
            &["--init", "VCD=abc"],
            "error: --init VCD=abc: 'abc' is not a number",
        ),
        (
            &["--init", "Via=120"],
            "error: --init Via=120: Via must lie in [0, 100] %",
        ),
        (
            &["--days", "0"],
            "error: --days 0: must be between 1 and 365",
        ),
        (&["--days", "x"], "error: --days x: not a valid number"),
        (&["--clone", "Z"], "valid clones: CloneX, CloneY"),
        (&["--noise", "maybe"], "error: --noise maybe: use on or off"),
        (&["--design", "box-behnken"], "give a directory"),
        (
            &["--design", "taguchi"],
            "error: --design taguchi: use box-behnken or lhs",
        ),
        (
            &["--runs", "3"],
            "error: --runs applies to --design lhs only",
        ),
    ];
    for (args, expected) in cases {
        let mut full = vec!["simulate"];
        full.extend_from_slice(args);
        let (code, out, err) = perfusio(&full);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(!err.contains("panicked"));
    }
    // an unwritable output directory is an error too
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, "x").unwrap();
    let (code, _, err) = perfusio(&["simulate", "--days", "1", "--out", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.starts_with("error: cannot create"), "{err}");
}
