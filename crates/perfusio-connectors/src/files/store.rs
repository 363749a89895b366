//! [`FilesystemStore`]: the [`Connector`] over a culture file and a setpoint log.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use perfusio_core::{
    Connector, ConnectorError, DesignSpace, Sample, Setpoints, WriteReceipt, async_trait,
};
use tokio::time::Instant;

use super::error::{FileError, Result};
use super::options::{FileKind, FileStoreConfig, ParseOptions};
use super::setpoint_log::append_setpoints;
use super::table::{CheckedSample, CultureTable, FileRejection, LoadReport};

/// Size and modification time of the file when it was last parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
}

#[derive(Debug, Default)]
struct State {
    table: Option<Arc<CultureTable>>,
    stamp: Option<Stamp>,
    last_rejections: Vec<FileRejection>,
    reported: HashSet<String>,
    loads: u64,
}

/// Reads a culture table from `path` synchronously with the reader `kind` selects.
pub fn load_file(path: &Path, kind: FileKind, options: &ParseOptions) -> Result<CultureTable> {
    match kind.resolve(path) {
        FileKind::Parquet => {
            #[cfg(feature = "polars")]
            {
                super::polars_source::read_parquet(path, options)
            }
            #[cfg(not(feature = "polars"))]
            {
                let _ = options;
                Err(FileError::FeatureDisabled {
                    path: path.to_path_buf(),
                    feature: "polars",
                })
            }
        }
        _ => CultureTable::read_csv(path, options),
    }
}

/// A [`Connector`] reading daily samples from a CSV (or, with feature `polars`, Parquet)
/// file and appending setpoints to a CSV log.
///
/// The file is parsed into a [`CultureTable`] once per change: every call checks the file's
/// size and modification time and re-reads it only when they changed. In follow mode
/// ([`FileStoreConfig::with_follow`]) a day that is not in the file yet is waited for,
/// polling, up to the configured duration; then [`ConnectorError::NotYetAvailable`] is
/// returned. A file that does not exist yet, is empty or ends in an incomplete line counts as
/// "not yet" in follow mode.
///
/// Values are validated against the design space's plausible ranges: the trait's
/// `read_sample` returns the accepted values, [`FilesystemStore::read_sample_checked`] also
/// returns the rejections with line and column, and
/// [`FilesystemStore::last_rejections`] keeps those of the last read for audits.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// use perfusio_connectors::files::{FileStoreConfig, FilesystemStore};
/// use perfusio_core::{Connector, DEFAULT_AMBR250_DESIGN_SPACE as DS, Species};
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("culture.csv");
/// std::fs::write(&path, "day,VCD,viability\n0,0.5,0.97\n1,0.9,1.4\n").unwrap();
/// let store = FilesystemStore::new(FileStoreConfig::new(&path), DS);
/// let s = store.read_sample(1).await.unwrap();
/// assert!((s.get(Species::VCD).unwrap() - 0.9).abs() < 1e-12);
/// assert_eq!(s.get(Species::Via), None); // 140 % is rejected ...
/// let r = store.last_rejections();
/// assert_eq!((r[0].row, r[0].column.as_str()), (3, "viability")); // ... with line and column
/// assert!(store.read_sample(7).await.unwrap_err().is_transient()); // not yet available
/// # });
/// ```
#[derive(Debug)]
pub struct FilesystemStore {
    config: FileStoreConfig,
    design_space: DesignSpace,
    fixed: bool,
    state: Mutex<State>,
    write_lock: tokio::sync::Mutex<()>,
}

