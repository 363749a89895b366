//! A cheap-to-clone handle for logging from many async tasks.
//!
//! Design: one dedicated OS thread owns the [`AuditWriter`] and receives requests over an
//! unbounded `std::sync::mpsc` channel; each request carries a `tokio::sync::oneshot` sender for
//! its reply. So
//!
//! * records from concurrent tasks are serialised by the channel — there is exactly one writer,
//!   lines can never interleave and the chain is built in one order;
//! * `append(..).await` completes only after the record is written (and fsynced, per policy), so
//!   an acknowledged record is durable;
//! * the blocking `write`/`fsync` calls never run on the async executor's worker threads, and
//!   sending never blocks, so the handle is safe to use from any runtime (or none: the reply is a
//!   plain future);
//! * with [`FsyncPolicy::Interval`](crate::FsyncPolicy::Interval), the thread also syncs while
//!   idle, so the interval bounds the unsynced window even when no further record arrives.
//!
//! The thread ends when the last handle is dropped or [`AuditHandle::close`] is called; it
//! syncs before exiting.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::error::{AuditError, Result};
use crate::writer::{AuditWriter, Entry, Receipt};

enum Msg {
    Append(Box<Entry>, oneshot::Sender<Result<Receipt>>),
    Sync(oneshot::Sender<Result<()>>),
    Close(oneshot::Sender<Result<Receipt>>),
}

/// Shared, cloneable front end of a background audit writer.
///
/// ```
/// # fn main() -> perfusio_audit::Result<()> {
/// use perfusio_audit::{AuditHandle, AuditWriter, Entry, WriterOptions};
/// use perfusio_audit::event::RunResumed;
/// let dir = tempfile::tempdir().unwrap();
/// let (writer, _) = AuditWriter::open(dir.path().join("a.jsonl"), WriterOptions::new("run", "R1"))?;
/// let handle = AuditHandle::spawn(writer)?;
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let receipt = rt.block_on(handle.append(Entry::new(
///     3,
///     RunResumed { records_found: 0, reason: "restart".into() },
/// )))?;
/// assert_eq!(receipt.seq, 1);
/// let head = rt.block_on(handle.close())?;
/// assert_eq!(head, receipt);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct AuditHandle {
    tx: mpsc::Sender<Msg>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Append(..) => "Append",
            Self::Sync(_) => "Sync",
            Self::Close(_) => "Close",
        })
    }
}

impl AuditHandle {
    /// Move `writer` onto a dedicated thread and return a handle to it.
    pub fn spawn(writer: AuditWriter) -> Result<Self> {
        Self::spawn_with_thread(writer).map(|(h, _)| h)
    }

    /// Like [`AuditHandle::spawn`], also returning the writer thread's join handle (which yields
    /// the final head once every handle is dropped or [`AuditHandle::close`] was called).
    pub fn spawn_with_thread(writer: AuditWriter) -> Result<(Self, JoinHandle<Result<Receipt>>)> {
        let (tx, rx) = mpsc::channel();
        let path = writer.path().to_path_buf();
        let thread = std::thread::Builder::new()
            .name("perfusio-audit-writer".into())
            .spawn(move || run(writer, &rx))
            .map_err(|e| AuditError::io("starting the writer thread for", path, e))?;
        Ok((Self { tx }, thread))
    }

    /// Append a record; resolves once it is written (and synced, per the fsync policy).
    pub async fn append(&self, entry: Entry) -> Result<Receipt> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Msg::Append(Box::new(entry), tx))
            .map_err(|_| AuditError::WriterClosed)?;
        rx.await.map_err(|_| AuditError::WriterClosed)?
    }

    /// Flush everything written so far to stable storage.
    pub async fn sync(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Msg::Sync(tx))
            .map_err(|_| AuditError::WriterClosed)?;
        rx.await.map_err(|_| AuditError::WriterClosed)?
    }

    /// Sync and stop the writer thread; returns the final sequence number and head. Requests
    /// from other clones sent afterwards fail with [`AuditError::WriterClosed`].
    pub async fn close(&self) -> Result<Receipt> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Msg::Close(tx))
            .map_err(|_| AuditError::WriterClosed)?;
        rx.await.map_err(|_| AuditError::WriterClosed)?
    }
}

fn run(mut writer: AuditWriter, rx: &mpsc::Receiver<Msg>) -> Result<Receipt> {
    let mut wait: Option<Duration> = None;
    loop {
        let msg = match wait {
            Some(d) => match rx.recv_timeout(d) {
                Ok(m) => Some(m),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            },
            None => match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => break,
            },
        };
        match msg {
            Some(Msg::Append(entry, reply)) => {
                let _ = reply.send(writer.append(*entry));
            }
            Some(Msg::Sync(reply)) => {
                let _ = reply.send(writer.sync());
            }
            Some(Msg::Close(reply)) => {
                let r = writer.sync().map(|()| Receipt {
                    seq: writer.seq(),
                    hash: writer.head().to_string(),
                });
                let _ = reply.send(r.clone_result());
                return r;
            }
            None => {}
        }
        wait = match writer.sync_if_due() {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(error = %e, "periodic sync of the audit log failed");
                None
            }
        };
    }
    writer.close()
}

trait CloneResult {
    fn clone_result(&self) -> Self;
}

impl CloneResult for Result<Receipt> {
    fn clone_result(&self) -> Self {
        match self {
            Ok(r) => Ok(r.clone()),
            Err(e) => Err(AuditError::WriterFailed(e.to_string())),
        }
    }
}
