//! Settings of the OPC UA client: message security, identity, reconnect schedule and the
//! whole [`OpcUaConfig`].

use std::path::PathBuf;
use std::time::Duration;

use opcua::crypto::SecurityPolicy;
use opcua::types::MessageSecurityMode;
use perfusio_core::{ConnectorError, DesignSpace, Secret};
use serde::{Deserialize, Serialize};

use super::node_map::NodeMap;

/// Message security of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Security {
    /// No signing, no encryption (loopback demos only).
    #[default]
    None,
    /// Basic256Sha256, messages signed.
    Basic256Sha256Sign,
    /// Basic256Sha256, messages signed and encrypted.
    Basic256Sha256SignAndEncrypt,
}

impl Security {
    pub(crate) fn policy(self) -> SecurityPolicy {
        match self {
            Security::None => SecurityPolicy::None,
            _ => SecurityPolicy::Basic256Sha256,
        }
    }

    pub(crate) fn mode(self) -> MessageSecurityMode {
        match self {
            Security::None => MessageSecurityMode::None,
            Security::Basic256Sha256Sign => MessageSecurityMode::Sign,
            Security::Basic256Sha256SignAndEncrypt => MessageSecurityMode::SignAndEncrypt,
        }
    }
}

/// Who the client authenticates as.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Identity {
    /// Anonymous session.
    #[default]
    Anonymous,
    /// User name and password (the password never reaches logs or serialised output).
    UserName {
        /// User name.
        user: String,
        /// Password.
        password: Secret,
    },
    /// X.509 user certificate (DER) and its private key (PEM).
    X509 {
        /// Path of the user certificate.
        certificate: PathBuf,
        /// Path of the private key.
        private_key: PathBuf,
    },
}

/// Reconnect schedule: after a failed attempt the client waits `initial_ms`, then twice
/// as long each time, at most `cap_ms`, for at most `max_attempts` attempts in all (the
/// first included). The same schedule applies to the first connect and to every later
/// failure of a read or write.
///
/// ```
/// use std::time::Duration;
/// use perfusio_connectors::opcua::Backoff;
/// let b = Backoff { initial_ms: 200, cap_ms: 1000, max_attempts: 6 };
/// let ms: Vec<u128> = b.schedule().iter().map(Duration::as_millis).collect();
/// assert_eq!(ms, [200, 400, 800, 1000, 1000]);
/// assert_eq!(b.total(), Duration::from_millis(3400));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    /// First delay, ms.
    pub initial_ms: u64,
    /// Largest delay, ms.
    pub cap_ms: u64,
    /// Attempts in all (≥ 1).
    pub max_attempts: u32,
}

impl Default for Backoff {
    /// 0.5 s doubling to at most 30 s, 8 attempts (≈ 1 min 4 s of waiting in all).
    fn default() -> Self {
        Self {
            initial_ms: 500,
            cap_ms: 30_000,
            max_attempts: 8,
        }
    }
}

impl Backoff {
    /// Delay before retry `k` (1-based): `min(initial · 2^(k−1), cap)`.
    pub fn delay(&self, k: u32) -> Duration {
        let exp = k.saturating_sub(1).min(32);
        let ms = self.initial_ms.saturating_mul(1u64 << exp).min(self.cap_ms);
        Duration::from_millis(ms)
    }

    /// Every delay of the schedule, in order (`max_attempts − 1` of them).
    pub fn schedule(&self) -> Vec<Duration> {
        (1..self.max_attempts.max(1))
            .map(|k| self.delay(k))
            .collect()
    }

    /// Total waiting time of the whole schedule.
    pub fn total(&self) -> Duration {
        self.schedule().iter().sum()
    }
}

fn default_timeout_ms() -> u64 {
    5_000
}
fn default_connect_timeout_ms() -> u64 {
    15_000
}
fn default_pki_dir() -> PathBuf {
    PathBuf::from("pki")
}

