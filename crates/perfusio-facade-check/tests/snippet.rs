//! Runs the facade snippet on a temporary `my_data.csv` (the first days of the T06
//! culture file) in a scratch working directory.

use perfusio_twin::layers::audit::{VerifyOptions, read_verified, verify_file};

#[test]
fn the_facade_snippet_runs_on_a_csv_and_writes_a_verifiable_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let culture = include_str!("../../../examples/data/t06_culture.csv");
    // the header and days 0..=4: the data end before the 14 days of the run
    let head: Vec<&str> = culture.lines().take(6).collect();
    std::fs::write(dir.path().join("my_data.csv"), head.join("\n") + "\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_facade"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("data ended on day 4"), "{stdout}");
    // the default audit log is audit.jsonl in the working directory
    let audit = dir.path().join("audit.jsonl");
    verify_file(&audit, &VerifyOptions::default()).unwrap();
    let (_, records) = read_verified(&audit).unwrap();
    let count = |kind: &str| records.iter().filter(|r| r.kind == kind).count();
    assert_eq!(count("run_started"), 1);
    assert_eq!(count("sample_read"), 5);
    // writing is off by default: every recommendation is withheld
    assert_eq!(count("decision"), count("setpoint_withheld"));
    assert_eq!(count("setpoint_written"), 0);
    assert_eq!(count("run_finished"), 1);
}
