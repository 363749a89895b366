//! One line of `audit.jsonl`: its members, its hash, and its exact byte form.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

use crate::canonical::{hex, write_canonical, write_f64, write_string as write_str};
use crate::error::{AuditError, Result};
use crate::event::{Event, EventPayload};

/// Format version written in the `v` member of every record.
pub const FORMAT_VERSION: u64 = 1;

/// `prev` of the first record: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Timestamp layout: RFC 3339 in UTC with exactly six fractional digits, e.g.
/// `2026-11-25T13:45:00.123456Z`.
pub(crate) const TS_FORMAT: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// Format a timestamp the way records store it (converted to UTC, microsecond precision).
///
/// ```
/// use time::macros::datetime;
/// let t = datetime!(2026-11-25 14:45:00.1234567 +01:00);
/// assert_eq!(perfusio_audit::format_timestamp(t), "2026-11-25T13:45:00.123456Z");
/// ```
pub fn format_timestamp(t: OffsetDateTime) -> String {
    let utc = t.to_offset(time::UtcOffset::UTC);
    if (0..=9999).contains(&utc.year()) {
        // Hand-formatted: this runs for every record and `time`'s formatter is comparatively slow.
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            utc.year(),
            u8::from(utc.month()),
            utc.day(),
            utc.hour(),
            utc.minute(),
            utc.second(),
            utc.microsecond()
        )
    } else {
        utc.format(TS_FORMAT)
            .unwrap_or_else(|_| "0000-01-01T00:00:00.000000Z".to_string())
    }
}

/// Fast exact check of the record timestamp layout `YYYY-MM-DDTHH:MM:SS.ffffffZ` with a valid
/// calendar date and time of day (what [`parse_timestamp`] accepts).
pub(crate) fn timestamp_is_valid(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 27 {
        return false;
    }
    let layout_ok = b.iter().enumerate().all(|(i, c)| match i {
        4 | 7 => *c == b'-',
        10 => *c == b'T',
        13 | 16 => *c == b':',
        19 => *c == b'.',
        26 => *c == b'Z',
        _ => c.is_ascii_digit(),
    });
    if !layout_ok {
        return false;
    }
    let num = |r: std::ops::Range<usize>| {
        b[r].iter()
            .fold(0u32, |acc, c| acc * 10 + u32::from(c - b'0'))
    };
    let (year, month, day) = (num(0..4), num(5..7), num(8..10));
    let (hour, minute, second) = (num(11..13), num(14..16), num(17..19));
    let date_ok = i32::try_from(year)
        .ok()
        .zip(
            u8::try_from(month)
                .ok()
                .and_then(|m| time::Month::try_from(m).ok()),
        )
        .zip(u8::try_from(day).ok())
        .is_some_and(|((y, m), d)| time::Date::from_calendar_date(y, m, d).is_ok());
    date_ok && hour < 24 && minute < 60 && second < 60
}

/// Parse a record timestamp (the exact layout of [`format_timestamp`]).
pub fn parse_timestamp(s: &str) -> Option<OffsetDateTime> {
    time::PrimitiveDateTime::parse(s, TS_FORMAT)
        .ok()
        .map(|p| p.assume_utc())
}

/// Who caused an event: the system itself or a named operator.
///
/// Written as `"system"` or `"operator:<name>"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Actor {
    /// The automated system.
    System,
    /// A human operator, by name or user id.
    Operator(String),
}

impl Actor {
    /// An operator actor; the name must be non-empty and free of control characters.
    ///
    /// ```
    /// use perfusio_audit::Actor;
    /// assert_eq!(Actor::operator("alice").unwrap().as_string(), "operator:alice");
    /// assert!(Actor::operator("").is_err());
    /// ```
    pub fn operator(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        if name.trim().is_empty() || name.chars().any(char::is_control) {
            return Err(AuditError::InvalidOption(format!(
                "operator name {name:?} must be non-empty and contain no control characters"
            )));
        }
        Ok(Self::Operator(name))
    }

    /// The string stored in the `actor` member.
    pub fn as_string(&self) -> String {
        match self {
            Self::System => "system".to_string(),
            Self::Operator(n) => format!("operator:{n}"),
        }
    }

    /// Parse the `actor` member.
    pub fn parse(s: &str) -> Option<Self> {
        if s == "system" {
            Some(Self::System)
        } else {
            s.strip_prefix("operator:")
                .filter(|n| !n.is_empty())
                .map(|n| Self::Operator(n.to_string()))
        }
    }
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.as_string())
    }
}

