//! What the dashboard logs: never a password; a warning for a non-loopback address. These
//! tests have their own binary: it installs one process-wide tracing subscriber whose
//! capture every test reads, so every thread's records (the server's tasks and blocking
//! jobs) reach it, and no test elsewhere can leave a callsite disabled for them (as a
//! thread-local default would allow when tests run in parallel).

#[path = "dashboard/common.rs"]
#[allow(dead_code)]
mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use crate::common::*;

/// Every log line the dashboard writes during a test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

/// The capture of the process-wide subscriber (installed on first use, TRACE level).
fn capture() -> Captured {
    static CAPTURE: OnceLock<Captured> = OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let captured = Captured::default();
            let sink = captured.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(move || sink.clone())
                .finish();
            tracing::subscriber::set_global_default(subscriber).unwrap();
            captured
        })
        .clone()
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_password_is_never_logged_stored_or_echoed() {
    let captured = capture();

    let dir = fixture_dir();
    let d = start_dashboard(dir.path(), users()).await;
    let mut bodies = Vec::new();
    // a wrong password, a password typed into the user field, and the right one
    for (user, pw) in [
        (USER, "Wr0ng-but-secret"),
        (PASSWORD, PASSWORD),
        (USER, PASSWORD),
    ] {
        let r = request(
            d.addr,
            "POST",
            "/login",
            None,
            Some(&[("user", user), ("password", pw)]),
        )
        .await;
        bodies.push(r.body);
        bodies.extend(r.headers.into_iter().map(|(k, v)| format!("{k}: {v}")));
    }
    let (cookie, csrf) = login(d.addr).await;
    let r = request(
        d.addr,
        "POST",
        "/action",
        Some(&cookie),
        Some(&[
            ("csrf", &csrf),
            ("kind", "approve"),
            ("reactor", "R01"),
            ("day", "7"),
        ]),
    )
    .await;
    assert_eq!(r.status, 303);
    bodies.push(request(d.addr, "GET", "/", Some(&cookie), None).await.body);
    d.stop().await;

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("logged in"), "the capture works: {log}");
    assert!(log.contains("login refused"), "{log}");
    assert!(log.contains("operator action recorded"), "{log}");
    let files: String = ["actions.jsonl", "snapshot.json"]
        .iter()
        .map(|f| std::fs::read_to_string(dir.path().join(f)).unwrap_or_default())
        .collect();
    for secret in [PASSWORD, "Wr0ng-but-secret"] {
        assert!(!log.contains(secret), "password in the log: {log}");
        assert!(!files.contains(secret), "password in the campaign files");
        assert!(
            bodies.iter().all(|b| !b.contains(secret)),
            "password in a response"
        );
        // nor url-encoded
        assert!(!log.contains(&secret.replace('&', "%26")));
    }
}

#[tokio::test]
async fn a_non_loopback_address_needs_permission_and_is_logged_as_a_warning() {
    let dir = fixture_dir();
    let mut config = perfusio_dashboard::DashboardConfig::new(dir.path());
    config.listen = "0.0.0.0:0".parse().unwrap();
    match perfusio_dashboard::Dashboard::bind(config.clone()).await {
        Err(perfusio_dashboard::DashboardError::NotLoopback(_)) => {}
        other => panic!("expected NotLoopback, got {other:?}"),
    }
    let captured = capture();
    config.allow_non_loopback = true;
    let d = perfusio_dashboard::Dashboard::bind(config).await.unwrap();
    let port = d.local_addr().port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(d.run_until(async {
        let _ = rx.await;
    }));
    // any Host header is answered when remote access was allowed
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let r = request_with_host(
        addr,
        "dashboard.lab.example:8080",
        "GET",
        "/version",
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let _ = tx.send(());
    task.await.unwrap().unwrap();
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("WARN") && log.contains("non-loopback address"),
        "{log}"
    );
}
