//! The synchronous, append-only writer.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use crate::canonical::{canonical_sha256, sha256_hex, to_canonical_value, write_canonical};
use crate::error::{AuditError, Result};
use crate::event::{Event, LogRecovered};
use crate::record::{Actor, LineParts, format_timestamp};
use crate::verify::{TamperKind, scan};

/// When the writer calls `fdatasync` on the log.
///
/// A record that has been appended survives a crash of the *process* in every policy (it is in
/// the kernel's page cache); the policy decides how much can be lost if the *machine* loses
/// power.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FsyncPolicy {
    /// After every record (the default): nothing acknowledged is ever lost.
    #[default]
    EveryRecord,
    /// After every `n` records (and on [`AuditWriter::sync`], close and drop).
    EveryN(NonZeroU32),
    /// When at least this long has passed since the last sync: checked on every append, and by
    /// the background writer of [`crate::AuditHandle`] while idle.
    Interval(Duration),
    /// Only on [`AuditWriter::sync`], close and drop. For benchmarks and scratch logs.
    Never,
}

/// Settings for [`AuditWriter::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterOptions {
    /// Run id written in every record. An existing log must belong to the same run.
    pub run_id: String,
    /// Default reactor id (an [`Entry`] may override it).
    pub reactor_id: String,
    /// Fsync policy.
    pub fsync: FsyncPolicy,
}

impl WriterOptions {
    /// Options with the default fsync policy ([`FsyncPolicy::EveryRecord`]).
    pub fn new(run_id: impl Into<String>, reactor_id: impl Into<String>) -> Self {
        Self {
            run_id: run_id.into(),
            reactor_id: reactor_id.into(),
            fsync: FsyncPolicy::default(),
        }
    }

    /// Set the fsync policy.
    #[must_use]
    pub fn fsync(mut self, policy: FsyncPolicy) -> Self {
        self.fsync = policy;
        self
    }
}

/// One event to append, with the context that is not part of the event itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Culture day (days since inoculation), `perfusio-core`'s culture-day type. The writer
    /// converts it to the record's `day` member, a JSON float (`3` is written `3.0`); this is
    /// the one place where the day changes type.
    pub day: u32,
    /// Who caused the event.
    pub actor: Actor,
    /// The event.
    pub event: Event,
    /// Hash of the state the event concerns, if it is not the payload itself (see
    /// [`Entry::with_state`]). `None` = hash of the canonical payload.
    pub state_sha256: Option<String>,
    /// Reactor id overriding [`WriterOptions::reactor_id`].
    pub reactor_id: Option<String>,
    /// Timestamp overriding the clock (for imports and reproducible demos). Must not be earlier
    /// than the previous record's timestamp for the log to read naturally; this is not enforced.
    pub timestamp: Option<OffsetDateTime>,
}

impl Entry {
    /// A system event on culture day `day`.
    ///
    /// ```
    /// use perfusio_audit::{Entry, event::RunResumed};
    /// let e = Entry::new(3, RunResumed { records_found: 0, reason: "restart".into() });
    /// assert_eq!((e.day, e.event.kind().as_str()), (3, "run_resumed"));
    /// ```
    pub fn new(day: u32, event: impl Into<Event>) -> Self {
        Self {
            day,
            actor: Actor::System,
            event: event.into(),
            state_sha256: None,
            reactor_id: None,
            timestamp: None,
        }
    }

    /// Set the actor.
    #[must_use]
    pub fn by(mut self, actor: Actor) -> Self {
        self.actor = actor;
        self
    }

    /// Hash `state` (e.g. the full sample, or the serialised model after a retrain) into
    /// `state_sha256` instead of the payload.
    pub fn with_state<T: Serialize + ?Sized>(mut self, state: &T) -> Result<Self> {
        self.state_sha256 = Some(canonical_sha256(state)?);
        Ok(self)
    }

    /// Set the reactor id of this record.
    #[must_use]
    pub fn reactor(mut self, id: impl Into<String>) -> Self {
        self.reactor_id = Some(id.into());
        self
    }

