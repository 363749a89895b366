//! # perfusio-twin
//!
//! The online digital twin of a perfusion bioreactor, driven as a self-driving experiment —
//! the one crate another Rust project adds (`perfusio-twin = "0.1"`). It joins the layers
//! below it: a [`Connector`](perfusio_core::Connector) to the reactor (a CSV file, the
//! virtual reactor, OPC UA), the hybrid model of `perfusio-hybrid` (mechanism + GP, learned
//! online), the design policy of `perfusio-bed`, and the tamper-evident audit log of
//! `perfusio-audit`.
//!
//! ```no_run
//! use perfusio_twin::prelude::*;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), TwinError> {
//!     let connector = FilesystemStore::from_path("my_data.csv")?;
//!     let run_cfg = RunConfig { duration_days: 14, sampling_interval_hours: 24.0, ..RunConfig::default() };
//!     let twin = DigitalTwin::new(connector, DEFAULT_AMBR250_DESIGN_SPACE, run_cfg)?;
//!     let report = twin.run().await?;
//!     println!("{report}");
//!     Ok(())
//! }
//! ```
//!
//! ## The daily loop
//! See [`DigitalTwin`]: each step of each culture day is one audit record (read and
//! validate, learn and retrain, forecast, alarms, decide, write or withhold), only applied
//! controls enter the model's data, CPU-heavy steps run on tokio's blocking pool.
//! [`RunConfig::pacing`](perfusio_core::RunConfig) paces the days; a sample that is not
//! there yet is polled for with backoff and the wait recorded; a transient connector
//! failure is retried within the day's budget, then recorded, and the loop goes on; data
//! that end early finish the run cleanly ("data ended on day N"); a [`CancelToken`] ends it
//! cleanly too.
//!
//! ## Crash-safe resume
//! [`DigitalTwin::resume`] continues a run from its audit log after a crash at any point
//! (`kill -9` included): decisions depend only on (seed, day, data), so a resumed run ends
//! with exactly the setpoints and final state of an uninterrupted one. See the `resume`
//! module docs for what "complete day" means.
//!
//! ## Campaigns
//! [`campaign::Campaign`] drives 1–24 reactors, each with its own connector and audit log,
//! over one shared hybrid model, with one q-batch decision per day, operator approval
//! (`auto` or `required` with a deadline) and manual interventions; it publishes the
//! directory contract of [`campaign_files`] for a dashboard. Configured in TOML
//! ([`campaign::CampaignConfig`]).
//!
//! ## Why a facade
//! Only this crate is a stability boundary; the layer crates may change between minor
//! versions. Numeric layers stay synchronous; this crate depends on tokio with the `rt`,
//! `sync`, `time` and `macros` features only and never builds a runtime: call
//! [`DigitalTwin::run`] from yours.
//!
//! ## Features
//! | feature | default | adds |
//! |---|---|---|
//! | `opcua` | no | the OPC UA client connector and the ambr250 emulator (`connectors::opcua`) |
//! | `plot` | no | [`plot`]: SVG fan charts and setpoint histories |
//!
//! ## If you are a library author
//! Write a connector against `perfusio-core` alone; give the twin an [`Observer`] to follow
//! a run; a campaign of many reactors keeps one [`ReactorState`] per reactor over one
//! shared model and uses the same learning step.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::print_stdout,
        clippy::print_stderr
    )
)]
#![deny(clippy::float_cmp)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod alarm;
pub mod campaign;
pub mod campaign_files;
mod cancel;
mod error;
mod hash;
mod observer;
#[cfg(feature = "plot")]
#[cfg_attr(docsrs, doc(cfg(feature = "plot")))]
pub mod plot;
mod reactor;
mod report;
pub mod resume;
mod twin;

pub use alarm::{AlarmRule, AlarmTracker, Side};
pub use cancel::CancelToken;
pub use error::{Result, TwinError};
pub use hash::forecast_sha256;
pub use observer::{NoObserver, Observer, RunInfo};
pub use reactor::{Learned, ReactorState};
pub use report::{DayRecord, RunReport, RunSummary, SpeciesAccuracy};
pub use twin::{
    DEFAULT_SAMPLE_WAIT, DigitalTwin, DigitalTwinBuilder, FORECAST_DAYS_AHEAD, RETRY_CAP,
    RETRY_INITIAL,
};

/// The layer crates, under short names.
pub mod layers {
    pub use perfusio_audit as audit;
    pub use perfusio_bed as bed;
    pub use perfusio_connectors as connectors;
    pub use perfusio_core as core;
    pub use perfusio_hybrid as hybrid;
    pub use perfusio_mechanistic as mechanistic;
}

/// What a user of the twin needs, for `use perfusio_twin::prelude::*`.
pub mod prelude {
    pub use crate::campaign::{
        ApprovalMode, AtDeadline, Campaign, CampaignConfig, CampaignError, CampaignReport,
        ConnectorSpec,
    };
    pub use crate::{
        AlarmRule, CancelToken, DayRecord, DigitalTwin, DigitalTwinBuilder, Observer, RunReport,
        RunSummary, TwinError,
    };
    pub use perfusio_audit::Event as AuditEvent;
    pub use perfusio_audit::event::Severity;
    pub use perfusio_bed::objective::{Harvest, Objective, OutcomeConstraint, Track};
    pub use perfusio_connectors::files::{FileStoreConfig, FilesystemStore};
    pub use perfusio_connectors::virtual_reactor::VirtualReactorConnector;
    pub use perfusio_core::{
        Acquisition, Connector, Control, CultureDay, DEFAULT_AMBR250_DESIGN_SPACE, DesignSpace,
        Pacing, RunConfig, Sample, Setpoints, Species, Variable,
    };
    pub use perfusio_hybrid::{HybridConfig, HybridModel};
    pub use perfusio_mechanistic::{CloneKind, PlantSpec, VirtualReactorConfig};
}

#[cfg(test)]
mod auto_traits {
    use super::*;

    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}

    #[test]
    fn public_types_are_send_and_sync_and_the_run_future_is_send() {
        send_sync::<DigitalTwin>();
        send_sync::<RunReport>();
        send_sync::<TwinError>();
        send_sync::<CancelToken>();
        send_sync::<AlarmRule>();
        send_sync::<ReactorState>();
        let store = perfusio_connectors::files::FilesystemStore::new(
            perfusio_connectors::files::FileStoreConfig::new("x.csv"),
            perfusio_core::DEFAULT_AMBR250_DESIGN_SPACE,
        );
        let twin = DigitalTwin::new(
            store,
            perfusio_core::DEFAULT_AMBR250_DESIGN_SPACE,
            perfusio_core::RunConfig::default(),
        )
        .unwrap();
        let fut = twin.run();
        send(&fut);
    }
}