impl FilesystemStore {
    /// A store over `config.path`; nothing is read until the first request.
    pub fn new(config: FileStoreConfig, design_space: DesignSpace) -> Self {
        Self {
            config,
            design_space,
            fixed: false,
            state: Mutex::new(State::default()),
            write_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// A store over `config.path`, read now so that a malformed file fails at start-up. In
    /// follow mode a missing or empty file is accepted (it will be waited for).
    pub fn open(config: FileStoreConfig, design_space: DesignSpace) -> Result<Self> {
        let store = Self::new(config, design_space);
        let stamp = stamp_of(&store.config.path);
        match load_file(
            &store.config.path,
            store.config.kind,
            &store.parse_options(),
        ) {
            Ok(t) => store.install(t, stamp.ok()),
            Err(e) if store.config.follow.is_some() && tolerable(&e) => {}
            Err(e) => return Err(e),
        }
        Ok(store)
    }

    /// A store over an already parsed table (e.g. from a polars DataFrame); it is never
    /// re-read. `config` supplies the setpoint log and reactor identifier.
    pub fn from_table(
        table: CultureTable,
        config: FileStoreConfig,
        design_space: DesignSpace,
    ) -> Self {
        let store = Self::new(config, design_space);
        store.install(table, None);
        Self {
            fixed: true,
            ..store
        }
    }

    /// A store over an in-memory polars `DataFrame` (wide or long), parsed with
    /// `config.parse`; it is never re-read. `config.path` only labels it in messages.
    #[cfg(feature = "polars")]
    pub fn from_dataframe(
        df: &polars::prelude::DataFrame,
        config: FileStoreConfig,
        design_space: DesignSpace,
    ) -> Result<Self> {
        let table = super::polars_source::table_from_dataframe(df, &config.parse)?;
        Ok(Self::from_table(table, config, design_space))
    }

    /// The configuration.
    pub fn config(&self) -> &FileStoreConfig {
        &self.config
    }

    fn parse_options(&self) -> ParseOptions {
        let mut o = self.config.parse.clone();
        if self.config.follow.is_some() {
            o.tolerate_partial_last_line = true;
        }
        o
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // the state is plain data, consistent after every statement: recover from poisoning
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores a freshly parsed table and reports its conversions and unknown columns, each
    /// once per store.
    fn install(&self, table: CultureTable, stamp: Option<Stamp>) {
        let mut st = self.state();
        let path = table.path().display().to_string();
        for c in &table.report().conversions {
            if st.reported.insert(format!("conversion {c}")) {
                tracing::info!(path = %path, conversion = %c, "unit conversion applied");
            }
        }
        for u in &table.report().unknown {
            if st.reported.insert(format!("unknown {u}")) {
                tracing::warn!(path = %path, column = %u, "unknown column or name skipped");
            }
        }
        if table.report().ignored_partial_line && st.reported.insert("partial".into()) {
            tracing::debug!(path = %path, "incomplete last line ignored until it is finished");
        }
        st.table = Some(Arc::new(table));
        st.stamp = stamp;
        st.loads += 1;
    }

    /// The last parsed table, if any.
    pub fn table(&self) -> Option<Arc<CultureTable>> {
        self.state().table.clone()
    }

    /// What the last load found (layout, dialect, conversions, unknown columns).
    pub fn report(&self) -> Option<LoadReport> {
        self.state().table.as_ref().map(|t| t.report().clone())
    }

    /// How many times the file has been parsed.
    pub fn load_count(&self) -> u64 {
        self.state().loads
    }

    /// Rejections of the last successful `read_sample`/`read_sample_checked`.
    pub fn last_rejections(&self) -> Vec<FileRejection> {
        self.state().last_rejections.clone()
    }

    /// Re-reads the file if its size or modification time changed; returns the current
    /// table (`None` in follow mode while the file is missing or empty).
    pub async fn refresh(&self) -> Result<Option<Arc<CultureTable>>> {
        if self.fixed {
            return Ok(self.table());
        }
        let path = self.config.path.clone();
        let follow = self.config.follow.is_some();
        let stamp = match tokio::fs::metadata(&path).await {
            Ok(m) => Stamp {
                len: m.len(),
                modified: m.modified().ok(),
            },
            Err(e) if follow && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(FileError::Io { path, source }),
        };
        {
            let st = self.state();
            if st.table.is_some() && st.stamp == Some(stamp) {
                return Ok(st.table.clone());
            }
        }
        match self.load_blocking(self.parse_options()).await {
            Ok(t) => {
                tracing::debug!(path = %path.display(), days = t.len(), "culture file loaded");
                self.install(t, Some(stamp));
                Ok(self.table())
            }
            Err(e) if follow && tolerable(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Parses the file on the blocking pool.
    async fn load_blocking(&self, options: ParseOptions) -> Result<CultureTable> {
        let (path, kind) = (self.config.path.clone(), self.config.kind);
        let p = path.clone();
        tokio::task::spawn_blocking(move || load_file(&p, kind, &options))
            .await
            .map_err(|e| FileError::Io {
                path,
                source: std::io::Error::other(format!("file reader task failed: {e}")),
            })?
    }

    /// Validates `day` of `table` and keeps its rejections.
    fn take_checked(&self, table: &CultureTable, day: u32) -> Option<CheckedSample> {
        let mut c = table.checked_sample(day, &self.design_space)?;
        c.sample.reactor_id.clone_from(&self.config.reactor_id);
        for r in &c.rejections {
            tracing::warn!(path = %table.path().display(), rejection = %r, "value rejected");
        }
        self.state().last_rejections.clone_from(&c.rejections);
        Some(c)
    }

    /// The validated sample of `day` with its rejections (line, column, value, reason). The
    /// rejections are also kept for [`FilesystemStore::last_rejections`].
    pub async fn read_sample_checked(&self, day: u32) -> Result<CheckedSample, ConnectorError> {
        let started = Instant::now();
        let deadline = self
            .config
            .follow
            .map(|f| (started + f.wait, f.poll_interval));
        loop {
            let table = self.refresh().await?;
            if let Some(t) = &table {
                if let Some(c) = self.take_checked(t, day) {
                    return Ok(c);
                }
                if let Some(last) = t.last_day().filter(|last| *last > day) {
                    return Err(ConnectorError::NotYetAvailable {
                        day,
                        reason: format!(
                            "day {day} is missing from {} although it already has day {last}",
                            self.config.path.display()
                        ),
                    });
                }
            }
            let now = Instant::now();
            match deadline {
                Some((end, poll)) if now < end => {
                    tokio::time::sleep(poll.min(end - now)).await;
                }
                _ => {
                    if table
                        .as_ref()
                        .is_some_and(|t| t.report().ignored_partial_line)
                    {
                        // the writer had the whole wait to finish its line: take it as it is
                        let mut strict = self.config.parse.clone();
                        strict.tolerate_partial_last_line = false;
                        let t = self.load_blocking(strict).await?;
                        if let Some(c) = self.take_checked(&t, day) {
                            return Ok(c);
                        }
                    }
                    let have = match table.as_deref().and_then(CultureTable::last_day) {
                        Some(last) => format!("the last day in it is {last}"),
                        None => "it has no data rows yet".to_string(),
                    };
                    return Err(ConnectorError::NotYetAvailable {
                        day,
                        reason: format!(
                            "{} does not have it: {have} (waited {:?})",
                            self.config.path.display(),
                            now - started
                        ),
                    });
                }
            }
        }
    }

    /// Appends `setpoints` to the setpoint log with a free-text `note` (sanitised). Refuses
    /// values that break the design space's hard limits.
    pub async fn write_setpoints_with_note(
        &self,
        setpoints: &Setpoints,
        note: &str,
    ) -> Result<WriteReceipt, ConnectorError> {
        let path: PathBuf = self
            .config
            .setpoint_log
            .clone()
            .ok_or(FileError::NoSetpointLog)?;
        let hard: Vec<_> = self
            .design_space
            .check_setpoints(&setpoints.values)
            .into_iter()
            .filter(|v| v.hard)
            .collect();
        if !hard.is_empty() {
            return Err(ConnectorError::Rejected(hard));
        }
        let _guard = self.write_lock.lock().await;
        let (sp, source, note) = (
            setpoints.clone(),
            self.config.setpoint_source.clone(),
            note.to_string(),
        );
        let p = path.clone();
        let ts = tokio::task::spawn_blocking(move || append_setpoints(&p, &sp, &source, &note))
            .await
            .map_err(|e| ConnectorError::Io {
                context: format!("appending to {}", path.display()),
                source: std::io::Error::other(format!("writer task failed: {e}")),
            })??;
        let mut receipt = WriteReceipt::all_confirmed(setpoints);
        receipt.timestamp = Some(ts);
        Ok(receipt)
    }
}

fn stamp_of(path: &Path) -> std::io::Result<Stamp> {
    let m = std::fs::metadata(path)?;
    Ok(Stamp {
        len: m.len(),
        modified: m.modified().ok(),
    })
}

/// Errors that mean "not written yet" in follow mode.
fn tolerable(e: &FileError) -> bool {
    e.is_not_found() || matches!(e, FileError::Empty { .. })
}

#[async_trait]
impl Connector for FilesystemStore {
    async fn read_sample(&self, day: u32) -> Result<Sample, ConnectorError> {
        self.read_sample_checked(day).await.map(|c| c.sample)
    }

    async fn write_setpoints(&self, setpoints: &Setpoints) -> Result<WriteReceipt, ConnectorError> {
        self.write_setpoints_with_note(setpoints, "").await
    }

    async fn is_alive(&self) -> bool {
        if self.fixed {
            return true;
        }
        let path = &self.config.path;
        if tokio::fs::metadata(path).await.is_ok() {
            return true;
        }
        // in follow mode the file may appear later: its directory must exist
        self.config.follow.is_some()
            && path
                .parent()
                .map(|p| {
                    if p.as_os_str().is_empty() {
                        Path::new(".")
                    } else {
                        p
                    }
                })
                .is_some_and(Path::is_dir)
    }

    fn describe(&self) -> String {
        let mut d = format!("file store {}", self.config.path.display());
        if let Some(f) = self.config.follow {
            d.push_str(&format!(" (follow, wait {:?})", f.wait));
        }
        if let Some(l) = &self.config.setpoint_log {
            d.push_str(&format!(", setpoint log {}", l.display()));
        }
        d
    }
}
