//! Options of the file connector: layout, CSV dialect, column mapping, declared units,
//! follow mode and the setpoint log.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use perfusio_core::{Control, Quantity, Species, Variable, normalise_name};

use super::error::{FileError, Result};

/// How the rows of a file are organised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Layout {
    /// Long when the columns are exactly day / species / value (plus unknown ones), wide otherwise.
    #[default]
    Auto,
    /// One row per day: a `day` column and one column per variable.
    Wide,
    /// One row per measurement: `day`, `species` (a variable or control name) and `value`.
    Long,
}

/// What a column (or, in long files, a species name) holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ColumnTarget {
    /// The culture day (non-negative whole number).
    Day,
    /// A measured species or derived variable.
    Variable(Variable),
    /// A control applied that day.
    Control(Control),
    /// RFC 3339 timestamp of the sample.
    Timestamp,
    /// Long layout: the column naming the variable.
    Name,
    /// Long layout: the column holding the value.
    Value,
    /// Read nothing from this column (and do not report it as unknown).
    Ignore,
}

impl ColumnTarget {
    /// Resolves a header (or long-format name) by the core registry: `day` aliases,
    /// species, derived variables and controls, case-insensitively (spaces and dashes count
    /// as `_`, see [`normalise_name`]). A bare `t` is not a temperature: it is the usual
    /// name of a time column, so it stays unknown unless mapped explicitly.
    pub fn lookup(name: &str) -> Option<Self> {
        let key = normalise_name(name);
        match key.as_str() {
            "day" | "days" | "culture_day" | "day_of_culture" | "cultivation_day" => {
                return Some(Self::Day);
            }
            "timestamp" | "datetime" | "sample_time" | "sampled_at" => {
                return Some(Self::Timestamp);
            }
            "ignore" => return Some(Self::Ignore),
            _ => {}
        }
        Variable::lookup(&key)
            .map(Self::Variable)
            .or_else(|| Control::lookup(&key).map(Self::Control))
    }

    /// The quantity a value column holds (`None` for day, timestamp and layout columns).
    pub fn quantity(self) -> Option<Quantity> {
        match self {
            Self::Variable(v) => Some(v.into()),
            Self::Control(c) => Some(c.into()),
            _ => None,
        }
    }

    /// Index of the column's quantity in canonical order ([`Quantity::index`]: species
    /// `0..N_SPECIES`, derived variables, then controls).
    pub(crate) fn slot(self) -> Option<usize> {
        self.quantity().map(Quantity::index)
    }
}

impl fmt::Display for ColumnTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Day => f.write_str("day"),
            Self::Variable(v) => write!(f, "{v}"),
            Self::Control(c) => write!(f, "{c}"),
            Self::Timestamp => f.write_str("timestamp"),
            Self::Name => f.write_str("species"),
            Self::Value => f.write_str("value"),
            Self::Ignore => f.write_str("ignore"),
        }
    }
}

impl FromStr for ColumnTarget {
    type Err = FileError;

    fn from_str(s: &str) -> Result<Self> {
        match normalise_name(s).as_str() {
            "species" | "variable" | "name" => return Ok(Self::Name),
            "value" => return Ok(Self::Value),
            _ => {}
        }
        Self::lookup(s).ok_or_else(|| FileError::InvalidOption {
            option: "column mapping target",
            value: s.to_string(),
            reason: format!(
                "use day, timestamp, ignore, species, value, a species ({}, VCV, Diam) or a \
                 control ({})",
                Species::valid_names(),
                Control::valid_names()
            ),
        })
    }
}

/// The unit a column is written in, converted to the canonical unit on reading.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Unit {
    /// Already in the canonical unit of the variable.
    Canonical,
    /// A fraction (0–1) of a variable whose canonical unit is % (viability, VCV): × 100.
    Fraction,
    /// Multiply by this factor to get the canonical unit (e.g. `1e-6` for VCD in cells/mL).
    Factor(f64),
}

impl Unit {
    /// Converts a value in this unit to the canonical unit.
    pub fn to_canonical(self, value: f64) -> f64 {
        match self {
            Self::Canonical => value,
            Self::Fraction => value * 100.0,
            Self::Factor(k) => value * k,
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Canonical => f.write_str("canonical"),
            Self::Fraction => f.write_str("fraction"),
            Self::Factor(k) => write!(f, "x{k}"),
        }
    }
}

