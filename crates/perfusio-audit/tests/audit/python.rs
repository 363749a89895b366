//! Independent check: `docs/verify_audit.py` (Python standard library only) verifies logs
//! written by the Rust writer, and Python's float formatting agrees with the canonical rule.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use perfusio_audit::canonical::canonical_string;

use crate::common::{join, lines, one_of_each, write_demo, write_events};

/// `python3` if it runs. Otherwise the calling test is skipped, and says so on the terminal
/// (written to the process's stderr directly, which the test harness does not capture), or
/// fails when `PERFUSIO_REQUIRE_PYTHON` is set (for CI machines that have Python).
fn python(test: &str) -> Option<&'static str> {
    let ok = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some("python3");
    }
    assert!(
        std::env::var_os("PERFUSIO_REQUIRE_PYTHON").is_none(),
        "{test}: python3 is not installed but PERFUSIO_REQUIRE_PYTHON is set"
    );
    let _ = writeln!(
        std::io::stderr().lock(),
        "SKIPPED {test}: python3 is not installed, so the independent Python check did not run"
    );
    None
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/verify_audit.py")
}

fn run(py: &str, args: &[&Path]) -> (bool, String) {
    let out = Command::new(py).arg(script()).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn python_script_verifies_rust_logs_and_detects_tampering() {
    let Some(py) = python("python_script_verifies_rust_logs_and_detects_tampering") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (path, receipts) = write_demo(dir.path(), "a.jsonl", 400, 50);
    let head = receipts.last().unwrap().hash.clone();
    let (ok, out) = run(py, &[&path]);
    assert!(ok, "{out}");
    assert_eq!(out.trim(), format!("OK 400 records, head hash {head}"));
    let (ok, out) = run(py, &[&path, Path::new(&head)]);
    assert!(ok, "{out}");

    let mut ls = lines(&path);
    ls.remove(99);
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, join(&ls)).unwrap();
    let (ok, out) = run(py, &[&bad]);
    assert!(!ok);
    assert!(out.starts_with("record 100:"), "{out}");
}

/// Deterministic SplitMix64 stream of finite doubles with widely spread exponents.
fn doubles(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let x = match out.len() % 3 {
            0 => f64::from_bits(z),
            1 => (z >> 11) as f64 / (1u64 << 40) as f64, // ordinary magnitudes
            _ => ((z % 2_000_000) as f64 - 1e6) * 10f64.powi(i32::try_from(z % 40).unwrap() - 20),
        };
        if x.is_finite() {
            out.push(x);
        }
    }
    out
}

#[test]
fn python_and_rust_write_floats_identically() {
    let Some(py) = python("python_and_rust_write_floats_identically") else {
        return;
    };
    let mut xs = vec![
        0.1,
        1e-7,
        123456789.0,
        5e-324,
        1.0,
        -0.0,
        0.0,
        1e16,
        1e15,
        1e-4,
        1e-5,
        2.5e-5,
        f64::MAX,
        f64::MIN_POSITIVE,
    ];
    xs.extend(doubles(20_000, 60));
    let v = serde_json::Value::Array(xs.iter().map(|x| serde_json::Value::from(*x)).collect());
    let rust = canonical_string(&v);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("floats.json");
    std::fs::write(&input, &rust).unwrap();
    let code = "import json,sys; d=json.load(open(sys.argv[1])); \
                sys.stdout.write(json.dumps(d, sort_keys=True, separators=(',',':'), ensure_ascii=False, allow_nan=False))";
    let out = Command::new(py)
        .args(["-c", code])
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let python = String::from_utf8(out.stdout).unwrap();
    if python != rust {
        let (a, b): (Vec<&str>, Vec<&str>) =
            (rust.split(',').collect(), python.split(',').collect());
        let i = a.iter().zip(&b).position(|(x, y)| x != y).unwrap_or(0);
        panic!(
            "first difference at element {i}: Rust {} vs Python {}",
            a[i], b[i]
        );
    }
    // And every written number reads back as the same double.
    let back: Vec<f64> = serde_json::from_str(&rust).unwrap();
    assert!(
        back.iter()
            .zip(&xs)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
}

#[test]
fn python_script_verifies_a_log_of_every_payload() {
    let Some(py) = python("python_script_verifies_a_log_of_every_payload") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = write_events(dir.path(), "every.jsonl", &one_of_each());
    let head = perfusio_audit::verify_file(&path, &perfusio_audit::VerifyOptions::default())
        .unwrap()
        .head;
    let (ok, out) = run(py, &[&path, Path::new(&head)]);
    assert!(ok, "{out}");
    assert_eq!(out.trim(), format!("OK 15 records, head hash {head}"));
    // A changed receipt status is caught by the Python verifier too.
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = text.replacen(r#""status":"rejected""#, r#""status":"confirmed""#, 1);
    assert_ne!(edited, text);
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, edited).unwrap();
    let (ok, out) = run(py, &[&bad]);
    assert!(!ok);
    assert_eq!(out.trim(), "record 9: content does not match its hash");
}
