//! The simulated reactor as a connector, and the [`Plant`] abstraction the OPC UA emulator
//! drives.

use perfusio_core::{ConnectorError, ControlArray, Sample};

/// A simulated reactor advancing one culture day at a time: what the OPC UA emulator
/// serves and what [`VirtualReactorConnector`](crate::virtual_reactor) wraps.
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
