//! Record and replay of OPC UA reads (JSONL).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use perfusio_core::{
    Connector, ConnectorError, Control, ControlReceipt, Derived, DesignSpace, Rejection, Sample,
    Setpoints, Species, Variable, WriteReceipt, WriteStatus, async_trait,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;

/// One line of a record file: everything one successful `read_sample` received, before
/// validation (so that replay validates exactly as the live read did).
///
/// Format (JSON Lines, UTF-8, one object per line, appended, never rewritten):
///
/// ```text
/// {"v":1,"endpoint":"opc.tcp://127.0.0.1:4840/","reactor_id":"R01","day":3,
///  "culture_day":3.0,"received":"2026-11-25T14:03:07.123456789Z",
///  "values":{"VCD":12.5,"Via":97.1,"Glc":"NaN","VCV":9.8,"perfusion_rate":1.0,...}}
/// ```
///
/// - `v`: format version (1).
/// - `day`: culture day of the sample (whole days); `culture_day`: the server's value.
/// - `received`: RFC 3339 time the read completed (the sample's timestamp).
/// - `values`: by canonical name — species (`VCD` … `Titer`), derived (`VCV`, `Diam`) and
///   controls (`perfusion_rate` …); values the server did not have are absent;
///   non-finite numbers are written as the strings `"NaN"`, `"inf"`, `"-inf"`.
///
/// ```
/// use perfusio_connectors::opcua::RecordLine;
/// use perfusio_core::Species;
/// let line = r#"{"v":1,"endpoint":"opc.tcp://127.0.0.1:4840/","reactor_id":"R01","day":2,
///   "culture_day":2.0,"received":"2026-11-25T14:00:00Z","values":{"VCD":4.5,"Glc":"NaN"}}"#;
/// let rec: RecordLine = serde_json::from_str(line).unwrap();
/// let s = rec.to_sample().unwrap();
/// assert_eq!(s.day, 2);
/// assert_eq!(s.get(Species::VCD), Some(4.5));
/// assert!(s.get(Species::Glc).unwrap().is_nan());
/// assert_eq!(s.get(Species::Via), None);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordLine {
    /// Format version.
    pub v: u32,
    /// Endpoint the values were read from.
    pub endpoint: String,
    /// Reactor id of the node map.
    pub reactor_id: String,
    /// Culture day of the sample.
    pub day: u32,
    /// Culture-day value as reported by the server.
    pub culture_day: f64,
    /// When the read completed.
    #[serde(with = "time::serde::rfc3339")]
    pub received: OffsetDateTime,
    /// Values by canonical variable or control name.
    pub values: BTreeMap<String, RecordedValue>,
}

/// A recorded number; non-finite values are kept (as strings in JSON).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecordedValue(pub f64);

impl Serialize for RecordedValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.is_finite() {
            s.serialize_f64(v)
        } else if v.is_nan() {
            s.serialize_str("NaN")
        } else if v > 0.0 {
            s.serialize_str("inf")
        } else {
            s.serialize_str("-inf")
        }
    }
}

impl<'de> Deserialize<'de> for RecordedValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(v) => Ok(Self(v)),
            Raw::Text(t) => match t.as_str() {
                "NaN" => Ok(Self(f64::NAN)),
                "inf" => Ok(Self(f64::INFINITY)),
                "-inf" => Ok(Self(f64::NEG_INFINITY)),
                other => Err(serde::de::Error::custom(format!(
                    "expected a number, \"NaN\", \"inf\" or \"-inf\", found \"{other}\""
                ))),
            },
        }
    }
}

impl RecordLine {
    /// Current format version.
    pub const VERSION: u32 = 1;

