//! Busy polling: keep the data plane's thread awake for a short window
//! after the last request instead of sleeping in `epoll_wait` between two
//! of them.
//!
//! A proxy that sleeps makes whoever sends it the next packet wake it: an
//! inter-processor interrupt, on a virtual machine a halted vCPU to resume.
//! Under steady load that cost lands on the clients' and the replicas'
//! cores, and when those are the bottleneck it shows as lost requests per
//! second (bench/RESULTS.md measures it). HAProxy's `busy-polling` and the
//! kernel's `SO_BUSY_POLL` answer the same problem.
//!
//! The spinner is a task that yields in a loop. On tokio's current-thread
//! runtime a yielded task makes the scheduler poll the reactor without
//! blocking, so while it spins every I/O event is still picked up at once,
//! and it costs nothing between requests under load (the scheduler polls the
//! reactor then anyway). After `window` without a request or a replica's
//! response it goes dormant until the next request: an idle data plane does
//! not burn its core. Responses count because a burst's gaps, not only the
//! gaps between requests, are what the window must cover.
//!
//! Per request the cost is two plain memory accesses ([`Activity::touch`]).
//!
//! With `--workers N` every worker is such a single-threaded runtime, with
//! an [`Activity`] and a spinner of its own: a request touches only its
//! worker's, so one busy worker does not keep the others spinning.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Why busy polling cannot run.
#[derive(Debug, thiserror::Error)]
pub enum BusyPollError {
    #[error(
        "busy polling needs single-threaded runtimes (--workers N): a spinner on a \
         multi-threaded runtime keeps one worker busy and the others asleep"
    )]
    NotCurrentThread,
}

/// What the request path tells the spinner, and how long it spins.
#[derive(Debug)]
pub struct Activity {
    /// How long the spinner keeps polling after the last request or
    /// response.
    window: Duration,
    /// A request or response arrived since the spinner last looked.
    busy: AtomicBool,
    /// The spinner waits on `wake`.
    dormant: AtomicBool,
    wake: Notify,
}

impl Activity {
    /// Activity of a data plane that polls for `window` after each request
    /// or response.
    pub fn new(window: Duration) -> Activity {
        Activity {
            window,
            busy: AtomicBool::new(false),
            dormant: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    /// Note a request or a response; wakes a dormant spinner.
    #[inline]
    pub fn touch(&self) {
        self.busy.store(true, Ordering::Relaxed);
        if self.dormant.load(Ordering::Relaxed) && self.dormant.swap(false, Ordering::AcqRel) {
            self.wake.notify_one();
        }
    }
}

/// Whether the runtime this is called on can busy-poll.
///
/// # Errors
/// [`BusyPollError::NotCurrentThread`] on a multi-threaded runtime.
pub fn check_runtime() -> Result<(), BusyPollError> {
    match tokio::runtime::Handle::current().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::CurrentThread => Ok(()),
        _ => Err(BusyPollError::NotCurrentThread),
    }
}

/// Spin while requests and responses keep arriving; go dormant after the
/// window without one.
/// Runs until dropped (abort its task); call [`check_runtime`] first.
pub async fn spin(activity: Arc<Activity>) {
    let window = activity.window;
    tracing::info!(?window, "busy polling after each request");
    loop {
        // No clock read while requests keep coming: only once the spinner
        // sees a quiet turn does it start timing the quiet.
        let mut quiet_since: Option<Instant> = None;
        loop {
            tokio::task::yield_now().await;
            if activity.busy.swap(false, Ordering::Relaxed) {
                quiet_since = None;
            } else {
                let since = *quiet_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= window {
                    break;
                }
            }
        }
        activity.dormant.store(true, Ordering::SeqCst);
        // A request that came between the last look and `dormant` found the
        // spinner awake and did not notify: look once more.
        if activity.busy.swap(false, Ordering::SeqCst)
            && activity.dormant.swap(false, Ordering::AcqRel)
        {
            continue;
        }
        activity.wake.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spinner is dormant after the window and spins again on a touch.
    #[tokio::test(flavor = "current_thread")]
    async fn goes_dormant_and_wakes_on_a_request() {
        let activity = Arc::new(Activity::new(Duration::from_millis(5)));
        assert!(check_runtime().is_ok());
        let spinner = tokio::spawn(spin(activity.clone()));
        let dormant = || activity.dormant.load(Ordering::SeqCst);
        // Bounded: it must go dormant well within 10 s.
        let wait_for = |want: bool| {
            let activity = activity.clone();
            async move {
                for _ in 0..10_000 {
                    if activity.dormant.load(Ordering::SeqCst) == want {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                false
            }
        };
        assert!(wait_for(true).await, "spinner never went dormant");
        activity.touch();
        assert!(!dormant(), "a touch clears dormant at once");
        // It spins again, then goes dormant again after the window.
        tokio::task::yield_now().await;
        assert!(wait_for(true).await, "spinner did not go dormant again");
        spinner.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refuses_a_multi_threaded_runtime() {
        assert!(matches!(
            check_runtime(),
            Err(BusyPollError::NotCurrentThread)
        ));
    }
}
