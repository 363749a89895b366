//! [`CultureTable`]: a culture file parsed once into day-indexed records in canonical units,
//! with the provenance (line, column) of every value.
//!
//! The builder works in steps, one concern each: `Columns::resolve` gives every header its
//! role and decides the layout, `read_wide` / `read_long` read the rows of that layout,
//! `apply_units` converts to canonical units, and the records are assembled from what each
//! day collected.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use perfusio_core::{
    CultureDay, DesignSpace, N_QUANTITIES, Origin, Quantity, RawReading, RawValue, Sample, Species,
    ValidatedSample, Variable, normalise_name,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::{FileError, Result};
use super::options::{ColumnTarget, Layout, ParseOptions, Unit};

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
    /// The number of fields of data row `row` when it differs from the header's (a ragged
    /// CSV line), else `None`.
    fn ragged(&self, _row: usize) -> Option<usize> {
        None
    }
}

/// A line whose number of fields differs from the header's: its values cannot be
/// attributed to columns, so the whole day it names is unreadable (the other days are not
/// affected). [`CultureTable::malformed`] reports it; reading the day through the connector
/// gives a [`perfusio_core::ConnectorError::Data`] with this text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedRow {
    /// 1-based line.
    pub row: u64,
    /// Fields in the header.
    pub expected: usize,
    /// Fields on the line.
    pub found: usize,
}

impl fmt::Display for MalformedRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {} has {} fields, but the header has {}; none of the day's values can be \
             attributed to a column, so the day is skipped (check for a missing or extra separator)",
            self.row, self.found, self.expected
        )
    }
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

/// One day of a [`CultureTable`]: the numbers as read (canonical units, not validated),
/// the cells that could not be read as numbers, and where each value came from.
#[derive(Debug, Clone, PartialEq)]
pub struct DayRecord {
    /// The day's numbers in canonical units, not validated: non-finite and implausible
    /// values are kept (validation rejects them); cells that are not numbers are absent
    /// here and listed by [`DayRecord::unreadable`].
    pub sample: Sample,
    /// 1-based line of the day's (first) row.
    pub row: u64,
    unreadable: Vec<(Quantity, String)>,
    cells: [Option<CellRef>; N_QUANTITIES],
    malformed: Option<MalformedRow>,
}

impl DayRecord {
    /// The culture day.
    pub fn day(&self) -> CultureDay {
        self.sample.day
    }

    /// Cells of this day that could not be read as numbers, verbatim, by quantity.
    pub fn unreadable(&self) -> &[(Quantity, String)] {
        &self.unreadable
    }

    /// The ragged line that made this day unreadable, if any (its values are then absent).
    pub fn malformed(&self) -> Option<&MalformedRow> {
        self.malformed.as_ref()
    }
}

