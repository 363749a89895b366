//! [`CancelToken`]: stop a running twin cleanly from another task (or a Ctrl-C handler).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// A cloneable cancellation flag. Cancelling ends the run at the next step boundary (or at
/// once while it waits for a sample or for the next day) with `run_finished{completed:
/// false, reason: "cancelled"}`; the day in progress is not completed and a resume redoes
/// it.
///
/// ```
/// use perfusio_twin::CancelToken;
/// let token = CancelToken::new();
/// let clone = token.clone();
/// assert!(!clone.is_cancelled());
/// token.cancel();
/// assert!(clone.is_cancelled());
/// ```
#[derive(Debug, Clone, Default)]
pub struct CancelToken {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    flag: AtomicBool,
    notify: Notify,
}

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels every clone of this token.
    pub fn cancel(&self) {
        self.inner.flag.store(true, Ordering::SeqCst);
        self.inner.notify.notify_waiters();
    }

    /// Whether [`CancelToken::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.inner.flag.load(Ordering::SeqCst)
    }

    /// Resolves once the token is cancelled.
    pub async fn cancelled(&self) {
        loop {
            let notified = self.inner.notify.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }

    /// Sleeps for `d`; returns `false` (early) when cancelled meanwhile.
    pub(crate) async fn sleep(&self, d: std::time::Duration) -> bool {
        if self.is_cancelled() {
            return false;
        }
        tokio::select! {
            () = tokio::time::sleep(d) => true,
            () = self.cancelled() => false,
        }
    }
}
