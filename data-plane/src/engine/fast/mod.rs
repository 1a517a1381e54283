//! The fast engine: an HTTP/1.1 forwarding engine written for this one job,
//! in the manner of pingora's own HTTP/1 code.
//!
//! A client connection is served by one task that reads into one buffer,
//! parses the head in place ([`request`]), lets the driver pick the replica,
//! and writes the request to a pooled replica connection ([`pool`]) straight
//! from that buffer: the client's own bytes, unless hop-by-hop headers must
//! go ([`exchange`]). The response is forwarded the same way, head and
//! first body bytes in one write, from the replica connection's buffer
//! ([`response`], [`relay`]); chunked bodies are forwarded as they are,
//! their end found by [`chunked`]. No header map, no per-request
//! allocation, no task or channel per replica connection.
//!
//! What it does not handle itself (HTTP/1.0, chunked request bodies,
//! upgrades, `Expect`, absolute-form targets, malformed heads, HTTP/2) it
//! hands over to hyper with the bytes read so far ([`rewind`]); hyper then
//! serves that connection to its end through the same driver and rules.

pub mod chunked;
mod exchange;
mod head;
pub mod pool;
pub mod relay;
pub mod request;
pub mod response;
pub mod rewind;

use std::io;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::access_log::Line;
use crate::driver::{self, Outcome, Refusal, RequestInfo};
use crate::error::Chain;
use crate::server::Shared;
use exchange::{Answer, FastExchange};
use request::{HandOver, Parsed, RequestHead};
use response::Framing;

/// Initial read buffer of a client connection, and the least a buffer
/// grows by.
pub(crate) const READ_CHUNK: usize = 4 * 1024;
/// Read at least this much at a time.
pub(crate) const MIN_READ: usize = 1024;

/// Serve one client connection until it closes, the data plane shuts down,
/// or a request needs hyper (which then serves the rest of it).
pub(crate) async fn serve_connection(
    stream: TcpStream,
    client: IpAddr,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conn = ClientConn {
        stream,
        buf: BytesMut::with_capacity(READ_CHUNK),
        scratch: Vec::new(),
        client,
        shared,
    };
    match conn.run(&mut shutdown).await {
        Ok(None) => {}
        Ok(Some(why)) => {
            tracing::trace!(?why, "handing the connection over to hyper");
            let ClientConn {
                stream,
                buf,
                shared,
                ..
            } = conn;
            let io = rewind::Rewind::new(buf.freeze(), stream);
            super::hyper::serve_connection(io, client, shared, shutdown).await;
        }
        Err(e) => tracing::debug!(%client, error = %e, "client connection ended with an error"),
    }
}

/// What waiting for a request head gave.
enum HeadRead {
    Head(RequestHead),
    Closed,
    HandOver(HandOver),
    Refuse(Refusal),
}

struct ClientConn {
    stream: TcpStream,
    /// Bytes read from the client and not yet forwarded.
    buf: BytesMut,
    /// Rebuilt heads (rare: hop-by-hop headers, bare LF line ends).
    scratch: Vec<u8>,
    client: IpAddr,
    shared: Arc<Shared>,
}

impl ClientConn {
    /// Serve requests; `Some(reason)` when hyper must take over.
    async fn run(&mut self, shutdown: &mut watch::Receiver<bool>) -> io::Result<Option<HandOver>> {
        let mut first = true;
        loop {
            let head = match self.read_head(first, shutdown).await? {
                HeadRead::Head(head) => head,
                HeadRead::Closed => return Ok(None),
                HeadRead::HandOver(why) => return Ok(Some(why)),
                HeadRead::Refuse(refusal) => {
                    // The answer to a HEAD request has no body, even ours.
                    let start = head::leading_empty_lines(&self.buf);
                    let is_head = self.buf[start..].starts_with(b"HEAD ");
                    self.refuse(is_head, &refusal).await?;
                    return Ok(None);
                }
            };
            first = false;
            self.shared.note_activity();
            let total = head.len + head.body_len;
            // A body gets the header-read timeout too, per read: a client
            // that stalls in the middle of one is disconnected.
            let stall = self.shared.limits.header_read_timeout;
            while self.buf.len() < total {
                self.buf.reserve(total - self.buf.len());
                match tokio::time::timeout(stall, self.stream.read_buf(&mut self.buf)).await {
                    Ok(Ok(0)) | Err(_) => return Ok(None), // left or stalled mid-body
                    Ok(read) => read?,
                };
            }
            let keep_open = self.forward(&head).await?;
            self.buf.advance(total);
            if !keep_open || head.close || *shutdown.borrow() {
                return Ok(None);
            }
        }
    }

