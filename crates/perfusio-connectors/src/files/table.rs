//! [`CultureTable`]: a culture file parsed once into typed, day-indexed samples in
//! canonical units, with the provenance (line, column) of every value.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use perfusio_core::{
    Control, DesignSpace, N_CONTROLS, N_DERIVED, N_SPECIES, Rejection, Sample, Species, Variable,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::{FileError, Result};
use super::options::{ColumnTarget, Layout, ParseOptions, Unit};

/// Number of value slots per day: the species, the derived variables, the controls.
pub(crate) const N_SLOTS: usize = N_SPECIES + N_DERIVED + N_CONTROLS;

/// Viability values at or below this everywhere in a file (with no declared unit) are read
/// as fractions: a culture at ≤ 1.5 % viability for its whole run is not a culture.
pub const VIABILITY_FRACTION_THRESHOLD: f64 = 1.5;

/// One cell of a source table, before typing.
#[derive(Debug)]
pub(crate) enum Cell<'a> {
    /// Empty or a missing-value marker.
    Missing,
    /// Already numeric (polars).
    #[cfg_attr(not(feature = "polars"), allow(dead_code))]
    Number(f64),
    /// Text to be parsed.
    Text(Cow<'a, str>),
}

/// A rectangular source table (CSV records, polars columns).
pub(crate) trait RawTable {
    /// Header names.
    fn headers(&self) -> &[String];
    /// Number of data rows.
    fn n_rows(&self) -> usize;
    /// 1-based file line of data row `row`.
    fn line(&self, row: usize) -> u64;
    /// The cell at (`row`, `col`).
    fn cell(&self, row: usize, col: usize) -> Cell<'_>;
}

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CellRef {
    pub(crate) row: u64,
    pub(crate) column: usize,
}

/// A unit conversion applied while loading.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitConversion {
    /// The variable converted.
    pub variable: Variable,
    /// The column (or, in long files, the name) it was read from.
    pub column: String,
    /// The unit the file used.
    pub unit: Unit,
    /// `true` when detected (viability ≤ 1.5 everywhere), `false` when declared.
    pub detected: bool,
}

impl fmt::Display for UnitConversion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = if self.detected {
            format!(
                "all values <= {VIABILITY_FRACTION_THRESHOLD}, read as a fraction and converted"
            )
        } else {
            "declared".to_string()
        };
        write!(
            f,
            "{} (column `{}`): {} -> {} ({how})",
            self.variable,
            self.column,
            self.unit,
            self.variable.unit()
        )
    }
}

/// What was found while loading: layout, dialect, column roles, conversions and unknown
/// columns, for the audit trail.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LoadReport {
    /// The layout used (never `Auto`).
    pub layout: Layout,
    /// CSV separator used (`None` for non-CSV sources).
    pub delimiter: Option<u8>,
    /// Whether a decimal comma was accepted.
    pub decimal_comma: bool,
    /// Each header with the role it was given (`None` = unknown, skipped).
    pub columns: Vec<(String, Option<ColumnTarget>)>,
    /// Unknown columns (wide) and unknown names in the species column (long), skipped.
    pub unknown: Vec<String>,
    /// Unit conversions applied.
    pub conversions: Vec<UnitConversion>,
    /// Data rows read.
    pub rows: usize,
    /// An incomplete, unterminated last line was ignored (follow mode).
    pub ignored_partial_line: bool,
}

/// One day of a [`CultureTable`]: the sample in canonical units (not yet validated) and where
/// each value came from.
#[derive(Debug, Clone, PartialEq)]
pub struct DayRecord {
    /// The sample, values in canonical units, not validated.
    pub sample: Sample,
    /// 1-based line of the day's (first) row.
    pub row: u64,
    cells: [Option<CellRef>; N_SLOTS],
}

/// A value rejected by validation, with its place in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileRejection {
    /// 1-based line.
    pub row: u64,
    /// Column header (in long files: the value column's header).
    pub column: String,
    /// Variable, value (canonical units) and reason.
    pub rejection: Rejection,
}