    /// Set an explicit timestamp.
    #[must_use]
    pub fn at(mut self, t: OffsetDateTime) -> Self {
        self.timestamp = Some(t);
        self
    }
}

/// What [`AuditWriter::append`] returns: the new record's sequence number and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Sequence number of the record written.
    pub seq: u64,
    /// Its hash, i.e. the new head of the chain.
    pub hash: String,
}

/// What [`AuditWriter::open`] found.
#[derive(Debug)]
pub struct OpenReport {
    /// Complete records found in the existing log (0 for a new log).
    pub records_found: u64,
    /// Head of the chain after opening (after the recovery record, if one was written).
    pub head: String,
    /// The torn final line, if one was found: an [`AuditError::TornTail`] naming the quarantine
    /// file. A `log_recovered` record has been appended for it.
    pub torn_tail: Option<AuditError>,
}

/// Appends records to one `audit.jsonl` file.
///
/// The file is opened only with `O_APPEND`, every record is one `write` of one complete line,
/// and bytes already in the file are never rewritten. The single exception is recovery: an
/// incomplete final line left by a crash is first copied (and fsynced) to a quarantine file,
/// recorded in a `log_recovered` record, and only then cut off so the chain can continue.
///
/// One writer per file: use [`crate::AuditHandle`] to share it between tasks.
///
/// ```
/// # fn main() -> perfusio_audit::Result<()> {
/// use perfusio_audit::{AuditWriter, Entry, WriterOptions, verify_file, VerifyOptions};
/// use perfusio_audit::event::RunFinished;
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("audit.jsonl");
/// let (mut w, report) = AuditWriter::open(&path, WriterOptions::new("run-1", "R1"))?;
/// assert_eq!(report.records_found, 0);
/// let finished = RunFinished { completed: true, reason: "completed".into(), last_day: 14 };
/// let r = w.append(Entry::new(14, finished))?;
/// assert_eq!(r.seq, 1);
/// drop(w);
/// let ok = verify_file(&path, &VerifyOptions { expect_head: Some(r.hash.clone()) })?;
/// assert_eq!((ok.records, ok.head), (1, r.hash));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct AuditWriter {
    path: PathBuf,
    file: File,
    seq: u64,
    head: String,
    last_day: f64,
    run_id: String,
    reactor_id: String,
    fsync: FsyncPolicy,
    unsynced: u32,
    last_sync: Instant,
    line: Vec<u8>,
    scratch: Vec<u8>,
    payload: Vec<u8>,
    failed: Option<String>,
}

