//! Reading records back, and exporting them to CSV (and Parquet with the `polars` feature).

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use crate::canonical::canonical_string;
use crate::error::{AuditError, Result};
use crate::record::Record;
use crate::verify::{VerifyOptions, VerifyReport, verify_bytes};

/// Iterator over the records of a log, parsed and schema-checked but **not** verified (use
/// [`read_verified`] or [`crate::verify_file`] for that).
#[derive(Debug)]
pub struct Records<R> {
    inner: std::io::Lines<BufReader<R>>,
    line: u64,
}

impl<R: Read> Records<R> {
    /// Read records from any byte source.
    pub fn new(reader: R) -> Self {
        Self {
            inner: BufReader::new(reader).lines(),
            line: 0,
        }
    }
}

impl<R: Read> Iterator for Records<R> {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        let line = self.inner.next()?;
        self.line += 1;
        let n = self.line;
        Some(match line {
            Ok(l) => Record::from_line(&l).map_err(|e| match e {
                AuditError::Record { detail, .. } => AuditError::Record {
                    seq: n,
                    detail: format!("line {n}: {detail}"),
                },
                other => other,
            }),
            Err(e) => Err(AuditError::Record {
                seq: n,
                detail: format!("line {n}: cannot read: {e}"),
            }),
        })
    }
}

/// Open a log for iteration.
pub fn read_records(path: impl AsRef<Path>) -> Result<Records<File>> {
    let path = path.as_ref();
    let f = File::open(path).map_err(|e| AuditError::io("opening", path, e))?;
    Ok(Records::new(f))
}

/// Verify a log and return its records.
///
/// ```
/// # fn main() -> perfusio_audit::Result<()> {
/// use perfusio_audit::{read_verified, AuditWriter, Entry, WriterOptions, Event};
/// use perfusio_audit::event::{Custom};
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("audit.jsonl");
/// let (mut w, _) = AuditWriter::open(&path, WriterOptions::new("run", "R1"))?;
/// let event = Event::Custom(Custom { name: "note".into(), data: serde_json::json!({"x": 1.5}) });
/// w.append(Entry::new(0, event.clone()))?;
/// drop(w);
/// let (report, records) = read_verified(&path)?;
/// assert_eq!(report.records, 1);
/// assert_eq!(records[0].event()?, event);
/// # Ok(()) }
/// ```
pub fn read_verified(path: impl AsRef<Path>) -> Result<(VerifyReport, Vec<Record>)> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| AuditError::io("reading", path, e))?;
    let report = verify_bytes(&bytes, &VerifyOptions::default()).map_err(|failure| {
        AuditError::Verification {
            path: path.to_path_buf(),
            failure,
        }
    })?;
    let records = Records::new(bytes.as_slice()).collect::<Result<Vec<_>>>()?;
    Ok((report, records))
}

/// Column names of the CSV and Parquet exports, in order.
pub const EXPORT_COLUMNS: [&str; 11] = [
    "seq",
    "ts",
    "run_id",
    "reactor_id",
    "day",
    "actor",
    "kind",
    "payload",
    "state_sha256",
    "prev",
    "hash",
];

/// Write records as CSV (header [`EXPORT_COLUMNS`]; `payload` as canonical JSON text).
pub fn export_csv<W: Write>(records: &[Record], out: W) -> Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(EXPORT_COLUMNS)?;
    for r in records {
        let mut day = Vec::new();
        crate::canonical::write_f64(r.day, &mut day);
        w.write_record([
            r.seq.to_string().as_str(),
            &r.ts,
            &r.run_id,
            &r.reactor_id,
            &String::from_utf8_lossy(&day),
            &r.actor.as_string(),
            &r.kind,
            &canonical_string(&r.payload),
            &r.state_sha256,
            &r.prev,
            &r.hash,
        ])?;
    }
    w.flush().map_err(|e| AuditError::Csv(e.into()))?;
    Ok(())
}

/// Verify the log at `log` and export it to a CSV file at `out`; returns the number of records.
pub fn export_csv_file(log: impl AsRef<Path>, out: impl AsRef<Path>) -> Result<u64> {
    let (report, records) = read_verified(log)?;
    let out = out.as_ref();
    let f = File::create(out).map_err(|e| AuditError::io("creating", out, e))?;
    export_csv(&records, f)?;
    Ok(report.records)
}

/// Verify the log at `log` and export it to a Parquet file at `out` (columns
/// [`EXPORT_COLUMNS`]); returns the number of records.
#[cfg(feature = "polars")]
pub fn export_parquet_file(log: impl AsRef<Path>, out: impl AsRef<Path>) -> Result<u64> {
    use polars::prelude::*;
    let (report, records) = read_verified(log)?;
    let strings = |f: &dyn Fn(&Record) -> String| records.iter().map(f).collect::<Vec<String>>();
    let mut df = DataFrame::new_infer_height(vec![
        Column::new(
            "seq".into(),
            records.iter().map(|r| r.seq).collect::<Vec<u64>>(),
        ),
        Column::new("ts".into(), strings(&|r| r.ts.clone())),
        Column::new("run_id".into(), strings(&|r| r.run_id.clone())),
        Column::new("reactor_id".into(), strings(&|r| r.reactor_id.clone())),
        Column::new(
            "day".into(),
            records.iter().map(|r| r.day).collect::<Vec<f64>>(),
        ),
        Column::new("actor".into(), strings(&|r| r.actor.as_string())),
        Column::new("kind".into(), strings(&|r| r.kind.clone())),
        Column::new("payload".into(), strings(&|r| canonical_string(&r.payload))),
        Column::new("state_sha256".into(), strings(&|r| r.state_sha256.clone())),
        Column::new("prev".into(), strings(&|r| r.prev.clone())),
        Column::new("hash".into(), strings(&|r| r.hash.clone())),
    ])?;
    let out = out.as_ref();
    let f = File::create(out).map_err(|e| AuditError::io("creating", out, e))?;
    ParquetWriter::new(f).finish(&mut df)?;
    Ok(report.records)
}
