//! Forwarding a response body from a replica connection to the client as
//! it comes, its end found from the head's framing (RFC 9112 §6.3): a
//! length counted down, a chunked body scanned ([`ChunkedScanner`]), or the
//! replica's close.

use std::io;

use bytes::Buf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::chunked::{ChunkedError, ChunkedScanner};
use super::pool::Conn;
use super::response::{Framing, ResponseHead};
use super::{MIN_READ, READ_CHUNK};
use crate::completion::Completion;

/// Why forwarding a response body stopped early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RelayError {
    #[error("reading from the replica")]
    Upstream(#[source] io::Error),
    #[error("the replica closed the connection in the middle of the body")]
    Truncated,
    #[error("invalid chunked body from the replica")]
    Chunked(#[from] ChunkedError),
    #[error("writing to the client")]
    Client(#[source] io::Error),
}

/// How many of `available` body bytes belong to the message, and whether
/// the message ends with them.
pub(crate) fn measure(
    framing: Framing,
    remaining: &mut usize,
    scanner: &mut ChunkedScanner,
    available: &[u8],
) -> Result<(usize, bool), ChunkedError> {
    Ok(match framing {
        Framing::Empty => (0, true),
        Framing::Length(_) => {
            let take = (*remaining).min(available.len());
            *remaining -= take;
            (take, *remaining == 0)
        }
        Framing::Chunked => match scanner.feed(available)? {
            Some(end) => (end, true),
            None => (available.len(), false),
        },
        Framing::UntilClose => (available.len(), false),
    })
}

/// Forward the response whose head starts `conn.buf`: the head (as is, or
/// `rebuilt`) and the body bytes already read in one write, then the rest
/// of the body as it comes, telling `completion` how much of the body's
/// content reached the client. Returns whether the replica connection
/// ended the message cleanly with nothing more buffered (so it may be
/// reused).
pub(crate) async fn relay(
    client: &mut TcpStream,
    conn: &mut Conn,
    response: &ResponseHead,
    rebuilt: Option<&mut Vec<u8>>,
    completion: &mut Completion,
) -> Result<bool, RelayError> {
    let mut remaining = match response.framing {
        Framing::Length(n) => n,
        _ => 0,
    };
    let mut scanner = ChunkedScanner::default();
    let (piece, mut done) = measure(
        response.framing,
        &mut remaining,
        &mut scanner,
        &conn.buf[response.len..],
    )?;
    let first = response.len + piece;
    match rebuilt {
        None => client.write_all(&conn.buf[..first]).await,
        Some(out) => {
            out.extend_from_slice(&conn.buf[response.len..first]);
            client.write_all(out).await
        }
    }
    .map_err(|e| {
        completion.abandoned();
        RelayError::Client(e)
    })?;
    let mut counted = 0;
    completion.sent(content(response.framing, piece, &scanner, &mut counted));
    conn.buf.advance(first);
    while !done {
        if conn.buf.capacity() - conn.buf.len() < MIN_READ {
            conn.buf.reserve(READ_CHUNK);
        }
        let read = conn
            .stream
            .read_buf(&mut conn.buf)
            .await
            .map_err(RelayError::Upstream)?;
        if read == 0 {
            return match response.framing {
                Framing::UntilClose => Ok(false),
                _ => Err(RelayError::Truncated),
            };
        }
        let (piece, ended) = measure(response.framing, &mut remaining, &mut scanner, &conn.buf)?;
        client
            .write_all(&conn.buf[..piece])
            .await
            .map_err(RelayError::Client)?;
        completion.sent(content(response.framing, piece, &scanner, &mut counted));
        conn.buf.advance(piece);
        done = ended;
    }
    Ok(conn.buf.is_empty())
}

/// How much body content a forwarded piece of `piece` bytes held: all of
/// it, or for a chunked body the chunk data `scanner` counted since the
/// last piece (`counted` is its total then).
fn content(framing: Framing, piece: usize, scanner: &ChunkedScanner, counted: &mut u64) -> u64 {
    match framing {
        Framing::Chunked => {
            let total = scanner.data_bytes();
            let new = total - *counted;
            *counted = total;
            new
        }
        _ => piece as u64,
    }
}

/// Drop a response the client will not see. Returns whether its connection
/// can carry another request: only when the whole body was already read
/// (a replica's 404 is small and comes with its head).
pub(crate) fn discard_buffered(conn: &mut Conn, response: &ResponseHead) -> bool {
    let body = match response.framing {
        Framing::Empty => 0,
        Framing::Length(n) => n,
        Framing::Chunked | Framing::UntilClose => return false,
    };
    if conn.buf.len() != response.len + body {
        return false;
    }
    conn.buf.clear();
    response.reusable
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measuring_bodies() {
        let mut scanner = ChunkedScanner::default();
        let mut remaining = 5;
        assert_eq!(
            measure(Framing::Length(5), &mut remaining, &mut scanner, b"abc"),
            Ok((3, false))
        );
        assert_eq!(
            measure(Framing::Length(5), &mut remaining, &mut scanner, b"deNEXT"),
            Ok((2, true))
        );
        assert_eq!(
            measure(
                Framing::Chunked,
                &mut 0,
                &mut scanner,
                b"1\r\na\r\n0\r\n\r\nX"
            ),
            Ok((11, true))
        );
        assert_eq!(
            measure(Framing::UntilClose, &mut 0, &mut scanner, b"abc"),
            Ok((3, false))
        );
        assert_eq!(
            measure(Framing::Empty, &mut 0, &mut scanner, b"abc"),
            Ok((0, true))
        );
    }
}
