//! Writing setpoints: hard-limit check, the bleed-safe write order, one Write request and
//! the per-control receipt from the read-back.

use std::collections::BTreeMap;

use opcua::types::StatusCode;
use perfusio_core::{
    ConnectorError, Control, ControlReceipt, Setpoints, WriteReceipt, WriteStatus,
};

use super::OpcUaConnector;
use super::request::{Op, OpOut};

impl OpcUaConnector {
    /// Writes `setpoints` (see [`perfusio_core::Connector::write_setpoints`] and the type's
    /// docs).
    pub(super) async fn write(
        &self,
        setpoints: &Setpoints,
    ) -> Result<WriteReceipt, ConnectorError> {
        let soft = self
            .config
            .design_space
            .validate(&setpoints.values)
            .map_err(|e| match e {
                perfusio_core::CoreError::InvalidSetpoints(v) => ConnectorError::Rejected(v),
                other => ConnectorError::Data {
                    context: "setpoint validation".into(),
                    message: other.to_string(),
                },
            })?;
        for v in &soft {
            tracing::warn!(violation = %v, "writing a setpoint outside the design range");
        }
        let (culture_day, current) = self.read_controls().await?;
        if let Some(cd) = culture_day
            && (cd.floor() - f64::from(setpoints.day)).abs() > 0.5
        {
            tracing::warn!(
                requested_day = setpoints.day,
                culture_day = cd,
                "setpoints for another day than the reactor's; a live reactor applies them now"
            );
        }
        // Order: perfusion first unless lowering it below the bleed now acting.
        let new_perf = setpoints.get(Control::PerfusionRate);
        let bleed_first = current
            .get(&Control::BleedRate)
            .is_some_and(|cur_bleed| new_perf < *cur_bleed);
        let mut order: Vec<Control> = Control::ALL.to_vec();
        if bleed_first {
            order.swap(0, 1);
        }
        let mapped = &self.config.node_map.controls;
        let items: Vec<(Control, f64)> = order
            .iter()
            .filter(|c| mapped.contains_key(c))
            .map(|c| (*c, setpoints.get(*c)))
            .collect();
        let statuses = match self
            .run(
                "write",
                Op::Write(items.clone()),
                self.config.backoff.max_attempts,
            )
            .await?
        {
            OpOut::Statuses(s) => s,
            OpOut::Values(..) => Vec::new(),
        };
        let written: BTreeMap<Control, StatusCode> = items
            .iter()
            .zip(statuses.iter())
            .map(|((c, _), s)| (*c, *s))
            .collect();
        let (_, readback) = self.read_controls().await?;
        let map = &self.config.node_map.controls;
        let controls = setpoints
            .iter()
            .map(|(control, requested)| {
                let node = map.get(&control).cloned().unwrap_or_default();
                let rb = readback.get(&control).copied();
                let rejected = |reason: String| ControlReceipt {
                    control,
                    requested,
                    readback: rb,
                    status: WriteStatus::Rejected { reason },
                };
                match written.get(&control) {
                    None => rejected("no node is mapped for this control".into()),
                    Some(s) if s.is_bad() => rejected(format!("node {node}: {s}")),
                    Some(_) => ControlReceipt::from_readback(
                        control,
                        requested,
                        rb,
                        &format!("node {node}"),
                    ),
                }
            })
            .collect();
        Ok(WriteReceipt::new(setpoints.day, controls))
    }
}