impl fmt::Display for FileRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column `{}`: {} ({})",
            self.row,
            self.column,
            self.rejection,
            self.rejection.reason.code()
        )
    }
}

/// A validated sample with the rejections of its day.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedSample {
    /// Accepted values only.
    pub sample: Sample,
    /// Rejected values, with line and column.
    pub rejections: Vec<FileRejection>,
}

/// A culture file parsed into day-indexed samples.
///
/// ```
/// use perfusio_connectors::files::{CultureTable, ParseOptions};
/// use perfusio_core::{Control, DEFAULT_AMBR250_DESIGN_SPACE as DS, Species};
/// let csv = "day,VCD,viability,glucose,perfusion_rate\n0,0.5,0.97,6.0,1.0\n1,0.9,0.96,5.8,1.0\n";
/// let t = CultureTable::from_csv_bytes(csv.as_bytes(), "t.csv", &ParseOptions::default()).unwrap();
/// assert_eq!(t.days().collect::<Vec<_>>(), [0, 1]);
/// let s = t.checked_sample(1, &DS).unwrap();
/// assert!((s.sample.get(Species::Via).unwrap() - 96.0).abs() < 1e-9); // fraction → %
/// assert_eq!(s.sample.control(Control::PerfusionRate), Some(1.0));
/// assert_eq!(t.report().conversions.len(), 1);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CultureTable {
    path: PathBuf,
    headers: Vec<String>,
    records: Vec<DayRecord>,
    report: LoadReport,
}

impl CultureTable {
    /// The source path (or a label such as `<DataFrame>`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The record of `day`, if present.
    pub fn get(&self, day: u32) -> Option<&DayRecord> {
        self.records
            .binary_search_by_key(&day, |r| r.sample.day)
            .ok()
            .map(|i| &self.records[i])
    }

    /// Days present, ascending.
    pub fn days(&self) -> impl Iterator<Item = u32> + '_ {
        self.records.iter().map(|r| r.sample.day)
    }

    /// All records, ascending by day.
    pub fn records(&self) -> &[DayRecord] {
        &self.records
    }

    /// Number of days.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// `true` when no day is present.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The last day present.
    pub fn last_day(&self) -> Option<u32> {
        self.records.last().map(|r| r.sample.day)
    }

    /// What was found while loading.
    pub fn report(&self) -> &LoadReport {
        &self.report
    }

    /// The validated sample of `day` (accepted values) and its rejections with line and
    /// column; `None` when the day is absent.
    pub fn checked_sample(&self, day: u32, design_space: &DesignSpace) -> Option<CheckedSample> {
        let rec = self.get(day)?;
        let v = rec.sample.validate(design_space);
        let rejections = v
            .rejections
            .into_iter()
            .map(|rejection| {
                let slot = ColumnTarget::Variable(rejection.variable).slot();
                let cell = slot.and_then(|s| rec.cells[s]);
                FileRejection {
                    row: cell.map_or(rec.row, |c| c.row),
                    column: cell
                        .and_then(|c| self.headers.get(c.column))
                        .cloned()
                        .unwrap_or_default(),
                    rejection,
                }
            })
            .collect();
        Some(CheckedSample {
            sample: v.sample,
            rejections,
        })
    }

    /// Parses CSV bytes (`label` names the source in errors).
    pub fn from_csv_bytes(
        bytes: &[u8],
        label: impl Into<PathBuf>,
        options: &ParseOptions,
    ) -> Result<Self> {
        super::csv_source::parse_csv(bytes, &label.into(), options)
    }

    /// Reads and parses a CSV file synchronously.
    pub fn read_csv(path: impl AsRef<Path>, options: &ParseOptions) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| FileError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_csv_bytes(&bytes, path, options)
    }
}

/// Missing-value markers (compared case-insensitively after trimming).
const MISSING: [&str; 8] = ["", "na", "n/a", "#n/a", "null", "none", "-", "nd"];