/// A culture file parsed into day-indexed records.
///
/// Whole-file problems (no day column, duplicate or decreasing days) are [`FileError`]s; a
/// value that is not a plausible number is not: it is kept as read and rejected, with its
/// line and column, when the day is validated. A ragged line (too many or too few fields)
/// whose day can still be read makes only that day unreadable
/// ([`CultureTable::malformed`]); one whose day cannot be read is a [`FileError::RaggedRow`].
///
/// ```
/// use perfusio_connectors::files::{CultureTable, ParseOptions};
/// use perfusio_core::{Control, DEFAULT_AMBR250_DESIGN_SPACE as DS, Origin, Species};
/// let csv = "day,VCD,viability,glucose,perfusion_rate\n0,0.5,0.97,6.0,1.0\n1,0.9,0.96,high,1.0\n";
/// let t = CultureTable::from_csv_bytes(csv.as_bytes(), "t.csv", &ParseOptions::default()).unwrap();
/// assert_eq!(t.days().collect::<Vec<_>>(), [0, 1]);
/// let v = t.validated(1, &DS).unwrap();
/// assert!((v.sample.get(Species::Via).unwrap() - 96.0).abs() < 1e-9); // fraction → %
/// assert_eq!(v.sample.control(Control::PerfusionRate), Some(1.0));
/// assert_eq!(v.rejections[0].reason.code(), "not_a_number");
/// assert_eq!(v.rejections[0].origin.to_string(), "t.csv line 3, column `glucose`");
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
    pub fn get(&self, day: CultureDay) -> Option<&DayRecord> {
        self.records
            .binary_search_by_key(&day, DayRecord::day)
            .ok()
            .map(|i| &self.records[i])
    }

    /// Days present, ascending.
    pub fn days(&self) -> impl Iterator<Item = CultureDay> + '_ {
        self.records.iter().map(DayRecord::day)
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
    pub fn last_day(&self) -> Option<CultureDay> {
        self.records.last().map(DayRecord::day)
    }

    /// What was found while loading.
    pub fn report(&self) -> &LoadReport {
        &self.report
    }

    /// The ragged line that makes `day` unreadable, if any.
    pub fn malformed(&self, day: CultureDay) -> Option<&MalformedRow> {
        self.get(day).and_then(DayRecord::malformed)
    }

    /// The reading of `day` exactly as in the file (canonical units), every value with its
    /// line and column; `None` when the day is absent or unreadable
    /// ([`CultureTable::malformed`]).
    pub fn raw(&self, day: CultureDay) -> Option<RawReading> {
        let rec = self.get(day)?;
        if rec.malformed.is_some() {
            return None;
        }
        let mut raw = RawReading::new(day);
        raw.timestamp = rec.sample.timestamp;
        raw.reactor_id.clone_from(&rec.sample.reactor_id);
        let file = self.path.display().to_string();
        for q in Quantity::all() {
            let value = match rec.sample.quantity(q) {
                Some(v) => RawValue::Number(v),
                None => match rec.unreadable.iter().find(|(u, _)| *u == q) {
                    Some((_, text)) => RawValue::Text(text.clone()),
                    None => continue,
                },
            };
            let cell = rec.cells[q.index()];
            let origin = Origin::Cell {
                file: file.clone(),
                line: cell.map_or(rec.row, |c| c.row),
                column: cell
                    .and_then(|c| self.headers.get(c.column))
                    .cloned()
                    .unwrap_or_default(),
            };
            raw.push(q, value, origin);
        }
        Some(raw)
    }

    /// The day validated against `design_space` (the one validation step,
    /// [`RawReading::validate`]): accepted values and rejections with line and column;
    /// `None` when the day is absent.
    pub fn validated(
        &self,
        day: CultureDay,
        design_space: &DesignSpace,
    ) -> Option<ValidatedSample> {
        self.raw(day).map(|r| r.validate(design_space))
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

/// Reads a value cell: `None` when missing, else the number (non-finite included: it is a
/// number as read, rejected by validation) or, when it is not a number, the text verbatim.
fn read_value(cell: &Cell<'_>, decimal_comma: bool) -> Option<RawValue> {
    let text = match cell {
        Cell::Missing => return None,
        Cell::Number(v) => return Some(RawValue::Number(*v)),
        Cell::Text(t) => t.trim(),
    };
    let parsed = if decimal_comma && text.contains(',') {
        if text.contains('.') || text.matches(',').count() > 1 {
            return Some(RawValue::Text(text.to_string()));
        }
        text.replace(',', ".").parse::<f64>()
    } else {
        text.parse::<f64>()
    };
    match parsed {
        Ok(v) => Some(RawValue::Number(v)),
        // markers are checked only after a failed parse: the common case stays fast
        Err(_) if MISSING.iter().any(|m| m.eq_ignore_ascii_case(text)) => None,
        Err(_) => Some(RawValue::Text(text.to_string())),
    }
}

fn cell_text(cell: &Cell<'_>) -> String {
    match cell {
        Cell::Missing => String::new(),
        Cell::Number(v) => v.to_string(),
        Cell::Text(t) => t.to_string(),
    }
}

/// Reads typed cells of a source table, naming the file, line and column in errors.
struct Reader<'a, T: RawTable> {
    src: &'a T,
    path: &'a Path,
    decimal_comma: bool,
}

