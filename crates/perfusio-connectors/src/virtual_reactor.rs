//! The simulated reactor of `perfusio-mechanistic` as a connector
//! ([`VirtualReactorConnector`]), and the [`Plant`] abstraction the OPC UA emulator drives
//! (implemented by [`perfusio_mechanistic::VirtualReactor`]).

use perfusio_core::{ConnectorError, ControlArray, Sample};

/// A simulated reactor advancing one culture day at a time: what the OPC UA emulator
/// serves; [`VirtualReactor`] implements it.
///
/// Implement it to serve another simulator through the emulator.
pub trait Plant: Send + Sync + std::fmt::Debug {
    /// Reactor identifier (e.g. `R01`).
    fn reactor_id(&self) -> String;
    /// Current culture day (0 at inoculation).
    fn day(&self) -> u32;
    /// Integrates from the current day to the next under the current setpoints.
    fn advance_day(&mut self) -> Result<(), ConnectorError>;
    /// Measured sample of an already simulated day (`day <= self.day()`).
    fn sample(&self, day: u32) -> Result<Sample, ConnectorError>;
    /// Setpoints acting now, in canonical control order.
    fn setpoints(&self) -> ControlArray<f64>;
    /// Replaces the setpoints from the current day on; refuses hard-limit violations.
    fn set_setpoints(&mut self, values: &ControlArray<f64>) -> Result<(), ConnectorError>;
}

use std::sync::Mutex;

use perfusio_core::{Connector, Setpoints, WriteReceipt, async_trait};
use perfusio_mechanistic::{MechError, VirtualReactor, VirtualReactorConfig};

fn mech_error(context: String, e: MechError) -> ConnectorError {
    match e {
        MechError::InvalidSetpoints(v) => ConnectorError::Rejected(v),
        other => ConnectorError::Other {
            context,
            source: Box::new(other),
        },
    }
}

impl Plant for VirtualReactor {
    fn reactor_id(&self) -> String {
        self.config().reactor_id.clone()
    }
    fn day(&self) -> u32 {
        VirtualReactor::day(self)
    }
    fn advance_day(&mut self) -> Result<(), ConnectorError> {
        let day = VirtualReactor::day(self);
        VirtualReactor::advance_day(self)
            .map_err(|e| mech_error(format!("simulating day {day} -> {}", day + 1), e))
    }
    fn sample(&self, day: u32) -> Result<Sample, ConnectorError> {
        VirtualReactor::sample(self, day).map_err(|e| mech_error(format!("sampling day {day}"), e))
    }
    fn setpoints(&self) -> ControlArray<f64> {
        VirtualReactor::setpoints(self)
    }
    fn set_setpoints(&mut self, values: &ControlArray<f64>) -> Result<(), ConnectorError> {
        VirtualReactor::set_setpoints(self, values)
            .map_err(|e| mech_error("setting setpoints".into(), e))
    }
}

/// `n` simulated reactors (`R01`…) with the default configuration and distinct seeds
/// derived from `seed`, ready for the OPC UA emulator.
pub fn virtual_plants(n: usize, seed: u64) -> Result<Vec<Box<dyn Plant>>, ConnectorError> {
    let base = VirtualReactorConfig {
        seed,
        ..VirtualReactorConfig::default()
    };
    let reactors = VirtualReactor::ensemble(n, base)
        .map_err(|e| mech_error(format!("creating {n} virtual reactors"), e))?;
    Ok(reactors
        .into_iter()
        .map(|r| Box::new(r) as Box<dyn Plant>)
        .collect())
}

/// A simulated ambr250 reactor behind the [`Connector`] trait.
///
/// - `read_sample(day)` simulates up to `day` if the reactor is not there yet (never
///   further) and returns that day's noisy sample; reading a day twice gives the same
///   values (the noise is a function of the seed and the day).
/// - `write_setpoints` applies the setpoints from `setpoints.day` on: the reactor first
///   simulates up to that day under the old setpoints; the past is never rewritten, so a
///   day before the current one is refused. Values are checked against the design space's
///   hard limits ([`ConnectorError::Rejected`]).
///
/// ```
/// use perfusio_connectors::virtual_reactor::VirtualReactorConnector;
/// use perfusio_core::{Connector, Control, Setpoints};
/// use perfusio_mechanistic::VirtualReactorConfig;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let vr = VirtualReactorConnector::new(VirtualReactorConfig { seed: 7, ..Default::default() }).unwrap();
/// let s = vr.read_sample(3).await.unwrap();
/// assert_eq!((s.day, vr.day()), (3, 3));
/// let r = vr.write_setpoints(&Setpoints::defaults(3).with(Control::PerfusionRate, 1.5)).await.unwrap();
/// assert!(r.is_fully_confirmed());
/// assert!(vr.write_setpoints(&Setpoints::defaults(1)).await.is_err()); // the past stays
/// # });
/// ```
#[derive(Debug)]
pub struct VirtualReactorConnector {
    reactor: Mutex<VirtualReactor>,
    id: String,
}

