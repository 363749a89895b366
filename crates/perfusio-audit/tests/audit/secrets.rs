//! Secrets never reach the log.

use std::collections::BTreeMap;

use perfusio_audit::canonical::to_canonical_value;
use perfusio_audit::event::{ConnectorError, RunStarted};
use perfusio_audit::{AuditWriter, Entry, WriterOptions};
use perfusio_core::{REDACTED, Secret};
use serde::Serialize;

/// A connector configuration as a connector crate would hold it.
#[derive(Debug, Serialize)]
struct OpcUaConfig {
    endpoint: String,
    username: String,
    password: Secret,
}

#[test]
fn connector_password_is_logged_only_redacted() {
    const PASSWORD: &str = "hunter2-Sup3rSecret";
    let config = OpcUaConfig {
        endpoint: "opc.tcp://127.0.0.1:4840".into(),
        username: "twin".into(),
        password: Secret::new(PASSWORD),
    };
    assert_eq!(config.password.expose(), PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let (mut w, _) = AuditWriter::open(&path, WriterOptions::new("r", "R1")).unwrap();
    let settings = BTreeMap::from([(
        "connector".to_string(),
        to_canonical_value(&config).unwrap(),
    )]);
    w.append(Entry::new(
        0,
        RunStarted {
            software: "test".into(),
            seed: None,
            settings,
        },
    ))
    .unwrap();
    // An error message built from the configuration's Debug or Display form is also safe.
    w.append(Entry::new(
        0,
        ConnectorError {
            connector: format!("{config:?}"),
            operation: "connect".into(),
            message: format!(
                "BadIdentityTokenRejected for {} / {}",
                config.username, config.password
            ),
            retryable: false,
        },
    ))
    .unwrap();
    // ... and so is a state hash over the configuration.
    w.append(
        Entry::new(
            0,
            RunStarted {
                software: "t".into(),
                seed: None,
                settings: BTreeMap::new(),
            },
        )
        .with_state(&config)
        .unwrap(),
    )
    .unwrap();
    drop(w);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(PASSWORD), "the password reached the log");
    assert!(!text.contains("Sup3r"));
    assert!(
        text.contains(&format!(r#""password":"{REDACTED}""#)),
        "{text}"
    );
    assert!(text.contains(&format!("Secret({REDACTED})")));
    // The configuration hash is that of the redacted form.
    let redacted = serde_json::json!({"endpoint": "opc.tcp://127.0.0.1:4840", "username": "twin", "password": REDACTED});
    assert!(text.contains(&perfusio_audit::canonical::canonical_sha256(&redacted).unwrap()));
}
