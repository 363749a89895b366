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
//!
//! ```
//! use perfusio_connectors::opcua::{Emulator, EmulatorConfig, NodeMap, OpcUaConfig, OpcUaConnector};
//! use perfusio_connectors::virtual_reactor::virtual_plants;
//! use perfusio_core::{read_validated, Connector, Control, Setpoints, DEFAULT_AMBR250_DESIGN_SPACE as DS};
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let pki = tempfile::tempdir().unwrap();
//! // an emulated ambr250 with two reactors on a free loopback port
//! let emulator = Emulator::start(
//!     EmulatorConfig { pki_dir: pki.path().join("server"), ..EmulatorConfig::default() },
//!     virtual_plants(2, 42).unwrap(),
//! ).await.unwrap();
//! // the client connector for reactor R02, default ambr250 node map
//! let mut config = OpcUaConfig::new(emulator.endpoint_url(), NodeMap::ambr250("R02"));
//! config.pki_dir = pki.path().join("client");
//! let reactor = OpcUaConnector::new(config).unwrap();
//! let sample = read_validated(&reactor, 0, &DS).await.unwrap().sample;
//! assert_eq!(sample.reactor_id.as_deref(), Some("R02"));
//! let receipt = reactor
//!     .write_setpoints(&Setpoints::defaults(0).with(Control::PerfusionRate, 1.4))
//!     .await
//!     .unwrap();
//! assert!(receipt.is_fully_confirmed());
//! emulator.advance_days(1).unwrap();
//! let day1 = read_validated(&reactor, 1, &DS).await.unwrap().sample;
//! assert_eq!(day1.control(Control::PerfusionRate), Some(1.4));
//! assert!(reactor.health().await.is_ok());
//! emulator.stop().await;
//! # });
//! ```

mod client;
mod config;
mod node_map;
mod record;
mod server;

pub use client::OpcUaConnector;
pub use config::{Backoff, Identity, OpcUaConfig, Security};
pub use node_map::{ADVANCE_DAYS, AMBR250_NAMESPACE_URI, CULTURE_DAY, NodeMap, ambr250_node_id};
pub use record::{RecordLine, ReplayConnector};
pub use server::{Emulator, EmulatorConfig, MAX_ADVANCE_DAYS, MAX_REACTORS};