impl<T: RawTable> Reader<'_, T> {
    fn value(&self, row: usize, col: usize) -> Option<RawValue> {
        read_value(&self.src.cell(row, col), self.decimal_comma)
    }

    fn header(&self, col: usize) -> String {
        self.src.headers().get(col).cloned().unwrap_or_default()
    }

    /// The ragged-line problem of data row `row`, if its field count differs from the
    /// header's.
    fn malformed(&self, row: usize) -> Option<MalformedRow> {
        self.src.ragged(row).map(|found| MalformedRow {
            row: self.src.line(row),
            expected: self.src.headers().len(),
            found,
        })
    }

    /// The day of data row `row`; a ragged row whose day cannot be read is a
    /// [`FileError::RaggedRow`] (the whole file), any other bad day an invalid day.
    fn day_of(&self, row: usize, col: usize) -> Result<CultureDay> {
        self.day(row, col).map_err(|e| match self.malformed(row) {
            Some(m) => FileError::RaggedRow {
                path: self.path.to_path_buf(),
                row: m.row,
                expected: m.expected,
                found: m.found,
            },
            None => e,
        })
    }

    fn day(&self, row: usize, col: usize) -> Result<CultureDay> {
        let invalid = |reason: &'static str| FileError::InvalidDay {
            path: self.path.to_path_buf(),
            row: self.src.line(row),
            column: self.header(col),
            value: cell_text(&self.src.cell(row, col)),
            reason,
        };
        if let Cell::Text(t) = self.src.cell(row, col)
            && let Ok(d) = t.trim().parse::<CultureDay>()
        {
            return Ok(d);
        }
        let v = match self.value(row, col) {
            Some(RawValue::Number(v)) if v.is_finite() => v,
            None => return Err(invalid("the day is missing")),
            Some(_) => return Err(invalid("not a number")),
        };
        if v < 0.0 {
            return Err(invalid("days cannot be negative"));
        }
        if (v - v.round()).abs() > 1e-9 {
            return Err(invalid("days must be whole numbers (one sample per day)"));
        }
        if v > f64::from(CultureDay::MAX) {
            return Err(invalid("too large"));
        }
        // whole, non-negative and in range: the cast is exact
        Ok(v.round() as CultureDay)
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
                column: self.header(col),
                value: text,
            })
    }
}

/// What one day collects while the rows are read.
struct DayAcc {
    row: u64,
    values: [Option<RawValue>; N_QUANTITIES],
    cells: [Option<CellRef>; N_QUANTITIES],
    timestamp: Option<OffsetDateTime>,
    malformed: Option<MalformedRow>,
}

impl DayAcc {
    fn new(row: u64) -> Self {
        Self {
            row,
            values: std::array::from_fn(|_| None),
            cells: [None; N_QUANTITIES],
            timestamp: None,
            malformed: None,
        }
    }

    fn set(&mut self, slot: usize, value: RawValue, cell: CellRef) {
        self.values[slot] = Some(value);
        self.cells[slot] = Some(cell);
    }

    fn into_record(self, day: CultureDay) -> DayRecord {
        let mut sample = Sample::new(day);
        sample.timestamp = self.timestamp;
        let mut unreadable = Vec::new();
        for (q, v) in Quantity::all().zip(self.values) {
            match v {
                Some(RawValue::Number(x)) => sample.set_quantity(q, Some(x)),
                Some(other) => unreadable.push((q, other.to_string())),
                None => {}
            }
        }
        DayRecord {
            sample,
            row: self.row,
            unreadable,
            cells: self.cells,
            malformed: self.malformed,
        }
    }
}

/// The days of a file in order, each with what its rows gave.
type Days = Vec<(CultureDay, DayAcc)>;

/// The role of every column and the layout they imply.
struct Columns {
    roles: Vec<Option<ColumnTarget>>,
    day: usize,
    name: Option<usize>,
    value: Option<usize>,
    timestamp: Option<usize>,
    layout: Layout,
}

impl Columns {
    /// Resolves every header (explicit mappings first, then the registry), refuses two
    /// columns with one role, finds the day column and decides the layout.
    fn resolve(headers: &[String], path: &Path, options: &ParseOptions) -> Result<Self> {
        let roles: Vec<Option<ColumnTarget>> = headers
            .iter()
            .map(|h| {
                options
                    .mapping_of(h)
                    .or_else(|| match normalise_name(h).as_str() {
                        "species" | "variable" | "parameter" | "name" => Some(ColumnTarget::Name),
                        "value" => Some(ColumnTarget::Value),
                        _ => ColumnTarget::lookup(h),
                    })
            })
            .collect();
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
        let day = find(ColumnTarget::Day).ok_or_else(|| FileError::MissingDayColumn {
            path: path.to_path_buf(),
            found: headers.join(", "),
        })?;
        let (name, value) = (find(ColumnTarget::Name), find(ColumnTarget::Value));
        let has_slots = roles
            .iter()
            .any(|r| r.and_then(ColumnTarget::slot).is_some());
        let layout = match options.layout {
            Layout::Auto if name.is_some() && value.is_some() && !has_slots => Layout::Long,
            Layout::Auto => Layout::Wide,
            l => l,
        };
        Ok(Self {
            timestamp: find(ColumnTarget::Timestamp),
            roles,
            day,
            name,
            value,
            layout,
        })
    }

    /// Headers without a role (and, in wide files, the long-layout columns).
    fn unknown(&self, headers: &[String]) -> Vec<String> {
        let wide = self.layout != Layout::Long;
        self.roles
            .iter()
            .zip(headers)
            .filter(|(r, _)| {
                r.is_none() || (wide && matches!(r, Some(ColumnTarget::Name | ColumnTarget::Value)))
            })
            .map(|(_, h)| h.clone())
            .collect()
    }
}

