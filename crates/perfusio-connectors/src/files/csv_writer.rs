//! Writing samples as a wide culture CSV that [`CultureTable`](super::CultureTable) reads
//! back unchanged: the writer and the reader of the same format live side by side.

use std::io::Write;

use perfusio_core::{Control, Derived, Quantity, Sample, Species};
use time::format_description::well_known::Rfc3339;

use super::error::{FileError, Result};

/// Which optional columns [`write_samples_csv`] writes. `day` and the nine species are
/// always written.
///
/// ```
/// use perfusio_connectors::files::CsvWriteOptions;
/// let o = CsvWriteOptions::default().with_controls(true);
/// assert!(o.derived && o.controls && !o.timestamp);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CsvWriteOptions {
    /// Write `VCV` and `Diam` (default: yes).
    pub derived: bool,
    /// Write the six controls reported as applied (default: no).
    pub controls: bool,
    /// Write an RFC 3339 `timestamp` column after `day` (default: no).
    pub timestamp: bool,
}

impl Default for CsvWriteOptions {
    fn default() -> Self {
        Self {
            derived: true,
            controls: false,
            timestamp: false,
        }
    }
}

impl CsvWriteOptions {
    /// Sets whether the derived variables are written.
    #[must_use]
    pub fn with_derived(mut self, on: bool) -> Self {
        self.derived = on;
        self
    }

    /// Sets whether the controls are written.
    #[must_use]
    pub fn with_controls(mut self, on: bool) -> Self {
        self.controls = on;
        self
    }

    /// Sets whether the timestamp is written.
    #[must_use]
    pub fn with_timestamp(mut self, on: bool) -> Self {
        self.timestamp = on;
        self
    }

    /// The value columns, in order (after `day` and `timestamp`).
    fn quantities(&self) -> Vec<Quantity> {
        let mut q: Vec<Quantity> = Species::ALL.map(Quantity::from).to_vec();
        if self.derived {
            q.extend(Derived::ALL.map(Quantity::from));
        }
        if self.controls {
            q.extend(Control::ALL.map(Quantity::from));
        }
        q
    }
}

/// Writes `samples` as a wide CSV: a header `day[,timestamp],VCD,Via,…,Titer[,VCV,Diam]
/// [,perfusion_rate,…]` with canonical names, then one row per sample. Numbers use the
/// shortest text that reads back to the same `f64` (non-finite ones as `NaN`, `inf`,
/// `-inf`, which the reader keeps and validation rejects); a missing value is an empty
/// field; lines end in `\n`.
///
/// [`CultureTable`](super::CultureTable) reads the output back to the same values, with
/// one caveat of the reader's unit detection: if every viability in the file is ≤ 1.5 it is
/// read as a fraction, unless the unit is declared (`viability=%`).
///
/// ```
/// use perfusio_connectors::files::{CsvWriteOptions, CultureTable, ParseOptions, write_samples_csv};
/// use perfusio_core::{Sample, Species};
/// let samples = [Sample::new(0).with(Species::VCD, 0.5), Sample::new(1).with(Species::VCD, 0.9)];
/// let mut out = Vec::new();
/// write_samples_csv(&mut out, &samples, &CsvWriteOptions::default().with_derived(false)).unwrap();
/// let text = String::from_utf8(out).unwrap();
/// assert_eq!(text.lines().next(), Some("day,VCD,Via,Glc,Gln,Glu,Lac,Amm,Pyr,Titer"));
/// assert_eq!(text.lines().nth(2), Some("1,0.9,,,,,,,,"));
/// let back = CultureTable::from_csv_bytes(text.as_bytes(), "x.csv", &ParseOptions::default()).unwrap();
/// assert_eq!(back.get(1).unwrap().sample.get(Species::VCD), Some(0.9));
/// ```
pub fn write_samples_csv<W: Write>(
    writer: W,
    samples: &[Sample],
    options: &CsvWriteOptions,
) -> Result<()> {
    let failed = |e: csv::Error| FileError::Write {
        target: "<writer>".into(),
        source: e.into(),
    };
    let quantities = options.quantities();
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(writer);
    let mut header = vec!["day"];
    if options.timestamp {
        header.push("timestamp");
    }
    header.extend(quantities.iter().map(|q| q.name()));
    w.write_record(&header).map_err(failed)?;
    let mut row: Vec<String> = Vec::with_capacity(header.len());
    for s in samples {
        row.clear();
        row.push(s.day.to_string());
        if options.timestamp {
            let ts = match s.timestamp {
                Some(t) => t.format(&Rfc3339).map_err(|e| FileError::Write {
                    target: "<writer>".into(),
                    source: std::io::Error::other(format!(
                        "timestamp of day {} cannot be written as RFC 3339: {e}",
                        s.day
                    )),
                })?,
                None => String::new(),
            };
            row.push(ts);
        }
        row.extend(
            quantities
                .iter()
                .map(|q| s.quantity(*q).map(|v| v.to_string()).unwrap_or_default()),
        );
        w.write_record(&row).map_err(failed)?;
    }
    w.flush().map_err(|source| FileError::Write {
        target: "<writer>".into(),
        source,
    })
}

/// [`write_samples_csv`] into a `String`.
pub fn samples_to_csv(samples: &[Sample], options: &CsvWriteOptions) -> Result<String> {
    let mut out = Vec::new();
    write_samples_csv(&mut out, samples, options)?;
    String::from_utf8(out).map_err(|e| FileError::Write {
        target: "<string>".into(),
        source: std::io::Error::other(e),
    })
}
