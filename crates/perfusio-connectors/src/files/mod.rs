//! `FilesystemStore`: samples from culture files, setpoints to a CSV log.
//!
//! A culture file is parsed **once per change** into a typed [`CultureTable`] indexed by
//! day, in canonical units, remembering the line and column of every value.
//! `Connector::read_raw` hands a day back exactly as in the file: a cell that is not a
//! number stays text, a non-finite or implausible number stays as it is, each with its
//! line and column ([`perfusio_core::Origin::Cell`]), and the one validation step of
//! `perfusio-core` rejects them with that place instead of failing the whole file. Parsing
//! everything up front (instead of scanning per request) gives whole-file checks a
//! streaming reader cannot do: duplicate or decreasing days, one unit decision per column,
//! and a single report of unknown columns.
//!
//! | input | layout | feature |
//! |---|---|---|
//! | CSV (`,` or `;`/tab with decimal commas, BOM, CRLF, quoted fields) | wide or long | always |
//! | Parquet (`.parquet`, `.pq`) | wide or long | `polars` |
//! | in-memory polars `DataFrame` | wide or long | `polars` |
//!
//! * **Wide**: a `day` column and one column per variable or control
//!   (`day,VCD,viability,glucose,...,perfusion_rate`). **Long**: `day,species,value`, one
//!   row per measurement; the species column may also name controls.
//! * **Columns** resolve through the core registry (canonical names and aliases,
//!   case-insensitive), `day` aliases, `timestamp`, and explicit [`ColumnMapping`]s that win.
//!   Unknown columns are skipped and reported once (tracing and [`LoadReport::unknown`]).
//! * **Units**: declared units ([`UnitDeclaration`], e.g. `viability=fraction`) win; an
//!   undeclared viability that is ≤ 1.5 everywhere is read as a fraction and converted to %,
//!   reported once ([`LoadReport::conversions`]).
//! * **Follow mode** ([`FollowOptions`]): the file is re-parsed whenever its size or
//!   modification time changes; a day not yet present is polled for up to a configured wait,
//!   then `NotYetAvailable`. A missing or empty file and an unterminated last line (a writer
//!   mid-append) count as "not yet".
//! * **Errors**: [`FileError`] is for what is wrong with the file as a whole (no day
//!   column, a bad or repeated day, a ragged row whose day cannot be read) and names its
//!   line and column; it converts into [`perfusio_core::ConnectorError`] (`Io` or `Data`).
//!   A ragged row whose day can be read spoils that day only ([`MalformedRow`]): reading it
//!   gives a `Data` error naming the line, and the other days read as usual.
//! * **Writing**: [`write_samples_csv`] writes samples in the wide layout this reader reads
//!   back to the same values (the `perfusio simulate` output).
//! * **Setpoints**: `write_setpoints` appends one row per write to a CSV log (header on
//!   creation, append-only, flushed), with text cells sanitised against formula injection.

mod csv_source;
mod csv_writer;
mod error;
mod options;
#[cfg(feature = "polars")]
mod polars_source;
mod setpoint_log;
mod store;
mod table;

pub use csv_writer::{CsvWriteOptions, samples_to_csv, write_samples_csv};
pub use error::{FileError, Result};
pub use options::{
    ColumnMapping, ColumnTarget, FileKind, FileStoreConfig, FollowOptions, Layout, ParseOptions,
    Unit, UnitDeclaration,
};
#[cfg(feature = "polars")]
pub use polars_source::{read_parquet, table_from_dataframe};
pub use setpoint_log::{SetpointLogEntry, read_setpoint_log, sanitize_cell, setpoint_log_header};
pub use store::{FilesystemStore, load_file};
pub use table::{
    CultureTable, DayRecord, LoadReport, MalformedRow, UnitConversion, VIABILITY_FRACTION_THRESHOLD,
};
