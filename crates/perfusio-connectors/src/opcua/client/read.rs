//! Reading: a day's raw reading (with the session history and recording), the read-back
//! of the setpoint nodes, and the health check.

use std::collections::BTreeMap;

use opcua::types::{DataValue, StatusCode, Variant};
use perfusio_core::{
    ConnectorError, Control, CultureDay, Health, Origin, Quantity, RawReading, RawValue,
};
use time::OffsetDateTime;

use super::OpcUaConnector;
use super::request::{NO_DATA_CODES, Op, OpOut, is_any};
use super::session::{Node, Slot};
use crate::opcua::record::RecordLine;

/// Statuses of a read that mean the node map (or the access rights) is wrong, not the
/// value: they fail the read instead of becoming a rejected value.
const MAP_ERROR_CODES: [StatusCode; 5] = [
    StatusCode::BadNodeIdUnknown,
    StatusCode::BadNodeIdInvalid,
    StatusCode::BadAttributeIdInvalid,
    StatusCode::BadNotReadable,
    StatusCode::BadUserAccessDenied,
];

/// The value of one node exactly as the server gave it: `Ok(None)` when the server has no
/// value (not measured), the number, the text of a value of another type, or the bad
/// status. A status that means the node map is wrong is an error naming the node.
fn raw_value(node: &Node, dv: &DataValue) -> Result<Option<RawValue>, ConnectorError> {
    let status = dv.status();
    if status.is_bad() {
        if is_any(status, &NO_DATA_CODES) {
            return Ok(None);
        }
        if is_any(status, &MAP_ERROR_CODES) {
            return Err(ConnectorError::Node {
                node: node.name(),
                status: status.to_string(),
            });
        }
        return Ok(Some(RawValue::BadStatus(status.to_string())));
    }
    let v = match &dv.value {
        None | Some(Variant::Empty) => return Ok(None),
        Some(Variant::Double(v)) => *v,
        Some(Variant::Float(v)) => f64::from(*v),
        Some(Variant::Int16(v)) => f64::from(*v),
        Some(Variant::UInt16(v)) => f64::from(*v),
        Some(Variant::Int32(v)) => f64::from(*v),
        Some(Variant::UInt32(v)) => f64::from(*v),
        Some(other) => return Ok(Some(RawValue::Text(other.to_string()))),
    };
    Ok(Some(RawValue::Number(v)))
}

/// The culture day a node reports; anything but a finite number is an error naming it.
fn culture_day_of(node: &Node, value: Option<RawValue>) -> Result<f64, ConnectorError> {
    let fail = |status: String| ConnectorError::Node {
        node: node.name(),
        status,
    };
    match value {
        Some(RawValue::Number(v))
            if v.is_finite() && (0.0..f64::from(CultureDay::MAX)).contains(&v) =>
        {
            Ok(v)
        }
        Some(RawValue::Number(v)) => Err(fail(format!(
            "culture day {v} is not a non-negative number"
        ))),
        Some(RawValue::BadStatus(s)) => Err(fail(s)),
        Some(RawValue::Text(t)) => Err(fail(format!("expected a number, got `{t}`"))),
        None => Err(fail("the culture day has no value".into())),
    }
}

