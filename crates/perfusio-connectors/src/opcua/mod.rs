//! OPC UA: a client connector for ambr250-class reactors ([`OpcUaConnector`]), an ambr250
//! emulator server ([`Emulator`]) and record/replay of reads ([`ReplayConnector`]).
//!
//! Built on the pure-Rust `async-opcua` stack (no OpenSSL), behind the `opcua` feature.
//!
//! The client owns its reconnect policy ([`Backoff`]): the library's own session
//! retry is switched off so that every failure surfaces to the connector, which then
//! classifies it — rejected credentials ([`perfusio_core::ConnectorError::Authentication`])
//! and untrusted certificates ([`perfusio_core::ConnectorError::Untrusted`]) fail at once,
//! link failures and timeouts are retried on the backoff schedule, on the first connect and
//! on every later failure alike.

mod client;
mod node_map;
mod record;
mod server;

pub use client::{Backoff, Identity, OpcUaConfig, OpcUaConnector, Security};
pub use node_map::{ADVANCE_DAYS, AMBR250_NAMESPACE_URI, CULTURE_DAY, NodeMap, ambr250_node_id};
pub use record::{RecordLine, ReplayConnector};
pub use server::{Emulator, EmulatorConfig, MAX_ADVANCE_DAYS, MAX_REACTORS};