enum NumErr {
    NonNumeric,
    NonFinite,
}

/// Parses a numeric cell: `Ok(None)` for a missing value.
fn parse_number(cell: &Cell<'_>, decimal_comma: bool) -> std::result::Result<Option<f64>, NumErr> {
    let text = match cell {
        Cell::Missing => return Ok(None),
        Cell::Number(v) if v.is_finite() => return Ok(Some(*v)),
        Cell::Number(_) => return Err(NumErr::NonFinite),
        Cell::Text(t) => t.trim(),
    };
    let parsed = if decimal_comma && text.contains(',') {
        if text.contains('.') || text.matches(',').count() > 1 {
            return Err(NumErr::NonNumeric);
        }
        text.replace(',', ".").parse::<f64>()
    } else {
        text.parse::<f64>()
    };
    match parsed {
        Ok(v) if v.is_finite() => Ok(Some(v)),
        Ok(_) => Err(NumErr::NonFinite),
        // markers are checked only after a failed parse: the common case stays fast
        Err(_) if MISSING.iter().any(|m| m.eq_ignore_ascii_case(text)) => Ok(None),
        Err(_) => Err(NumErr::NonNumeric),
    }
}

fn cell_text(cell: &Cell<'_>) -> String {
    match cell {
        Cell::Missing => String::new(),
        Cell::Number(v) => v.to_string(),
        Cell::Text(t) => t.to_string(),
    }
}

struct Builder<'a, T: RawTable> {
    src: &'a T,
    path: &'a Path,
    decimal_comma: bool,
}

impl<T: RawTable> Builder<'_, T> {
    fn number(&self, row: usize, col: usize) -> Result<Option<f64>> {
        let cell = self.src.cell(row, col);
        parse_number(&cell, self.decimal_comma).map_err(|e| {
            let (path, row, column, value) = (
                self.path.to_path_buf(),
                self.src.line(row),
                self.src.headers()[col].clone(),
                cell_text(&cell),
            );
            match e {
                NumErr::NonNumeric => FileError::NonNumeric {
                    path,
                    row,
                    column,
                    value,
                },
                NumErr::NonFinite => FileError::NonFinite {
                    path,
                    row,
                    column,
                    value,
                },
            }
        })
    }

    fn day(&self, row: usize, col: usize) -> Result<u32> {
        let invalid = |reason: &'static str| FileError::InvalidDay {
            path: self.path.to_path_buf(),
            row: self.src.line(row),
            column: self.src.headers()[col].clone(),
            value: cell_text(&self.src.cell(row, col)),
            reason,
        };
        if let Cell::Text(t) = self.src.cell(row, col)
            && let Ok(d) = t.trim().parse::<u32>()
        {
            return Ok(d);
        }
        let v = match self.number(row, col) {
            Ok(Some(v)) => v,
            Ok(None) => return Err(invalid("the day is missing")),
            Err(_) => return Err(invalid("not a number")),
        };
        if v < 0.0 {
            return Err(invalid("days cannot be negative"));
        }
        if (v - v.round()).abs() > 1e-9 {
            return Err(invalid("days must be whole numbers (one sample per day)"));
        }
        if v > f64::from(u32::MAX) {
            return Err(invalid("too large"));
        }
        // whole, non-negative and in range: the cast is exact
        Ok(v.round() as u32)
    }

    fn timestamp(&self, row: usize, col: usize) -> Result<Option<OffsetDateTime>> {
        let cell = self.src.cell(row, col);
        let text = match &cell {
            Cell::Missing => return Ok(None),
            Cell::Text(t) if MISSING.iter().any(|m| m.eq_ignore_ascii_case(t.trim())) => {
                return Ok(None);
            }
            Cell::Text(t) => t.trim().to_string(),
            Cell::Number(_) => cell_text(&cell),
        };
        OffsetDateTime::parse(&text, &Rfc3339)
            .map(Some)
            .map_err(|_| FileError::InvalidTimestamp {
                path: self.path.to_path_buf(),
                row: self.src.line(row),
                column: self.src.headers()[col].clone(),
                value: text,
            })
    }
}