/// One declared unit, parsed from `NAME=UNIT` (e.g. `viability=fraction`, `vcd=x1e-6`,
/// `via=%`).
///
/// ```
/// use perfusio_connectors::files::{Unit, UnitDeclaration};
/// use perfusio_core::{Species, Variable};
/// let d: UnitDeclaration = "viability=fraction".parse().unwrap();
/// assert_eq!(d.variable, Variable::Species(Species::Via));
/// assert_eq!(d.unit, Unit::Fraction);
/// assert!("glucose=fraction".parse::<UnitDeclaration>().is_err()); // g/L is not a %
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnitDeclaration {
    /// The variable.
    pub variable: Variable,
    /// Its unit in the file.
    pub unit: Unit,
}

impl FromStr for UnitDeclaration {
    type Err = FileError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: String| FileError::InvalidOption {
            option: "unit declaration",
            value: s.to_string(),
            reason,
        };
        let (name, unit) = s
            .split_once('=')
            .ok_or_else(|| bad("expected NAME=UNIT, e.g. viability=fraction".into()))?;
        let variable = Variable::lookup(name).ok_or_else(|| {
            bad(format!(
                "unknown variable `{}`; valid: {}, VCV, Diam",
                name.trim(),
                Species::valid_names()
            ))
        })?;
        let u = unit.trim().to_ascii_lowercase();
        let unit = match u.as_str() {
            "fraction" | "frac" | "0-1" => Unit::Fraction,
            "canonical" | "%" | "percent" | "pct" => Unit::Canonical,
            _ => {
                let k =
                    u.strip_prefix('x')
                        .or_else(|| u.strip_prefix('*'))
                        .and_then(|k| k.parse::<f64>().ok())
                        .filter(|k| k.is_finite() && *k > 0.0)
                        .ok_or_else(|| {
                            bad("unit must be `fraction`, `percent`/`%`, `canonical` or a positive \
                             factor such as `x1e-6`"
                            .into())
                        })?;
                Unit::Factor(k)
            }
        };
        let is_percent = variable.unit() == "%";
        if !is_percent && (unit == Unit::Fraction || matches!(u.as_str(), "%" | "percent" | "pct"))
        {
            return Err(bad(format!(
                "{variable} is measured in {}, not %; use `canonical` or a factor",
                variable.unit()
            )));
        }
        Ok(Self { variable, unit })
    }
}

/// An explicit column mapping, parsed from `HEADER=TARGET` (e.g. `Xv=VCD`,
/// `Culture Time=day`, `operator=ignore`).
///
/// ```
/// use perfusio_connectors::files::{ColumnMapping, ColumnTarget};
/// use perfusio_core::{Species, Variable};
/// let m: ColumnMapping = "Xv [1e6/mL]=VCD".parse().unwrap();
/// assert_eq!(m.header, "Xv [1e6/mL]");
/// assert_eq!(m.target, ColumnTarget::Variable(Variable::Species(Species::VCD)));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnMapping {
    /// Header as written in the file (matched case-insensitively, trimmed).
    pub header: String,
    /// What it holds.
    pub target: ColumnTarget,
}

impl FromStr for ColumnMapping {
    type Err = FileError;

    fn from_str(s: &str) -> Result<Self> {
        let (header, target) = s.rsplit_once('=').ok_or_else(|| FileError::InvalidOption {
            option: "column mapping",
            value: s.to_string(),
            reason: "expected HEADER=TARGET, e.g. Xv=VCD".into(),
        })?;
        Ok(Self {
            header: header.trim().to_string(),
            target: target.parse()?,
        })
    }
}

/// How to read a culture table (any source: CSV, Parquet, DataFrame).
///
/// ```
/// use perfusio_connectors::files::{Layout, ParseOptions};
/// let opts = ParseOptions::default()
///     .with_layout(Layout::Wide)
///     .with_units("viability=fraction").unwrap()
///     .with_columns("Xv=VCD, operator=ignore").unwrap();
/// assert_eq!(opts.units.len(), 1);
/// assert_eq!(opts.columns.len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct ParseOptions {
    /// Wide, long or detect.
    pub layout: Layout,
    /// CSV field separator; `None` detects `,`, `;` or tab from the header line.
    pub delimiter: Option<u8>,
    /// CSV decimal separator is a comma; `None` accepts a decimal comma when the separator
    /// is `;` or tab (European exports) and a decimal point always.
    pub decimal_comma: Option<bool>,
    /// Explicit column mappings; they win over the registry's names and aliases.
    pub columns: Vec<ColumnMapping>,
    /// Declared units; they win over the viability auto-detection.
    pub units: Vec<UnitDeclaration>,
    /// Ignore an unterminated last line (a writer may be appending it). Follow mode sets
    /// this, and reads such a line as it is once the wait for a day has run out.
    pub tolerate_partial_last_line: bool,
}

