//! End-to-end tests of the `perfusio` binary.

use crate::perfusio;

#[test]
fn design_space_table_lists_controls_and_bounds() {
    let (code, out, _) = perfusio(&["design-space"]);
    assert_eq!(code, 0);
    assert!(out.contains("agitation"), "{out}");
    assert!(out.contains("[700, 1050]"), "{out}");
    assert!(out.contains("Titer"), "{out}");
    assert!(out.contains("vcv_target    = 30 %"), "{out}");
}

#[test]
fn design_space_toml_round_trips_through_file() {
    let (code, toml, _) = perfusio(&["design-space", "--format", "toml"]);
    assert_eq!(code, 0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ds.toml");
    std::fs::write(
        &path,
        toml.replace("vcv_target = 30.0", "vcv_target = 25.0"),
    )
    .unwrap();
    let (code, out, err) = perfusio(&["design-space", "--file", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("vcv_target    = 25 %"), "{out}");
}

#[test]
fn config_check_accepts_valid_and_rejects_invalid_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "acquisition = \"logei\"\nseed = 3\n").unwrap();
    let (code, out, _) = perfusio(&["config", "check", good.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("acquisition = \"LogEI\""), "{out}");
    assert!(out.contains("seed = 3"), "{out}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "retrain_every = 0\n").unwrap();
    let (code, out, err) = perfusio(&["config", "check", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: in "), "{err}");
    assert!(
        err.contains("retrain_every = 0: the model would never be retrained"),
        "{err}"
    );

    let (code, _, err) = perfusio(&["config", "check", "/nonexistent/x.toml"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot read /nonexistent/x.toml"), "{err}");
}

#[test]
fn usage_errors_exit_2() {
    let (code, _, err) = perfusio(&["no-such-command"]);
    assert_eq!(code, 2);
    assert!(err.contains("unrecognized subcommand"), "{err}");
}
