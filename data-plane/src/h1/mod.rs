//! The fast path: an HTTP/1.1 forwarding engine written for this one job,
//! in the manner of pingora's own HTTP/1 code.
//!
//! A client connection is served by one task that reads into one buffer,
//! parses the head in place ([`request`]), picks the replica, and writes
//! the request to a pooled replica connection ([`pool`]) straight from that
//! buffer: the client's own bytes, unless hop-by-hop headers must go. The
//! response is forwarded the same way, head and first body bytes in one
//! write, from the replica connection's buffer ([`response`]); chunked
//! bodies are forwarded as they are, their end found by [`chunked`]. No
//! header map, no per-request allocation, no task or channel per replica
//! connection.
//!
//! The admin paths (`/rep`, `/add`, `/rm`) go to the control plane's HTTP
//! API the same way. What it does not handle itself (HTTP/1.0, chunked
//! request bodies, upgrades, `Expect`, absolute-form targets, malformed or
//! oversized heads, HTTP/2) it hands over to hyper with the bytes read so far
//! ([`rewind`]); hyper then serves that connection to its end, answering
//! exactly as the rest of the data plane does.

pub mod chunked;
pub mod pool;
pub mod request;
pub mod response;
pub mod rewind;

use std::io;
use std::net::IpAddr;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::Shared;
use crate::proxy::{Attempts, HOP_BY_HOP, MAX_ATTEMPTS, Refusal};
use chunked::{ChunkedError, ChunkedScanner};
use pool::{Conn, ConnectError, RawPool};
use request::{HandOver, Parsed, RequestHead};
use response::{Framing, ResponseError, ResponseHead};

/// Headers kept per message; a head with more goes to hyper (requests) or
/// is refused (responses).
pub const MAX_HEADERS: usize = 64;
/// Largest response head accepted from a replica.
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Initial read buffer of a client connection.
const CLIENT_BUFFER: usize = 4 * 1024;
/// Read at least this much at a time.
const MIN_READ: usize = 1024;

/// Whether a header named `name` (any case) is hop-by-hop in itself
/// ([`HOP_BY_HOP`]).
pub(crate) fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|hop| name.eq_ignore_ascii_case(hop))
}

/// The header names the `Connection` headers list: hop-by-hop too.
pub(crate) fn connection_listed<'h>(headers: &[httparse::Header<'h>]) -> Vec<&'h [u8]> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| request::tokens(h.value))
        .collect()
}

