//! The [`Connector`] trait: how the twin reads samples from and writes setpoints to a
//! reactor. Implement it against `perfusio-core` alone to connect new hardware.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use time::OffsetDateTime;

use crate::controls::{Control, Setpoints};
use crate::design_space::Violation;
use crate::sample::Sample;

/// A source of daily samples and a sink for setpoints (a file, a simulated or real reactor).
///
/// The trait is object safe, so the twin can hold any connector as
/// `Box<dyn Connector>` or `Arc<dyn Connector>`. Methods take `&self`: connectors use
/// interior mutability and must be safe to share between tasks.
///
/// ```
/// use std::sync::Mutex;
/// use perfusio_core::{
///     async_trait, Connector, ConnectorError, ControlReceipt, Sample, Setpoints, Species,
///     WriteReceipt, WriteStatus,
/// };
///
/// /// A connector that always reports the same cell density and remembers the last write.
/// #[derive(Debug, Default)]
/// struct Constant { last: Mutex<Option<Setpoints>> }
///
/// #[async_trait]
/// impl Connector for Constant {
///     async fn read_sample(&self, day: u32) -> Result<Sample, ConnectorError> {
///         Ok(Sample::new(day).with(Species::VCD, 10.0))
///     }
///     async fn write_setpoints(&self, sp: &Setpoints) -> Result<WriteReceipt, ConnectorError> {
///         *self.last.lock().map_err(|_| ConnectorError::Data {
///             context: "constant".into(), message: "poisoned".into() })? = Some(sp.clone());
///         Ok(WriteReceipt::all_confirmed(sp))
///     }
///     async fn is_alive(&self) -> bool { true }
///     fn describe(&self) -> String { "constant test connector".into() }
/// }
///
/// # tokio_test_block_on(async {
/// let c: Box<dyn Connector> = Box::new(Constant::default());
/// let s = c.read_sample(2).await.unwrap();
/// assert_eq!(s.get(Species::VCD), Some(10.0));
/// let r = c.write_setpoints(&Setpoints::defaults(2)).await.unwrap();
/// assert!(r.is_fully_confirmed());
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     use std::task::{Context, Poll, Waker};
/// #     let mut f = std::pin::pin!(f);
/// #     let mut cx = Context::from_waker(Waker::noop());
/// #     loop { if let Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
/// # }
/// ```
#[async_trait]
pub trait Connector: Send + Sync + std::fmt::Debug {
    /// Reads the sample of culture day `day`. A day the source does not have yet gives
    /// [`ConnectorError::NotYetAvailable`].
    async fn read_sample(&self, day: u32) -> Result<Sample, ConnectorError>;

    /// Applies setpoints from `setpoints.day` onward and reports what was applied.
    async fn write_setpoints(&self, setpoints: &Setpoints) -> Result<WriteReceipt, ConnectorError>;

    /// Whether the connection/source is usable now.
    async fn is_alive(&self) -> bool;

    /// Human-readable description (kind, endpoint or path); never contains secrets.
    fn describe(&self) -> String;
}

/// Outcome of writing one control.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[non_exhaustive]
pub enum WriteStatus {
    /// Written and confirmed (e.g. read back equal).
    Confirmed,
    /// Written, but not confirmed (read-back failed or differed).
    Unconfirmed {
        /// Why confirmation failed.
        reason: String,
    },
    /// Refused by the target.
    Rejected {
        /// Why it was refused.
        reason: String,
    },
}

/// Per-control part of a [`WriteReceipt`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlReceipt {
    /// The control.
    pub control: Control,
    /// Value requested.
    pub requested: f64,
    /// Value read back from the target, if it was read back.
    pub readback: Option<f64>,
    /// Outcome.
    #[serde(flatten)]
    pub status: WriteStatus,
}

/// What a connector applied when asked to write setpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteReceipt {
    /// Culture day the setpoints act from.
    pub day: u32,
    /// One entry per control written.
    pub controls: Vec<ControlReceipt>,
    /// When the write completed.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub timestamp: Option<OffsetDateTime>,
}

impl WriteReceipt {
    /// A receipt confirming every control at the requested value (for targets that apply
    /// writes synchronously, such as simulators).
    pub fn all_confirmed(setpoints: &Setpoints) -> Self {
        Self {
            day: setpoints.day,
            controls: setpoints
                .iter()
                .map(|(control, v)| ControlReceipt {
                    control,
                    requested: v,
                    readback: Some(v),
                    status: WriteStatus::Confirmed,
                })
                .collect(),
            timestamp: Some(OffsetDateTime::now_utc()),
        }
    }