    /// The sample this line describes (not yet validated).
    pub fn to_sample(&self) -> Result<Sample, ConnectorError> {
        let mut s = Sample::new(self.day);
        s.timestamp = Some(self.received);
        s.reactor_id = Some(self.reactor_id.clone());
        for (name, value) in &self.values {
            if let Some(c) = Control::lookup(name).filter(|c| c.name() == name) {
                s.controls[c.index()] = Some(value.0);
            } else if let Some(var) = Variable::lookup(name) {
                s.set_variable(var, Some(value.0));
            } else {
                return Err(ConnectorError::Data {
                    context: format!("record line of day {}", self.day),
                    message: format!(
                        "unknown variable '{name}' (expected canonical species, VCV, Diam or control names)"
                    ),
                });
            }
        }
        Ok(s)
    }

    /// Builds a line from a sample (inverse of [`RecordLine::to_sample`]).
    pub fn from_sample(endpoint: &str, culture_day: f64, sample: &Sample) -> Self {
        let mut values = BTreeMap::new();
        for s in Species::ALL {
            if let Some(v) = sample.get(s) {
                values.insert(s.name().to_string(), RecordedValue(v));
            }
        }
        for d in Derived::ALL {
            if let Some(v) = sample.derived[d.index()] {
                values.insert(d.name().to_string(), RecordedValue(v));
            }
        }
        for c in Control::ALL {
            if let Some(v) = sample.control(c) {
                values.insert(c.name().to_string(), RecordedValue(v));
            }
        }
        Self {
            v: Self::VERSION,
            endpoint: endpoint.to_string(),
            reactor_id: sample.reactor_id.clone().unwrap_or_default(),
            day: sample.day,
            culture_day,
            received: sample.timestamp.unwrap_or_else(OffsetDateTime::now_utc),
            values,
        }
    }
}

/// Validates a raw sample, keeps the rejections, returns the accepted part.
pub(crate) fn validate_keep(
    raw: &Sample,
    design_space: &DesignSpace,
    store: &Mutex<Vec<(u32, Rejection)>>,
    source: &str,
) -> Sample {
    let checked = raw.validate(design_space);
    for r in &checked.rejections {
        tracing::warn!(day = raw.day, %source, rejection = %r, "value rejected");
    }
    if let Ok(mut g) = store.lock() {
        g.extend(checked.rejections.into_iter().map(|r| (raw.day, r)));
    }
    checked.sample
}

/// Serves a record file written by an [`OpcUaConnector`](super::OpcUaConnector) in record
/// mode through the [`Connector`] trait: `read_sample(day)` returns what the live read of
/// that day returned (validated the same way, same rejections). Writes are not sent
/// anywhere: every control of the receipt is `Rejected`.
///
/// When a day was read several times, the last read wins.
#[derive(Debug)]
pub struct ReplayConnector {
    path: PathBuf,
    lines: BTreeMap<u32, RecordLine>,
    design_space: DesignSpace,
    rejections: Mutex<Vec<(u32, Rejection)>>,
}

impl ReplayConnector {
    /// Loads a record file; errors name the line.
    pub fn open(path: impl AsRef<Path>, design_space: DesignSpace) -> Result<Self, ConnectorError> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::File::open(&path).map_err(|source| ConnectorError::Io {
            context: format!("opening record file {}", path.display()),
            source,
        })?;
        let mut lines = BTreeMap::new();
        for (i, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|source| ConnectorError::Io {
                context: format!("reading {} line {}", path.display(), i + 1),
                source,
            })?;
            if line.trim().is_empty() {
                continue;
            }
            let rec: RecordLine =
                serde_json::from_str(&line).map_err(|e| ConnectorError::Data {
                    context: format!("{} line {}", path.display(), i + 1),
                    message: format!("not a record line: {e}"),
                })?;
            if rec.v != RecordLine::VERSION {
                return Err(ConnectorError::Data {
                    context: format!("{} line {}", path.display(), i + 1),
                    message: format!(
                        "record format version {} is not supported (expected {})",
                        rec.v,
                        RecordLine::VERSION
                    ),
                });
            }
            lines.insert(rec.day, rec);
        }
        Ok(Self {
            path,
            lines,
            design_space,
            rejections: Mutex::new(Vec::new()),
        })
    }

    /// Days present in the record.
    pub fn days(&self) -> Vec<u32> {
        self.lines.keys().copied().collect()
    }

    /// Every value rejected so far, with its day.
    pub fn rejections(&self) -> Vec<(u32, Rejection)> {
        self.rejections
            .lock()
            .map(|g| g.clone())
            .unwrap_or_default()
    }
}

