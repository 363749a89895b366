//! The [`Connector`] trait: how the twin reads a day's values from and writes setpoints to a
//! reactor. Implement it against `perfusio-core` alone to connect new hardware.
//!
//! A connector only **reads**: it returns the day's values exactly as found
//! ([`RawReading`]). Validation is one step shared by every connector
//! ([`RawReading::validate`], or [`read_validated`] for both at once), so that whoever holds
//! a `dyn Connector` sees every rejected value with its reason and origin, from any source.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use time::OffsetDateTime;

use crate::CultureDay;
use crate::controls::{Control, Setpoints};
use crate::design_space::{DesignSpace, Violation};
use crate::reading::{RawReading, ValidatedSample};

/// A source of daily readings and a sink for setpoints (a file, a simulated or real reactor).
///
/// The trait is object safe, so the twin can hold any connector as
/// `Box<dyn Connector>` or `Arc<dyn Connector>`. Methods take `&self`: connectors use
/// interior mutability and must be safe to share between tasks.
///
/// ```
/// use std::sync::Mutex;
/// use perfusio_core::{
///     async_trait, read_validated, Connector, ConnectorError, CultureDay, Health, Origin,
///     RawReading, RawValue, Setpoints, Species, WriteReceipt, DEFAULT_AMBR250_DESIGN_SPACE as DS,
/// };
///
/// /// A connector that always reports the same cell density and an unreadable glucose.
/// #[derive(Debug, Default)]
/// struct Constant { last: Mutex<Option<Setpoints>> }
///
/// #[async_trait]
/// impl Connector for Constant {
///     async fn read_raw(&self, day: CultureDay) -> Result<RawReading, ConnectorError> {
///         let here = Origin::Source { name: "constant".into() };
///         Ok(RawReading::new(day)
///             .with(Species::VCD, RawValue::Number(10.0), here.clone())
///             .with(Species::Glc, RawValue::Text("see lab book".into()), here))
///     }
///     async fn write_setpoints(&self, sp: &Setpoints) -> Result<WriteReceipt, ConnectorError> {
///         *self.last.lock().map_err(|_| ConnectorError::Data {
///             context: "constant".into(), message: "poisoned".into() })? = Some(sp.clone());
///         Ok(WriteReceipt::all_confirmed(sp))
///     }
///     async fn health(&self) -> Health { Health::Ok }
///     fn describe(&self) -> String { "constant test connector".into() }
/// }
///
/// # tokio_test_block_on(async {
/// let c: Box<dyn Connector> = Box::new(Constant::default());
/// let checked = read_validated(&*c, 2, &DS).await.unwrap();
/// assert_eq!(checked.sample.get(Species::VCD), Some(10.0));
/// assert_eq!(checked.rejections[0].reason.code(), "not_a_number");
/// let r = c.write_setpoints(&Setpoints::defaults(2)).await.unwrap();
/// assert!(r.is_fully_confirmed());
/// assert!(c.health().await.is_ok());
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
    /// Reads culture day `day` exactly as the source has it: numbers not yet validated,
    /// plus every value that could not even be read as a number, each with its origin.
    /// Validate it with [`RawReading::validate`] (or call [`read_validated`]).
    ///
    /// A day the source does not have yet gives [`ConnectorError::NotYetAvailable`]; a
    /// failure that concerns the whole day (the link, the file, the culture-day node) is an
    /// error, a problem with one value is never an error but a value that validation rejects.
    async fn read_raw(&self, day: CultureDay) -> Result<RawReading, ConnectorError>;

    /// Applies setpoints from `setpoints.day` onward and reports, per control, what was
    /// applied (confirmed by a read-back, unconfirmed, or rejected with the reason).
    async fn write_setpoints(&self, setpoints: &Setpoints) -> Result<WriteReceipt, ConnectorError>;

    /// Whether the connection or source is usable now, and if not quite, why.
    async fn health(&self) -> Health;

    /// Human-readable description (kind, endpoint or path); never contains secrets.
    fn describe(&self) -> String;

    /// Called once when a twin resumes a run from its audit log in a new process, with the
    /// setpoints it wrote before, in day order. A connector whose plant lives in this
    /// process (a simulator) replays them so that the plant is where the interrupted run
    /// left it; a real reactor or a file kept its own state, so the default does nothing.
    /// Never re-send the setpoints to real hardware from here.
    async fn restore(&self, written: &[Setpoints]) -> Result<(), ConnectorError> {
        let _ = written;
        Ok(())
    }

    /// Gives the plant a manual addition made after day `day`'s sample (a glucose bolus, a
    /// media exchange). A real reactor or a file received it by hand (the operator did it),
    /// so the default does nothing and returns `Ok(false)`; a simulator applies it to its
    /// state and returns `Ok(true)`.
    async fn add(&self, day: CultureDay, addition: &Addition) -> Result<bool, ConnectorError> {
        let _ = (day, addition);
        Ok(false)
    }
}

