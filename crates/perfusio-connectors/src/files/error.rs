//! [`FileError`]: everything that can be wrong with a culture file as a whole, with its row
//! and column. A single cell that is not a plausible number is not an error: it is kept as
//! read and rejected by validation (see [`perfusio_core::RawReading::validate`]).

use std::path::PathBuf;

use perfusio_core::ConnectorError;
use thiserror::Error;

/// Errors of the file connector. Row numbers are 1-based **line numbers** of the file (the
/// header is line 1), so they match what a text editor or spreadsheet shows; for polars
/// sources they are 1-based data-row numbers plus one (as if a header line preceded them).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FileError {
    /// The file could not be opened or read.
    #[error("cannot read {}: {source}; check the path and its permissions", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file has no content (not even a header line).
    #[error("{} is empty; expected a header line such as `day,VCD,viability,...`", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// No column maps to the culture day.
    #[error(
        "{} has no `day` column (columns: {found}); rename the day column to `day` \
         or map it explicitly, e.g. `culture_time=day`", path.display()
    )]
    MissingDayColumn {
        /// The file.
        path: PathBuf,
        /// The header names found, comma-separated.
        found: String,
    },
    /// A column required by the long layout is missing.
    #[error(
        "{} is in long layout but has no `{column}` column (columns: {found}); long files need \
         `day`, `species` and `value` columns", path.display()
    )]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The missing column (`species` or `value`).
        column: &'static str,
        /// The header names found, comma-separated.
        found: String,
    },
    /// Two columns map to the same variable.
    #[error(
        "{}: columns `{first}` and `{second}` both map to {target}; drop one or map one of them \
         to `ignore`", path.display()
    )]
    DuplicateColumn {
        /// The file.
        path: PathBuf,
        /// The variable both map to.
        target: String,
        /// The first column.
        first: String,
        /// The second column.
        second: String,
    },
    /// A day value is not a non-negative whole number.
    #[error(
        "{} line {row}, column `{column}`: day `{value}` is invalid: {reason}", path.display()
    )]
    InvalidDay {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        row: u64,
        /// Column header.
        column: String,
        /// The cell as written.
        value: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A day appears twice in a wide file.
    #[error(
        "{} line {row}: day {day} already appeared on line {first_row}; keep one row per day",
        path.display()
    )]
    DuplicateDay {
        /// The file.
        path: PathBuf,
        /// 1-based line of the repeat.
        row: u64,
        /// Column header of the day column.
        column: String,
        /// The day.
        day: u32,
        /// 1-based line of the first occurrence.
        first_row: u64,
    },
    /// Days go backwards in a wide file.
    #[error(
        "{} line {row}: day {day} comes after day {previous}; sort the rows by day",
        path.display()
    )]
    DecreasingDay {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        row: u64,
        /// Column header of the day column.
        column: String,
        /// The day on this line.
        day: u32,
        /// The day on the line before.
        previous: u32,
    },
    /// A (day, variable) pair appears twice in a long file.
    #[error(
        "{} line {row}: {variable} for day {day} already given on line {first_row}",
        path.display()
    )]
    DuplicateEntry {
        /// The file.
        path: PathBuf,
        /// 1-based line of the repeat.
        row: u64,
        /// Column header of the name column.
        column: String,
        /// The day.
        day: u32,
        /// The variable's canonical name.
        variable: String,
        /// 1-based line of the first occurrence.
        first_row: u64,
    },
    /// A row has a different number of fields than the header.
    #[error(
        "{} line {row}: {found} fields, but the header has {expected}; check for a missing or \
         extra separator (or an unquoted separator inside a value)", path.display()
    )]
    RaggedRow {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        row: u64,
        /// Fields in the header.
        expected: usize,
        /// Fields on this line.
        found: usize,
    },
    /// A timestamp cell is not RFC 3339.
    #[error(
        "{} line {row}, column `{column}`: `{value}` is not an RFC 3339 timestamp \
         (e.g. 2026-11-25T08:00:00Z)", path.display()
    )]
    InvalidTimestamp {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        row: u64,
        /// Column header.
        column: String,
        /// The cell as written.
        value: String,
    },
    /// The CSV parser failed (e.g. invalid UTF-8 in the header).
    #[error("{} line {row}: {message}", path.display())]
    Csv {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        row: u64,
        /// The parser's message.
        message: String,
    },
    /// An option (column mapping, unit declaration, delimiter) is invalid.
    #[error("invalid {option} `{value}`: {reason}")]
    InvalidOption {
        /// Which option.
        option: &'static str,
        /// The value as given.
        value: String,
        /// Why and what to use instead.
        reason: String,
    },
    /// The file kind needs a cargo feature that is not enabled.
    #[error(
        "{} needs the `{feature}` feature of perfusio-connectors; rebuild with \
         `--features {feature}` or convert the file to CSV", path.display()
    )]
    FeatureDisabled {
        /// The file.
        path: PathBuf,
        /// The feature to enable.
        feature: &'static str,
    },
    /// Writing a CSV (samples or the setpoint log) failed.
    #[error("cannot write CSV to {target}: {source}; check that it is writable and not full")]
    Write {
        /// Where it was written (a path, or `<writer>`).
        target: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `write_setpoints` was called without a setpoint log path.
    #[error("no setpoint log is configured; set `FileStoreConfig::setpoint_log` to a CSV path")]
    NoSetpointLog,
    /// The existing setpoint log has a different header.
    #[error(
        "setpoint log {} has header `{found}`, expected `{expected}`; refusing to append to a \
         file of another layout (choose a new log path)", path.display()
    )]
    SetpointLogMismatch {
        /// The log file.
        path: PathBuf,
        /// Header found.
        found: String,
        /// Header expected.
        expected: String,
    },
    /// polars failed to read or convert the data.
    #[cfg(feature = "polars")]
    #[error("{}: {message}", path.display())]
    Polars {
        /// The file (or `<DataFrame>`).
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

impl FileError {
    /// The 1-based line the error refers to, when it refers to one.
    pub fn row(&self) -> Option<u64> {
        match self {
            Self::InvalidDay { row, .. }
            | Self::DuplicateDay { row, .. }
            | Self::DecreasingDay { row, .. }
            | Self::DuplicateEntry { row, .. }
            | Self::RaggedRow { row, .. }
            | Self::InvalidTimestamp { row, .. }
            | Self::Csv { row, .. } => Some(*row),
            _ => None,
        }
    }

    /// The column header the error refers to, when it refers to one.
    pub fn column(&self) -> Option<&str> {
        match self {
            Self::InvalidDay { column, .. }
            | Self::DuplicateDay { column, .. }
            | Self::DecreasingDay { column, .. }
            | Self::DuplicateEntry { column, .. }
            | Self::InvalidTimestamp { column, .. } => Some(column),
            Self::DuplicateColumn { second, .. } => Some(second),
            _ => None,
        }
    }

    /// `true` when the file does not exist (yet).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

impl From<FileError> for ConnectorError {
    fn from(e: FileError) -> Self {
        match e {
            FileError::Io { path, source } => ConnectorError::Io {
                context: format!("reading {}", path.display()),
                source,
            },
            FileError::NoSetpointLog => ConnectorError::Other {
                context: "write_setpoints".into(),
                source: Box::new(e),
            },
            other => {
                let context = match (other.row(), other.column()) {
                    (Some(r), Some(c)) => format!("line {r}, column `{c}`"),
                    (Some(r), None) => format!("line {r}"),
                    _ => "file".to_string(),
                };
                ConnectorError::Data {
                    context,
                    message: other.to_string(),
                }
            }
        }
    }
}

/// Result alias of the file connector.
pub type Result<T, E = FileError> = std::result::Result<T, E>;