/// Settings of an [`OpcUaConnector`](super::OpcUaConnector) (serde: TOML or JSON).
///
/// ```
/// use perfusio_connectors::opcua::{Identity, OpcUaConfig, Security};
/// let toml = r#"
///     endpoint = "opc.tcp://ambr.lab.local:4840/"
///     security = "basic256_sha256_sign_and_encrypt"
///     pki_dir = "/var/lib/perfusio/pki"
///     identity = { kind = "user_name", user = "twin", password = "s3cret" }
///     backoff = { initial_ms = 500, cap_ms = 30000, max_attempts = 8 }
///     [node_map]
///     reactor_id = "R01"
///     culture_day = "nsu=urn:perfusio:ambr250;s=R01.CultureDay"
///     species = { VCD = "nsu=urn:perfusio:ambr250;s=R01.VCD" }
/// "#;
/// let cfg: OpcUaConfig = toml::from_str(toml).unwrap();
/// assert_eq!(cfg.security, Security::Basic256Sha256SignAndEncrypt);
/// assert!(!cfg.trust_on_first_use);
/// assert_eq!(cfg.timeout_ms, 5000);
/// // the password is redacted in debug output
/// assert!(!format!("{cfg:?}").contains("s3cret"));
/// if let Identity::UserName { password, .. } = &cfg.identity {
///     assert_eq!(password.expose(), "s3cret");
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpcUaConfig {
    /// Endpoint URL, e.g. `opc.tcp://127.0.0.1:4840/`.
    pub endpoint: String,
    /// Message security.
    #[serde(default)]
    pub security: Security,
    /// User identity.
    #[serde(default)]
    pub identity: Identity,
    /// PKI directory: the client's own certificate and key (`own/`, `private/`, created on
    /// first use), trusted server certificates (`trusted/`) and rejected ones (`rejected/`).
    #[serde(default = "default_pki_dir")]
    pub pki_dir: PathBuf,
    /// Trust on first use: when `trusted/` holds no certificate yet, the first server
    /// certificate seen is stored there and trusted (logged as a warning); later, only that
    /// certificate is accepted. Off by default: untrusted servers are rejected.
    #[serde(default)]
    pub trust_on_first_use: bool,
    /// Reconnect schedule.
    #[serde(default)]
    pub backoff: Backoff,
    /// Timeout of every read and write request, ms.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Timeout of one connection attempt (secure channel and session), ms.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Nodes of the reactor.
    pub node_map: NodeMap,
    /// Hard limits that setpoint writes must respect (checked before anything is sent).
    /// Reads are not validated here: they go through the one validation step of
    /// `perfusio-core` like every connector's.
    #[serde(default)]
    pub design_space: DesignSpace,
    /// Record mode: append every successful read to this JSONL file
    /// (format: [`RecordLine`](super::RecordLine)).
    #[serde(default)]
    pub record: Option<PathBuf>,
}

impl OpcUaConfig {
    /// Defaults for `endpoint` and `node_map`: no security, anonymous, `./pki`, no TOFU,
    /// the default [`Backoff`], 5 s request timeout, the ambr250 design space, no record.
    pub fn new(endpoint: impl Into<String>, node_map: NodeMap) -> Self {
        Self {
            endpoint: endpoint.into(),
            security: Security::None,
            identity: Identity::Anonymous,
            pki_dir: default_pki_dir(),
            trust_on_first_use: false,
            backoff: Backoff::default(),
            timeout_ms: default_timeout_ms(),
            connect_timeout_ms: default_connect_timeout_ms(),
            node_map,
            design_space: DesignSpace::default(),
            record: None,
        }
    }

    /// Checks the settings (URL scheme, timeouts, attempts, node syntax).
    pub fn check(&self) -> Result<(), ConnectorError> {
        let bad = |field: &str, message: String| ConnectorError::Data {
            context: format!("OPC UA configuration field '{field}'"),
            message,
        };
        if !self.endpoint.starts_with("opc.tcp://") {
            return Err(bad(
                "endpoint",
                format!("'{}' must start with opc.tcp://", self.endpoint),
            ));
        }
        if self.timeout_ms == 0 || self.connect_timeout_ms == 0 {
            return Err(bad("timeout_ms", "timeouts must be positive".into()));
        }
        if self.backoff.max_attempts == 0 || self.backoff.initial_ms > self.backoff.cap_ms {
            return Err(bad(
                "backoff",
                "need max_attempts >= 1 and initial_ms <= cap_ms".into(),
            ));
        }
        self.node_map.check()
    }
}
