//! `perfusio emulate`: starts, listens on loopback, refuses bad arguments.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn emulate_listens_on_loopback_until_killed() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_perfusio"))
        .args([
            "emulate",
            "--port",
            "0",
            "--reactors",
            "2",
            "--seconds-per-day",
            "60",
        ])
        .arg("--pki-dir")
        .arg(dir.path().join("pki"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("opc.tcp://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no endpoint in {first:?}"))
        .to_string();
    assert!(
        first.starts_with("ambr250 emulator: 2 reactors (R01, R02) at "),
        "{first}"
    );
    let port: u16 = url
        .trim_start_matches("opc.tcp://127.0.0.1:")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).is_ok());
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn emulate_refuses_too_many_reactors() {
    let out = Command::new(env!("CARGO_BIN_EXE_perfusio"))
        .args(["emulate", "--port", "0", "--reactors", "25"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--reactors 25 is out of range: give 1 to 24"),
        "{err}"
    );
}