/// A record as read back from a log.
///
/// `kind` and `payload` are kept raw so that records of kinds added by a later version remain
/// readable; [`Record::event`] decodes them into the typed [`Event`].
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Sequence number, 1 for the first record, increasing by one.
    pub seq: u64,
    /// Timestamp as written (see [`format_timestamp`]).
    pub ts: String,
    /// Run id.
    pub run_id: String,
    /// Reactor id.
    pub reactor_id: String,
    /// Culture day (days since inoculation; may be fractional).
    pub day: f64,
    /// Who caused the event.
    pub actor: Actor,
    /// Event kind string.
    pub kind: String,
    /// Event payload (a JSON object).
    pub payload: Value,
    /// SHA-256 of the canonical serialisation of the state or payload the event concerns.
    pub state_sha256: String,
    /// Hash of the previous record ([`GENESIS`] for the first).
    pub prev: String,
    /// SHA-256 of this record's canonical serialisation without `hash`.
    pub hash: String,
}

impl Record {
    /// Decode the typed event.
    pub fn event(&self) -> Result<Event> {
        if crate::event::EventKind::parse(&self.kind).is_none() {
            return Err(AuditError::UnknownKind(self.kind.clone()));
        }
        let mut m = Map::with_capacity(2);
        m.insert("kind".into(), Value::String(self.kind.clone()));
        m.insert("payload".into(), self.payload.clone());
        serde_json::from_value(Value::Object(m)).map_err(|e| AuditError::Record {
            seq: self.seq,
            detail: format!("payload of kind `{}` does not decode: {e}", self.kind),
        })
    }

    /// Decode the payload as the payload type of one kind, e.g. every `forecast` record as a
    /// [`Forecast`](crate::event::Forecast). Fails with [`AuditError::KindMismatch`] on a record
    /// of another kind and with [`AuditError::Record`] when the payload does not decode.
    ///
    /// ```
    /// # fn main() -> perfusio_audit::Result<()> {
    /// use perfusio_audit::{AuditError, AuditWriter, Entry, WriterOptions, read_verified};
    /// use perfusio_audit::event::{RunFinished, RunResumed};
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("audit.jsonl");
    /// let (mut w, _) = AuditWriter::open(&path, WriterOptions::new("run", "R1"))?;
    /// let reason = "data ended on day 9".to_string();
    /// w.append(Entry::new(9, RunFinished { completed: false, reason, last_day: 9 }))?;
    /// drop(w);
    /// let (_, records) = read_verified(&path)?;
    /// let finished: RunFinished = records[0].payload_as()?;
    /// assert_eq!((finished.completed, finished.last_day), (false, 9));
    /// let wrong = records[0].payload_as::<RunResumed>();
    /// assert!(matches!(wrong, Err(AuditError::KindMismatch { .. })));
    /// # Ok(()) }
    /// ```
    pub fn payload_as<P: EventPayload>(&self) -> Result<P> {
        if self.kind != P::KIND.as_str() {
            return Err(AuditError::KindMismatch {
                seq: self.seq,
                found: self.kind.clone(),
                expected: P::KIND.as_str(),
            });
        }
        P::deserialize(&self.payload).map_err(|e| AuditError::Record {
            seq: self.seq,
            detail: format!("payload of kind `{}` does not decode: {e}", self.kind),
        })
    }

