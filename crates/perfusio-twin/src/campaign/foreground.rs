//! The daily path's claim on the cores.
//!
//! A campaign's background work (the hyperparameter fit of `retrain_in_background`, the
//! daily best-point search) runs at idle priority, but that alone does not keep it out of
//! the daily path's way: with two idle-priority threads busy, the late-day fixture's batch
//! decision took about 1.4 times as long and its 24 forecasts 1.45 times (`decide_profile
//! -- late`, 2 virtual cores), and one such thread pinned to one core slowed them as much:
//! the scheduler's priorities do not cover what a busy core costs the other (on a virtual
//! machine, the host's share of both). So a paced day claims
//! the cores from its learning to its end, writes included ([`Foreground::claim`]; an
//! operator's approval is waited for without it), and background work waits at its
//! checkpoints (inside each evaluation of the fit's objective, before each candidate of the
//! search) until the claim is released ([`Foreground::wait_idle`]). What is already running
//! at a checkpoint's pass goes on to the next one: tens of milliseconds.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Longest one checkpoint waits for the daily path: the background work then goes on (a
/// daily step that long is late anyway, and a checkpoint must not wait forever).
pub(super) const MAX_PAUSE: Duration = Duration::from_secs(5);

/// Whether the daily path is computing; shared by the runner and its background work.
#[derive(Clone, Default)]
pub(super) struct Foreground(Arc<State>);

#[derive(Default)]
struct State {
    /// Claims held (the daily path holds at most one; a count keeps it exact regardless).
    claims: Mutex<u32>,
    released: Condvar,
}

impl State {
    fn claims(&self) -> MutexGuard<'_, u32> {
        // a panic while holding the lock leaves a plain counter: still meaningful
        self.claims.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The daily path's claim; released when dropped.
pub(super) struct Claim(Foreground);

impl Drop for Claim {
    fn drop(&mut self) {
        let mut n = self.0.0.claims();
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.0.0.released.notify_all();
        }
    }
}

impl Foreground {
    /// Claims the cores until the returned guard is dropped. The holder must not wait for
    /// background work while it holds the claim.
    pub(super) fn claim(&self) -> Claim {
        *self.0.claims() += 1;
        Claim(self.clone())
    }

    /// Waits while a claim is held, for at most [`MAX_PAUSE`]; returns how long it waited.
    pub(super) fn wait_idle(&self) -> Duration {
        self.wait_idle_for(MAX_PAUSE)
    }

    fn wait_idle_for(&self, max: Duration) -> Duration {
        let start = Instant::now();
        let mut n = self.0.claims();
        while *n > 0 {
            let left = max.saturating_sub(start.elapsed());
            if left.is_zero() {
                break;
            }
            n = match self.0.released.wait_timeout(n, left) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        start.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn a_checkpoint_passes_at_once_without_a_claim() {
        let f = Foreground::default();
        assert!(f.wait_idle() < Duration::from_millis(50));
    }

    #[test]
    fn a_checkpoint_waits_until_the_claim_is_released() {
        let f = Foreground::default();
        let claim = f.claim();
        let passed = Arc::new(AtomicBool::new(false));
        let (f2, p2) = (f.clone(), passed.clone());
        let worker = std::thread::spawn(move || {
            let start = Instant::now();
            let waited = f2.wait_idle();
            p2.store(true, Ordering::SeqCst);
            (start, Instant::now(), waited)
        });
        std::thread::sleep(Duration::from_millis(150));
        assert!(
            !passed.load(Ordering::SeqCst),
            "the checkpoint passed while the claim was held"
        );
        let released = Instant::now();
        drop(claim);
        let (start, end, waited) = worker.join().expect("the worker thread panicked");
        assert!(passed.load(Ordering::SeqCst));
        // it passed only after the release, however late the worker thread started; the
        // wait it reports is its own clock, started just after `start` (1 ms of slack)
        assert!(end >= released, "passed before the release");
        let held = released.saturating_duration_since(start);
        assert!(
            waited + Duration::from_millis(1) >= held
                && waited <= end.duration_since(start)
                && waited < MAX_PAUSE,
            "waited {waited:?} of the {held:?} the claim was held after the checkpoint began"
        );
    }

    #[test]
    fn a_checkpoint_gives_up_after_its_bound() {
        let f = Foreground::default();
        let _claim = f.claim();
        let waited = f.wait_idle_for(Duration::from_millis(80));
        assert!(
            waited >= Duration::from_millis(80) && waited < Duration::from_secs(2),
            "waited {waited:?}"
        );
    }

    #[test]
    fn claims_count_and_release_together() {
        let f = Foreground::default();
        let a = f.claim();
        let b = f.claim();
        drop(a);
        assert!(f.wait_idle_for(Duration::from_millis(60)) >= Duration::from_millis(60));
        drop(b);
        assert!(f.wait_idle_for(Duration::from_secs(1)) < Duration::from_millis(50));
    }
}
