//! The hyper engine: hyper serves the client connection (HTTP/1.1 or
//! HTTP/2) and sends each request on with its client ([`pool`]); the data
//! plane adds what hyper leaves to its user: the rules every request is
//! checked against ([`request`]), the driver's policy ([`exchange`]),
//! interim responses ([`interim`]) and protocol switches ([`upgrade`]).
//! The fast engine hands this engine the connections it does not handle.

mod exchange;
mod idle;
mod interim;
pub mod pool;
mod request;
mod upgrade;

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::config::{Limits, MAX_REQUEST_HEADERS};
use crate::driver::Refusal;
use crate::server::Shared;
use interim::InterimIo;
use pool::PooledBody;

/// What the hyper engine answers with: a replica's streamed body, or the
/// data plane's own.
pub(crate) type ProxyBody = Either<PooledBody, Full<Bytes>>;

/// The largest request head hyper reads, in bytes: at least the request
/// line and header limits together, and at least 1 MiB so that hyper's
/// parser, not its buffer, finds a long request line (hyper answers 414 to
/// targets over 64 KiB; the data plane to those over its limit). Beyond it
/// hyper answers 431.
const HYPER_MIN_HEAD_BUFFER: usize = 1024 * 1024;

/// The most header fields hyper parses in a request: more than the data
/// plane allows ([`MAX_REQUEST_HEADERS`]), so that the data plane, not
/// hyper, refuses a request with a few too many (431 as JSON); beyond this
/// hyper answers its own 431.
const HYPER_MAX_HEADERS: usize = 4 * MAX_REQUEST_HEADERS;

/// How long the answer to a request whose body stalled or broke gets to go
/// out before its connection is dropped.
const ABANDON_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// hyper's server, configured once from the limits.
#[derive(Clone)]
pub(crate) struct Server(auto::Builder<TokioExecutor>);

impl Server {
    pub(crate) fn new(limits: &Limits) -> Server {
        let mut http = auto::Builder::new(TokioExecutor::new());
        http.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            // A client that half-closes after its request still gets the
            // answer (as with the fast engine).
            .half_close(true)
            .max_headers(HYPER_MAX_HEADERS)
            .max_buf_size(limits.max_head_bytes().max(HYPER_MIN_HEAD_BUFFER));
        Server(http)
    }
}

/// Serve a client connection with hyper (HTTP/1.1 or HTTP/2) until it ends;
/// once `stopped` turns true, it finishes what it has and closes.
pub(crate) async fn serve_connection<I>(
    io: I,
    client: IpAddr,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http = shared.hyper.0.clone();
    let limits = shared.limits;
    let clock = idle::IdleClock::new();
    let (io, interim) = InterimIo::new(io, clock.clone());
    // Told by a request whose body stalled or broke: the rest of the
    // connection cannot be trusted, and hyper would wait for that body.
    let abandon = Arc::new(tokio::sync::Notify::new());
    let abandoned = abandon.clone();
    let service = service_fn(move |req| {
        let shared = shared.clone();
        let interim = interim.clone();
        let abandon = abandon.clone();
        shared.note_activity();
        async move {
            let response = exchange::handle(&shared, client, interim, &abandon, req).await;
            shared.note_activity();
            Ok::<_, Infallible>(response)
        }
    });
    let conn = http.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut stopping = false;
    // Once the connection is abandoned: when it is dropped at the latest.
    let mut drop_at: Option<tokio::time::Instant> = None;
    loop {
        if !stopping && *stopped.borrow() {
            stopping = true;
            conn.as_mut().graceful_shutdown();
        }
        let silent_until = clock.deadline(limits.header_read_timeout, limits.idle_timeout);
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(%client, error = %e, "client connection ended with an error");
                }
                return;
            }
            changed = stopped.changed(), if !stopping => {
                if changed.is_err() {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
            () = abandoned.notified(), if drop_at.is_none() => {
                // The answer (408, 400) gets a moment to go out; then the
                // connection goes, whatever hyper still waits for.
                stopping = true;
                conn.as_mut().graceful_shutdown();
                drop_at = Some(tokio::time::Instant::now() + ABANDON_GRACE);
            }
            () = tokio::time::sleep_until(drop_at.unwrap_or_else(tokio::time::Instant::now)), if drop_at.is_some() => {
                tracing::debug!(%client, "client connection abandoned after a broken request body");
                return;
            }
            () = tokio::time::sleep_until(silent_until), if !stopping => {
                // Bytes may have come meanwhile: only a deadline that still
                // holds closes (gracefully: a request in flight finishes).
                if clock.deadline(limits.header_read_timeout, limits.idle_timeout) <= tokio::time::Instant::now() {
                    tracing::debug!(%client, "client connection silent too long; closing");
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// The data plane's own answer: the spec's JSON error, and `Connection:
/// close` when the refusal ends the connection.
pub(crate) fn refused(refusal: &Refusal) -> Response<ProxyBody> {
    let body = Full::new(Bytes::from(ringlb_api::failure(&refusal.message)));
    let mut response = Response::new(Either::Right(body));
    *response.status_mut() = refusal.status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(ringlb_api::APPLICATION_JSON),
    );
    if refusal.close {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// A 502 for a client connection that failed mid-attempt (hyper serves the
/// client, so this cannot happen; the answer exists for completeness).
fn aborted() -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::new())));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}
