//! Reading culture runs from files for `perfusio train` and `perfusio forecast`: one CSV per
//! run in the culture-file layout, validated at the one validation boundary, with the
//! controls applied each day taken from the file's control columns or from `design.csv`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use perfusio_connectors::files::{CultureTable, ParseOptions};
use perfusio_core::{
    Control, ControlArray, DEFAULT_AMBR250_DESIGN_SPACE, N_CONTROLS, SpeciesArray,
};

/// One day of a run: culture day, accepted measurements, controls applied over the day.
pub(crate) type RunDay = (u32, SpeciesArray<Option<f64>>, Option<ControlArray<f64>>);

/// One run read from a file: every day's accepted measurements and the controls applied
/// over that day (when known).
#[derive(Debug, Clone)]
pub(crate) struct RunFile {
    /// Run id (the file stem).
    pub id: String,
    /// `(day, accepted measurements, applied controls)` in day order.
    pub days: Vec<RunDay>,
    /// Values rejected at validation (they never enter the model).
    pub rejected: usize,
}

/// Reads one run CSV. `fallback` gives the controls of days whose row has no complete set
/// of control columns (for example the run's row of `design.csv`).
pub(crate) fn read_run(
    path: &Path,
    fallback: Option<&ControlArray<f64>>,
) -> anyhow::Result<RunFile> {
    let table = CultureTable::read_csv(path, &ParseOptions::default())
        .with_context(|| format!("cannot read {}", path.display()))?;
    let id = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let mut days = Vec::new();
    let mut rejected = 0;
    for day in table.days().collect::<Vec<_>>() {
        let Some(v) = table.validated(day, &DEFAULT_AMBR250_DESIGN_SPACE) else {
            continue;
        };
        rejected += v.rejections.len();
        let c = v.sample.controls;
        let applied = if c.iter().all(Option::is_some) {
            Some(c.map(|x| x.unwrap_or(f64::NAN)))
        } else {
            fallback.copied()
        };
        days.push((day, v.sample.species, applied));
    }
    if days.is_empty() {
        bail!("{}: no culture days", path.display());
    }
    Ok(RunFile { id, days, rejected })
}

/// Parses `design.csv` (`run,<control names…>`, one row per run) into controls by run id.
pub(crate) fn read_design(path: &Path) -> anyhow::Result<BTreeMap<String, ControlArray<f64>>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .with_context(|| format!("{}: empty file", path.display()))?
        .split(',')
        .map(str::trim)
        .collect();
    if header.first() != Some(&"run") {
        bail!("{}: the first column must be `run`", path.display());
    }
    let mut cols = Vec::with_capacity(N_CONTROLS);
    for name in &header[1..] {
        let c = Control::lookup(name)
            .with_context(|| format!("{}: unknown control column `{name}`", path.display()))?;
        cols.push(c);
    }
    if Control::ALL.iter().any(|c| !cols.contains(c)) {
        bail!(
            "{}: needs a column for each of the {N_CONTROLS} controls",
            path.display()
        );
    }
    let mut out = BTreeMap::new();
    for (i, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != header.len() {
            bail!(
                "{} line {}: {} cells, expected {}",
                path.display(),
                i + 2,
                cells.len(),
                header.len()
            );
        }
        let mut u = [f64::NAN; N_CONTROLS];
        for (c, cell) in cols.iter().zip(&cells[1..]) {
            u[c.index()] = cell.parse().map_err(|_| {
                anyhow::anyhow!(
                    "{} line {}: `{cell}` is not a number",
                    path.display(),
                    i + 2
                )
            })?;
        }
        out.insert(cells[0].to_string(), u);
    }
    Ok(out)
}

/// Every run of a directory in the layout `perfusio simulate --design … --out DIR` writes:
/// one CSV per run and `design.csv` with each run's controls (used for days whose row has
/// no control columns).
pub(crate) fn read_run_dir(dir: &Path) -> anyhow::Result<Vec<RunFile>> {
    let design_path = dir.join("design.csv");
    let design = if design_path.exists() {
        read_design(&design_path)?
    } else {
        BTreeMap::new()
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"))
                && p.file_name().is_some_and(|n| n != "design.csv")
        })
        .collect();
    paths.sort();
    if paths.is_empty() {
        bail!("{}: no run CSV files", dir.display());
    }
    paths
        .iter()
        .map(|p| {
            let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned());
            read_run(p, stem.as_ref().and_then(|s| design.get(s)))
        })
        .collect()
}