impl OpcUaConnector {
    /// Reads day `day` (see [`perfusio_core::Connector::read_raw`] and the type's docs).
    pub(super) async fn read_day(&self, day: CultureDay) -> Result<RawReading, ConnectorError> {
        let OpOut::Values(nodes, values) = self
            .run("read", Op::ReadAll, self.config.backoff.max_attempts)
            .await?
        else {
            return Err(self.unexpected_reply());
        };
        let received = OffsetDateTime::now_utc();
        let mut culture_day = None;
        let mut raw = RawReading::new(day);
        for ((slot, node), dv) in nodes.all.iter().zip(values.iter()) {
            let value = raw_value(node, dv)?;
            let quantity = match slot {
                Slot::Day => {
                    culture_day = Some(culture_day_of(node, value)?);
                    continue;
                }
                Slot::Species(s) => Quantity::Species(*s),
                Slot::Derived(d) => Quantity::Derived(*d),
                Slot::Control(c) => Quantity::Control(*c),
            };
            if let Some(v) = value {
                let origin = Origin::Node {
                    server: self.endpoint(),
                    node: node.text.clone(),
                };
                raw.push(quantity, v, origin);
            }
        }
        let Some(cd) = culture_day else {
            return Err(ConnectorError::Data {
                context: format!("{} culture day", self.endpoint()),
                message: "the culture-day node was not read".into(),
            });
        };
        // `cd` is finite and in [0, u32::MAX): the cast truncates toward zero = floor.
        let now_day = cd.floor() as CultureDay;
        if now_day < day {
            return Err(ConnectorError::NotYetAvailable {
                day,
                reason: format!(
                    "reactor {} is at culture day {cd}",
                    self.config.node_map.reactor_id
                ),
            });
        }
        if now_day > day {
            let cached = self.history.lock().ok().and_then(|h| h.get(&day).cloned());
            return cached.ok_or_else(|| ConnectorError::Data {
                context: format!("read_raw({day}) from {}", self.config.endpoint),
                message: format!(
                    "reactor {} is already at culture day {now_day}; a live server only holds \
                     the current values and day {day} was not read in this session (replay a \
                     record file for past days)",
                    self.config.node_map.reactor_id
                ),
            });
        }
        raw.timestamp = Some(received);
        raw.reactor_id = Some(self.config.node_map.reactor_id.clone());
        let line = RecordLine::from_raw(&self.config.endpoint, cd, &raw);
        if let Some(rec) = &self.recorder {
            rec.append(&line)?;
        }
        // Return what a replay of the record will see, so both give identical readings.
        let raw = line.to_raw()?;
        if let Ok(mut h) = self.history.lock() {
            h.insert(day, raw.clone());
        }
        Ok(raw)
    }

    /// Reads the culture day and the setpoint nodes (for ordering writes and reading them
    /// back): the day if readable, and every control that reads as a number.
    pub(super) async fn read_controls(
        &self,
    ) -> Result<(Option<f64>, BTreeMap<Control, f64>), ConnectorError> {
        let OpOut::Values(nodes, values) = self
            .run(
                "read setpoints",
                Op::ReadControls,
                self.config.backoff.max_attempts,
            )
            .await?
        else {
            return Err(self.unexpected_reply());
        };
        let mut day = None;
        let mut out = BTreeMap::new();
        let selected = nodes
            .all
            .iter()
            .filter(|(s, _)| matches!(s, Slot::Day | Slot::Control(_)));
        for ((slot, node), dv) in selected.zip(values.iter()) {
            let v = raw_value(node, dv)?.and_then(|v| v.as_number());
            match (slot, v) {
                (Slot::Day, v) => day = v,
                (Slot::Control(c), Some(v)) => {
                    out.insert(*c, v);
                }
                _ => {}
            }
        }
        Ok((day, out))
    }

    /// One Read of every node, without retries.
    pub(super) async fn check_health(&self) -> Health {
        let (nodes, values) = match self.run("health check", Op::ReadAll, 1).await {
            Ok(OpOut::Values(nodes, values)) => (nodes, values),
            Ok(_) => {
                return Health::Down {
                    reason: self.unexpected_reply().to_string(),
                };
            }
            Err(e) => {
                return Health::Down {
                    reason: e.to_string(),
                };
            }
        };
        let bad: Vec<String> = nodes
            .all
            .iter()
            .zip(values.iter())
            .filter(|(_, dv)| dv.status().is_bad() && !is_any(dv.status(), &NO_DATA_CODES))
            .map(|((_, node), dv)| format!("{}: {}", node.name(), dv.status()))
            .collect();
        if bad.is_empty() {
            Health::Ok
        } else {
            Health::Degraded {
                reason: format!(
                    "{} node(s) of reactor {} report a bad status: {}",
                    bad.len(),
                    self.config.node_map.reactor_id,
                    bad.join("; ")
                ),
            }
        }
    }

    fn unexpected_reply(&self) -> ConnectorError {
        ConnectorError::Data {
            context: self.endpoint(),
            message: "unexpected reply".into(),
        }
    }
}