#[derive(Default)]
struct DayAcc {
    row: u64,
    values: [Option<f64>; N_SLOTS],
    cells: [Option<CellRef>; N_SLOTS],
    timestamp: Option<OffsetDateTime>,
}

/// Builds the table from any raw source.
pub(crate) fn build_table<T: RawTable>(
    src: &T,
    path: &Path,
    options: &ParseOptions,
    delimiter: Option<u8>,
    decimal_comma: bool,
    ignored_partial_line: bool,
) -> Result<CultureTable> {
    let headers = src.headers();
    let roles: Vec<Option<ColumnTarget>> = headers
        .iter()
        .map(|h| {
            options
                .mapping_of(h)
                .or_else(|| match perfusio_core::normalise_name(h).as_str() {
                    "species" | "variable" | "parameter" | "name" => Some(ColumnTarget::Name),
                    "value" => Some(ColumnTarget::Value),
                    _ => ColumnTarget::lookup(h),
                })
        })
        .collect();
    let found = || headers.join(", ");

    // one column per role
    for (i, r) in roles.iter().enumerate() {
        let Some(r) = r else { continue };
        if *r == ColumnTarget::Ignore {
            continue;
        }
        if let Some(j) = roles[..i].iter().position(|x| x.as_ref() == Some(r)) {
            return Err(FileError::DuplicateColumn {
                path: path.to_path_buf(),
                target: r.to_string(),
                first: headers[j].clone(),
                second: headers[i].clone(),
            });
        }
    }
    let find = |t: ColumnTarget| roles.iter().position(|r| *r == Some(t));
    let day_col = find(ColumnTarget::Day).ok_or_else(|| FileError::MissingDayColumn {
        path: path.to_path_buf(),
        found: found(),
    })?;
    let name_col = find(ColumnTarget::Name);
    let value_col = find(ColumnTarget::Value);
    let has_slots = roles.iter().any(|r| r.and_then(|r| r.slot()).is_some());
    let layout = match options.layout {
        Layout::Auto if name_col.is_some() && value_col.is_some() && !has_slots => Layout::Long,
        Layout::Auto => Layout::Wide,
        l => l,
    };

    let b = Builder {
        src,
        path,
        decimal_comma,
    };
    let mut unknown: Vec<String> = Vec::new();
    let mut days: Vec<(u32, DayAcc)> = Vec::new();
    let ts_col = find(ColumnTarget::Timestamp);

    if layout == Layout::Long {
        let name_col = name_col.ok_or_else(|| FileError::MissingColumn {
            path: path.to_path_buf(),
            column: "species",
            found: found(),
        })?;
        let value_col = value_col.ok_or_else(|| FileError::MissingColumn {
            path: path.to_path_buf(),
            column: "value",
            found: found(),
        })?;
        let mut map: BTreeMap<u32, DayAcc> = BTreeMap::new();
        let mut unknown_names: BTreeSet<String> = BTreeSet::new();
        for row in 0..src.n_rows() {
            let day = b.day(row, day_col)?;
            let line = src.line(row);
            let acc = map.entry(day).or_insert_with(|| DayAcc {
                row: line,
                ..DayAcc::default()
            });
            if let Some(c) = ts_col
                && acc.timestamp.is_none()
            {
                acc.timestamp = b.timestamp(row, c)?;
            }
            let name = cell_text(&src.cell(row, name_col));
            let name = name.trim();
            if name.is_empty() {
                continue;
            }
            let target = options
                .mapping_of(name)
                .or_else(|| ColumnTarget::lookup(name));
            let Some(slot) = target.and_then(|t| t.slot()) else {
                if target != Some(ColumnTarget::Ignore) {
                    unknown_names.insert(name.to_string());
                }
                continue;
            };
            let Some(v) = b.number(row, value_col)? else {
                continue;
            };
            if let Some(first) = acc.cells[slot] {
                return Err(FileError::DuplicateEntry {
                    path: path.to_path_buf(),
                    row: line,
                    column: headers[name_col].clone(),
                    day,
                    variable: slot_name(slot).to_string(),
                    first_row: first.row,
                });
            }
            acc.values[slot] = Some(v);
            acc.cells[slot] = Some(CellRef {
                row: line,
                column: value_col,
            });
        }
        unknown.extend(
            roles
                .iter()
                .zip(headers)
                .filter(|(r, _)| r.is_none())
                .map(|(_, h)| h.clone()),
        );
        unknown.extend(unknown_names);
        days.extend(map);
    } else {
        let slot_cols: Vec<(usize, usize)> = roles
            .iter()
            .enumerate()
            .filter_map(|(c, r)| r.and_then(|r| r.slot()).map(|s| (c, s)))
            .collect();
        unknown.extend(
            roles
                .iter()
                .zip(headers)
                .filter(|(r, _)| {
                    r.is_none() || matches!(r, Some(ColumnTarget::Name | ColumnTarget::Value))
                })
                .map(|(_, h)| h.clone()),
        );
        days.reserve(src.n_rows());
        for row in 0..src.n_rows() {
            let line = src.line(row);
            let day = b.day(row, day_col)?;
            if let Some((prev, acc)) = days.last() {
                if day == *prev {
                    return Err(FileError::DuplicateDay {
                        path: path.to_path_buf(),
                        row: line,
                        column: headers[day_col].clone(),
                        day,
                        first_row: acc.row,
                    });
                }
                if day < *prev {
                    // a repeat further back is a duplicate, not merely out of order
                    if let Some((_, first)) = days.iter().find(|(d, _)| *d == day) {
                        return Err(FileError::DuplicateDay {
                            path: path.to_path_buf(),
                            row: line,
                            column: headers[day_col].clone(),
                            day,
                            first_row: first.row,
                        });
                    }
                    return Err(FileError::DecreasingDay {
                        path: path.to_path_buf(),
                        row: line,
                        column: headers[day_col].clone(),
                        day,
                        previous: *prev,
                    });
                }
            }
            let mut acc = DayAcc {
                row: line,
                ..DayAcc::default()
            };
            for &(c, s) in &slot_cols {
                if let Some(v) = b.number(row, c)? {
                    acc.values[s] = Some(v);
                    acc.cells[s] = Some(CellRef {
                        row: line,
                        column: c,
                    });
                }
            }
            if let Some(c) = ts_col {
                acc.timestamp = b.timestamp(row, c)?;
            }
            days.push((day, acc));
        }
    }

    // units: declared ones win; undeclared viability <= threshold everywhere is a fraction
    let mut conversions = Vec::new();
    for slot in 0..N_SPECIES + N_DERIVED {
        let var = slot_variable(slot);
        let declared = options.unit_of(var);
        let any_present = days.iter().any(|(_, a)| a.values[slot].is_some());
        if !any_present {
            continue;
        }
        let (unit, detected) = match declared {
            Some(u) => (u, false),
            None if var == Variable::Species(Species::Via)
                && days
                    .iter()
                    .filter_map(|(_, a)| a.values[slot])
                    .all(|v| v <= VIABILITY_FRACTION_THRESHOLD) =>
            {
                (Unit::Fraction, true)
            }
            None => continue,
        };
        if unit == Unit::Canonical {
            continue;
        }
        let column = days
            .iter()
            .find_map(|(_, a)| a.cells[slot])
            .and_then(|c| match layout {
                Layout::Long => None,
                _ => headers.get(c.column).cloned(),
            })
            .unwrap_or_else(|| var.name().to_string());
        for (_, a) in &mut days {
            if let Some(v) = a.values[slot].as_mut() {
                *v = unit.to_canonical(*v);
            }
        }
        conversions.push(UnitConversion {
            variable: var,
            column,
            unit,
            detected,
        });
    }

    let records = days
        .into_iter()
        .map(|(day, a)| {
            let mut sample = Sample::new(day);
            for (slot, v) in a.values.iter().enumerate() {
                match slot {
                    s if s < N_SPECIES => sample.species[s] = *v,
                    s if s < N_SPECIES + N_DERIVED => sample.derived[s - N_SPECIES] = *v,
                    s => sample.controls[s - N_SPECIES - N_DERIVED] = *v,
                }
            }
            sample.timestamp = a.timestamp;
            DayRecord {
                sample,
                row: a.row,
                cells: a.cells,
            }
        })
        .collect();

    let report = LoadReport {
        layout,
        delimiter,
        decimal_comma,
        columns: headers.iter().cloned().zip(roles).collect(),
        unknown,
        conversions,
        rows: src.n_rows(),
        ignored_partial_line,
    };
    Ok(CultureTable {
        path: path.to_path_buf(),
        headers: headers.to_vec(),
        records,
        report,
    })
}

