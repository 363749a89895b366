//! The setpoint log: one CSV row per `write_setpoints`, appended and flushed, never
//! rewritten. Text cells are sanitised against spreadsheet formula injection.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use perfusio_core::{Control, N_CONTROLS, Setpoints};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::{FileError, Result};

/// Column names of the setpoint log, in order: `day`, `timestamp`, the six controls in
/// canonical order, `source`, `note`.
pub fn setpoint_log_header() -> Vec<&'static str> {
    let mut h = vec!["day", "timestamp"];
    h.extend(Control::ALL.iter().map(|c| c.name()));
    h.extend(["source", "note"]);
    h
}

/// Makes a text cell safe to open in a spreadsheet: a cell starting with `=`, `+`, `-`,
/// `@`, tab or carriage return is prefixed with `'` so it is shown as text, not evaluated.
///
/// ```
/// use perfusio_connectors::files::sanitize_cell;
/// assert_eq!(sanitize_cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
/// assert_eq!(sanitize_cell("-1+2"), "'-1+2");
/// assert_eq!(sanitize_cell("twin decision"), "twin decision");
/// ```
pub fn sanitize_cell(text: &str) -> Cow<'_, str> {
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => Cow::Owned(format!("'{text}")),
        _ => Cow::Borrowed(text),
    }
}

/// One row of the setpoint log.
#[derive(Debug, Clone, PartialEq)]
pub struct SetpointLogEntry {
    /// Day and control values.
    pub setpoints: Setpoints,
    /// When the row was written.
    pub timestamp: OffsetDateTime,
    /// Who wrote it (sanitised text).
    pub source: String,
    /// Free text (sanitised).
    pub note: String,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |source| FileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn encode(fields: &[&str]) -> Result<Vec<u8>> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    w.write_record(fields).map_err(|e| FileError::Csv {
        path: PathBuf::new(),
        row: 0,
        message: e.to_string(),
    })?;
    w.into_inner().map_err(|e| FileError::Csv {
        path: PathBuf::new(),
        row: 0,
        message: e.to_string(),
    })
}

/// Checks an existing log: header must match; returns whether a newline must be written
/// first (the file does not end with one).
fn check_existing(path: &Path, expected: &str) -> Result<bool> {
    let mut f = File::open(path).map_err(io_err(path))?;
    let len = f.metadata().map_err(io_err(path))?.len();
    if len == 0 {
        return Ok(false);
    }
    let mut first = String::new();
    BufReader::new(&mut f)
        .take(64 * 1024)
        .read_line(&mut first)
        .map_err(io_err(path))?;
    let found = first
        .trim_start_matches('\u{feff}')
        .trim_end_matches(['\r', '\n']);
    if found != expected {
        return Err(FileError::SetpointLogMismatch {
            path: path.to_path_buf(),
            found: found.to_string(),
            expected: expected.to_string(),
        });
    }
    let mut last = [0u8; 1];
    f.seek(SeekFrom::End(-1)).map_err(io_err(path))?;
    f.read_exact(&mut last).map_err(io_err(path))?;
    Ok(last[0] != b'\n')
}

/// Appends one row (with a header when the file is new or empty), flushes it to disk and
/// returns the timestamp written. Never truncates or rewrites the file.
pub(crate) fn append_setpoints(
    path: &Path,
    setpoints: &Setpoints,
    source: &str,
    note: &str,
) -> Result<OffsetDateTime> {
    let now = OffsetDateTime::now_utc();
    let ts = now.format(&Rfc3339).map_err(|e| FileError::InvalidOption {
        option: "timestamp",
        value: now.to_string(),
        reason: e.to_string(),
    })?;
    let day = setpoints.day.to_string();
    let values: Vec<String> = setpoints.values.iter().map(f64::to_string).collect();
    let (source, note) = (sanitize_cell(source), sanitize_cell(note));
    let mut row: Vec<&str> = vec![day.as_str(), ts.as_str()];
    row.extend(values.iter().map(String::as_str));
    row.extend([source.as_ref(), note.as_ref()]);
    let header = setpoint_log_header();
    let header_line = header.join(",");

    let mut buf = Vec::new();
    let mut file = match OpenOptions::new().append(true).create_new(true).open(path) {
        Ok(f) => {
            buf.extend(encode(&header)?);
            f
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let newline_first = check_existing(path, &header_line)?;
            let f = OpenOptions::new()
                .append(true)
                .open(path)
                .map_err(io_err(path))?;
            let empty = f.metadata().map_err(io_err(path))?.len() == 0;
            if empty {
                buf.extend(encode(&header)?);
            } else if newline_first {
                buf.push(b'\n');
            }
            f
        }
        Err(e) => return Err(io_err(path)(e)),
    };
    buf.extend(encode(&row)?);
    file.write_all(&buf).map_err(io_err(path))?;
    file.flush().map_err(io_err(path))?;
    file.sync_data().map_err(io_err(path))?;
    Ok(now)
}

/// Reads a setpoint log back (for audits and tests).
pub fn read_setpoint_log(path: impl AsRef<Path>) -> Result<Vec<SetpointLogEntry>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let mut r = csv::ReaderBuilder::new().from_reader(bytes.as_slice());
    let bad = |row: u64, message: String| FileError::Csv {
        path: path.to_path_buf(),
        row,
        message,
    };
    let mut out = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| bad(e.position().map_or(0, |p| p.line()), e.to_string()))?;
        let line = rec.position().map_or(0, |p| p.line());
        if rec.len() != N_CONTROLS + 4 {
            return Err(FileError::RaggedRow {
                path: path.to_path_buf(),
                row: line,
                expected: N_CONTROLS + 4,
                found: rec.len(),
            });
        }
        let day: u32 = rec[0]
            .parse()
            .map_err(|_| bad(line, format!("day `{}` is not a whole number", &rec[0])))?;
        let timestamp = OffsetDateTime::parse(&rec[1], &Rfc3339)
            .map_err(|_| bad(line, format!("timestamp `{}` is not RFC 3339", &rec[1])))?;
        let mut values = [0.0; N_CONTROLS];
        for (i, v) in values.iter_mut().enumerate() {
            *v = rec[2 + i]
                .parse()
                .map_err(|_| bad(line, format!("`{}` is not a number", &rec[2 + i])))?;
        }
        out.push(SetpointLogEntry {
            setpoints: Setpoints::new(day, values),
            timestamp,
            source: rec[N_CONTROLS + 2].to_string(),
            note: rec[N_CONTROLS + 3].to_string(),
        });
    }
    Ok(out)
}
