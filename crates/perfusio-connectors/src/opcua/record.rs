//! Record and replay of OPC UA reads (JSONL): [`RecordLine`], the recorder the client
//! appends with, and [`ReplayConnector`].

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use perfusio_core::{
    Connector, ConnectorError, ControlReceipt, CultureDay, Health, Origin, Quantity, RawReading,
    RawValue, Setpoints, WriteReceipt, WriteStatus, async_trait,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// One line of a record file: the raw reading of one successful read of a day, before any
/// validation, so that a replay returns the same raw reading (hence the same rejections).
///
/// Format (JSON Lines, UTF-8, one object per line, appended, never rewritten):
///
/// ```text
/// {"v":2,"endpoint":"opc.tcp://127.0.0.1:4840/","reactor_id":"R01","day":3,
///  "culture_day":3.0,"received":"2026-11-25T14:03:07.123456789Z",
///  "values":{"VCD":12.5,"Via":97.1,"Glc":"NaN","Gln":{"bad_status":"BadSensorFailure"},
///            "VCV":9.8,"perfusion_rate":1.0,...},
///  "nodes":{"VCD":"nsu=urn:perfusio:ambr250;s=R01.VCD",...}}
/// ```
///
/// - `v`: format version (2; version 1 lines, without `nodes` and with numbers only, are
///   still read).
/// - `day`: culture day of the reading (whole days); `culture_day`: the server's value.
/// - `received`: RFC 3339 time the read completed (the reading's timestamp).
/// - `values`: by canonical name — species (`VCD` … `Titer`), derived (`VCV`, `Diam`) and
///   controls (`perfusion_rate` …); values the server did not have are absent. A value is
///   a number (non-finite ones as the strings `"NaN"`, `"inf"`, `"-inf"`), `{"text": …}`
///   for a value of a non-numeric type, or `{"bad_status": …}` for a node's bad status
///   (see [`RawValue`]).
/// - `nodes`: the configured node of each value (the origin of its rejections).
///
/// ```
/// use perfusio_connectors::opcua::RecordLine;
/// use perfusio_core::{Species, DEFAULT_AMBR250_DESIGN_SPACE as DS};
/// let line = r#"{"v":2,"endpoint":"opc.tcp://127.0.0.1:4840/","reactor_id":"R01","day":2,
///   "culture_day":2.0,"received":"2026-11-25T14:00:00Z","values":{"VCD":4.5,"Glc":"NaN"},
///   "nodes":{"VCD":"ns=2;s=R01.VCD","Glc":"ns=2;s=R01.Glc"}}"#;
/// let rec: RecordLine = serde_json::from_str(line).unwrap();
/// let raw = rec.to_raw().unwrap();
/// assert_eq!((raw.day, raw.number(Species::VCD)), (2, Some(4.5)));
/// let v = raw.validate(&DS);
/// assert_eq!(v.rejections[0].to_string(),
///     "Glc = NaN is not a finite number (node ns=2;s=R01.Glc on opc.tcp://127.0.0.1:4840/)");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordLine {
    /// Format version.
    pub v: u32,
    /// Endpoint the values were read from.
    pub endpoint: String,
    /// Reactor id of the node map.
    pub reactor_id: String,
    /// Culture day of the reading.
    pub day: CultureDay,
    /// Culture-day value as reported by the server.
    pub culture_day: f64,
    /// When the read completed.
    #[serde(with = "time::serde::rfc3339")]
    pub received: OffsetDateTime,
    /// Values as read, by canonical variable or control name.
    pub values: BTreeMap<String, RawValue>,
    /// The node each value was read from, by the same names (absent in version 1).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub nodes: BTreeMap<String, String>,
}

impl RecordLine {
    /// Current format version (written).
    pub const VERSION: u32 = 2;
    /// Oldest format version still read.
    pub const OLDEST_READABLE: u32 = 1;

