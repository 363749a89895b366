//! # perfusio-core
//!
//! The vocabulary of perfusio-rs: the nine modelled species and two derived variables of a
//! CHO-cell perfusion culture, the six manipulated variables, the design space the policy
//! searches, the run configuration, daily readings and their validation, trajectories, and
//! the [`Connector`] trait through which the twin talks to any reactor.
//!
//! This crate does no I/O and runs no async code (it only declares the async
//! [`Connector`] trait), and it depends only on `serde`, `thiserror`, `time`, `toml` and
//! `async-trait`, so that third parties can write connectors or tools against it alone.
//!
//! Fixed-size arrays in canonical order ([`SpeciesArray`], [`ControlArray`]) are used
//! instead of maps: the hot numeric paths of the upper layers index them directly, and the
//! order is the one the GP's indexed multi-task format uses.
//!
//! ```
//! use perfusio_core::prelude::*;
//!
//! let ds = DEFAULT_AMBR250_DESIGN_SPACE;
//! let sp = Setpoints::defaults(0).with(Control::PerfusionRate, 1.5);
//! assert!(ds.validate(&sp.values).unwrap().is_empty());
//!
//! let sample = Sample::new(0).with(Species::VCD, 1.0).with("viability".parse().unwrap(), 99.0);
//! let checked = sample.validate(&ds);
//! assert!(checked.rejections.is_empty());
//! assert_eq!(checked.sample.n_present(), 2);
//! ```
//!
//! ## One validation boundary
//! A [`Connector`] returns a day's values exactly as read ([`RawReading`]): numbers not yet
//! checked, text that is not a number, the source's error statuses, each with its
//! [`Origin`]. [`RawReading::validate`] (or [`read_validated`]) is the one step that turns any
//! connector's reading into a [`ValidatedSample`]: the accepted values and every
//! [`Rejection`] with a stable code, so nothing read is ever dropped silently.
//!
//! ## If you are a library author
//! Implement [`Connector`] for your reactor (see its example): put every value you read into
//! the [`RawReading`], even one you cannot parse, and leave the checking to validation;
//! return [`ConnectorError::NotYetAvailable`] for days you do not have yet, report
//! [`Health`] with a reason an operator can act on, and keep credentials in [`Secret`] so
//! they never reach logs.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::print_stdout,
        clippy::print_stderr
    )
)]

mod config;
mod connector;
mod controls;
mod design_space;
mod error;
mod reading;
mod sample;
mod secret;
mod serde_util;
mod species;
mod trajectory;

pub use async_trait::async_trait;

/// The culture day: whole days since inoculation (day 0), the type of every day in the API
/// (samples, readings, setpoints, receipts, trajectories). The audit log writes it as a JSON
/// number and converts it in one place.
pub type CultureDay = u32;

pub use config::{Acquisition, MAX_DURATION_DAYS, Pacing, RunConfig};
pub use connector::{
    Addition, Connector, ConnectorError, ControlReceipt, Health, WriteReceipt, WriteStatus,
    read_validated,
};
pub use controls::{Control, ControlArray, N_CONTROLS, Setpoints};
pub use design_space::{
    ControlSpec, DEFAULT_AMBR250_DESIGN_SPACE, DesignSpace, Violation, ViolationKind,
    bleed_violation,
};
pub use error::{CoreError, Result};
pub use reading::{
    N_QUANTITIES, Origin, Quantity, RawEntry, RawReading, RawValue, Rejection, RejectionReason,
    ValidatedSample,
};
pub use sample::Sample;
pub use secret::{REDACTED, Secret};
pub use species::{
    Bounds, Derived, N_DERIVED, N_SPECIES, Species, SpeciesArray, Variable, mean_cell_diameter_um,
    normalise_name, viable_cell_volume_percent,
};
pub use trajectory::{Trajectory, TrajectoryRow};

/// The most used types, for `use perfusio_core::prelude::*`.
pub mod prelude {
    pub use crate::{
        Acquisition, Connector, ConnectorError, Control, CultureDay, DEFAULT_AMBR250_DESIGN_SPACE,
        DesignSpace, Health, RawReading, RunConfig, Sample, Setpoints, Species, Trajectory,
        ValidatedSample, Variable, read_validated,
    };
}

#[cfg(test)]
mod auto_traits {
    use super::*;

    fn send_sync_clone<T: Send + Sync + Clone>() {}

    #[test]
    fn public_types_are_send_sync_clone() {
        send_sync_clone::<Species>();
        send_sync_clone::<Control>();
        send_sync_clone::<DesignSpace>();
        send_sync_clone::<RunConfig>();
        send_sync_clone::<Sample>();
        send_sync_clone::<Setpoints>();
        send_sync_clone::<Trajectory>();
        send_sync_clone::<WriteReceipt>();
        send_sync_clone::<RawReading>();
        send_sync_clone::<ValidatedSample>();
        send_sync_clone::<Rejection>();
        send_sync_clone::<Health>();
        send_sync_clone::<CoreError>();
        send_sync_clone::<Secret>();
    }
}
