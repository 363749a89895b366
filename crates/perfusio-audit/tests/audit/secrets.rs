//! Secrets never reach the log.

use std::collections::BTreeMap;

use perfusio_audit::canonical::to_canonical_value;
use perfusio_audit::event::{ConnectorError, RunStarted};
use perfusio_audit::{AuditWriter, Entry, WriterOptions};
use serde::{Serialize, Serializer};

/// A password wrapper whose `Serialize`, `Debug` and `Display` print only a placeholder.
struct Secret(String);

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}
impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

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
        password: Secret(PASSWORD.into()),
    };
    assert_eq!(config.password.0, PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let (mut w, _) = AuditWriter::open(&path, WriterOptions::new("r", "R1")).unwrap();
    let settings = BTreeMap::from([(
        "connector".to_string(),
        to_canonical_value(&config).unwrap(),
    )]);
    w.append(Entry::new(
        0.0,
        RunStarted {
            software: "test".into(),
            seed: None,
            settings,
        },
    ))
    .unwrap();
    // A connector error built from the config's Debug form is also safe.
    w.append(Entry::new(
        0.0,
        ConnectorError {
            connector: format!("{config:?}"),
            operation: "connect".into(),
            message: "BadIdentityTokenRejected".into(),
            retryable: false,
        },
    ))
    .unwrap();
    drop(w);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(PASSWORD), "the password reached the log");
    assert!(!text.contains("Sup3r"));
    assert!(text.contains(r#""password":"***""#), "{text}");
    assert!(text.contains("Secret(***)"));
}
