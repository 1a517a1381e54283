//! Keep-alive connections to one replica for the fast path: a TCP stream
//! and its read buffer, nothing else (no dispatch task, no channel). Idle
//! connections wait in an [`IdleStack`], most recently used first.

use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use http::uri::Authority;
use tokio::net::TcpStream;

use crate::error::AttemptError;
use crate::pool::{IdleStack, connect_within};

/// Initial read buffer of a replica connection.
const READ_BUFFER: usize = 8 * 1024;

/// One connection to a replica.
#[derive(Debug)]
pub struct Conn {
    pub stream: TcpStream,
    /// Bytes read from the replica and not yet forwarded.
    pub buf: BytesMut,
    /// Whether it carried a request before (a reused connection may have
    /// been closed by the replica meanwhile).
    pub reused: bool,
}

/// The idle connections to one replica.
#[derive(Debug)]
pub struct RawPool {
    authority: Authority,
    connect_timeout: Duration,
    idle: IdleStack<Conn>,
}

impl RawPool {
    pub fn new(authority: Authority, connect_timeout: Duration) -> RawPool {
        RawPool {
            authority,
            connect_timeout,
            idle: IdleStack::default(),
        }
    }

    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The most recently used idle connection that still looks open.
    pub fn checkout(&self) -> Option<Conn> {
        self.idle.pop_usable(|conn| still_open(&conn.stream))
    }

    /// Return a connection whose last response was read to its end.
    pub fn checkin(&self, mut conn: Conn) {
        conn.reused = true;
        self.idle.push(conn);
    }

    /// A new connection, within the connect timeout.
    ///
    /// # Errors
    /// [`AttemptError::Connect`] or [`AttemptError::ConnectTimeout`].
    pub async fn connect(&self) -> Result<Conn, AttemptError> {
        let stream = connect_within(&self.authority, self.connect_timeout).await?;
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(READ_BUFFER),
            reused: false,
        })
    }
}

/// Whether an idle connection can carry a request: the reactor has seen no
/// event on it (the common case, no system call), or reading finds nothing
/// pending. An end of stream or unexpected bytes mean it cannot.
fn still_open(stream: &TcpStream) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    match stream.poll_read_ready(&mut cx) {
        Poll::Pending => true,
        Poll::Ready(Err(_)) => false,
        Poll::Ready(Ok(())) => {
            let mut probe = [0u8; 1];
            matches!(stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        }
    }
}