/// Append `name: value` lines for the headers `dropped` does not reject.
pub(crate) fn write_headers(
    headers: &[httparse::Header<'_>],
    dropped: impl Fn(&httparse::Header<'_>) -> bool,
    out: &mut Vec<u8>,
) {
    for header in headers.iter().filter(|h| !dropped(h)) {
        out.extend_from_slice(header.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(header.value);
        out.extend_from_slice(b"\r\n");
    }
}

/// Where `part` (a slice of `buf`) lies in `buf`.
pub(crate) fn offset_in(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(buf.as_ptr() as usize);
    start..start + part.len()
}

/// Serve one client connection until it closes, the data plane shuts down,
/// or a request needs hyper (which then serves the rest of it).
pub async fn serve_connection(
    stream: TcpStream,
    client: IpAddr,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conn = ClientConn {
        stream,
        buf: BytesMut::with_capacity(CLIENT_BUFFER),
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
            crate::serve_with_hyper(io, client, shared, shutdown).await;
        }
        Err(e) => tracing::debug!(%client, error = %e, "client connection ended with an error"),
    }
}

/// Why a request's exchange with one replica failed.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    /// Nothing reached the replica: safe to retry anywhere.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The request was not written whole: the replica cannot act on it.
    #[error("request to {authority} not sent: {source}")]
    NotSent {
        authority: String,
        source: io::Error,
    },
    /// The request was written; the replica may have acted on it.
    #[error("{0}")]
    Failed(ReadHeadError),
}

impl AttemptError {
    fn nothing_sent(&self) -> bool {
        !matches!(self, AttemptError::Failed(_))
    }
}

#[derive(Debug, thiserror::Error)]
enum ReadHeadError {
    #[error("connection closed before the response")]
    Closed,
    #[error("connection closed in the middle of the response head")]
    Truncated,
    #[error(transparent)]
    Invalid(#[from] ResponseError),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Why forwarding a response body stopped early.
#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("reading from the replica: {0}")]
    Upstream(io::Error),
    #[error("the replica closed the connection in the middle of the body")]
    Truncated,
    #[error("invalid chunked body from the replica: {0}")]
    Chunked(#[from] ChunkedError),
    #[error("writing to the client: {0}")]
    Client(io::Error),
}

impl From<RelayError> for io::Error {
    fn from(e: RelayError) -> io::Error {
        match e {
            RelayError::Client(e) | RelayError::Upstream(e) => e,
            other => io::Error::other(other),
        }
    }
}

/// What waiting for a request head gave.
enum HeadRead {
    Head(RequestHead),
    Closed,
    HandOver(HandOver),
}

struct ClientConn {
    stream: TcpStream,
    /// Bytes read from the client and not yet forwarded.
    buf: BytesMut,
    /// Rebuilt heads (rare: hop-by-hop headers, no `Host`).
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
                match request::parse(&self.buf, limits.max_header_bytes, limits.max_body_bytes) {
                    Parsed::Partial => {}
                    Parsed::Complete(head) => return Ok(HeadRead::Head(head)),
                    Parsed::HandOver(why) => return Ok(HeadRead::HandOver(why)),
                }
            }
            if self.buf.capacity() - self.buf.len() < MIN_READ {
                self.buf.reserve(CLIENT_BUFFER);
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

    /// Route one request whose head and body are in `self.buf`, and answer
    /// it. Returns whether the connection can carry another request.
    async fn forward(&mut self, head: &RequestHead) -> io::Result<bool> {
        if head.admin {
            return self.forward_admin(head).await;
        }
        let shared = self.shared.clone();
        let stats = &shared.stats;
        let path = std::str::from_utf8(&self.buf[head.path.clone()]).unwrap_or("/");
        let Some(table) = shared.table.load_full().filter(|t| !t.ring.is_empty()) else {
            stats.no_replica.fetch_add(1, Ordering::Relaxed);
            return self.refuse(head, Refusal::no_replicas()).await;
        };
        let request_id = head.request_id.clone().map(|r| &self.buf[r]);
        let key = crate::key::key_of(table.key_source, path, request_id, self.client);
        let timeout = shared.limits.upstream_timeout;

        let arrived = std::time::Instant::now();
        let mut attempts = Attempts::new(head.idempotent);
        for (attempt, member) in table.ring.candidates(key).take(MAX_ATTEMPTS).enumerate() {
            let upstream = &table.upstreams[member];
            attempts.start(attempt, upstream, stats);
            let bytes = self.outbound(head, upstream.raw.authority());
            let exchanged = tokio::time::timeout(
                timeout,
                exchange(&upstream.raw, bytes, head.idempotent, head.is_head),
            )
            .await;
            let refusal = match exchanged {
                Ok(Ok((conn, response))) => {
                    shared.note_activity();
                    upstream.stats.latency.observe(arrived.elapsed());
                    return self
                        .respond(head, &upstream.raw, conn, &response, true)
                        .await;
                }
                Ok(Err(e)) => attempts.failed(upstream, &e, e.nothing_sent(), stats),
                Err(_) => attempts.timed_out(upstream, timeout),
            };
            if let Some(refusal) = refusal {
                return self.refuse(head, refusal).await;
            }
        }
        self.refuse(head, attempts.exhausted(stats)).await
    }

    /// The request as `authority` gets it: the client's bytes, or the head
    /// rebuilt (hop-by-hop headers out, `Host` in) and the body.
    fn outbound(&mut self, head: &RequestHead, authority: &http::uri::Authority) -> &[u8] {
        let total = head.len + head.body_len;
        if !head.rebuild {
            return &self.buf[..total];
        }
        self.scratch.clear();
        request::rebuild(&self.buf[..head.len], authority.as_str(), &mut self.scratch);
        self.scratch.extend_from_slice(&self.buf[head.len..total]);
        &self.scratch
    }

    /// `/rep`, `/add`, `/rm`: to the control plane's admin API, its answer
    /// back as it is. Not retried, and not timed (a `/add` waits for new
    /// replicas and every data plane).
    async fn forward_admin(&mut self, head: &RequestHead) -> io::Result<bool> {
        let shared = self.shared.clone();
        shared.stats.admin.fetch_add(1, Ordering::Relaxed);
        let pool = &shared.admin.raw;
        let bytes = self.outbound(head, pool.authority());
        match exchange(pool, bytes, head.idempotent, head.is_head).await {
            Ok((conn, response)) => self.respond(head, pool, conn, &response, false).await,
            Err(e) => {
                let refusal = Refusal::control_plane_unreachable(pool.authority(), &e);
                self.refuse(head, refusal).await
            }
        }
    }

    /// Forward an upstream's response (or, for a replica's 404 when
    /// `replica_404_is_400`, the spec's 400), and return its connection to
    /// the pool when it can carry another.
    async fn respond(
        &mut self,
        head: &RequestHead,
        pool: &RawPool,
        mut conn: Conn,
        response: &ResponseHead,
        replica_404_is_400: bool,
    ) -> io::Result<bool> {
        if replica_404_is_400 && response.status == 404 {
            if discard_buffered_body(&mut conn, response) {
                pool.checkin(conn);
            }
            let path = String::from_utf8_lossy(&self.buf[head.path.clone()]).into_owned();
            return self.refuse(head, Refusal::not_served(&path)).await;
        }
        let closing = head.close || response.framing == Framing::UntilClose;
        let rebuilt = if response.rebuild || closing {
            self.scratch.clear();
            response::rebuild(&conn.buf, response, closing, &mut self.scratch);
            Some(&mut self.scratch)
        } else {
            None
        };
        match relay(&mut self.stream, &mut conn, response, rebuilt).await {
            Ok(true) if response.reusable => pool.checkin(conn),
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(replica = %pool.authority(), error = %e, "response not forwarded whole");
                return Err(e.into());
            }
        }
        Ok(!closing)
    }

    /// Answer with the spec's JSON error.
    async fn refuse(&mut self, head: &RequestHead, refusal: Refusal) -> io::Result<bool> {
        let body = ringlb_api::failure(&refusal.message);
        self.scratch.clear();
        write_own_head(&mut self.scratch, refusal.status, body.len(), head.close);
        if !head.is_head {
            self.scratch.extend_from_slice(&body);
        }
        self.stream.write_all(&self.scratch).await?;
        Ok(!head.close)
    }
}

/// Send `request` to the replica on a pooled connection (or a new one) and
/// read the response head. A pooled connection the replica closed meanwhile
/// is replaced by a new one, transparently when the request could not have
/// reached the replica or may be repeated.
async fn exchange(
    pool: &RawPool,
    request: &[u8],
    idempotent: bool,
    head_request: bool,
) -> Result<(Conn, ResponseHead), AttemptError> {
    loop {
        let mut conn = match pool.checkout() {
            Some(conn) => conn,
            None => pool.connect().await?,
        };
        if let Err(source) = conn.stream.write_all(request).await {
            if conn.reused {
                continue;
            }
            return Err(AttemptError::NotSent {
                authority: pool.authority().to_string(),
                source,
            });
        }
        match read_response_head(&mut conn, head_request).await {
            Ok(response) => return Ok((conn, response)),
            Err(ReadHeadError::Closed) if conn.reused && idempotent => continue,
            Err(e) => return Err(AttemptError::Failed(e)),
        }
    }
}

/// Read until a final (non-1xx) response head is in `conn.buf`.
async fn read_response_head(
    conn: &mut Conn,
    head_request: bool,
) -> Result<ResponseHead, ReadHeadError> {
    loop {
        let parsed = if conn.buf.is_empty() {
            None
        } else {
            response::parse(&conn.buf, head_request, MAX_RESPONSE_HEAD)?
        };
        if let Some(response) = parsed {
            if response.status == 101 {
                return Err(ResponseError::Malformed.into());
            }
            if response.status >= 200 {
                return Ok(response);
            }
            conn.buf.advance(response.len); // interim (1xx): skip
            continue;
        }
        if conn.buf.capacity() - conn.buf.len() < MIN_READ {
            conn.buf.reserve(CLIENT_BUFFER);
        }
        if conn.stream.read_buf(&mut conn.buf).await? == 0 {
            return Err(if conn.buf.is_empty() {
                ReadHeadError::Closed
            } else {
                ReadHeadError::Truncated
            });
        }
    }
}

/// How many of `available` body bytes belong to the message, and whether
/// the message ends with them.
fn measure(
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
/// of the body as it comes. Returns whether the replica connection ended
/// the message cleanly with nothing more buffered.
async fn relay(
    client: &mut TcpStream,
    conn: &mut Conn,
    response: &ResponseHead,
    rebuilt: Option<&mut Vec<u8>>,
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
    .map_err(RelayError::Client)?;
    conn.buf.advance(first);
    while !done {
        if conn.buf.capacity() - conn.buf.len() < MIN_READ {
            conn.buf.reserve(CLIENT_BUFFER);
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
        conn.buf.advance(piece);
        done = ended;
    }
    Ok(conn.buf.is_empty())
}

/// Drop a response the client will not see. Returns whether its connection
/// can carry another request: only when the whole body was already read
/// (a replica's 404 is small and comes with its head).
fn discard_buffered_body(conn: &mut Conn, response: &ResponseHead) -> bool {
    let body = match response.framing {
        Framing::Empty => 0,
        Framing::Length(n) => n,
        Framing::Chunked | Framing::UntilClose => return false,
    };
    let message = response.len + body;
    if conn.buf.len() != message {
        return false;
    }
    conn.buf.clear();
    response.reusable
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

/// How long an idle client connection stays open between requests, by
/// default.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

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
