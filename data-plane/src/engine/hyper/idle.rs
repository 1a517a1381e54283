//! Idle client connections under hyper: its HTTP/1 server times out a head
//! once it has begun (`header_read_timeout`), but not a connection that
//! never sends a byte nor one that stays silent between requests. The
//! client connection's wrapper ([`super::interim::InterimIo`]) notes when
//! bytes last came in on an [`IdleClock`], which tells the connection loop
//! when it has been silent for too long (the header-read timeout before
//! the first byte, the idle timeout after), and the loop then shuts the
//! connection down gracefully (a request in flight is not cut).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// When a connection last received bytes, in milliseconds since it was
/// accepted (`u64::MAX`: never).
#[derive(Debug)]
pub(crate) struct IdleClock {
    accepted: Instant,
    last_read_ms: AtomicU64,
}

impl IdleClock {
    pub(crate) fn new() -> Arc<IdleClock> {
        Arc::new(IdleClock {
            accepted: Instant::now(),
            last_read_ms: AtomicU64::new(u64::MAX),
        })
    }

    /// Bytes came in just now.
    pub(crate) fn note_read(&self) {
        let ms = u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.last_read_ms.store(ms, Ordering::Relaxed);
    }

    /// When the connection will have been silent too long: `first_byte`
    /// after it was accepted if it never sent anything, else `idle` after
    /// the last bytes it sent.
    pub(crate) fn deadline(&self, first_byte: Duration, idle: Duration) -> Instant {
        match self.last_read_ms.load(Ordering::Relaxed) {
            u64::MAX => self.accepted + first_byte,
            ms => self.accepted + Duration::from_millis(ms) + idle,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn deadlines_follow_the_last_read() {
        let clock = IdleClock::new();
        let first = Duration::from_secs(10);
        let idle = Duration::from_secs(60);
        assert_eq!(clock.deadline(first, idle), clock.accepted + first);
        tokio::time::sleep(Duration::from_secs(3)).await;
        clock.note_read();
        assert_eq!(
            clock.deadline(first, idle),
            clock.accepted + Duration::from_secs(3) + idle
        );
    }
}