impl AuditWriter {
    /// Open (creating if needed) the log at `path` for appending.
    ///
    /// An existing log is verified first. If it fails verification anywhere but in an incomplete
    /// final line, it is refused with [`AuditError::Corrupt`] naming the first bad record. A torn
    /// final line is quarantined next to the log (`<name>.torn-<seq>`), reported in
    /// [`OpenReport::torn_tail`] and in a `log_recovered` record, and the chain continues.
    pub fn open(path: impl AsRef<Path>, opts: WriterOptions) -> Result<(Self, OpenReport)> {
        let path = path.as_ref().to_path_buf();
        if let FsyncPolicy::Interval(d) = opts.fsync
            && d.is_zero()
        {
            return Err(AuditError::InvalidOption(
                "FsyncPolicy::Interval must be longer than zero; use EveryRecord to sync every record".into(),
            ));
        }
        let existed = path.exists();
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| AuditError::io("opening for append", &path, e))?;
        if !existed {
            sync_parent(&path);
        }
        let bytes = std::fs::read(&path).map_err(|e| AuditError::io("reading", &path, e))?;
        let found = scan(&bytes);
        let mut torn = None;
        if let Some(failure) = &found.failure
            && failure.kind != TamperKind::TornTail
        {
            return Err(AuditError::Corrupt {
                path,
                failure: failure.clone(),
            });
        }
        if let Some(run) = &found.first_run_id
            && *run != opts.run_id
        {
            return Err(AuditError::RunMismatch {
                path,
                found: run.clone(),
                expected: opts.run_id,
            });
        }
        let last_day = found.last_day;
        let mut w = Self {
            path,
            file,
            seq: found.records,
            head: found.head.clone(),
            last_day,
            run_id: opts.run_id,
            reactor_id: opts.reactor_id,
            fsync: opts.fsync,
            unsynced: 0,
            last_sync: Instant::now(),
            line: Vec::with_capacity(1024),
            scratch: Vec::with_capacity(1024),
            payload: Vec::with_capacity(1024),
            failed: None,
        };
        if found.failure.is_some() {
            let tail = &bytes[found.valid_len..];
            let (quarantine, err) = w.quarantine(tail, found.valid_len, found.records)?;
            let file_name = quarantine
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let sha = sha256_hex(tail);
            tracing::warn!(log = %w.path.display(), quarantine = %quarantine.display(), bytes = tail.len(), "torn final line quarantined");
            // The recovery record carries the day of the last complete record, whatever it was.
            w.append_on(
                last_day,
                Entry::new(
                    0,
                    LogRecovered {
                        quarantine_file: file_name,
                        bytes: tail.len() as u64,
                        sha256: sha,
                        last_valid_seq: found.records,
                    },
                ),
            )?;
            torn = Some(err);
        }
        let report = OpenReport {
            records_found: found.records,
            head: w.head.clone(),
            torn_tail: torn,
        };
        Ok((w, report))
    }

    /// Copy the torn tail to a new quarantine file, fsync it, then cut it off the log.
    fn quarantine(
        &mut self,
        tail: &[u8],
        valid_len: usize,
        last_valid_seq: u64,
    ) -> Result<(PathBuf, AuditError)> {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "audit".into());
        let mut n = 0u32;
        let (qpath, mut qfile) = loop {
            let suffix = if n == 0 {
                String::new()
            } else {
                format!(".{n}")
            };
            let candidate = self
                .path
                .with_file_name(format!("{name}.torn-{}{suffix}", last_valid_seq + 1));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&candidate)
            {
                Ok(f) => break (candidate, f),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => return Err(AuditError::io("creating quarantine file", candidate, e)),
            }
        };
        qfile
            .write_all(tail)
            .map_err(|e| AuditError::io("writing quarantine file", &qpath, e))?;
        qfile
            .sync_all()
            .map_err(|e| AuditError::io("syncing quarantine file", &qpath, e))?;
        sync_parent(&qpath);
        self.file
            .set_len(valid_len as u64)
            .map_err(|e| AuditError::io("cutting the torn line off", &self.path, e))?;
        self.file
            .sync_all()
            .map_err(|e| AuditError::io("syncing", &self.path, e))?;
        let err = AuditError::TornTail {
            path: self.path.clone(),
            quarantine: qpath.clone(),
            bytes: tail.len() as u64,
            last_valid_seq,
            sha256: sha256_hex(tail),
        };
        Ok((qpath, err))
    }

    /// Append one record, timestamped now (or at [`Entry::timestamp`]).
    ///
    /// The payload must serialise to finite numbers ([`AuditError::NonFinite`] names the
    /// field otherwise) and pass its kind's consistency check ([`Event::check`],
    /// [`AuditError::InvalidPayload`]); a refused record leaves the log untouched.
    pub fn append(&mut self, entry: Entry) -> Result<Receipt> {
        self.append_on(f64::from(entry.day), entry)
    }

    /// [`AuditWriter::append`] with the record's `day` member given as a float (the recovery
    /// record repeats the day of the last record read, which may not be a whole day).
    fn append_on(&mut self, day: f64, entry: Entry) -> Result<Receipt> {
        if let Some(why) = &self.failed {
            return Err(AuditError::WriterFailed(why.clone()));
        }
        if !day.is_finite() {
            return Err(AuditError::NonFinite {
                path: "day".into(),
                value: day,
            });
        }
        let tagged = to_canonical_value(&entry.event)?;
        entry.event.check()?;
        let payload = match tagged {
            Value::Object(mut m) => m
                .remove("payload")
                .unwrap_or(Value::Object(Default::default())),
            _ => Value::Object(Default::default()),
        };
        let mut payload_bytes = std::mem::take(&mut self.payload);
        payload_bytes.clear();
        write_canonical(&payload, &mut payload_bytes);
        let state = match entry.state_sha256 {
            Some(s) => s,
            None => sha256_hex(&payload_bytes),
        };
        let at = entry
            .timestamp
            .unwrap_or_else(OffsetDateTime::now_utc)
            .to_offset(time::UtcOffset::UTC);
        if !(0..=9999).contains(&at.year()) {
            return Err(AuditError::InvalidOption(format!(
                "timestamp {at} is outside the years 0000-9999 that RFC 3339 can represent; pass a real date"
            )));
        }
        let ts = format_timestamp(at);
        let seq = self.seq + 1;
        let parts = LineParts {
            seq,
            ts: &ts,
            run_id: &self.run_id,
            reactor_id: entry.reactor_id.as_deref().unwrap_or(&self.reactor_id),
            day,
            actor: &entry.actor,
            kind: entry.event.kind().as_str(),
            payload: &payload_bytes,
            state_sha256: &state,
            prev: &self.head,
        };
        let hash = parts.write(&mut self.line, &mut self.scratch);
        self.payload = payload_bytes;
        if let Err(e) = self.file.write_all(&self.line) {
            self.failed = Some(e.to_string());
            return Err(AuditError::io("appending to", &self.path, e));
        }
        self.seq = seq;
        self.head.clone_from(&hash);
        self.last_day = day;
        self.unsynced = self.unsynced.saturating_add(1);
        let due = match self.fsync {
            FsyncPolicy::EveryRecord => true,
            FsyncPolicy::EveryN(n) => self.unsynced >= n.get(),
            FsyncPolicy::Interval(d) => self.last_sync.elapsed() >= d,
            FsyncPolicy::Never => false,
        };
        if due {
            self.sync()?;
        }
        Ok(Receipt { seq, hash })
    }

    /// Flush everything appended so far to stable storage.
    pub fn sync(&mut self) -> Result<()> {
        if self.unsynced == 0 {
            return Ok(());
        }
        if let Err(e) = self.file.sync_data() {
            self.failed = Some(e.to_string());
            return Err(AuditError::io("syncing", &self.path, e));
        }
        self.unsynced = 0;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Sync if the [`FsyncPolicy::Interval`] has elapsed; returns the time until the next check
    /// is due (`None` if nothing is pending or the policy has no interval).
    pub fn sync_if_due(&mut self) -> Result<Option<Duration>> {
        match self.fsync {
            FsyncPolicy::Interval(d) if self.unsynced > 0 => {
                let elapsed = self.last_sync.elapsed();
                if elapsed >= d {
                    self.sync()?;
                    Ok(None)
                } else {
                    Ok(Some(d - elapsed))
                }
            }
            _ => Ok(None),
        }
    }

    /// Sequence number of the last record (0 for an empty log).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Hash of the last record: the head to keep elsewhere to prove completeness later.
    pub fn head(&self) -> &str {
        &self.head
    }

    /// Culture day of the last record.
    pub fn last_day(&self) -> f64 {
        self.last_day
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run id of this log.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The fsync policy in force.
    pub fn fsync_policy(&self) -> FsyncPolicy {
        self.fsync
    }

    /// Sync and close, returning the final head.
    pub fn close(mut self) -> Result<Receipt> {
        self.sync()?;
        Ok(Receipt {
            seq: self.seq,
            hash: self.head.clone(),
        })
    }
}

impl Drop for AuditWriter {
    fn drop(&mut self) {
        if self.unsynced > 0
            && self.failed.is_none()
            && let Err(e) = self.file.sync_data()
        {
            tracing::error!(log = %self.path.display(), error = %e, "final sync of the audit log failed");
        }
    }
}

/// Make a newly created directory entry durable (best effort; not all platforms support it).
fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}