#[async_trait]
impl Connector for ReplayConnector {
    async fn read_sample(&self, day: u32) -> Result<Sample, ConnectorError> {
        match self.lines.get(&day) {
            Some(line) => {
                let raw = line.to_sample()?;
                Ok(validate_keep(
                    &raw,
                    &self.design_space,
                    &self.rejections,
                    &self.describe(),
                ))
            }
            None => {
                let last = self.lines.keys().next_back().copied();
                match last {
                    Some(last) if day < last => Err(ConnectorError::Data {
                        context: format!("replay of {}", self.path.display()),
                        message: format!("day {day} was not recorded"),
                    }),
                    _ => Err(ConnectorError::NotYetAvailable {
                        day,
                        reason: format!(
                            "the record {} ends at day {}",
                            self.path.display(),
                            last.map_or("(none)".to_string(), |d| d.to_string())
                        ),
                    }),
                }
            }
        }
    }

    async fn write_setpoints(&self, setpoints: &Setpoints) -> Result<WriteReceipt, ConnectorError> {
        Ok(WriteReceipt {
            day: setpoints.day,
            controls: setpoints
                .iter()
                .map(|(control, requested)| ControlReceipt {
                    control,
                    requested,
                    readback: None,
                    status: WriteStatus::Rejected {
                        reason: "replay mode: writes are not sent to any reactor".into(),
                    },
                })
                .collect(),
            timestamp: Some(OffsetDateTime::now_utc()),
        })
    }

    async fn is_alive(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        format!(
            "OPC UA replay of {} ({} days)",
            self.path.display(),
            self.lines.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_round_trips_non_finite_values_and_controls() {
        let mut s = Sample::new(4)
            .with(Species::VCD, 10.0)
            .with(Species::Lac, f64::INFINITY);
        s.derived = [Some(8.0), None];
        s.controls[Control::Agitation.index()] = Some(850.0);
        s.reactor_id = Some("R02".into());
        s.timestamp = Some(time::macros::datetime!(2026-11-25 14:00:00.123456789 UTC));
        let line = RecordLine::from_sample("opc.tcp://127.0.0.1:1/", 4.0, &s);
        let json = serde_json::to_string(&line).unwrap();
        assert!(json.contains(r#""Lac":"inf""#), "{json}");
        assert!(json.contains(r#""agitation":850.0"#), "{json}");
        let back: RecordLine = serde_json::from_str(&json).unwrap();
        assert_eq!(back, line);
        assert_eq!(back.to_sample().unwrap(), s);
    }

    #[test]
    fn unknown_names_and_bad_text_are_errors() {
        let bad = r#"{"v":1,"endpoint":"e","reactor_id":"R","day":1,"culture_day":1.0,
            "received":"2026-11-25T14:00:00Z","values":{"Sugar":1.0}}"#;
        let rec: RecordLine = serde_json::from_str(bad).unwrap();
        assert!(
            rec.to_sample()
                .unwrap_err()
                .to_string()
                .contains("unknown variable 'Sugar'")
        );
        let bad = r#"{"v":1,"endpoint":"e","reactor_id":"R","day":1,"culture_day":1.0,
            "received":"2026-11-25T14:00:00Z","values":{"VCD":"lots"}}"#;
        let e = serde_json::from_str::<RecordLine>(bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("found \"lots\""), "{e}");
    }
}
