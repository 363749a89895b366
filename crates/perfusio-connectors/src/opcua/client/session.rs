//! Connection and session: building the client, trusting the server, opening a session
//! and resolving the node map for it.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use opcua::client::{Client, ClientBuilder, IdentityToken, Session};
use opcua::types::{NodeId, StatusCode};
use perfusio_core::{ConnectorError, Control};
use tokio::task::JoinHandle;

use super::OpcUaConnector;
use super::request::{Failure, same_code};
use crate::opcua::config::Identity;
use crate::opcua::node_map::{CULTURE_DAY, NodeText, parse_node_text};

/// One node of the map, resolved for the current session.
#[derive(Debug, Clone)]
pub(super) struct Node {
    pub(super) label: String,
    pub(super) text: String,
    pub(super) id: NodeId,
}

impl Node {
    pub(super) fn name(&self) -> String {
        format!("{} ({})", self.label, self.text)
    }
}

#[derive(Debug, Clone)]
pub(super) enum Slot {
    Day,
    Species(perfusio_core::Species),
    Derived(perfusio_core::Derived),
    Control(Control),
}

#[derive(Debug)]
pub(super) struct Resolved {
    /// Every node; culture day first.
    pub(super) all: Vec<(Slot, Node)>,
}

impl Resolved {
    pub(super) fn controls(&self) -> Vec<(Control, Node)> {
        self.all
            .iter()
            .filter_map(|(s, n)| match s {
                Slot::Control(c) => Some((*c, n.clone())),
                _ => None,
            })
            .collect()
    }
}

pub(super) struct Conn {
    pub(super) session: Arc<Session>,
    pub(super) event_loop: JoinHandle<StatusCode>,
    pub(super) nodes: Arc<Resolved>,
}

impl Conn {
    pub(super) fn close(self) {
        self.session.disable_reconnects();
        self.event_loop.abort();
    }
}

#[derive(Default)]
pub(super) struct State {
    pub(super) client: Option<Client>,
    pub(super) conn: Option<Conn>,
}

impl OpcUaConnector {
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
    pub(super) async fn ensure_conn(&self, state: &mut State) -> Result<(), Failure> {
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
}
