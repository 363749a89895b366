//! `perfusio dashboard`: hashes a password for the users file, serves a campaign directory on
//! loopback, refuses a non-loopback address without --allow-remote.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use crate::perfusio;

fn hash(stdin: &str, args: &[&str]) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_perfusio"))
        .args(["dashboard", "hash-password"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn hash_password_prints_a_users_file_line_that_logs_in() {
    let (code, out, _) = hash("s3cret pass\n", &["--user", "ana"]);
    assert_eq!(code, 0);
    let line = out.trim();
    assert!(line.starts_with("ana = \"sha256:100000:"), "{line}");
    assert!(!line.contains("s3cret"));
    let users = perfusio_dashboard::Users::from_toml_str(&format!("[users]\n{line}\n")).unwrap();
    assert!(users.verify("ana", &perfusio_core::Secret::new("s3cret pass")));
    let (code, _, err) = hash("\n", &[]);
    assert_eq!(code, 1);
    assert!(err.contains("empty"), "{err}");
}

#[test]
fn dashboard_serves_a_campaign_directory_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_perfusio"))
        .args(["dashboard", "--listen", "127.0.0.1:0", "--campaign"])
        .arg(dir.path())
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
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no URL in {first:?}"))
        .to_string();
    assert!(first.contains("read-only"), "{first}");
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("Waiting for the campaign to publish"));
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn dashboard_refuses_a_remote_address_without_allow_remote() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (code, _, err) = perfusio(&["dashboard", "--listen", "0.0.0.0:0", "--campaign", d]);
    assert_eq!(code, 1);
    assert!(err.contains("is not a loopback address"), "{err}");
    let (code, _, err) = perfusio(&["dashboard", "--campaign", "/nonexistent/campaign"]);
    assert_eq!(code, 1);
    assert!(err.contains("campaign directory"), "{err}");
}
