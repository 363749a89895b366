//! Shared fixtures.

use std::path::Path;

use perfusio_audit::{Record, VerifyOptions, read_verified, verify_file};
use perfusio_connectors::virtual_reactor::VirtualReactorConnector;
use perfusio_core::{Acquisition, RunConfig};
use perfusio_mechanistic::VirtualReactorConfig;

/// A small, quick run configuration (fewer candidates and paths than the defaults).
pub(crate) fn quick_config(days: u32, seed: u64) -> RunConfig {
    RunConfig {
        duration_days: days,
        retrain_every: 3,
        acquisition: Acquisition::LogEI,
        forecast_horizon_days: 7,
        mc_samples: 32,
        raw_samples: 64,
        optimizer_restarts: 2,
        seed: Some(seed),
        ..RunConfig::default()
    }
}

/// The virtual reactor with noise seed `seed`.
pub(crate) fn virtual_reactor(seed: u64) -> VirtualReactorConnector {
    VirtualReactorConnector::new(VirtualReactorConfig {
        seed,
        ..VirtualReactorConfig::default()
    })
    .unwrap()
}

/// The verified records of a log.
pub(crate) fn records(path: &Path) -> Vec<Record> {
    verify_file(path, &VerifyOptions::default()).unwrap();
    read_verified(path).unwrap().1
}

/// Kinds of the records, in order.
pub(crate) fn kinds(records: &[Record]) -> Vec<&str> {
    records.iter().map(|r| r.kind.as_str()).collect()
}