/// Long layout: one row per (day, name, value); a day may span many rows in any order.
/// Returns the days and the unknown names.
fn read_long<T: RawTable>(
    r: &Reader<'_, T>,
    cols: &Columns,
    options: &ParseOptions,
) -> Result<(Days, BTreeSet<String>)> {
    let missing = |column: &'static str| FileError::MissingColumn {
        path: r.path.to_path_buf(),
        column,
        found: r.src.headers().join(", "),
    };
    let name_col = cols.name.ok_or_else(|| missing("species"))?;
    let value_col = cols.value.ok_or_else(|| missing("value"))?;
    let mut map: BTreeMap<CultureDay, DayAcc> = BTreeMap::new();
    let mut unknown = BTreeSet::new();
    for row in 0..r.src.n_rows() {
        let day = r.day_of(row, cols.day)?;
        let line = r.src.line(row);
        let acc = map.entry(day).or_insert_with(|| DayAcc::new(line));
        if let Some(m) = r.malformed(row) {
            acc.malformed.get_or_insert(m);
            continue;
        }
        if let Some(c) = cols.timestamp
            && acc.timestamp.is_none()
        {
            acc.timestamp = r.timestamp(row, c)?;
        }
        let name = cell_text(&r.src.cell(row, name_col));
        let name = name.trim();
        if name.is_empty() {
            continue;
        }
        let target = options
            .mapping_of(name)
            .or_else(|| ColumnTarget::lookup(name));
        let Some(slot) = target.and_then(ColumnTarget::slot) else {
            if target != Some(ColumnTarget::Ignore) {
                unknown.insert(name.to_string());
            }
            continue;
        };
        let Some(v) = r.value(row, value_col) else {
            continue;
        };
        if let Some(first) = acc.cells[slot] {
            return Err(FileError::DuplicateEntry {
                path: r.path.to_path_buf(),
                row: line,
                column: r.header(name_col),
                day,
                variable: slot_name(slot).to_string(),
                first_row: first.row,
            });
        }
        let cell = CellRef {
            row: line,
            column: value_col,
        };
        acc.set(slot, v, cell);
    }
    Ok((map.into_iter().collect(), unknown))
}

/// Wide layout: one row per day, days strictly increasing.
fn read_wide<T: RawTable>(r: &Reader<'_, T>, cols: &Columns) -> Result<Days> {
    let slot_cols: Vec<(usize, usize)> = cols
        .roles
        .iter()
        .enumerate()
        .filter_map(|(c, role)| role.and_then(ColumnTarget::slot).map(|s| (c, s)))
        .collect();
    let mut days: Days = Vec::with_capacity(r.src.n_rows());
    for row in 0..r.src.n_rows() {
        let line = r.src.line(row);
        let day = r.day_of(row, cols.day)?;
        check_day_order(r, cols.day, &days, day, line)?;
        let mut acc = DayAcc::new(line);
        if let Some(m) = r.malformed(row) {
            acc.malformed = Some(m);
            days.push((day, acc));
            continue;
        }
        for &(c, s) in &slot_cols {
            if let Some(v) = r.value(row, c) {
                acc.set(
                    s,
                    v,
                    CellRef {
                        row: line,
                        column: c,
                    },
                );
            }
        }
        if let Some(c) = cols.timestamp {
            acc.timestamp = r.timestamp(row, c)?;
        }
        days.push((day, acc));
    }
    Ok(days)
}

/// A wide file's day on `line` must come after every day before it.
fn check_day_order<T: RawTable>(
    r: &Reader<'_, T>,
    day_col: usize,
    days: &[(CultureDay, DayAcc)],
    day: CultureDay,
    line: u64,
) -> Result<()> {
    let Some((prev, acc)) = days.last() else {
        return Ok(());
    };
    let duplicate = |first_row| FileError::DuplicateDay {
        path: r.path.to_path_buf(),
        row: line,
        column: r.header(day_col),
        day,
        first_row,
    };
    if day == *prev {
        return Err(duplicate(acc.row));
    }
    if day < *prev {
        // a repeat further back is a duplicate, not merely out of order
        if let Some((_, first)) = days.iter().find(|(d, _)| *d == day) {
            return Err(duplicate(first.row));
        }
        return Err(FileError::DecreasingDay {
            path: r.path.to_path_buf(),
            row: line,
            column: r.header(day_col),
            day,
            previous: *prev,
        });
    }
    Ok(())
}

