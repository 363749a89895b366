//! Parquet files and in-memory polars `DataFrame`s (feature `polars`), through the same
//! table builder as CSV: the same column mapping, layouts, unit handling and errors.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use polars::prelude::{DataFrame, DataType, ParquetReader, PolarsError, SerReader};

use super::error::{FileError, Result};
use super::options::ParseOptions;
use super::table::{Cell, CultureTable, RawTable, build_table};

enum Col {
    Num(Vec<Option<f64>>),
    Text(Vec<Option<String>>),
}

struct FrameTable {
    headers: Vec<String>,
    cols: Vec<Col>,
    height: usize,
}

impl RawTable for FrameTable {
    fn headers(&self) -> &[String] {
        &self.headers
    }
    fn n_rows(&self) -> usize {
        self.height
    }
    fn line(&self, row: usize) -> u64 {
        // as if a header line preceded the data rows
        row as u64 + 2
    }
    fn cell(&self, row: usize, col: usize) -> Cell<'_> {
        match self.cols.get(col) {
            Some(Col::Num(v)) => v
                .get(row)
                .copied()
                .flatten()
                .map_or(Cell::Missing, Cell::Number),
            Some(Col::Text(v)) => v
                .get(row)
                .and_then(Option::as_deref)
                .map_or(Cell::Missing, |s| Cell::Text(Cow::Borrowed(s))),
            None => Cell::Missing,
        }
    }
}

fn polars_err(path: &Path, what: &str) -> impl FnOnce(PolarsError) -> FileError {
    let (path, what) = (path.to_path_buf(), what.to_string());
    move |e| FileError::Polars {
        path,
        message: format!("{what}: {e}"),
    }
}

fn frame_table(df: &DataFrame, path: &Path) -> Result<FrameTable> {
    let mut headers = Vec::with_capacity(df.width());
    let mut cols = Vec::with_capacity(df.width());
    for c in df.columns() {
        let name = c.name().to_string();
        let dtype = c.dtype();
        let col = if dtype.is_primitive_numeric() || dtype.is_bool() {
            let what = format!("column `{name}` to f64");
            let f = c
                .cast(&DataType::Float64)
                .map_err(polars_err(path, &what))?;
            Col::Num(f.f64().map_err(polars_err(path, &what))?.iter().collect())
        } else {
            let what = format!("column `{name}` to text");
            let s = c.cast(&DataType::String).map_err(polars_err(path, &what))?;
            Col::Text(
                s.str()
                    .map_err(polars_err(path, &what))?
                    .iter()
                    .map(|o| o.map(str::to_string))
                    .collect(),
            )
        };
        headers.push(name);
        cols.push(col);
    }
    Ok(FrameTable {
        headers,
        cols,
        height: df.height(),
    })
}

/// Builds a [`CultureTable`] from a polars `DataFrame` (wide or long). Numeric columns are
/// read as `f64` (NaN is an error, null is missing); other columns as text. Row numbers in
/// errors are data-row index + 2, as if the frame had been written with a header line.
///
/// ```
/// use perfusio_connectors::files::{ParseOptions, table_from_dataframe};
/// use perfusio_core::Species;
/// let df = polars::df!("day" => [0u32, 1], "VCD" => [0.5, 0.9], "viability" => [0.97, 0.96]).unwrap();
/// let t = table_from_dataframe(&df, &ParseOptions::default()).unwrap();
/// let s = &t.get(1).unwrap().sample;
/// assert!((s.get(Species::Via).unwrap() - 96.0).abs() < 1e-9);
/// ```
pub fn table_from_dataframe(df: &DataFrame, options: &ParseOptions) -> Result<CultureTable> {
    table_from_frame_at(df, &PathBuf::from("<DataFrame>"), options)
}

fn table_from_frame_at(
    df: &DataFrame,
    path: &Path,
    options: &ParseOptions,
) -> Result<CultureTable> {
    if df.width() == 0 {
        return Err(FileError::Empty {
            path: path.to_path_buf(),
        });
    }
    let t = frame_table(df, path)?;
    build_table(&t, path, options, None, false, false)
}

/// Reads a Parquet file (wide or long) into a [`CultureTable`].
pub fn read_parquet(path: impl AsRef<Path>, options: &ParseOptions) -> Result<CultureTable> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|source| FileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if file.metadata().map(|m| m.len()).unwrap_or(0) == 0 {
        return Err(FileError::Empty {
            path: path.to_path_buf(),
        });
    }
    let df = ParquetReader::new(file)
        .finish()
        .map_err(polars_err(path, "reading Parquet"))?;
    table_from_frame_at(&df, path, options)
}
