//! Idle client connections under hyper: its HTTP/1 server times out a head
//! once it has begun (`header_read_timeout`), but not a connection that
//! never sends a byte nor one that stays silent between requests. [`Watched`]
//! notes when bytes last came in; [`IdleClock`] tells the connection loop
//! when it has been silent for too long (the header-read timeout before
//! the first byte, the idle timeout after), and the loop then shuts the
//! connection down gracefully (a request in flight is not cut).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
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

    fn note_read(&self) {
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

/// A client connection whose reads are noted on an [`IdleClock`].
pub(crate) struct Watched<I> {
    inner: I,
    clock: Arc<IdleClock>,
}

impl<I> Watched<I> {
    pub(crate) fn new(inner: I, clock: Arc<IdleClock>) -> Watched<I> {
        Watched { inner, clock }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.clock.note_read();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn deadlines_follow_the_last_read() {
        let (near, mut far) = tokio::io::duplex(64);
        let clock = IdleClock::new();
        let first = Duration::from_secs(10);
        let idle = Duration::from_secs(60);
        assert_eq!(clock.deadline(first, idle), clock.accepted + first);
        let mut watched = Watched::new(near, clock.clone());
        tokio::time::sleep(Duration::from_secs(3)).await;
        far.write_all(b"GET").await.expect("write");
        let mut got = [0u8; 3];
        watched.read_exact(&mut got).await.expect("read");
        assert_eq!(
            clock.deadline(first, idle),
            clock.accepted + Duration::from_secs(3) + idle
        );
    }
}
