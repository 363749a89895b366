//! The simulated reactor of `perfusio-mechanistic` as a connector
//! ([`VirtualReactorConnector`]), and the [`Plant`] abstraction it and the OPC UA emulator
//! drive (implemented by [`perfusio_mechanistic::VirtualReactor`]).

use std::sync::{Mutex, MutexGuard};

use perfusio_core::{
    Addition, Connector, ConnectorError, ControlArray, ControlReceipt, CultureDay, DesignSpace,
    Health, Origin, RawReading, Sample, Setpoints, WriteReceipt, WriteStatus, async_trait,
};
use perfusio_mechanistic::{MechError, VirtualReactor, VirtualReactorConfig};

/// A simulated reactor advancing one culture day at a time: what
/// [`VirtualReactorConnector`] and the OPC UA emulator serve; [`VirtualReactor`] implements
/// it.
///
/// Implement it to serve another simulator (or a deliberately faulty one, in tests).
pub trait Plant: Send + Sync + std::fmt::Debug {
    /// Reactor identifier (e.g. `R01`).
    fn reactor_id(&self) -> String;
    /// Current culture day (0 at inoculation).
    fn day(&self) -> CultureDay;
    /// Integrates from the current day to the next under the current setpoints.
    fn advance_day(&mut self) -> Result<(), ConnectorError>;
    /// Advances day by day until `day` (no-op when already there or later).
    fn advance_to(&mut self, day: CultureDay) -> Result<(), ConnectorError> {
        while self.day() < day {
            self.advance_day()?;
        }
        Ok(())
    }
    /// Measured sample of an already simulated day (`day <= self.day()`), as the
    /// instrument reports it: values may be missing, noisy or implausible.
    fn sample(&self, day: CultureDay) -> Result<Sample, ConnectorError>;
    /// Setpoints acting now, in canonical control order (what a read-back sees).
    fn setpoints(&self) -> ControlArray<f64>;
    /// Replaces the setpoints from the current day on; refuses what it cannot apply.
    fn set_setpoints(&mut self, values: &ControlArray<f64>) -> Result<(), ConnectorError>;
    /// Applies a manual addition to the current day's state; `Ok(false)` (the default) when
    /// this plant cannot receive one.
    fn add(&mut self, addition: &Addition) -> Result<bool, ConnectorError> {
        let _ = addition;
        Ok(false)
    }
}

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
    fn day(&self) -> CultureDay {
        VirtualReactor::day(self)
    }
    fn advance_day(&mut self) -> Result<(), ConnectorError> {
        let day = VirtualReactor::day(self);
        VirtualReactor::advance_day(self)
            .map_err(|e| mech_error(format!("simulating day {day} -> {}", day + 1), e))
    }
    fn advance_to(&mut self, day: CultureDay) -> Result<(), ConnectorError> {
        let id = self.config().reactor_id.clone();
        VirtualReactor::advance_to(self, day)
            .map_err(|e| mech_error(format!("simulating {id} up to day {day}"), e))
    }
    fn sample(&self, day: CultureDay) -> Result<Sample, ConnectorError> {
        VirtualReactor::sample(self, day).map_err(|e| mech_error(format!("sampling day {day}"), e))
    }
    fn setpoints(&self) -> ControlArray<f64> {
        VirtualReactor::setpoints(self)
    }
    fn set_setpoints(&mut self, values: &ControlArray<f64>) -> Result<(), ConnectorError> {
        VirtualReactor::set_setpoints(self, values)
            .map_err(|e| mech_error("setting setpoints".into(), e))
    }
    fn add(&mut self, addition: &Addition) -> Result<bool, ConnectorError> {
        let mut state = self.clean_state();
        addition.apply(&mut state);
        self.replace_current_state(state)
            .map_err(|e| mech_error(format!("adding {addition:?}"), e))?;
        Ok(true)
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

/// A simulated ambr250 reactor (any [`Plant`], by default the mechanistic
/// [`VirtualReactor`]) behind the [`Connector`] trait.
///
/// - `read_raw(day)` simulates up to `day` if the plant is not there yet (never further)
///   and returns that day's sample as a raw reading (origin `virtual reactor <id>`), which
///   goes through the same validation as any other connector's; reading a day twice gives
///   the same values (the noise is a function of the seed and the day).
/// - `write_setpoints` applies the setpoints from `setpoints.day` on: the plant first
///   simulates up to that day under the old setpoints; the past is never rewritten, so a
///   day before the current one is refused. Values are checked against the design space's
///   hard limits first ([`ConnectorError::Rejected`], nothing applied). Then the setpoints
///   are **read back** from the plant: each control is `Confirmed` when the plant holds the
///   requested value, `Unconfirmed` when it holds another, and `Rejected` with the plant's
///   reason when the plant refused the write.
///
/// ```
/// use perfusio_connectors::virtual_reactor::VirtualReactorConnector;
/// use perfusio_core::{read_validated, Connector, Control, Setpoints, DEFAULT_AMBR250_DESIGN_SPACE as DS};
/// use perfusio_mechanistic::VirtualReactorConfig;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let vr = VirtualReactorConnector::new(VirtualReactorConfig { seed: 7, ..Default::default() }).unwrap();
/// let s = read_validated(&vr, 3, &DS).await.unwrap().sample;
/// assert_eq!((s.day, vr.day()), (3, 3));
/// let r = vr.write_setpoints(&Setpoints::defaults(3).with(Control::PerfusionRate, 1.5)).await.unwrap();
/// assert!(r.is_fully_confirmed());
/// assert!(vr.write_setpoints(&Setpoints::defaults(1)).await.is_err()); // the past stays
/// # });
/// ```
#[derive(Debug)]
pub struct VirtualReactorConnector<P: Plant = VirtualReactor> {
    plant: Mutex<P>,
    id: String,
    kind: &'static str,
    design_space: DesignSpace,
}

impl VirtualReactorConnector<VirtualReactor> {
    /// A new mechanistic reactor at day 0.
    pub fn new(config: VirtualReactorConfig) -> Result<Self, ConnectorError> {
        let r = VirtualReactor::new(config)
            .map_err(|e| mech_error("creating the virtual reactor".into(), e))?;
        Ok(Self::from_reactor(r))
    }

    /// Wraps an existing reactor (in whatever day it is); writes are checked against its
    /// configuration's design space.
    pub fn from_reactor(reactor: VirtualReactor) -> Self {
        let ds = reactor.config().design_space.clone();
        Self {
            kind: "perfusio-mechanistic",
            ..Self::from_plant(reactor, ds)
        }
    }

    /// `n` reactors `R01`…`Rnn` with distinct seeds derived from `base.seed`.
    pub fn ensemble(n: usize, base: VirtualReactorConfig) -> Result<Vec<Self>, ConnectorError> {
        let rs = VirtualReactor::ensemble(n, base)
            .map_err(|e| mech_error(format!("creating {n} virtual reactors"), e))?;
        Ok(rs.into_iter().map(Self::from_reactor).collect())
    }

    /// A copy of the reactor (e.g. to inspect the noise-free history).
    pub fn snapshot(&self) -> Result<VirtualReactor, ConnectorError> {
        Ok(self.lock()?.clone())
    }
}

impl<P: Plant> VirtualReactorConnector<P> {
    /// Serves any plant; setpoint writes are checked against `design_space`'s hard limits
    /// before they reach it.
    pub fn from_plant(plant: P, design_space: DesignSpace) -> Self {
        let id = plant.reactor_id();
        Self {
            plant: Mutex::new(plant),
            id,
            kind: "custom plant",
            design_space,
        }
    }

    /// Reactor id.
    pub fn reactor_id(&self) -> &str {
        &self.id
    }

    /// Current simulated day.
    pub fn day(&self) -> CultureDay {
        self.plant.lock().map(|r| r.day()).unwrap_or(0)
    }

    fn lock(&self) -> Result<MutexGuard<'_, P>, ConnectorError> {
        self.plant.lock().map_err(|_| ConnectorError::Data {
            context: format!("virtual reactor {}", self.id),
            message: "state lock poisoned by an earlier panic".into(),
        })
    }

    fn origin(&self) -> Origin {
        Origin::Source {
            name: format!("virtual reactor {}", self.id),
        }
    }

    /// The receipt of a write the plant refused: every control `Rejected` (a control the
    /// refusal names gets its own reason), read-back = what the plant still holds.
    fn refused(
        &self,
        setpoints: &Setpoints,
        held: &ControlArray<f64>,
        e: &ConnectorError,
    ) -> WriteReceipt {
        let controls = setpoints
            .iter()
            .map(|(control, requested)| {
                let own = match e {
                    ConnectorError::Rejected(v) => v.iter().find(|x| x.control == control),
                    _ => None,
                };
                let reason = match own {
                    Some(v) => format!("refused by virtual reactor {}: {v}", self.id),
                    None => format!(
                        "not applied: virtual reactor {} refused the setpoints ({e})",
                        self.id
                    ),
                };
                ControlReceipt {
                    control,
                    requested,
                    readback: Some(held[control.index()]),
                    status: WriteStatus::Rejected { reason },
                }
            })
            .collect();
        WriteReceipt::new(setpoints.day, controls)
    }
}