impl ParseOptions {
    /// Sets the layout.
    #[must_use]
    pub fn with_layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }

    /// Sets the CSV separator (`b','`, `b';'`, `b'\t'`, …).
    #[must_use]
    pub fn with_delimiter(mut self, delimiter: u8) -> Self {
        self.delimiter = Some(delimiter);
        self
    }

    /// Declares whether decimals use a comma.
    #[must_use]
    pub fn with_decimal_comma(mut self, decimal_comma: bool) -> Self {
        self.decimal_comma = Some(decimal_comma);
        self
    }

    /// Adds one explicit column mapping.
    #[must_use]
    pub fn with_column(mut self, header: impl Into<String>, target: ColumnTarget) -> Self {
        self.columns.push(ColumnMapping {
            header: header.into(),
            target,
        });
        self
    }

    /// Adds comma-separated `HEADER=TARGET` mappings (command-line style).
    pub fn with_columns(mut self, list: &str) -> Result<Self> {
        for item in list.split(',').filter(|s| !s.trim().is_empty()) {
            self.columns.push(item.parse()?);
        }
        Ok(self)
    }

    /// Declares one unit.
    #[must_use]
    pub fn with_unit(mut self, variable: Variable, unit: Unit) -> Self {
        self.units.retain(|d| d.variable != variable);
        self.units.push(UnitDeclaration { variable, unit });
        self
    }

    /// Adds comma-separated `NAME=UNIT` declarations (command-line style, e.g.
    /// `--units viability=fraction`).
    pub fn with_units(mut self, list: &str) -> Result<Self> {
        for item in list.split(',').filter(|s| !s.trim().is_empty()) {
            let d: UnitDeclaration = item.parse()?;
            self = self.with_unit(d.variable, d.unit);
        }
        Ok(self)
    }

    /// The declared unit of `variable`, if any.
    pub fn unit_of(&self, variable: Variable) -> Option<Unit> {
        self.units
            .iter()
            .find(|d| d.variable == variable)
            .map(|d| d.unit)
    }

    /// The explicit mapping of `header`, if any (case-insensitive, trimmed).
    pub fn mapping_of(&self, header: &str) -> Option<ColumnTarget> {
        let h = header.trim();
        self.columns
            .iter()
            .find(|m| m.header.eq_ignore_ascii_case(h))
            .map(|m| m.target)
    }
}

/// Follow mode: re-read a growing file and wait for days not yet written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowOptions {
    /// How long `read_raw` waits for a missing day before `NotYetAvailable`.
    pub wait: Duration,
    /// How often the file's size and modification time are checked while waiting.
    pub poll_interval: Duration,
}

impl Default for FollowOptions {
    /// Wait 30 s, polling every 500 ms.
    fn default() -> Self {
        Self {
            wait: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
        }
    }
}

/// Which reader a path goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FileKind {
    /// By extension: `.parquet`/`.pq` → Parquet, anything else → CSV.
    #[default]
    Auto,
    /// Delimited text.
    Csv,
    /// Apache Parquet (feature `polars`).
    Parquet,
}

impl FileKind {
    /// Resolves `Auto` from the path's extension.
    pub fn resolve(self, path: &std::path::Path) -> Self {
        match self {
            Self::Auto => match path
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                Some("parquet" | "pq") => Self::Parquet,
                _ => Self::Csv,
            },
            k => k,
        }
    }
}

