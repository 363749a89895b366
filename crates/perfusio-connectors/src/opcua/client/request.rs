//! Requests: one Read or Write on the current session, retried with a new session on the
//! [`Backoff`](crate::opcua::Backoff) schedule, with every failure classified (credentials,
//! certificates, configuration: fatal; link and timeouts: retried).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use opcua::types::{
    AttributeId, DataValue, NodeId, ReadValueId, StatusCode, TimestampsToReturn, Variant,
    WriteValue,
};
use perfusio_core::{ConnectorError, Control};

use super::OpcUaConnector;
use super::session::{Conn, Node, Resolved, Slot};

/// Why one attempt failed.
pub(super) enum Failure {
    /// Link down, closed or refused: retry on the schedule.
    Link(String),
    /// The request timed out: retry on the schedule.
    Timeout(Duration),
    /// Do not retry (credentials, certificates, configuration, node errors).
    Fatal(ConnectorError),
}

/// What an attempt does once connected.
pub(super) enum Op {
    ReadAll,
    ReadControls,
    Write(Vec<(Control, f64)>),
}

pub(super) enum OpOut {
    Values(Arc<Resolved>, Vec<DataValue>),
    Statuses(Vec<StatusCode>),
}

pub(super) fn same_code(s: StatusCode, c: StatusCode) -> bool {
    (s.bits() & 0xFFFF_0000) == (c.bits() & 0xFFFF_0000)
}

pub(super) fn is_any(s: StatusCode, codes: &[StatusCode]) -> bool {
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
pub(super) const NO_DATA_CODES: [StatusCode; 3] = [
    StatusCode::BadNoDataAvailable,
    StatusCode::BadNoData,
    StatusCode::BadWaitingForInitialData,
];

impl OpcUaConnector {
    pub(super) fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.timeout_ms)
    }

    pub(super) fn endpoint(&self) -> String {
        self.config.endpoint.clone()
    }

    pub(super) fn classify(&self, status: StatusCode, doing: &str) -> Failure {
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

    pub(super) fn exhausted(&self, operation: &str, last: Option<Failure>) -> ConnectorError {
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
    pub(super) async fn run(
        &self,
        name: &str,
        op: Op,
        attempts: u32,
    ) -> Result<OpOut, ConnectorError> {
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
}