#[async_trait]
impl<P: Plant> Connector for VirtualReactorConnector<P> {
    async fn read_raw(&self, day: CultureDay) -> Result<RawReading, ConnectorError> {
        let mut p = self.lock()?;
        p.advance_to(day)?;
        let sample = p.sample(day)?;
        Ok(RawReading::from_sample(&sample, &self.origin()))
    }

    async fn write_setpoints(&self, setpoints: &Setpoints) -> Result<WriteReceipt, ConnectorError> {
        let mut p = self.lock()?;
        let now = p.day();
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
        if let Err(e) = self.design_space.validate(&setpoints.values) {
            return Err(match e {
                perfusio_core::CoreError::InvalidSetpoints(v) => ConnectorError::Rejected(v),
                other => ConnectorError::Data {
                    context: format!("setpoints for virtual reactor {}", self.id),
                    message: other.to_string(),
                },
            });
        }
        p.advance_to(setpoints.day)?;
        if let Err(e) = p.set_setpoints(&setpoints.values) {
            tracing::warn!(reactor = %self.id, error = %e, "virtual reactor refused the setpoints");
            return Ok(self.refused(setpoints, &p.setpoints(), &e));
        }
        // read back what the plant now holds
        let held = p.setpoints();
        let target = format!("virtual reactor {}", self.id);
        Ok(WriteReceipt::new(
            setpoints.day,
            setpoints
                .iter()
                .map(|(c, v)| ControlReceipt::from_readback(c, v, Some(held[c.index()]), &target))
                .collect(),
        ))
    }