    /// The culture day as `perfusio-core`'s culture-day type: the inverse of the one
    /// conversion in [`Entry::new`](crate::Entry::new). Fails for a fractional, negative or
    /// too large `day` (which only logs written by other tools can hold).
    ///
    /// ```
    /// let zeros = "0".repeat(64);
    /// let line = format!(
    ///     r#"{{"actor":"system","day":3.0,"hash":"{zeros}","kind":"custom","payload":{{}},"prev":"{zeros}","reactor_id":"R1","run_id":"r","seq":1,"state_sha256":"{zeros}","ts":"2026-11-02T08:00:00.000000Z","v":1}}"#
    /// );
    /// let mut rec = perfusio_audit::Record::from_line(&line).unwrap();
    /// assert_eq!(rec.culture_day().unwrap(), 3);
    /// rec.day = 3.5;
    /// assert!(rec.culture_day().is_err());
    /// ```
    pub fn culture_day(&self) -> Result<u32> {
        let d = self.day;
        if d.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&d) {
            // Exact: a whole number in u32 range.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Ok(d as u32)
        } else {
            Err(AuditError::Record {
                seq: self.seq,
                detail: format!("day {d} is not a whole culture day in 0..=4294967295"),
            })
        }
    }

    /// The timestamp as a date-time value.
    pub fn timestamp(&self) -> Result<OffsetDateTime> {
        parse_timestamp(&self.ts).ok_or_else(|| AuditError::Record {
            seq: self.seq,
            detail: format!("timestamp {:?} is not YYYY-MM-DDTHH:MM:SS.ffffffZ", self.ts),
        })
    }

    /// Parse one line (without its newline) into a record, checking its schema but not its hash.
    pub fn from_line(line: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(line).map_err(|e| AuditError::Record {
            seq: 0,
            detail: format!("not valid JSON: {e}"),
        })?;
        Self::from_value(value).map_err(|detail| AuditError::Record { seq: 0, detail })
    }

    /// The record as a JSON value (all members, including `hash`).
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("v".into(), Value::from(FORMAT_VERSION));
        m.insert("seq".into(), Value::from(self.seq));
        m.insert("ts".into(), Value::String(self.ts.clone()));
        m.insert("run_id".into(), Value::String(self.run_id.clone()));
        m.insert("reactor_id".into(), Value::String(self.reactor_id.clone()));
        m.insert(
            "day".into(),
            serde_json::Number::from_f64(self.day).map_or(Value::Null, Value::Number),
        );
        m.insert("actor".into(), Value::String(self.actor.as_string()));
        m.insert("kind".into(), Value::String(self.kind.clone()));
        m.insert("payload".into(), self.payload.clone());
        m.insert(
            "state_sha256".into(),
            Value::String(self.state_sha256.clone()),
        );
        m.insert("prev".into(), Value::String(self.prev.clone()));
        m.insert("hash".into(), Value::String(self.hash.clone()));
        Value::Object(m)
    }

    /// The canonical line (without newline) for this record.
    pub fn to_line(&self) -> String {
        crate::canonical::canonical_string(&self.to_value())
    }

    /// SHA-256 (hex) of the canonical serialisation of this record without `hash`.
    pub fn compute_hash(&self) -> String {
        let mut v = self.to_value();
        if let Value::Object(m) = &mut v {
            m.remove("hash");
        }
        let mut out = Vec::with_capacity(512);
        write_canonical(&v, &mut out);
        hex(&Sha256::digest(&out))
    }

    /// Strict schema check of a parsed line. Returns a description of the first problem.
    pub(crate) fn from_value(value: Value) -> std::result::Result<Self, String> {
        let Value::Object(mut m) = value else {
            return Err("a record must be a JSON object".into());
        };
        if m.len() != 12 {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            return Err(format!(
                "a record has exactly the 12 members actor, day, hash, kind, payload, prev, \
                 reactor_id, run_id, seq, state_sha256, ts, v; found {keys:?}"
            ));
        }
        let mut take = |k: &str| {
            m.remove(k)
                .ok_or_else(|| format!("member `{k}` is missing"))
        };
        let v = take("v")?;
        if v.as_u64() != Some(FORMAT_VERSION) {
            return Err(format!("`v` must be {FORMAT_VERSION}, found {v}"));
        }
        let seq = take("seq")?
            .as_u64()
            .filter(|s| *s >= 1)
            .ok_or("`seq` must be an integer ≥ 1")?;
        let s = |v: Value, k: &str| match v {
            Value::String(s) => Ok(s),
            other => Err(format!("`{k}` must be a string, found {other}")),
        };
        let ts = s(take("ts")?, "ts")?;
        if parse_timestamp(&ts).is_none() {
            return Err(format!("`ts` {ts:?} is not YYYY-MM-DDTHH:MM:SS.ffffffZ"));
        }
        let run_id = s(take("run_id")?, "run_id")?;
        let reactor_id = s(take("reactor_id")?, "reactor_id")?;
        let day = take("day")?;
        let day = match &day {
            Value::Number(n) if n.is_f64() => n.as_f64().unwrap_or(f64::NAN),
            other => {
                return Err(format!(
                    "`day` must be a floating-point number, found {other}"
                ));
            }
        };
        let actor_s = s(take("actor")?, "actor")?;
        let actor = Actor::parse(&actor_s).ok_or_else(|| {
            format!("`actor` must be \"system\" or \"operator:<name>\", found {actor_s:?}")
        })?;
        let kind = s(take("kind")?, "kind")?;
        let payload = take("payload")?;
        if !payload.is_object() {
            return Err("`payload` must be an object".into());
        }
        let hexmember = |v: Value, k: &str| -> std::result::Result<String, String> {
            let h = s(v, k)?;
            if h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                Ok(h)
            } else {
                Err(format!(
                    "`{k}` must be 64 lowercase hex digits, found {h:?}"
                ))
            }
        };
        let state_sha256 = hexmember(take("state_sha256")?, "state_sha256")?;
        let prev = hexmember(take("prev")?, "prev")?;
        let hash = hexmember(take("hash")?, "hash")?;
        Ok(Self {
            seq,
            ts,
            run_id,
            reactor_id,
            day,
            actor,
            kind,
            payload,
            state_sha256,
            prev,
            hash,
        })
    }
}