/// A manual addition to a culture, made after a day's sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Addition {
    /// Glucose added: its concentration rises by `g_per_l`.
    GlucoseBolus {
        /// Concentration increase, g/L.
        g_per_l: f64,
    },
    /// `fraction` of the working volume exchanged for fresh medium, cells retained.
    MediaExchange {
        /// Fraction in (0, 1].
        fraction: f64,
        /// Glucose of the fresh medium, g/L.
        glucose: f64,
        /// Glutamine of the fresh medium, mmol/L.
        glutamine: f64,
    },
}

impl Addition {
    /// Checks the amounts: a bolus > 0, a fraction in (0, 1], medium concentrations ≥ 0,
    /// everything finite.
    pub fn check(&self) -> Result<(), String> {
        let ok = match *self {
            Self::GlucoseBolus { g_per_l } => g_per_l.is_finite() && g_per_l > 0.0,
            Self::MediaExchange {
                fraction,
                glucose,
                glutamine,
            } => {
                fraction.is_finite()
                    && fraction > 0.0
                    && fraction <= 1.0
                    && glucose.is_finite()
                    && glucose >= 0.0
                    && glutamine.is_finite()
                    && glutamine >= 0.0
            }
        };
        if ok {
            Ok(())
        } else {
            Err(format!("invalid addition {self:?}"))
        }
    }

    /// The state after the addition: a bolus raises glucose; an exchange moves glucose and
    /// glutamine toward the medium's, dilutes glutamate, lactate, ammonium, pyruvate and
    /// titer, and keeps the cells (VCD, viability).
    ///
    /// ```
    /// use perfusio_core::{Addition, Species};
    /// let mut s = [10.0, 95.0, 1.0, 2.0, 3.0, 40.0, 5.0, 1.0, 500.0];
    /// Addition::MediaExchange { fraction: 0.5, glucose: 5.0, glutamine: 4.0 }.apply(&mut s);
    /// assert_eq!((s[Species::Glc.index()], s[Species::Lac.index()], s[Species::VCD.index()]), (3.0, 20.0, 10.0));
    /// Addition::GlucoseBolus { g_per_l: 0.5 }.apply(&mut s);
    /// assert_eq!(s[Species::Glc.index()], 3.5);
    /// ```
    pub fn apply(&self, state: &mut crate::SpeciesArray<f64>) {
        use crate::Species;
        match *self {
            Self::GlucoseBolus { g_per_l } => state[Species::Glc.index()] += g_per_l,
            Self::MediaExchange {
                fraction,
                glucose,
                glutamine,
            } => {
                for s in Species::ALL {
                    let k = s.index();
                    state[k] = match s {
                        Species::VCD | Species::Via => state[k],
                        Species::Glc => (1.0 - fraction) * state[k] + fraction * glucose,
                        Species::Gln => (1.0 - fraction) * state[k] + fraction * glutamine,
                        _ => (1.0 - fraction) * state[k],
                    };
                }
            }
        }
    }
}

/// Reads culture day `day` from `connector` and validates it against `design_space`: the
/// one validation boundary, the same for every connector.
///
/// Takes `&dyn Connector` as well as any concrete connector.
pub async fn read_validated<C: Connector + ?Sized>(
    connector: &C,
    day: CultureDay,
    design_space: &DesignSpace,
) -> Result<ValidatedSample, ConnectorError> {
    Ok(connector.read_raw(day).await?.validate(design_space))
}

/// What [`Connector::health`] found: usable, usable with a problem, or not usable, with
/// the reason in words an operator can act on.
///
/// Serialised as `{"status":"ok"}`, `{"status":"degraded","reason":"..."}` or
/// `{"status":"down","reason":"..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Health {
    /// Usable.
    Ok,
    /// Usable, but something is wrong or not there yet (e.g. a file not created yet in
    /// follow mode, a node reporting a bad status).
    Degraded {
        /// What is wrong.
        reason: String,
    },
    /// Not usable now (link down, file missing or unreadable).
    Down {
        /// Why.
        reason: String,
    },
}

impl Health {
    /// `true` for [`Health::Ok`].
    pub fn is_ok(&self) -> bool {
        matches!(self, Self::Ok)
    }

    /// `true` unless [`Health::Down`]: reads and writes can be attempted.
    pub fn is_usable(&self) -> bool {
        !matches!(self, Self::Down { .. })
    }

    /// The reason, unless [`Health::Ok`].
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Ok => None,
            Self::Degraded { reason } | Self::Down { reason } => Some(reason),
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ok => f.write_str("ok"),
            Self::Degraded { reason } => write!(f, "degraded: {reason}"),
            Self::Down { reason } => write!(f, "down: {reason}"),
        }
    }
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