impl VirtualReactorConnector {
    /// A new reactor at day 0.
    pub fn new(config: VirtualReactorConfig) -> Result<Self, ConnectorError> {
        let r = VirtualReactor::new(config)
            .map_err(|e| mech_error("creating the virtual reactor".into(), e))?;
        Ok(Self::from_reactor(r))
    }

    /// Wraps an existing reactor (in whatever day it is).
    pub fn from_reactor(reactor: VirtualReactor) -> Self {
        let id = Plant::reactor_id(&reactor);
        Self {
            reactor: Mutex::new(reactor),
            id,
        }
    }

    /// `n` reactors `R01`…`Rnn` with distinct seeds derived from `base.seed`.
    pub fn ensemble(n: usize, base: VirtualReactorConfig) -> Result<Vec<Self>, ConnectorError> {
        let rs = VirtualReactor::ensemble(n, base)
            .map_err(|e| mech_error(format!("creating {n} virtual reactors"), e))?;
        Ok(rs.into_iter().map(Self::from_reactor).collect())
    }

    /// Reactor id.
    pub fn reactor_id(&self) -> &str {
        &self.id
    }

    /// Current simulated day.
    pub fn day(&self) -> u32 {
        self.reactor.lock().map(|r| r.day()).unwrap_or(0)
    }

    /// A copy of the reactor (e.g. to inspect the noise-free history).
    pub fn snapshot(&self) -> Result<VirtualReactor, ConnectorError> {
        Ok(self.lock()?.clone())
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, VirtualReactor>, ConnectorError> {
        self.reactor.lock().map_err(|_| ConnectorError::Data {
            context: format!("virtual reactor {}", self.id),
            message: "state lock poisoned by an earlier panic".into(),
        })
    }
}

#[async_trait]
impl Connector for VirtualReactorConnector {
    async fn read_sample(&self, day: u32) -> Result<Sample, ConnectorError> {
        let mut r = self.lock()?;
        if day > r.day() {
            r.advance_to(day)
                .map_err(|e| mech_error(format!("simulating {} up to day {day}", self.id), e))?;
        }
        Plant::sample(&*r, day)
    }

    async fn write_setpoints(&self, setpoints: &Setpoints) -> Result<WriteReceipt, ConnectorError> {
        let mut r = self.lock()?;
        let now = r.day();
        if setpoints.day < now {
            return Err(ConnectorError::Data {
                context: format!("virtual reactor {}", self.id),
                message: format!(
                    "setpoints for day {} would rewrite the past: the reactor is at day {now}",
                    setpoints.day
                ),
            });
        }
        // validate first, so that a refused write does not advance the reactor
        if let Err(e) = r.config().design_space.validate(&setpoints.values) {
            return Err(match e {
                perfusio_core::CoreError::InvalidSetpoints(v) => ConnectorError::Rejected(v),
                other => ConnectorError::Data {
                    context: format!("setpoints for virtual reactor {}", self.id),
                    message: other.to_string(),
                },
            });
        }
        if setpoints.day > now {
            r.advance_to(setpoints.day).map_err(|e| {
                mech_error(
                    format!("simulating {} up to day {}", self.id, setpoints.day),
                    e,
                )
            })?;
        }
        Plant::set_setpoints(&mut *r, &setpoints.values)?;
        let applied = r.setpoints();
        let mut receipt = WriteReceipt::all_confirmed(setpoints);
        for c in &mut receipt.controls {
            c.readback = Some(applied[c.control.index()]);
        }
        Ok(receipt)
    }

    async fn is_alive(&self) -> bool {
        self.reactor.lock().is_ok()
    }

    fn describe(&self) -> String {
        format!("virtual reactor {} (perfusio-mechanistic)", self.id)
    }
}