    /// `true` when every control was confirmed.
    pub fn is_fully_confirmed(&self) -> bool {
        self.controls
            .iter()
            .all(|c| c.status == WriteStatus::Confirmed)
    }
}

/// Errors of connectors, shared so the twin can react uniformly (retry transient ones,
/// record and skip others).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConnectorError {
    /// The requested day is not (yet) in the source.
    #[error("day {day} is not available yet: {reason}")]
    NotYetAvailable {
        /// Requested day.
        day: u32,
        /// Details (e.g. last day present, time waited).
        reason: String,
    },
    /// The link to the reactor is down.
    #[error("disconnected from {endpoint}: {reason}")]
    Disconnected {
        /// Endpoint (URL or path).
        endpoint: String,
        /// Details.
        reason: String,
    },
    /// An operation did not complete in time.
    #[error("{operation} timed out after {after:?}")]
    Timeout {
        /// The operation (e.g. "read VCD").
        operation: String,
        /// The timeout that elapsed.
        after: Duration,
    },
    /// Credentials were refused.
    #[error("authentication to {endpoint} failed: {reason}")]
    Authentication {
        /// Endpoint.
        endpoint: String,
        /// Details.
        reason: String,
    },
    /// The peer's certificate is not trusted.
    #[error("certificate of {endpoint} is not trusted: {reason}")]
    Untrusted {
        /// Endpoint.
        endpoint: String,
        /// Details, including where to put the certificate to trust it.
        reason: String,
    },
    /// An addressed item (e.g. an OPC UA node) failed.
    #[error("node {node}: {status}")]
    Node {
        /// Node identifier or name.
        node: String,
        /// Status or reason.
        status: String,
    },
    /// Setpoints were refused before sending (design-space hard limits).
    #[error("setpoints refused: {}", .0.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("; "))]
    Rejected(Vec<Violation>),
    /// I/O failure.
    #[error("{context}: {source}")]
    Io {
        /// What was being done (with the path).
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Malformed data from the source.
    #[error("{context}: {message}")]
    Data {
        /// Where (file, row, column, node).
        context: String,
        /// What is wrong.
        message: String,
    },
    /// Any other failure, with its source.
    #[error("{context}: {source}")]
    Other {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl ConnectorError {
    /// `true` for failures worth retrying later (link down, timeout, data not there yet).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Disconnected { .. } | Self::Timeout { .. } | Self::NotYetAvailable { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Debug)]
    struct Failing;

    #[async_trait]
    impl Connector for Failing {
        async fn read_sample(&self, day: u32) -> Result<Sample, ConnectorError> {
            Err(ConnectorError::NotYetAvailable {
                day,
                reason: "last day in file is 3".into(),
            })
        }
        async fn write_setpoints(&self, _: &Setpoints) -> Result<WriteReceipt, ConnectorError> {
            Err(ConnectorError::Timeout {
                operation: "write".into(),
                after: Duration::from_millis(1500),
            })
        }
        async fn is_alive(&self) -> bool {
            false
        }
        fn describe(&self) -> String {
            "failing".into()
        }
    }

    fn assert_send_sync<T: Send + Sync>() {}

    #[tokio::test]
    async fn trait_objects_work_and_errors_classify() {
        assert_send_sync::<Arc<dyn Connector>>();
        assert_send_sync::<ConnectorError>();
        let c: Arc<dyn Connector> = Arc::new(Failing);
        let e = c.read_sample(5).await.unwrap_err();
        assert!(e.is_transient());
        assert_eq!(
            e.to_string(),
            "day 5 is not available yet: last day in file is 3"
        );
        let e = c
            .write_setpoints(&Setpoints::defaults(5))
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "write timed out after 1.5s");
        assert!(!c.is_alive().await);
        let e = ConnectorError::Authentication {
            endpoint: "opc.tcp://127.0.0.1:4840".into(),
            reason: "BadIdentityTokenRejected".into(),
        };
        assert!(!e.is_transient());
    }

    #[test]
    fn receipt_confirmation_and_serde() {
        let sp = Setpoints::defaults(3);
        let mut r = WriteReceipt::all_confirmed(&sp);
        assert!(r.is_fully_confirmed());
        assert_eq!(r.controls.len(), 6);
        r.controls[4].status = WriteStatus::Unconfirmed {
            reason: "read-back 849".into(),
        };
        assert!(!r.is_fully_confirmed());
        let json = serde_json::to_string(&r).unwrap();
        assert!(
            json.contains(r#""status":"unconfirmed","reason":"read-back 849""#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<WriteReceipt>(&json).unwrap(), r);
    }
}