impl ControlReceipt {
    /// Relative tolerance of a read-back confirmation: `|readback − requested| ≤
    /// READBACK_TOLERANCE · max(|requested|, 1)`.
    pub const READBACK_TOLERANCE: f64 = 1e-9;

    /// The receipt of a control the target accepted: [`WriteStatus::Confirmed`] when the
    /// value read back from `target` equals the request within
    /// [`ControlReceipt::READBACK_TOLERANCE`], else [`WriteStatus::Unconfirmed`] saying what
    /// was read back (or that nothing could be). `target` names where it was read, e.g.
    /// `node ns=2;s=R01/T` or `virtual reactor R01`.
    ///
    /// ```
    /// use perfusio_core::{Control, ControlReceipt, WriteStatus};
    /// let ok = ControlReceipt::from_readback(Control::Agitation, 850.0, Some(850.0), "R01");
    /// assert_eq!(ok.status, WriteStatus::Confirmed);
    /// let off = ControlReceipt::from_readback(Control::Agitation, 855.0, Some(860.0), "R01");
    /// assert_eq!(off.status, WriteStatus::Unconfirmed { reason: "read back 860 from R01".into() });
    /// ```
    pub fn from_readback(
        control: Control,
        requested: f64,
        readback: Option<f64>,
        target: &str,
    ) -> Self {
        let status = match readback {
            Some(r)
                if (r - requested).abs() <= Self::READBACK_TOLERANCE * requested.abs().max(1.0) =>
            {
                WriteStatus::Confirmed
            }
            Some(r) => WriteStatus::Unconfirmed {
                reason: format!("read back {r} from {target}"),
            },
            None => WriteStatus::Unconfirmed {
                reason: format!("{target} could not be read back"),
            },
        };
        Self {
            control,
            requested,
            readback,
            status,
        }
    }
}

/// What a connector applied when asked to write setpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteReceipt {
    /// Culture day the setpoints act from.
    pub day: CultureDay,
    /// One entry per control written.
    pub controls: Vec<ControlReceipt>,
    /// When the write completed.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub timestamp: Option<OffsetDateTime>,
}

impl WriteReceipt {
    /// A receipt of the write of day `day`'s setpoints, completed now.
    pub fn new(day: CultureDay, controls: Vec<ControlReceipt>) -> Self {
        Self {
            day,
            controls,
            timestamp: Some(OffsetDateTime::now_utc()),
        }
    }

    /// A receipt confirming every control at the requested value (for targets that apply
    /// writes synchronously and cannot be read back, such as a setpoint log).
    pub fn all_confirmed(setpoints: &Setpoints) -> Self {
        Self::new(
            setpoints.day,
            setpoints
                .iter()
                .map(|(control, v)| ControlReceipt {
                    control,
                    requested: v,
                    readback: Some(v),
                    status: WriteStatus::Confirmed,
                })
                .collect(),
        )
    }

    /// The receipt of control `control`, if it was part of the write.
    pub fn control(&self, control: Control) -> Option<&ControlReceipt> {
        self.controls.iter().find(|c| c.control == control)
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
        day: CultureDay,
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
        async fn read_raw(&self, day: CultureDay) -> Result<RawReading, ConnectorError> {
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
        async fn health(&self) -> Health {
            Health::Down {
                reason: "always failing".into(),
            }
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
        let e = c.read_raw(5).await.unwrap_err();
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
        let h = c.health().await;
        assert!(!h.is_usable());
        assert_eq!(h.to_string(), "down: always failing");
        assert_eq!(h.reason(), Some("always failing"));
        // the helper propagates the error and its future can cross threads
        fn assert_send<F: std::future::Future + Send>(f: F) -> F {
            f
        }
        let ds = crate::DEFAULT_AMBR250_DESIGN_SPACE;
        let e = assert_send(read_validated(&*c, 5, &ds)).await.unwrap_err();
        assert!(e.is_transient());
        let e = ConnectorError::Authentication {
            endpoint: "opc.tcp://127.0.0.1:4840".into(),
            reason: "BadIdentityTokenRejected".into(),
        };
        assert!(!e.is_transient());
    }

    #[test]
    fn health_serde_and_levels() {
        let all = [
            Health::Ok,
            Health::Degraded {
                reason: "file not created yet".into(),
            },
            Health::Down {
                reason: "connection refused".into(),
            },
        ];
        let json = serde_json::to_string(&all).unwrap();
        assert_eq!(
            json,
            r#"[{"status":"ok"},{"status":"degraded","reason":"file not created yet"},{"status":"down","reason":"connection refused"}]"#
        );
        assert_eq!(serde_json::from_str::<Vec<Health>>(&json).unwrap(), all);
        assert_eq!(
            all.iter().map(Health::is_usable).collect::<Vec<_>>(),
            [true, true, false]
        );
        assert!(all[0].is_ok() && !all[1].is_ok());
        assert_eq!(all[0].reason(), None);
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
