//! Interim (1xx) responses for hyper's HTTP/1.1 server connections.
//!
//! RFC 9110 §15.2: a proxy forwards 1xx responses. hyper's client reports
//! them (`hyper::ext::on_informational`), but its HTTP/1 server has no way
//! to send one (it sends `100 Continue` itself, nothing else). So the hyper
//! engine writes them under hyper, into the client connection:
//! [`InterimIo`] wraps the connection and writes the queued interim bytes
//! when hyper flushes.
//!
//! Why that order is right: hyper calls `poll_flush` on its transport only
//! after it has written out everything it buffered, so bytes written there
//! come after every byte of the previous response; and hyper does not begin
//! the current response until the service returns it, which the service
//! does only once it has closed the request's window ([`Interim::close`]:
//! no interim response is taken after that, not even a late one from an
//! attempt given up on) and the queue is written ([`Interim::written`]).
//! hyper polls the connection (and so flushes) whenever the service is
//! polled; the queue wakes it when an interim arrives.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use super::idle::IdleClock;

/// The interim responses waiting to be written to one client connection.
#[derive(Debug, Default)]
struct Queue {
    bytes: Vec<u8>,
    /// Who to wake so that hyper flushes (the connection's task).
    flusher: Option<Waker>,
    /// The request whose interim responses are taken; any other's (a late
    /// one from an attempt given up on) are dropped.
    current: u64,
    /// Whether the current request still takes them (until its final
    /// response is returned to hyper).
    open: bool,
}

/// The request an interim response belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window(u64);

#[derive(Debug, Default)]
struct State {
    queue: Mutex<Queue>,
    written: Notify,
}

/// The service's handle on its connection's interim queue.
#[derive(Debug, Clone, Default)]
pub(crate) struct Interim(Arc<State>);

impl Interim {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Critical sections only append or drain bytes: a panic cannot leave
        // the queue inconsistent.
        self.0.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start taking the interim responses of the connection's next request.
    pub(crate) fn open(&self) -> Window {
        let mut queue = self.lock();
        queue.current += 1;
        queue.open = true;
        Window(queue.current)
    }

    /// Stop taking interim responses for `window`'s request: its final
    /// response goes out next, and nothing may come between its bytes.
    pub(crate) fn close(&self, window: Window) {
        let mut queue = self.lock();
        if queue.current == window.0 {
            queue.open = false;
        }
    }

    /// Queue the head of an interim response (status line, fields, empty
    /// line) for `window`'s request, if it still takes them, and wake the
    /// connection so that it is written.
    pub(crate) fn send(&self, window: Window, head: &[u8]) {
        let mut queue = self.lock();
        if !queue.open || queue.current != window.0 {
            return;
        }
        queue.bytes.extend_from_slice(head);
        if let Some(waker) = queue.flusher.take() {
            waker.wake();
        }
    }

    /// Wait until everything queued reached the connection.
    pub(crate) async fn written(&self) {
        loop {
            let notified = self.0.written.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.lock().bytes.is_empty() {
                return;
            }
            notified.await;
        }
    }
}

/// The client connection as hyper's server gets it: interim responses can
/// be written into it, and the bytes that come in are noted on an
/// [`IdleClock`] (so that a silent connection can be closed).
pub(crate) struct InterimIo<I> {
    inner: I,
    interim: Interim,
    clock: Arc<IdleClock>,
}

impl<I> InterimIo<I> {
    pub(crate) fn new(inner: I, clock: Arc<IdleClock>) -> (InterimIo<I>, Interim) {
        let interim = Interim::default();
        (
            InterimIo {
                inner,
                interim: interim.clone(),
                clock,
            },
            interim,
        )
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for InterimIo<I> {
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

impl<I: AsyncWrite + Unpin> AsyncWrite for InterimIo<I> {
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

    /// hyper's buffer is empty here: write what is queued, then flush.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        {
            let mut queue = this.interim.lock();
            queue.flusher = Some(cx.waker().clone());
            let mut wrote = false;
            while !queue.bytes.is_empty() {
                match Pin::new(&mut this.inner).poll_write(cx, &queue.bytes) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => {
                        queue.bytes.drain(..n);
                        wrote = true;
                    }
                    Poll::Ready(Err(e)) => {
                        // The client is gone: nothing will be written, so
                        // nobody waits for it.
                        queue.bytes.clear();
                        this.interim.0.written.notify_waiters();
                        return Poll::Ready(Err(e));
                    }
                    Poll::Pending => return Poll::Pending,
                }
            }
            if wrote {
                this.interim.0.written.notify_waiters();
            }
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn queued_interims_go_out_at_the_next_flush_after_earlier_writes() {
        let (near, mut far) = tokio::io::duplex(1024);
        let (mut io, interim) = InterimIo::new(near, IdleClock::new());
        let first = interim.open();
        io.write_all(b"previous;").await.expect("write");
        interim.send(first, b"interim;");
        io.flush().await.expect("flush");
        interim.written().await;
        interim.close(first);
        // Late: the window is closed, and a later request's is another.
        interim.send(first, b"late;");
        let _second = interim.open();
        interim.send(first, b"stale;");
        io.write_all(b"final").await.expect("write");
        io.flush().await.expect("flush");
        drop(io);
        let mut seen = String::new();
        far.read_to_string(&mut seen).await.expect("read");
        assert_eq!(seen, "previous;interim;final");
    }
}