/// Converts every measured variable to its canonical unit: declared units win; an
/// undeclared viability whose finite values are all ≤ [`VIABILITY_FRACTION_THRESHOLD`] is
/// a fraction. Only numbers are converted (text stays as read).
fn apply_units(
    days: &mut [(CultureDay, DayAcc)],
    layout: Layout,
    headers: &[String],
    options: &ParseOptions,
) -> Vec<UnitConversion> {
    let mut conversions = Vec::new();
    for q in Quantity::all() {
        let Some(var) = q.as_variable() else {
            continue;
        };
        let slot = q.index();
        let numbers = || {
            days.iter()
                .filter_map(move |(_, a)| a.values[slot].as_ref().and_then(RawValue::as_number))
                .filter(|v| v.is_finite())
        };
        if numbers().next().is_none() {
            continue;
        }
        let (unit, detected) = match options.unit_of(var) {
            Some(u) => (u, false),
            None if var == Variable::Species(Species::Via)
                && numbers().all(|v| v <= VIABILITY_FRACTION_THRESHOLD) =>
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
        for (_, a) in days.iter_mut() {
            if let Some(RawValue::Number(v)) = a.values[slot].as_mut() {
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
    conversions
}

/// Builds the table from any raw source: column roles, rows of the layout, units, records.
pub(crate) fn build_table<T: RawTable>(
    src: &T,
    path: &Path,
    options: &ParseOptions,
    delimiter: Option<u8>,
    decimal_comma: bool,
    ignored_partial_line: bool,
) -> Result<CultureTable> {
    let headers = src.headers();
    let cols = Columns::resolve(headers, path, options)?;
    let reader = Reader {
        src,
        path,
        decimal_comma,
    };
    let mut unknown = cols.unknown(headers);
    let mut days = if cols.layout == Layout::Long {
        let (days, names) = read_long(&reader, &cols, options)?;
        unknown.extend(names);
        days
    } else {
        read_wide(&reader, &cols)?
    };
    let conversions = apply_units(&mut days, cols.layout, headers, options);
    let records = days
        .into_iter()
        .map(|(day, acc)| acc.into_record(day))
        .collect();
    let report = LoadReport {
        layout: cols.layout,
        delimiter,
        decimal_comma,
        columns: headers.iter().cloned().zip(cols.roles).collect(),
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

fn slot_name(slot: usize) -> &'static str {
    Quantity::from_index(slot).map_or("?", Quantity::name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use perfusio_core::Control;

    fn val(text: &str, comma: bool) -> Option<RawValue> {
        read_value(&Cell::Text(Cow::Borrowed(text)), comma)
    }

    fn num(v: f64) -> Option<RawValue> {
        Some(RawValue::Number(v))
    }

    fn text(t: &str) -> Option<RawValue> {
        Some(RawValue::Text(t.into()))
    }

    #[test]
    fn numbers_markers_text_and_decimal_commas() {
        assert_eq!(val(" 2.5 ", false), num(2.5));
        assert_eq!(val("1e3", false), num(1000.0));
        assert_eq!(val("2,5", true), num(2.5));
        assert_eq!(val("2,5", false), text("2,5"));
        assert_eq!(val("1.234,5", true), text("1.234,5"));
        assert_eq!(val("1,2,3", true), text("1,2,3"));
        assert_eq!(val(" high ", false), text("high"));
        for m in ["NA", "n/a", "#N/A", "null", "None", "-", "ND"] {
            assert_eq!(val(m, true), None, "{m}");
        }
        // non-finite numbers are numbers as read: validation rejects them
        assert_eq!(val("NaN", false), num(f64::NAN));
        assert_eq!(val("-inf", false), num(f64::NEG_INFINITY));
        assert_eq!(val("1e999", false), num(f64::INFINITY));
        assert_eq!(read_value(&Cell::Number(f64::NAN), false), num(f64::NAN));
        assert_eq!(read_value(&Cell::Missing, false), None);
    }

    #[test]
    fn slots_are_the_canonical_quantity_order() {
        let targets = Species::ALL
            .into_iter()
            .map(|s| ColumnTarget::Variable(Variable::Species(s)))
            .chain(
                perfusio_core::Derived::ALL
                    .into_iter()
                    .map(|d| ColumnTarget::Variable(Variable::Derived(d))),
            )
            .chain(Control::ALL.into_iter().map(ColumnTarget::Control));
        let slots: Vec<usize> = targets.clone().map(|t| t.slot().unwrap()).collect();
        assert_eq!(slots, (0..N_QUANTITIES).collect::<Vec<_>>());
        for t in targets {
            assert_eq!(slot_name(t.slot().unwrap()), t.to_string());
        }
        assert_eq!(ColumnTarget::Day.slot(), None);
    }
}
