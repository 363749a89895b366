//! [`Observer`]: hooks the twin calls on each step (progress bars, dashboards, tests).

use perfusio_audit::Event;
use perfusio_core::CultureDay;

use crate::report::{DayRecord, RunReport};

/// What the twin tells an observer when a run starts.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    /// Run id.
    pub run_id: String,
    /// The run's seed (drawn and recorded when the configuration had none).
    pub seed: u64,
    /// First culture day this process runs (0, or the day after the last complete one when
    /// resuming).
    pub first_day: CultureDay,
    /// Last culture day of the run (`duration_days`: read only, no decision).
    pub last_day: CultureDay,
    /// The connector's description.
    pub connector: String,
    /// The audit log.
    pub audit_path: std::path::PathBuf,
}

/// Hooks called by the daily loop; every method has a no-op default. Observers run on the
/// loop's task: keep them quick (hand heavy work to a channel).
///
/// Every step of the loop is one audit record, and [`Observer::step`] receives exactly that
/// record's event, so an observer sees what the log says.
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use perfusio_twin::{DayRecord, Observer};
/// #[derive(Debug, Default)]
/// struct Count(AtomicU32);
/// impl Observer for Count {
///     fn day_completed(&self, _day: &DayRecord) {
///         self.0.fetch_add(1, Ordering::Relaxed);
///     }
/// }
/// ```
pub trait Observer: Send + Sync + std::fmt::Debug {
    /// The run starts (or resumes).
    fn run_started(&self, info: &RunInfo) {
        let _ = info;
    }
    /// One step of culture day `day` was recorded (its audit event).
    fn step(&self, day: CultureDay, event: &Event) {
        let _ = (day, event);
    }
    /// A culture day is complete (its terminal record is written).
    fn day_completed(&self, day: &DayRecord) {
        let _ = day;
    }
    /// The run ended (completed, cancelled, data ended).
    fn run_finished(&self, report: &RunReport) {
        let _ = report;
    }
}

/// The observer that does nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;

impl Observer for NoObserver {}