    async fn add(&self, day: CultureDay, addition: &Addition) -> Result<bool, ConnectorError> {
        addition.check().map_err(|message| ConnectorError::Data {
            context: format!("virtual reactor {}", self.id),
            message,
        })?;
        let mut p = self.lock()?;
        if p.day() != day {
            return Err(ConnectorError::Data {
                context: format!("virtual reactor {}", self.id),
                message: format!(
                    "an addition after the day-{day} sample, but the reactor is at day {}",
                    p.day()
                ),
            });
        }
        p.add(addition)
    }

    async fn health(&self) -> Health {
        match self.lock() {
            Ok(_) => Health::Ok,
            Err(e) => Health::Down {
                reason: e.to_string(),
            },
        }
    }

    fn describe(&self) -> String {
        format!("virtual reactor {} ({})", self.id, self.kind)
    }

    /// Replays the setpoints written before a restart: the plant simulates up to each one's
    /// day under the previous setpoints and then holds it, exactly as the writes did the
    /// first time, so a plant rebuilt from the same configuration ends where the
    /// interrupted run left it. Setpoints of days the plant has already simulated are
    /// skipped (the past is never rewritten); a value the plant refuses is an error.
    async fn restore(&self, written: &[Setpoints]) -> Result<(), ConnectorError> {
        let mut p = self.lock()?;
        for sp in written {
            if sp.day < p.day() {
                continue;
            }
            p.advance_to(sp.day)?;
            p.set_setpoints(&sp.values)?;
        }
        Ok(())
    }
}
