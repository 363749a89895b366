//! [`OpcUaConnector`]: the OPC UA client connector.
//!
//! One type, its behaviour split by concern: `session` (client, trust, session, node
//! resolution), `request` (one request with the reconnect schedule and failure
//! classification), `read` (a day's raw reading, the read-back of setpoints, health) and
//! `write` (setpoints and their receipt). Recording of reads lives with replay in
//! `opcua::record`.

mod read;
mod request;
mod session;
mod write;

use std::collections::BTreeMap;
use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicU32, Ordering};

use perfusio_core::{
    Connector, ConnectorError, CultureDay, Health, RawReading, Setpoints, WriteReceipt, async_trait,
};
use tokio::sync::Mutex;

use super::config::{Identity, OpcUaConfig};
use super::record::Recorder;
use session::State;

/// OPC UA client connector for one reactor.
///
/// - **Reads**: `read_raw(day)` reads the culture day, every mapped species, derived
///   variable and control in **one** Read request. The culture day decides what the values
///   are: a live reactor only holds its current values, so
///   - culture day (rounded down) == `day` → the reading of `day`;
///   - culture day < `day` → [`ConnectorError::NotYetAvailable`];
///   - culture day > `day` → the reading of `day` made earlier in this session, if any,
///     else [`ConnectorError::Data`] (read each day while it is current, or replay a record).
///
///   Values are returned as read, each with its node as [`perfusio_core::Origin::Node`]:
///   numbers unchecked, a value of a non-numeric type as its text, and a bad status of a
///   node (e.g. `BadSensorFailure`) as that status; the one validation step
///   ([`perfusio_core::RawReading::validate`]) rejects them. A node without a value
///   (`BadNoDataAvailable`, `BadNoData`, `BadWaitingForInitialData`) is not measured. A
///   status that means the node map is wrong (`BadNodeIdUnknown`, `BadNodeIdInvalid`,
///   `BadAttributeIdInvalid`, `BadNotReadable`, `BadUserAccessDenied`) fails the read with
///   [`ConnectorError::Node`] naming the node, and so does any problem with the culture day.
/// - **Writes**: validated against the design space's hard limits first (violations →
///   [`ConnectorError::Rejected`], nothing sent), then written in one Write request (ordered
///   so that the bleed never exceeds the perfusion rate in between) and read back; each
///   control of the [`WriteReceipt`] is `Confirmed` (read-back equal within
///   [`perfusio_core::ControlReceipt::READBACK_TOLERANCE`]), `Unconfirmed` or `Rejected` (the
///   server's status, naming the node).
/// - **Health**: one Read of every node, without retries: `Down` with the failure,
///   `Degraded` naming the nodes that report a bad status, else `Ok`.
/// - **Failures**: link failures and timeouts are retried on the
///   [`Backoff`](super::Backoff) schedule, with a new session each time; rejected
///   credentials and untrusted certificates fail at once.
/// - **Record mode**: see [`OpcUaConfig::record`] and [`RecordLine`](super::RecordLine): a
///   replay of the record gives the same raw readings, hence the same rejections.
pub struct OpcUaConnector {
    config: OpcUaConfig,
    state: Mutex<State>,
    history: StdMutex<BTreeMap<CultureDay, RawReading>>,
    recorder: Option<Recorder>,
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
        let recorder = config.record.as_deref().map(Recorder::open).transpose()?;
        Ok(Self {
            config,
            state: Mutex::new(State::default()),
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
}

#[async_trait]
impl Connector for OpcUaConnector {
    async fn read_raw(&self, day: CultureDay) -> Result<RawReading, ConnectorError> {
        self.read_day(day).await
    }

    async fn write_setpoints(&self, setpoints: &Setpoints) -> Result<WriteReceipt, ConnectorError> {
        self.write(setpoints).await
    }

    async fn health(&self) -> Health {
        self.check_health().await
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