/// Configuration of a [`FilesystemStore`](super::FilesystemStore).
///
/// ```
/// use std::time::Duration;
/// use perfusio_connectors::files::{FileStoreConfig, FollowOptions};
/// let cfg = FileStoreConfig::new("culture.csv")
///     .with_follow(FollowOptions { wait: Duration::from_secs(5), poll_interval: Duration::from_millis(100) })
///     .with_setpoint_log("setpoints.csv");
/// assert!(cfg.follow.is_some());
/// assert_eq!(cfg.setpoint_log.as_deref(), Some(std::path::Path::new("setpoints.csv")));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FileStoreConfig {
    /// The culture file.
    pub path: PathBuf,
    /// Reader selection.
    pub kind: FileKind,
    /// How to parse it.
    pub parse: ParseOptions,
    /// `Some` to re-read the file when it changes and wait for missing days.
    pub follow: Option<FollowOptions>,
    /// CSV file to which `write_setpoints` appends one row per write.
    pub setpoint_log: Option<PathBuf>,
    /// Text written in the `source` column of the setpoint log.
    pub setpoint_source: String,
    /// Reactor identifier put into every sample.
    pub reactor_id: Option<String>,
}

impl FileStoreConfig {
    /// Reads `path` once (no follow mode), no setpoint log.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            kind: FileKind::Auto,
            parse: ParseOptions::default(),
            follow: None,
            setpoint_log: None,
            setpoint_source: "perfusio".into(),
            reactor_id: None,
        }
    }

    /// Sets the parse options.
    #[must_use]
    pub fn with_parse(mut self, parse: ParseOptions) -> Self {
        self.parse = parse;
        self
    }

    /// Sets the reader.
    #[must_use]
    pub fn with_kind(mut self, kind: FileKind) -> Self {
        self.kind = kind;
        self
    }

    /// Turns follow mode on.
    #[must_use]
    pub fn with_follow(mut self, follow: FollowOptions) -> Self {
        self.follow = Some(follow);
        self
    }

    /// Sets the setpoint log path.
    #[must_use]
    pub fn with_setpoint_log(mut self, path: impl Into<PathBuf>) -> Self {
        self.setpoint_log = Some(path.into());
        self
    }

    /// Sets the `source` text of setpoint-log rows.
    #[must_use]
    pub fn with_setpoint_source(mut self, source: impl Into<String>) -> Self {
        self.setpoint_source = source.into();
        self
    }

    /// Sets the reactor identifier of the samples.
    #[must_use]
    pub fn with_reactor_id(mut self, id: impl Into<String>) -> Self {
        self.reactor_id = Some(id.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use perfusio_core::{Derived, Species};

    #[test]
    fn lookup_covers_registry_and_day_aliases() {
        let cases = [
            ("day", ColumnTarget::Day),
            ("Culture Day", ColumnTarget::Day),
            (
                "VCD",
                ColumnTarget::Variable(Variable::Species(Species::VCD)),
            ),
            (
                "viability",
                ColumnTarget::Variable(Variable::Species(Species::Via)),
            ),
            (
                "Diameter",
                ColumnTarget::Variable(Variable::Derived(Derived::Diam)),
            ),
            (
                "perfusion_rate",
                ColumnTarget::Control(Control::PerfusionRate),
            ),
            ("Bleed-Rate", ColumnTarget::Control(Control::BleedRate)),
            ("timestamp", ColumnTarget::Timestamp),
        ];
        for (name, t) in cases {
            assert_eq!(ColumnTarget::lookup(name), Some(t), "{name}");
        }
        assert_eq!(ColumnTarget::lookup("operator"), None);
        // a time column named `t` is not a temperature
        assert_eq!(ColumnTarget::lookup("t"), None);
        assert_eq!(
            ColumnTarget::lookup("temp"),
            Some(ColumnTarget::Control(Control::Temperature))
        );
        assert_eq!(
            "species".parse::<ColumnTarget>().unwrap(),
            ColumnTarget::Name
        );
    }

    #[test]
    fn unit_declarations_parse_and_refuse_nonsense() {
        let d: UnitDeclaration = "vcd=x1e-6".parse().unwrap();
        assert_eq!(d.unit, Unit::Factor(1e-6));
        approx::assert_relative_eq!(d.unit.to_canonical(5.0e6), 5.0, max_relative = 1e-12);
        let d: UnitDeclaration = "Via=%".parse().unwrap();
        assert_eq!(d.unit, Unit::Canonical);
        let e = "glucose=%".parse::<UnitDeclaration>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid unit declaration `glucose=%`: Glc is measured in g/L, not %; use \
             `canonical` or a factor"
        );
        assert!("via=x-2".parse::<UnitDeclaration>().is_err());
        assert!("via".parse::<UnitDeclaration>().is_err());
        assert!("sugar=fraction".parse::<UnitDeclaration>().is_err());
    }
}
