//! Fixtures of the workspace benches: the T06 culture file and a scratch directory per run
//! (benches never write into the working directory).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use perfusio_mechanistic::{CloneKind, VirtualReactor, VirtualReactorConfig};
use perfusio_twin::prelude::*;

/// Writes days `0..=days` of the T06 synthetic culture (clone Y, noisy, seed 6) as CSV.
pub fn write_t06_csv(path: &Path, days: u32) -> Result<(), Box<dyn std::error::Error>> {
    let mut r = VirtualReactor::new(VirtualReactorConfig {
        clone: CloneKind::CloneY,
        seed: 6,
        ..VirtualReactorConfig::default()
    })?;
    r.advance_to(days)?;
    let mut text = String::from("day");
    for s in Species::ALL {
        write!(text, ",{}", s.name())?;
    }
    text.push('\n');
    for day in 0..=days {
        let s = r.sample(day)?;
        write!(text, "{day}")?;
        for sp in Species::ALL {
            match s.get(sp) {
                Some(v) => write!(text, ",{v:.6}")?,
                None => text.push(','),
            }
        }
        text.push('\n');
    }
    std::fs::write(path, text)?;
    Ok(())
}

/// A scratch directory holding a T06 culture file of `days` days; the audit log of a run
/// goes next to it.
#[derive(Debug)]
pub struct Scratch {
    /// The directory (removed on drop).
    pub dir: tempfile::TempDir,
    /// The culture file.
    pub csv: PathBuf,
    /// Where the run's audit log goes.
    pub audit: PathBuf,
}

impl Scratch {
    /// A new scratch directory with the culture file.
    pub fn new(days: u32) -> Result<Self, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let csv = dir.path().join("my_data.csv");
        write_t06_csv(&csv, days)?;
        let audit = dir.path().join("audit.jsonl");
        Ok(Self { dir, csv, audit })
    }
}

/// The T06 run configuration: `days` days, retraining every 3, LogEI, writing on, the
/// defaults otherwise (28-day forecasts with 256 paths, 512 raw candidates × 10 restarts).
pub fn t06_config(days: u32) -> RunConfig {
    RunConfig {
        duration_days: days,
        retrain_every: 3,
        acquisition: Acquisition::LogEI,
        allow_write: true,
        seed: Some(6),
        ..RunConfig::default()
    }
}

/// Runs the twin over a scratch directory's culture file.
pub async fn run_t06(s: &Scratch, days: u32) -> Result<RunReport, TwinError> {
    let connector = FilesystemStore::from_path(&s.csv)?;
    DigitalTwin::builder(connector, DEFAULT_AMBR250_DESIGN_SPACE, t06_config(days))
        .audit_path(&s.audit)
        .build()?
        .run()
        .await
}