fn slot_variable(slot: usize) -> Variable {
    match Species::from_index(slot) {
        Some(s) => Variable::Species(s),
        None => {
            Variable::Derived(perfusio_core::Derived::ALL[(slot - N_SPECIES).min(N_DERIVED - 1)])
        }
    }
}

fn slot_name(slot: usize) -> &'static str {
    if slot < N_SPECIES + N_DERIVED {
        slot_variable(slot).name()
    } else {
        Control::ALL[(slot - N_SPECIES - N_DERIVED).min(N_CONTROLS - 1)].name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(text: &str, comma: bool) -> std::result::Result<Option<f64>, &'static str> {
        parse_number(&Cell::Text(Cow::Borrowed(text)), comma).map_err(|e| match e {
            NumErr::NonNumeric => "non-numeric",
            NumErr::NonFinite => "non-finite",
        })
    }

    #[test]
    fn numbers_markers_and_decimal_commas() {
        assert_eq!(num(" 2.5 ", false), Ok(Some(2.5)));
        assert_eq!(num("1e3", false), Ok(Some(1000.0)));
        assert_eq!(num("2,5", true), Ok(Some(2.5)));
        assert_eq!(num("2,5", false), Err("non-numeric"));
        assert_eq!(num("1.234,5", true), Err("non-numeric"));
        assert_eq!(num("1,2,3", true), Err("non-numeric"));
        for m in ["NA", "n/a", "#N/A", "null", "None", "-", "ND"] {
            assert_eq!(num(m, true), Ok(None), "{m}");
        }
        assert_eq!(num("NaN", false), Err("non-finite"));
        assert_eq!(num("-inf", false), Err("non-finite"));
        assert_eq!(
            parse_number(&Cell::Number(f64::NAN), false).map_err(|_| ()),
            Err(())
        );
        assert_eq!(
            parse_number(&Cell::Missing, false).map_err(|_| ()),
            Ok(None)
        );
    }

    #[test]
    fn slots_cover_every_variable_and_control_once() {
        let mut seen = [false; N_SLOTS];
        let targets = Species::ALL
            .into_iter()
            .map(|s| ColumnTarget::Variable(Variable::Species(s)))
            .chain(
                perfusio_core::Derived::ALL
                    .into_iter()
                    .map(|d| ColumnTarget::Variable(Variable::Derived(d))),
            )
            .chain(Control::ALL.into_iter().map(ColumnTarget::Control));
        for t in targets {
            let s = t.slot().unwrap();
            assert!(!seen[s], "{t} shares slot {s}");
            seen[s] = true;
            if s < N_SPECIES + N_DERIVED {
                assert_eq!(ColumnTarget::Variable(slot_variable(s)), t);
            }
            assert_eq!(slot_name(s), t.to_string());
        }
        assert!(seen.iter().all(|x| *x));
        assert_eq!(ColumnTarget::Day.slot(), None);
    }
}
