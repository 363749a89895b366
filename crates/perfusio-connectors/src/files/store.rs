//! [`FilesystemStore`]: the [`Connector`] over a culture file and a setpoint log.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use perfusio_core::{
    Connector, ConnectorError, CultureDay, DesignSpace, Health, RawReading, Setpoints,
    WriteReceipt, async_trait,
};
use tokio::time::Instant;

use super::error::{FileError, Result};
use super::options::{FileKind, FileStoreConfig, ParseOptions};
use super::setpoint_log::append_setpoints;
use super::table::{CultureTable, LoadReport};

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
/// `read_raw` returns a day exactly as in the file, every value with its line and column:
/// a cell that is not a number is kept as its text, a non-finite or implausible number as
/// it is, and the one validation step ([`RawReading::validate`], or
/// [`perfusio_core::read_validated`]) rejects them with that place. The design space given
/// here only guards writes (hard limits).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// use perfusio_connectors::files::{FileStoreConfig, FilesystemStore};
/// use perfusio_core::{read_validated, Connector, DEFAULT_AMBR250_DESIGN_SPACE as DS, Origin, Species};
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("culture.csv");
/// std::fs::write(&path, "day,VCD,viability,glucose\n0,0.5,0.97,6\n1,0.9,1.4,n.d.\n").unwrap();
/// let store = FilesystemStore::new(FileStoreConfig::new(&path), DS);
/// let v = read_validated(&store, 1, &DS).await.unwrap();
/// assert!((v.sample.get(Species::VCD).unwrap() - 0.9).abs() < 1e-12);
/// assert_eq!(v.sample.get(Species::Via), None); // 140 % is rejected ...
/// let r = &v.rejections[0];
/// assert_eq!(r.reason.code(), "above_bound");
/// assert!(matches!(&r.origin, Origin::Cell { line: 3, column, .. } if column == "viability"));
/// assert_eq!(v.rejections[1].reason.code(), "not_a_number"); // ... and so is `n.d.`
/// assert!(store.read_raw(7).await.unwrap_err().is_transient()); // not yet available
/// assert!(store.health().await.is_ok());
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

    /// The store of the T06 tutorial: `path` (CSV, or Parquet with feature `polars`) read now
    /// with the default parse options, and setpoints appended to `<stem>.setpoints.csv` next
    /// to it (so writing setpoints works out of the box). A missing or malformed file fails
    /// here, naming the line and column.
    ///
    /// ```
    /// use perfusio_connectors::files::FilesystemStore;
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("my_data.csv");
    /// std::fs::write(&path, "day,VCD\n0,0.5\n").unwrap();
    /// let store = FilesystemStore::from_path(&path).unwrap();
    /// assert_eq!(store.config().setpoint_log.as_deref(), Some(dir.path().join("my_data.setpoints.csv").as_path()));
    /// assert!(FilesystemStore::from_path(dir.path().join("missing.csv")).is_err());
    /// ```
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let stem = path.file_stem().map_or_else(
            || "culture".to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
        let log = path.with_file_name(format!("{stem}.setpoints.csv"));
        Self::open(
            FileStoreConfig::new(path).with_setpoint_log(log),
            DesignSpace::default(),
        )
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

    /// The raw reading of `day` in `table`, with the configured reactor id.
    fn take_raw(&self, table: &CultureTable, day: CultureDay) -> Option<RawReading> {
        let mut raw = table.raw(day)?;
        raw.reactor_id.clone_from(&self.config.reactor_id);
        Some(raw)
    }

    /// Reads `day` (see [`Connector::read_raw`]), waiting for it in follow mode.
    async fn read_day(&self, day: CultureDay) -> Result<RawReading, ConnectorError> {
        let started = Instant::now();
        let deadline = self
            .config
            .follow
            .map(|f| (started + f.wait, f.poll_interval));
        loop {
            let table = self.refresh().await?;
            if let Some(t) = &table {
                if let Some(problem) = t.malformed(day) {
                    return Err(ConnectorError::Data {
                        context: format!("{} day {day}", self.config.path.display()),
                        message: problem.to_string(),
                    });
                }
                if let Some(r) = self.take_raw(t, day) {
                    return Ok(r);
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
                        if let Some(r) = self.take_raw(&t, day) {
                            return Ok(r);
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

    /// Whether the file can be read now, and why not.
    async fn check_health(&self) -> Health {
        if self.fixed {
            return Health::Ok;
        }
        let path = self.config.path.display();
        match self.refresh().await {
            Ok(Some(t)) => match &self.config.setpoint_log {
                Some(log) if !parent_dir(log).is_dir() => Health::Degraded {
                    reason: format!(
                        "{path} is readable ({} days), but the directory of the setpoint log {} \
                         does not exist: writes will fail; create it",
                        t.len(),
                        log.display()
                    ),
                },
                _ => Health::Ok,
            },
            // follow mode: the file is missing or empty
            Ok(None) if parent_dir(&self.config.path).is_dir() => Health::Degraded {
                reason: format!("{path} is missing or empty; follow mode waits for it"),
            },
            Ok(None) => Health::Down {
                reason: format!(
                    "the directory of {path} does not exist; create it or fix the path"
                ),
            },
            Err(e) => Health::Down {
                reason: e.to_string(),
            },
        }
    }
}

/// The directory of `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
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
    async fn read_raw(&self, day: CultureDay) -> Result<RawReading, ConnectorError> {
        self.read_day(day).await
    }

    async fn write_setpoints(&self, setpoints: &Setpoints) -> Result<WriteReceipt, ConnectorError> {
        self.write_setpoints_with_note(setpoints, "").await
    }

    async fn health(&self) -> Health {
        self.check_health().await
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