    /// The raw reading this line describes, every value with its node as origin.
    pub fn to_raw(&self) -> Result<RawReading, ConnectorError> {
        let mut raw = RawReading::new(self.day);
        raw.timestamp = Some(self.received);
        raw.reactor_id = Some(self.reactor_id.clone());
        for (name, value) in &self.values {
            let Some(q) = Quantity::lookup(name) else {
                return Err(ConnectorError::Data {
                    context: format!("record line of day {}", self.day),
                    message: format!(
                        "unknown variable '{name}' (expected canonical species, VCV, Diam or \
                         control names)"
                    ),
                });
            };
            let origin = Origin::Node {
                server: self.endpoint.clone(),
                node: self
                    .nodes
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| name.clone()),
            };
            raw.push(q, value.clone(), origin);
        }
        Ok(raw)
    }

    /// Builds a line from a raw reading (inverse of [`RecordLine::to_raw`]).
    pub fn from_raw(endpoint: &str, culture_day: f64, raw: &RawReading) -> Self {
        let mut values = BTreeMap::new();
        let mut nodes = BTreeMap::new();
        for e in raw.entries() {
            let name = e.quantity.name().to_string();
            let node = match &e.origin {
                Origin::Node { node, .. } => node.clone(),
                other => other.to_string(),
            };
            values.insert(name.clone(), e.value.clone());
            nodes.insert(name, node);
        }
        Self {
            v: Self::VERSION,
            endpoint: endpoint.to_string(),
            reactor_id: raw.reactor_id.clone().unwrap_or_default(),
            day: raw.day,
            culture_day,
            received: raw.timestamp.unwrap_or_else(OffsetDateTime::now_utc),
            values,
            nodes,
        }
    }
}

/// Appends [`RecordLine`]s to a record file, one flushed line per read.
#[derive(Debug)]
pub(crate) struct Recorder {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl Recorder {
    /// Opens (creates or appends to) the record file.
    pub(crate) fn open(path: &Path) -> Result<Self, ConnectorError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| ConnectorError::Io {
                context: format!("opening record file {}", path.display()),
                source,
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    /// Appends one line and flushes it.
    pub(crate) fn append(&self, line: &RecordLine) -> Result<(), ConnectorError> {
        let mut text = serde_json::to_string(line).map_err(|e| ConnectorError::Data {
            context: format!("record line for {}", self.path.display()),
            message: e.to_string(),
        })?;
        text.push('\n');
        let mut f = self.file.lock().map_err(|_| ConnectorError::Data {
            context: format!("record file {}", self.path.display()),
            message: "lock poisoned by an earlier panic".into(),
        })?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.flush())
            .map_err(|source| ConnectorError::Io {
                context: format!("appending to record file {}", self.path.display()),
                source,
            })
    }
}

/// Serves a record file written by an [`OpcUaConnector`](super::OpcUaConnector) in record
/// mode through the [`Connector`] trait: `read_raw(day)` returns the raw reading the live
/// read of that day returned, so validation gives the same sample and the same rejections.
/// Writes are not sent anywhere: every control of the receipt is `Rejected`.
///
/// When a day was read several times, the last read wins.
#[derive(Debug)]
pub struct ReplayConnector {
    path: PathBuf,
    lines: BTreeMap<CultureDay, RecordLine>,
}

impl ReplayConnector {
    /// Loads a record file; errors name the line.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ConnectorError> {
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
            if !(RecordLine::OLDEST_READABLE..=RecordLine::VERSION).contains(&rec.v) {
                return Err(ConnectorError::Data {
                    context: format!("{} line {}", path.display(), i + 1),
                    message: format!(
                        "record format version {} is not supported (this version reads {} to \
                         {}); replay it with the perfusio version that wrote it",
                        rec.v,
                        RecordLine::OLDEST_READABLE,
                        RecordLine::VERSION
                    ),
                });
            }
            lines.insert(rec.day, rec);
        }
        Ok(Self { path, lines })
    }

    /// Days present in the record.
    pub fn days(&self) -> Vec<CultureDay> {
        self.lines.keys().copied().collect()
    }
}

