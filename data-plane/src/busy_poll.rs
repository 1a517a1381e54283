//! Busy polling: a runtime worker that ran out of work spins for a short
//! window before it blocks in `epoll_wait`.
//!
//! Under load, events keep arriving while the worker spins, so it seldom
//! sleeps; a process that sends to a sleeping data plane pays for waking
//! it up (`try_to_wake_up`, an inter-processor interrupt), and on a machine
//! whose other cores are busy that cost is what limits the rate (see
//! `bench/RESULTS.md`). The price: up to `window` of CPU per wake-up, and
//! an event that arrives during the spin waits for its end (tokio's reactor
//! is not polled from the park hook). Idle, nothing is spent: the worker
//! blocks after one window. HAProxy's `busy-polling` makes the same trade.

use std::time::{Duration, Instant};

/// A `tokio::runtime::Builder::on_thread_park` hook that spins for
/// `window`.
pub fn spin_before_park(window: Duration) -> impl Fn() + Send + Sync + 'static {
    move || {
        let until = Instant::now() + window;
        while Instant::now() < until {
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spins_for_at_least_the_window() {
        let hook = spin_before_park(Duration::from_millis(2));
        let started = Instant::now();
        hook();
        assert!(started.elapsed() >= Duration::from_millis(2));
    }
}
