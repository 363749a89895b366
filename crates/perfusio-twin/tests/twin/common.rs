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
        decision_horizon_days: 3,
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

/// A connector that counts what reaches it and can change what it gives back: reads fail
/// with "not yet available" for the first `late_polls` polls of `late_day`; write receipts
/// mark `reject` as refused by the target, which then keeps that control at its default.
#[derive(Debug)]
pub(crate) struct Probe<C> {
    pub(crate) inner: C,
    pub(crate) writes: std::sync::atomic::AtomicU32,
    pub(crate) late_day: Option<perfusio_core::CultureDay>,
    pub(crate) late_polls: u32,
    pub(crate) polls: std::sync::atomic::AtomicU32,
    pub(crate) reject: Option<perfusio_core::Control>,
}

impl<C> Probe<C> {
    pub(crate) fn new(inner: C) -> Self {
        Self {
            inner,
            writes: 0.into(),
            late_day: None,
            late_polls: 0,
            polls: 0.into(),
            reject: None,
        }
    }
}

#[perfusio_core::async_trait]
impl<C: perfusio_core::Connector> perfusio_core::Connector for Probe<C> {
    async fn read_raw(
        &self,
        day: perfusio_core::CultureDay,
    ) -> Result<perfusio_core::RawReading, perfusio_core::ConnectorError> {
        use std::sync::atomic::Ordering;
        if self.late_day == Some(day) && self.polls.fetch_add(1, Ordering::SeqCst) < self.late_polls
        {
            return Err(perfusio_core::ConnectorError::NotYetAvailable {
                day,
                reason: "probe: the sample is late".into(),
            });
        }
        self.inner.read_raw(day).await
    }
    async fn write_setpoints(
        &self,
        sp: &perfusio_core::Setpoints,
    ) -> Result<perfusio_core::WriteReceipt, perfusio_core::ConnectorError> {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // a refused control keeps its default in the plant (the tests start from defaults)
        let sent = match self.reject {
            Some(c) => sp
                .clone()
                .with(c, perfusio_core::Control::defaults()[c.index()]),
            None => sp.clone(),
        };
        let mut receipt = self.inner.write_setpoints(&sent).await?;
        if let Some(c) = self.reject {
            for r in &mut receipt.controls {
                if r.control == c {
                    r.status = perfusio_core::WriteStatus::Rejected {
                        reason: "probe: interlock".into(),
                    };
                    r.readback = None;
                }
            }
        }
        Ok(receipt)
    }
    async fn health(&self) -> perfusio_core::Health {
        self.inner.health().await
    }
    fn describe(&self) -> String {
        format!("probe over {}", self.inner.describe())
    }
    async fn restore(
        &self,
        written: &[perfusio_core::Setpoints],
    ) -> Result<(), perfusio_core::ConnectorError> {
        self.inner.restore(written).await
    }
}