/// Fast writer of a record line: emits the members in sorted order directly, hashes the line
/// without `hash`, and splices the hash in. Must agree byte for byte with [`Record::to_line`]
/// (tested).
#[derive(Debug)]
pub(crate) struct LineParts<'a> {
    pub(crate) seq: u64,
    pub(crate) ts: &'a str,
    pub(crate) run_id: &'a str,
    pub(crate) reactor_id: &'a str,
    pub(crate) day: f64,
    pub(crate) actor: &'a Actor,
    pub(crate) kind: &'a str,
    /// Canonical serialisation of the payload.
    pub(crate) payload: &'a [u8],
    pub(crate) state_sha256: &'a str,
    pub(crate) prev: &'a str,
}

impl LineParts<'_> {
    /// Write the full line including the trailing newline into `out` (cleared first), using
    /// `scratch` for the part after `hash`. Returns the record hash.
    pub(crate) fn write(&self, out: &mut Vec<u8>, scratch: &mut Vec<u8>) -> String {
        out.clear();
        scratch.clear();
        // Members before "hash": actor, day.
        out.extend_from_slice(b"{\"actor\":");
        write_str(&self.actor.as_string(), out);
        out.extend_from_slice(b",\"day\":");
        write_f64(self.day, out);
        out.push(b',');
        // Members after "hash": kind, payload, prev, reactor_id, run_id, seq, state_sha256, ts, v.
        scratch.extend_from_slice(b"\"kind\":");
        write_str(self.kind, scratch);
        scratch.extend_from_slice(b",\"payload\":");
        scratch.extend_from_slice(self.payload);
        scratch.extend_from_slice(b",\"prev\":");
        write_str(self.prev, scratch);
        scratch.extend_from_slice(b",\"reactor_id\":");
        write_str(self.reactor_id, scratch);
        scratch.extend_from_slice(b",\"run_id\":");
        write_str(self.run_id, scratch);
        scratch.extend_from_slice(b",\"seq\":");
        scratch.extend_from_slice(self.seq.to_string().as_bytes());
        scratch.extend_from_slice(b",\"state_sha256\":");
        write_str(self.state_sha256, scratch);
        scratch.extend_from_slice(b",\"ts\":");
        write_str(self.ts, scratch);
        scratch.extend_from_slice(b",\"v\":");
        scratch.extend_from_slice(FORMAT_VERSION.to_string().as_bytes());
        scratch.push(b'}');
        let mut h = Sha256::new();
        h.update(&out[..]);
        h.update(&scratch[..]);
        let hash = hex(&h.finalize());
        out.extend_from_slice(b"\"hash\":\"");
        out.extend_from_slice(hash.as_bytes());
        out.extend_from_slice(b"\",");
        out.extend_from_slice(scratch);
        out.push(b'\n');
        hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_timestamp_check_agrees_with_parser() {
        let cases = [
            "2026-11-25T13:45:00.123456Z",
            "2024-02-29T23:59:59.999999Z",
            "2025-02-29T00:00:00.000000Z",
            "2026-13-01T00:00:00.000000Z",
            "2026-04-31T00:00:00.000000Z",
            "2026-11-25T24:00:00.000000Z",
            "2026-11-25T13:60:00.000000Z",
            "2026-11-25T13:45:60.000000Z",
            "2026-11-25 13:45:00.123456Z",
            "2026-11-25T13:45:00.12345Z",
            "2026-11-25T13:45:00.123456+",
            "0000-01-01T00:00:00.000000Z",
            "2026-00-10T00:00:00.000000Z",
        ];
        for c in cases {
            assert_eq!(timestamp_is_valid(c), parse_timestamp(c).is_some(), "{c}");
        }
        let t = parse_timestamp("2024-02-29T23:59:59.999999Z").unwrap();
        assert_eq!(format_timestamp(t), "2024-02-29T23:59:59.999999Z");
        assert_eq!(format_timestamp(t), t.format(TS_FORMAT).unwrap());
    }
}