    /// Wait for the next request head. Between requests the connection
    /// may stay idle for the idle timeout (and ends at shutdown); once a
    /// head has begun (or on a new connection) it must be complete within
    /// the header-read timeout.
    async fn read_head(
        &mut self,
        first: bool,
        shutdown: &mut watch::Receiver<bool>,
    ) -> io::Result<HeadRead> {
        let limits = self.shared.limits;
        let mut deadline = first.then(|| Instant::now() + limits.header_read_timeout);
        loop {
            if !self.buf.is_empty() {
                match request::parse(&self.buf, &limits) {
                    Parsed::Partial => {}
                    Parsed::Complete(head) => return Ok(HeadRead::Head(head)),
                    Parsed::HandOver(why) => return Ok(HeadRead::HandOver(why)),
                    Parsed::Refuse(refusal) => return Ok(HeadRead::Refuse(refusal)),
                }
            }
            if self.buf.capacity() - self.buf.len() < MIN_READ {
                self.buf.reserve(READ_CHUNK);
            }
            // Between requests (nothing of the next one read yet) the
            // connection ends at shutdown; a head under way is waited for.
            let between_requests = self.buf.is_empty();
            let deadline_at = match deadline {
                Some(deadline) => deadline,
                None => Instant::now() + limits.idle_timeout,
            };
            let read = tokio::select! {
                biased;
                read = tokio::time::timeout_at(deadline_at, self.stream.read_buf(&mut self.buf)) => match read {
                    Ok(read) => read?,
                    Err(_) => return Ok(HeadRead::Closed),
                },
                _ = shutdown.changed(), if between_requests => return Ok(HeadRead::Closed),
            };
            if read == 0 {
                return Ok(HeadRead::Closed);
            }
            deadline.get_or_insert_with(|| Instant::now() + limits.header_read_timeout);
        }
    }

    /// Have the driver serve the request whose head and body are in
    /// `self.buf`, and answer it. Returns whether the connection can carry
    /// another request.
    async fn forward(&mut self, head: &RequestHead) -> io::Result<bool> {
        let shared = self.shared.clone();
        let total = head.len + head.body_len;
        let ClientConn {
            stream,
            buf,
            scratch,
            client,
            ..
        } = self;
        // The request as every upstream gets it: the client's bytes, or
        // the head rebuilt (hop-by-hop headers out) and the body.
        let mut rebuilt = Vec::new();
        let request: &[u8] = if head.rebuild {
            request::rebuild(&buf[..head.len], &mut rebuilt);
            rebuilt.extend_from_slice(&buf[head.len..total]);
            &rebuilt
        } else {
            &buf[..total]
        };
        let path = std::str::from_utf8(&buf[head.path.clone()]).unwrap_or("/");
        let info = RequestInfo {
            path,
            request_id: head.request_id.clone().map(|r| &buf[r]),
            idempotent: head.idempotent,
            admin: head.admin,
            line: Line::Raw(&buf[..head.len]),
        };
        let mut exchange = FastExchange {
            client: stream,
            request,
            head,
            scratch,
        };
        let outcome = driver::drive(&shared, *client, info, &mut exchange).await;
        shared.note_activity();
        match outcome {
            Outcome::Forward(answer) => self.respond(head, answer).await,
            Outcome::Refuse(refusal, answer) => {
                if let Some(mut answer) = answer
                    && relay::discard_buffered(&mut answer.conn, &answer.head)
                {
                    answer.pool.checkin(answer.conn);
                }
                self.refuse(head.is_head, &refusal).await?;
                Ok(!head.close && !refusal.close)
            }
            Outcome::Abort(e) => Err(io::Error::other(e)),
        }
    }

    /// Forward an upstream's response, and return its connection to the
    /// pool when it can carry another request.
    async fn respond(&mut self, head: &RequestHead, answer: Answer) -> io::Result<bool> {
        // The request ends when `completion` drops, after the relay.
        let Answer {
            mut conn,
            head: response,
            pool,
            mut completion,
        } = answer;
        let closing = head.close || response.framing == Framing::UntilClose;
        let rebuilt = if response.rebuild || closing {
            self.scratch.clear();
            response::rebuild(&conn.buf, &response, closing, &mut self.scratch);
            Some(&mut self.scratch)
        } else {
            None
        };
        let relayed = relay::relay(
            &mut self.stream,
            &mut conn,
            &response,
            rebuilt,
            &mut completion,
        );
        match relayed.await {
            Ok(true) if response.reusable => pool.checkin(conn),
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(replica = %pool.authority(), error = %Chain(&e), "response not forwarded whole");
                return Err(io::Error::other(e));
            }
        }
        Ok(!closing)
    }

    /// Answer with the spec's JSON error (its head only to a HEAD request).
    async fn refuse(&mut self, is_head: bool, refusal: &Refusal) -> io::Result<()> {
        let body = ringlb_api::failure(&refusal.message);
        self.scratch.clear();
        write_own_head(&mut self.scratch, refusal.status, body.len(), refusal.close);
        if !is_head {
            self.scratch.extend_from_slice(&body);
        }
        self.stream.write_all(&self.scratch).await
    }
}

/// The head of a response the data plane writes itself (a JSON error).
fn write_own_head(out: &mut Vec<u8>, status: StatusCode, body_len: usize, closing: bool) {
    use std::io::Write;
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {body_len}\r\n{}date: {}\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        ringlb_api::APPLICATION_JSON,
        if closing { "connection: close\r\n" } else { "" },
        httpdate::fmt_http_date(std::time::SystemTime::now()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_heads() {
        let mut out = Vec::new();
        write_own_head(&mut out, StatusCode::BAD_REQUEST, 12, true);
        let text = String::from_utf8(out).expect("ascii");
        assert!(
            text.starts_with(
                "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 12\r\nconnection: close\r\ndate: "
            ),
            "{text}"
        );
        assert!(text.ends_with(" GMT\r\n\r\n"), "{text}");
    }
}