#[async_trait]
impl Connector for ReplayConnector {
    async fn read_raw(&self, day: CultureDay) -> Result<RawReading, ConnectorError> {
        match self.lines.get(&day) {
            Some(line) => line.to_raw(),
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
        Ok(WriteReceipt::new(
            setpoints.day,
            setpoints
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
        ))
    }

    async fn health(&self) -> Health {
        if self.lines.is_empty() {
            Health::Degraded {
                reason: format!("the record {} holds no reading", self.path.display()),
            }
        } else {
            Health::Ok
        }
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
    use perfusio_core::{Control, Derived, Species};

    fn node(n: &str) -> Origin {
        Origin::Node {
            server: "opc.tcp://127.0.0.1:1/".into(),
            node: format!("ns=2;s=R02.{n}"),
        }
    }

    #[test]
    fn line_round_trips_every_kind_of_raw_value() {
        let mut raw = RawReading::new(4)
            .with(Species::VCD, RawValue::Number(10.0), node("VCD"))
            .with(Species::Lac, RawValue::Number(f64::INFINITY), node("Lac"))
            .with(
                Species::Gln,
                RawValue::BadStatus("BadSensorFailure".into()),
                node("Gln"),
            )
            .with(Species::Glc, RawValue::Text("n/a".into()), node("Glc"))
            .with(Derived::VCV, RawValue::Number(8.0), node("VCV"))
            .with(
                Control::Agitation,
                RawValue::Number(850.0),
                node("agitation"),
            );
        raw.reactor_id = Some("R02".into());
        raw.timestamp = Some(time::macros::datetime!(2026-11-25 14:00:00.123456789 UTC));
        let line = RecordLine::from_raw("opc.tcp://127.0.0.1:1/", 4.0, &raw);
        let json = serde_json::to_string(&line).unwrap();
        assert!(json.contains(r#""Lac":"inf""#), "{json}");
        assert!(
            json.contains(r#""Gln":{"bad_status":"BadSensorFailure"}"#),
            "{json}"
        );
        assert!(json.contains(r#""agitation":850.0"#), "{json}");
        assert!(json.contains(r#""Glc":"ns=2;s=R02.Glc""#), "{json}");
        let back: RecordLine = serde_json::from_str(&json).unwrap();
        assert_eq!(back, line);
        let again = back.to_raw().unwrap();
        // same values and origins, in canonical order
        for e in raw.entries() {
            assert_eq!(again.get(e.quantity), Some(e));
        }
        assert_eq!(again.len(), raw.len());
    }

    #[test]
    fn version_1_lines_still_read() {
        let v1 = r#"{"v":1,"endpoint":"e","reactor_id":"R","day":1,"culture_day":1.0,
            "received":"2026-11-25T14:00:00Z","values":{"VCD":2.0,"Glc":"NaN"}}"#;
        let raw = serde_json::from_str::<RecordLine>(v1)
            .unwrap()
            .to_raw()
            .unwrap();
        assert_eq!(raw.number(Species::VCD), Some(2.0));
        assert_eq!(
            raw.get(Species::Glc).map(|e| e.origin.to_string()),
            Some("node Glc on e".into())
        );
    }

    #[test]
    fn unknown_names_and_bad_text_are_errors() {
        let bad = r#"{"v":2,"endpoint":"e","reactor_id":"R","day":1,"culture_day":1.0,
            "received":"2026-11-25T14:00:00Z","values":{"Sugar":1.0}}"#;
        let rec: RecordLine = serde_json::from_str(bad).unwrap();
        assert!(
            rec.to_raw()
                .unwrap_err()
                .to_string()
                .contains("unknown variable 'Sugar'")
        );
        let bad = r#"{"v":2,"endpoint":"e","reactor_id":"R","day":1,"culture_day":1.0,
            "received":"2026-11-25T14:00:00Z","values":{"VCD":"lots"}}"#;
        assert!(serde_json::from_str::<RecordLine>(bad).is_err());
    }
}
