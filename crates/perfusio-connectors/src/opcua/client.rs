//! [`OpcUaConnector`]: the OPC UA client connector.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use opcua::client::{Client, ClientBuilder, IdentityToken, Session};
use opcua::crypto::SecurityPolicy;
use opcua::types::{
    AttributeId, DataValue, MessageSecurityMode, NodeId, ReadValueId, StatusCode,
    TimestampsToReturn, Variant, WriteValue,
};
use perfusio_core::{
    Connector, ConnectorError, Control, ControlReceipt, DesignSpace, Rejection, Sample, Secret,
    Setpoints, WriteReceipt, WriteStatus, async_trait,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use super::node_map::{CULTURE_DAY, NodeMap, NodeText, parse_node_text};
use super::record::{RecordLine, validate_keep};

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
    fn policy(self) -> SecurityPolicy {
        match self {
            Security::None => SecurityPolicy::None,
            _ => SecurityPolicy::Basic256Sha256,
        }
    }

    fn mode(self) -> MessageSecurityMode {
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

/// Settings of an [`OpcUaConnector`] (serde: TOML or JSON).
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
    /// Species plausibility ranges (reads) and setpoint hard limits (writes).
    #[serde(default)]
    pub design_space: DesignSpace,
    /// Record mode: append every successful read to this JSONL file
    /// (format: [`RecordLine`]).
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

/// One node of the map, resolved for the current session.
#[derive(Debug, Clone)]
struct Node {
    label: String,
    text: String,
    id: NodeId,
}

impl Node {
    fn name(&self) -> String {
        format!("{} ({})", self.label, self.text)
    }
}

#[derive(Debug, Clone)]
enum Slot {
    Day,
    Species(perfusio_core::Species),
    Derived(perfusio_core::Derived),
    Control(Control),
}

#[derive(Debug)]
struct Resolved {
    /// Every node; culture day first.
    all: Vec<(Slot, Node)>,
}

impl Resolved {
    fn controls(&self) -> Vec<(Control, Node)> {
        self.all
            .iter()
            .filter_map(|(s, n)| match s {
                Slot::Control(c) => Some((*c, n.clone())),
                _ => None,
            })
            .collect()
    }
}

struct Conn {
    session: Arc<Session>,
    event_loop: JoinHandle<StatusCode>,
    nodes: Arc<Resolved>,
}

impl Conn {
    fn close(self) {
        self.session.disable_reconnects();
        self.event_loop.abort();
    }
}

#[derive(Default)]
struct State {
    client: Option<Client>,
    conn: Option<Conn>,
}

/// Why one attempt failed.
enum Failure {
    /// Link down, closed or refused: retry on the schedule.
    Link(String),
    /// The request timed out: retry on the schedule.
    Timeout(Duration),
    /// Do not retry (credentials, certificates, configuration, node errors).
    Fatal(ConnectorError),
}

/// What an attempt does once connected.
enum Op {
    ReadAll,
    ReadControls,
    Write(Vec<(Control, f64)>),
}

enum OpOut {
    Values(Arc<Resolved>, Vec<DataValue>),
    Statuses(Vec<StatusCode>),
}

fn same_code(s: StatusCode, c: StatusCode) -> bool {
    (s.bits() & 0xFFFF_0000) == (c.bits() & 0xFFFF_0000)
}

fn is_any(s: StatusCode, codes: &[StatusCode]) -> bool {
    codes.iter().any(|c| same_code(s, *c))
}

const AUTH_CODES: [StatusCode; 4] = [
    StatusCode::BadIdentityTokenRejected,
    StatusCode::BadIdentityTokenInvalid,
    StatusCode::BadUserAccessDenied,
    StatusCode::BadUserSignatureInvalid,
];

const CERT_CODES: [StatusCode; 10] = [
    StatusCode::BadCertificateUntrusted,
    StatusCode::BadSecurityChecksFailed,
    StatusCode::BadCertificateInvalid,
    StatusCode::BadCertificateHostNameInvalid,
    StatusCode::BadCertificateUriInvalid,
    StatusCode::BadCertificateTimeInvalid,
    StatusCode::BadCertificateIssuerTimeInvalid,
    StatusCode::BadCertificateRevoked,
    StatusCode::BadCertificateUseNotAllowed,
    StatusCode::BadCertificateChainIncomplete,
];

const CONFIG_CODES: [StatusCode; 3] = [
    StatusCode::BadTcpEndpointUrlInvalid,
    StatusCode::BadSecurityPolicyRejected,
    StatusCode::BadSecurityModeRejected,
];

/// A missing measurement rather than a failure.
const NO_DATA_CODES: [StatusCode; 3] = [
    StatusCode::BadNoDataAvailable,
    StatusCode::BadNoData,
    StatusCode::BadWaitingForInitialData,
];

/// OPC UA client connector for one reactor.
///
/// - **Reads**: `read_sample(day)` reads the culture day, every mapped species, derived
///   variable and control in **one** Read request. The culture day decides what the values
///   are: a live reactor only holds its current values, so
///   - culture day (rounded down) == `day` → the sample of `day`;
///   - culture day < `day` → [`ConnectorError::NotYetAvailable`];
///   - culture day > `day` → the sample read earlier in this session for `day`, if any,
///     else [`ConnectorError::Data`] (read each day while it is current, or replay a record).
///
///   Values are validated against the design space's species ranges; rejected values are
///   removed from the sample and kept ([`OpcUaConnector::rejections`]). A node whose value is
///   missing (`BadNoDataAvailable`, `BadNoData`, `BadWaitingForInitialData`) is reported as
///   not measured; any other bad status fails the read with [`ConnectorError::Node`] naming
///   the node.
/// - **Writes**: validated against the design space's hard limits first (violations →
///   [`ConnectorError::Rejected`], nothing sent), then written in one Write request (ordered
///   so that the bleed never exceeds the perfusion rate in between) and read back; each
///   control of the [`WriteReceipt`] is `Confirmed` (read-back equal within 1e-9 relative),
///   `Unconfirmed` or `Rejected` (the server's status, naming the node).
/// - **Failures**: link failures and timeouts are retried on the [`Backoff`] schedule, with a
///   new session each time; rejected credentials and untrusted certificates fail at once.
/// - **Record mode**: see [`OpcUaConfig::record`] and [`RecordLine`].
pub struct OpcUaConnector {
    config: OpcUaConfig,
    state: Mutex<State>,
    rejections: StdMutex<Vec<(u32, Rejection)>>,
    history: StdMutex<BTreeMap<u32, Sample>>,
    recorder: Option<StdMutex<std::fs::File>>,
    sessions: AtomicU32,
}

impl std::fmt::Debug for OpcUaConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpcUaConnector")
            .field("config", &self.config)
            .field("sessions", &self.sessions.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Drop for OpcUaConnector {
    fn drop(&mut self) {
        if let Some(conn) = self.state.get_mut().conn.take() {
            conn.close();
        }
    }
}

impl OpcUaConnector {
    /// Checks the configuration and opens the record file (if any). Connects lazily, on
    /// the first request (or call [`OpcUaConnector::connect`]).
    pub fn new(config: OpcUaConfig) -> Result<Self, ConnectorError> {
        config.check()?;
        let recorder = match &config.record {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| ConnectorError::Io {
                        context: format!("opening record file {}", path.display()),
                        source,
                    })?;
                Some(StdMutex::new(file))
            }
            None => None,
        };
        Ok(Self {
            config,
            state: Mutex::new(State::default()),
            rejections: StdMutex::new(Vec::new()),
            history: StdMutex::new(BTreeMap::new()),
            recorder,
            sessions: AtomicU32::new(0),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &OpcUaConfig {
        &self.config
    }

    /// Number of sessions established so far (1 after the first connect; each reconnect
    /// adds one).
    pub fn sessions_established(&self) -> u32 {
        self.sessions.load(Ordering::Relaxed)
    }

    /// Every value rejected by validation so far, with its day.
    pub fn rejections(&self) -> Vec<(u32, Rejection)> {
        self.rejections
            .lock()
            .map(|g| g.clone())
            .unwrap_or_default()
    }

    /// Connects now (with the backoff schedule) instead of on the first request.
    pub async fn connect(&self) -> Result<(), ConnectorError> {
        let mut state = self.state.lock().await;
        let mut last = None;
        for attempt in 0..self.config.backoff.max_attempts {
            if attempt > 0 {
                tokio::time::sleep(self.config.backoff.delay(attempt)).await;
            }
            match self.ensure_conn(&mut state).await {
                Ok(()) => return Ok(()),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(f) => last = Some(f),
            }
        }
        Err(self.exhausted("connect", last))
    }

    /// Closes the session gracefully.
    pub async fn disconnect(&self) {
        let conn = self.state.lock().await.conn.take();
        if let Some(conn) = conn {
            let _ = tokio::time::timeout(self.timeout(), conn.session.disconnect()).await;
            conn.close();
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.timeout_ms)
    }

    fn endpoint(&self) -> String {
        self.config.endpoint.clone()
    }

    fn classify(&self, status: StatusCode, doing: &str) -> Failure {
        let endpoint = self.endpoint();
        if is_any(status, &AUTH_CODES) {
            Failure::Fatal(ConnectorError::Authentication {
                endpoint,
                reason: format!(
                    "{status} while {doing}: the server refused the identity; check the user \
                     name and password (or user certificate) in the configuration"
                ),
            })
        } else if is_any(status, &CERT_CODES) {
            let pki = self.config.pki_dir.display();
            Failure::Fatal(ConnectorError::Untrusted {
                endpoint,
                reason: format!(
                    "{status} while {doing}: if the server certificate is not trusted, check it \
                     and move it from {pki}/rejected/ to {pki}/trusted/ (or enable \
                     trust_on_first_use for a first connection); if the server refused this \
                     client, trust {pki}/own/cert.der on the server"
                ),
            })
        } else if is_any(status, &CONFIG_CODES) {
            Failure::Fatal(ConnectorError::Data {
                context: endpoint,
                message: format!(
                    "{status} while {doing}: the server offers no endpoint with security {:?}; \
                     choose one the server offers",
                    self.config.security
                ),
            })
        } else {
            Failure::Link(format!("{status} while {doing}"))
        }
    }

    fn exhausted(&self, operation: &str, last: Option<Failure>) -> ConnectorError {
        let b = self.config.backoff;
        match last {
            Some(Failure::Timeout(after)) => ConnectorError::Timeout {
                operation: format!(
                    "{operation} on {} (after {} attempts)",
                    self.config.endpoint, b.max_attempts
                ),
                after,
            },
            Some(Failure::Fatal(e)) => e,
            Some(Failure::Link(reason)) => ConnectorError::Disconnected {
                endpoint: self.endpoint(),
                reason: format!(
                    "{operation} failed after {} attempts over {:?}: {reason}",
                    b.max_attempts,
                    b.total()
                ),
            },
            None => ConnectorError::Disconnected {
                endpoint: self.endpoint(),
                reason: format!("{operation}: no attempt made"),
            },
        }
    }

    fn build_client(&self) -> Result<Client, Failure> {
        ClientBuilder::new()
            .application_name("perfusio")
            .application_uri("urn:perfusio:client")
            .product_uri("urn:perfusio")
            .pki_dir(&self.config.pki_dir)
            .create_sample_keypair(true)
            .trust_server_certs(false)
            .session_retry_limit(0)
            .request_timeout(self.timeout())
            .client()
            .map_err(|errs| {
                Failure::Fatal(ConnectorError::Data {
                    context: "OPC UA client configuration".into(),
                    message: errs.join("; "),
                })
            })
    }

    fn identity_token(&self) -> Result<IdentityToken, Failure> {
        match &self.config.identity {
            Identity::Anonymous => Ok(IdentityToken::Anonymous),
            Identity::UserName { user, password } => Ok(IdentityToken::new_user_name(
                user.clone(),
                password.expose().to_string(),
            )),
            Identity::X509 {
                certificate,
                private_key,
            } => IdentityToken::new_x509_path(certificate, private_key).map_err(|e| {
                Failure::Fatal(ConnectorError::Data {
                    context: format!(
                        "user certificate {} / key {}",
                        certificate.display(),
                        private_key.display()
                    ),
                    message: e.to_string(),
                })
            }),
        }
    }

    /// `true` when `<pki>/trusted/` holds no certificate.
    fn trusted_dir_empty(&self) -> bool {
        let dir = self.config.pki_dir.join("trusted");
        match std::fs::read_dir(&dir) {
            Ok(mut it) => it.next().is_none(),
            Err(_) => true,
        }
    }

    /// Makes sure a live session exists (one connection attempt).
    async fn ensure_conn(&self, state: &mut State) -> Result<(), Failure> {
        if let Some(conn) = &state.conn
            && !conn.event_loop.is_finished()
        {
            return Ok(());
        }
        if let Some(conn) = state.conn.take() {
            conn.close();
        }
        if state.client.is_none() {
            state.client = Some(self.build_client()?);
        }
        let connect_timeout = Duration::from_millis(self.config.connect_timeout_ms);
        let tofu = self.config.trust_on_first_use && self.trusted_dir_empty();
        let Some(client) = state.client.as_mut() else {
            return Err(Failure::Link("client missing".into()));
        };
        if tofu {
            tracing::warn!(
                endpoint = %self.config.endpoint,
                pki = %self.config.pki_dir.display(),
                "TRUST ON FIRST USE: no trusted server certificate yet; the certificate this \
                 server presents will be trusted WITHOUT VERIFICATION and stored in trusted/. \
                 Verify its fingerprint out of band."
            );
            client
                .certificate_store()
                .write()
                .set_trust_unknown_certs(true);
        }
        let result = tokio::time::timeout(connect_timeout, self.connect_once(client)).await;
        if tofu {
            client
                .certificate_store()
                .write()
                .set_trust_unknown_certs(false);
        }
        let conn = match result {
            Err(_) => return Err(Failure::Timeout(connect_timeout)),
            Ok(r) => r?,
        };
        let n = self.sessions.fetch_add(1, Ordering::Relaxed) + 1;
        if n > 1 {
            tracing::info!(endpoint = %self.config.endpoint, session = n, "OPC UA session re-established");
        } else {
            tracing::info!(endpoint = %self.config.endpoint, "OPC UA session established");
        }
        state.conn = Some(conn);
        Ok(())
    }

    async fn connect_once(&self, client: &mut Client) -> Result<Conn, Failure> {
        let identity = self.identity_token()?;
        let sec = self.config.security;
        let (session, event_loop) = client
            .connect_to_matching_endpoint(
                (
                    self.config.endpoint.as_str(),
                    sec.policy().to_str(),
                    sec.mode(),
                ),
                identity,
            )
            .await
            .map_err(|e| self.classify(e.status(), "opening the session"))?;
        let mut handle = event_loop.spawn();
        tokio::select! {
            _ = session.wait_for_connection() => {}
            code = &mut handle => {
                let code = code.unwrap_or(StatusCode::BadUnexpectedError);
                return Err(self.classify(code, "connecting"));
            }
        }
        let nodes = match self.resolve(&session).await {
            Ok(n) => n,
            Err(f) => {
                session.disable_reconnects();
                handle.abort();
                return Err(f);
            }
        };
        Ok(Conn {
            session,
            event_loop: handle,
            nodes: Arc::new(nodes),
        })
    }

    /// Resolves `nsu=` namespaces and parses every node of the map.
    async fn resolve(&self, session: &Session) -> Result<Resolved, Failure> {
        let map = &self.config.node_map;
        let mut entries: Vec<(Slot, String, &str)> =
            vec![(Slot::Day, CULTURE_DAY.to_string(), map.culture_day.as_str())];
        for (s, t) in &map.species {
            entries.push((Slot::Species(*s), s.name().to_string(), t));
        }
        for (d, t) in &map.derived {
            entries.push((Slot::Derived(*d), d.name().to_string(), t));
        }
        for (c, t) in &map.controls {
            entries.push((Slot::Control(*c), c.name().to_string(), t));
        }
        let mut all = Vec::with_capacity(entries.len());
        for (slot, label, text) in entries {
            let node_err = |status: String| {
                Failure::Fatal(ConnectorError::Node {
                    node: format!("{label} ({text})"),
                    status,
                })
            };
            let parsed = parse_node_text(text).map_err(node_err)?;
            let id_text = match parsed {
                NodeText::Plain(t) => t,
                NodeText::ByUri { uri, id } => {
                    let ns = match session.get_namespace_index(&uri).await {
                        Ok(ns) => ns,
                        Err(e) if same_code(e.status(), StatusCode::BadNoMatch) => {
                            return Err(node_err(format!(
                                "namespace '{uri}' is not served by {}",
                                self.config.endpoint
                            )));
                        }
                        Err(e) => {
                            return Err(self.classify(e.status(), "reading the namespace array"));
                        }
                    };
                    format!("ns={ns};{id}")
                }
            };
            let id = NodeId::from_str(&id_text)
                .map_err(|e| node_err(format!("not a valid node identifier: {e:?}")))?;
            all.push((
                slot,
                Node {
                    label,
                    text: text.to_string(),
                    id,
                },
            ));
        }
        Ok(Resolved { all })
    }

    async fn execute(&self, conn: &Conn, op: &Op) -> Result<OpOut, Failure> {
        let session = &conn.session;
        match op {
            Op::ReadAll | Op::ReadControls => {
                let nodes: Vec<&Node> = conn
                    .nodes
                    .all
                    .iter()
                    .filter(|(s, _)| {
                        matches!(op, Op::ReadAll) || matches!(s, Slot::Day | Slot::Control(_))
                    })
                    .map(|(_, n)| n)
                    .collect();
                let ids: Vec<ReadValueId> = nodes
                    .iter()
                    .map(|n| ReadValueId::from(n.id.clone()))
                    .collect();
                let values = session
                    .read(&ids, TimestampsToReturn::Both, 0.0)
                    .await
                    .map_err(|e| self.classify(e.status(), "reading"))?;
                if values.len() != ids.len() {
                    return Err(Failure::Fatal(ConnectorError::Data {
                        context: self.endpoint(),
                        message: format!(
                            "the server returned {} results for {} nodes",
                            values.len(),
                            ids.len()
                        ),
                    }));
                }
                Ok(OpOut::Values(conn.nodes.clone(), values))
            }
            Op::Write(items) => {
                let ids: BTreeMap<Control, NodeId> = conn
                    .nodes
                    .controls()
                    .into_iter()
                    .map(|(c, n)| (c, n.id))
                    .collect();
                let mut writes = Vec::with_capacity(items.len());
                for (c, v) in items {
                    let Some(id) = ids.get(c) else {
                        return Err(Failure::Fatal(ConnectorError::Node {
                            node: c.name().to_string(),
                            status: "no node is mapped for this control".into(),
                        }));
                    };
                    writes.push((id.clone(), *v));
                }
                let writes: Vec<WriteValue> = writes
                    .into_iter()
                    .map(|(id, v)| WriteValue {
                        node_id: id,
                        attribute_id: AttributeId::Value as u32,
                        index_range: Default::default(),
                        value: DataValue::value_only(Variant::Double(v)),
                    })
                    .collect();
                let statuses = session
                    .write(&writes)
                    .await
                    .map_err(|e| self.classify(e.status(), "writing"))?;
                if statuses.len() != writes.len() {
                    return Err(Failure::Fatal(ConnectorError::Data {
                        context: self.endpoint(),
                        message: format!(
                            "the server returned {} results for {} writes",
                            statuses.len(),
                            writes.len()
                        ),
                    }));
                }
                Ok(OpOut::Statuses(statuses))
            }
        }
    }

    /// Runs `op` with the backoff schedule (at most `attempts` attempts).
    async fn run(&self, name: &str, op: Op, attempts: u32) -> Result<OpOut, ConnectorError> {
        let mut state = self.state.lock().await;
        let mut last = None;
        for attempt in 0..attempts.max(1) {
            if attempt > 0 {
                let d = self.config.backoff.delay(attempt);
                tracing::warn!(endpoint = %self.config.endpoint, attempt = attempt + 1,
                    delay_ms = d.as_millis() as u64, "OPC UA {name}: retrying");
                tokio::time::sleep(d).await;
            }
            match self.ensure_conn(&mut state).await {
                Ok(()) => {}
                Err(Failure::Fatal(e)) => return Err(e),
                Err(f) => {
                    last = Some(f);
                    continue;
                }
            }
            let Some(conn) = state.conn.as_ref() else {
                continue;
            };
            let result = tokio::time::timeout(self.timeout(), self.execute(conn, &op)).await;
            let failure = match result {
                Ok(Ok(out)) => return Ok(out),
                Ok(Err(Failure::Fatal(e))) => return Err(e),
                Ok(Err(f)) => f,
                Err(_) => Failure::Timeout(self.timeout()),
            };
            if let Some(conn) = state.conn.take() {
                conn.close();
            }
            last = Some(failure);
        }
        Err(self.exhausted(name, last))
    }

    fn number(&self, node: &Node, dv: &DataValue) -> Result<Option<f64>, ConnectorError> {
        let status = dv.status();
        if status.is_bad() {
            if is_any(status, &NO_DATA_CODES) {
                return Ok(None);
            }
            return Err(ConnectorError::Node {
                node: node.name(),
                status: status.to_string(),
            });
        }
        let v = match &dv.value {
            None | Some(Variant::Empty) => return Ok(None),
            Some(Variant::Double(v)) => *v,
            Some(Variant::Float(v)) => f64::from(*v),
            Some(Variant::Int16(v)) => f64::from(*v),
            Some(Variant::UInt16(v)) => f64::from(*v),
            Some(Variant::Int32(v)) => f64::from(*v),
            Some(Variant::UInt32(v)) => f64::from(*v),
            Some(other) => {
                return Err(ConnectorError::Node {
                    node: node.name(),
                    status: format!("expected a number, got {other:?}"),
                });
            }
        };
        Ok(Some(v))
    }

    fn record(&self, line: &RecordLine) -> Result<(), ConnectorError> {
        let Some(rec) = &self.recorder else {
            return Ok(());
        };
        let mut text = serde_json::to_string(line).map_err(|e| ConnectorError::Data {
            context: "record line".into(),
            message: e.to_string(),
        })?;
        text.push('\n');
        let path = self
            .config
            .record
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let mut f = rec.lock().map_err(|_| ConnectorError::Data {
            context: "record file".into(),
            message: "lock poisoned".into(),
        })?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.flush())
            .map_err(|source| ConnectorError::Io {
                context: format!("appending to record file {path}"),
                source,
            })
    }

    async fn read_controls(&self) -> Result<(Option<f64>, BTreeMap<Control, f64>), ConnectorError> {
        let OpOut::Values(nodes, values) = self
            .run(
                "read setpoints",
                Op::ReadControls,
                self.config.backoff.max_attempts,
            )
            .await?
        else {
            return Err(ConnectorError::Data {
                context: self.endpoint(),
                message: "unexpected reply".into(),
            });
        };
        let mut day = None;
        let mut out = BTreeMap::new();
        let selected = nodes
            .all
            .iter()
            .filter(|(s, _)| matches!(s, Slot::Day | Slot::Control(_)));
        for ((slot, node), dv) in selected.zip(values.iter()) {
            let v = self.number(node, dv)?;
            match slot {
                Slot::Day => day = v,
                Slot::Control(c) => {
                    if let Some(v) = v {
                        out.insert(*c, v);
                    }
                }
                _ => {}
            }
        }
        Ok((day, out))
    }
}

#[async_trait]
impl Connector for OpcUaConnector {
    async fn read_sample(&self, day: u32) -> Result<Sample, ConnectorError> {
        let OpOut::Values(nodes, values) = self
            .run("read", Op::ReadAll, self.config.backoff.max_attempts)
            .await?
        else {
            return Err(ConnectorError::Data {
                context: self.endpoint(),
                message: "unexpected reply".into(),
            });
        };
        let received = OffsetDateTime::now_utc();
        let mut culture_day = None;
        let mut raw = Sample::new(day);
        for ((slot, node), dv) in nodes.all.iter().zip(values.iter()) {
            let v = self.number(node, dv)?;
            match slot {
                Slot::Day => {
                    culture_day = Some(v.ok_or_else(|| ConnectorError::Node {
                        node: node.name(),
                        status: "the culture day has no value".into(),
                    })?);
                }
                Slot::Species(s) => raw.species[s.index()] = v,
                Slot::Derived(d) => raw.derived[d.index()] = v,
                Slot::Control(c) => raw.controls[c.index()] = v,
            }
        }
        let cd = culture_day.unwrap_or(f64::NAN);
        if !(cd.is_finite() && (0.0..f64::from(u32::MAX)).contains(&cd)) {
            return Err(ConnectorError::Data {
                context: format!("{} culture day", self.endpoint()),
                message: format!("culture day {cd} is not a non-negative number"),
            });
        }
        // `cd` is finite and in [0, u32::MAX): the cast truncates toward zero = floor.
        let now_day = cd.floor() as u32;
        if now_day < day {
            return Err(ConnectorError::NotYetAvailable {
                day,
                reason: format!(
                    "reactor {} is at culture day {cd}",
                    self.config.node_map.reactor_id
                ),
            });
        }
        if now_day > day {
            let cached = self.history.lock().ok().and_then(|h| h.get(&day).cloned());
            return cached.ok_or_else(|| ConnectorError::Data {
                context: format!("read_sample({day}) from {}", self.config.endpoint),
                message: format!(
                    "reactor {} is already at culture day {now_day}; a live server only holds \
                     the current values and day {day} was not read in this session (replay a \
                     record file for past days)",
                    self.config.node_map.reactor_id
                ),
            });
        }
        raw.timestamp = Some(received);
        raw.reactor_id = Some(self.config.node_map.reactor_id.clone());
        let line = RecordLine::from_sample(&self.config.endpoint, cd, &raw);
        self.record(&line)?;
        // Validate what a replay of the record would see, so both give identical samples.
        let raw = line.to_sample()?;
        let sample = validate_keep(
            &raw,
            &self.config.design_space,
            &self.rejections,
            &self.config.endpoint,
        );
        if let Ok(mut h) = self.history.lock() {
            h.insert(day, sample.clone());
        }
        Ok(sample)
    }

    async fn write_setpoints(&self, setpoints: &Setpoints) -> Result<WriteReceipt, ConnectorError> {
        let soft = self
            .config
            .design_space
            .validate(&setpoints.values)
            .map_err(|e| match e {
                perfusio_core::CoreError::InvalidSetpoints(v) => ConnectorError::Rejected(v),
                other => ConnectorError::Data {
                    context: "setpoint validation".into(),
                    message: other.to_string(),
                },
            })?;
        for v in &soft {
            tracing::warn!(violation = %v, "writing a setpoint outside the design range");
        }
        let (culture_day, current) = self.read_controls().await?;
        if let Some(cd) = culture_day
            && (cd.floor() - f64::from(setpoints.day)).abs() > 0.5
        {
            tracing::warn!(
                requested_day = setpoints.day,
                culture_day = cd,
                "setpoints for another day than the reactor's; a live reactor applies them now"
            );
        }
        // Order: perfusion first unless lowering it below the bleed now acting.
        let new_perf = setpoints.get(Control::PerfusionRate);
        let bleed_first = current
            .get(&Control::BleedRate)
            .is_some_and(|cur_bleed| new_perf < *cur_bleed);
        let mut order: Vec<Control> = Control::ALL.to_vec();
        if bleed_first {
            order.swap(0, 1);
        }
        let mapped = &self.config.node_map.controls;
        let items: Vec<(Control, f64)> = order
            .iter()
            .filter(|c| mapped.contains_key(c))
            .map(|c| (*c, setpoints.get(*c)))
            .collect();
        let statuses = match self
            .run(
                "write",
                Op::Write(items.clone()),
                self.config.backoff.max_attempts,
            )
            .await?
        {
            OpOut::Statuses(s) => s,
            OpOut::Values(..) => Vec::new(),
        };
        let written: BTreeMap<Control, StatusCode> = items
            .iter()
            .zip(statuses.iter())
            .map(|((c, _), s)| (*c, *s))
            .collect();
        let (_, readback) = self.read_controls().await?;
        let map = &self.config.node_map.controls;
        let controls = setpoints
            .iter()
            .map(|(control, requested)| {
                let node = map.get(&control).cloned().unwrap_or_default();
                let rb = readback.get(&control).copied();
                let status = match written.get(&control) {
                    None => WriteStatus::Rejected {
                        reason: "no node is mapped for this control".into(),
                    },
                    Some(s) if s.is_bad() => WriteStatus::Rejected {
                        reason: format!("node {node}: {s}"),
                    },
                    Some(_) => match rb {
                        Some(r) if (r - requested).abs() <= 1e-9 * requested.abs().max(1.0) => {
                            WriteStatus::Confirmed
                        }
                        Some(r) => WriteStatus::Unconfirmed {
                            reason: format!("read back {r} from node {node}"),
                        },
                        None => WriteStatus::Unconfirmed {
                            reason: format!("node {node} could not be read back"),
                        },
                    },
                };
                ControlReceipt {
                    control,
                    requested,
                    readback: rb,
                    status,
                }
            })
            .collect();
        Ok(WriteReceipt {
            day: setpoints.day,
            controls,
            timestamp: Some(OffsetDateTime::now_utc()),
        })
    }

    async fn is_alive(&self) -> bool {
        self.run("liveness check", Op::ReadControls, 1)
            .await
            .is_ok()
    }

    fn describe(&self) -> String {
        let who = match &self.config.identity {
            Identity::Anonymous => "anonymous".to_string(),
            Identity::UserName { user, .. } => format!("user '{user}'"),
            Identity::X509 { certificate, .. } => {
                format!("certificate {}", certificate.display())
            }
        };
        format!(
            "OPC UA {} ({:?}, {who}), reactor {}{}",
            self.config.endpoint,
            self.config.security,
            self.config.node_map.reactor_id,
            self.config
                .record
                .as_ref()
                .map(|p| format!(", recording to {}", p.display()))
                .unwrap_or_default()
        )
    }
}
