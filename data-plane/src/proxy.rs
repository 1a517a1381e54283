//! The request path: admin paths to the control plane, everything else to
//! the replica that owns the request's key, with failover along the ring.

use std::fmt::Display;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::Shared;
use crate::stats::Stats;
use crate::table::Upstream;
use crate::upstream::PooledBody;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;

/// What the data plane answers with: a replica's streamed body, or its own.
pub type ProxyBody = Either<PooledBody, Full<Bytes>>;

/// Replicas tried for one request: the owner and up to two more.
pub const MAX_ATTEMPTS: usize = 3;

/// What the data plane answers itself when a request cannot be served:
/// one place for the status and the spec-shaped message, whichever engine
/// serves the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub status: StatusCode,
    pub message: String,
}

impl Refusal {
    /// No replica on the ring (503).
    pub(crate) fn no_replicas() -> Refusal {
        Refusal {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "No server replicas available".into(),
        }
    }

    /// The replica answered 404 for `path` (the spec's 400).
    pub(crate) fn not_served(path: &str) -> Refusal {
        Refusal {
            status: StatusCode::BAD_REQUEST,
            message: format!("'{path}' endpoint does not exist in server replicas"),
        }
    }

    /// An admin request could not be forwarded (502).
    pub(crate) fn control_plane_unreachable(
        control_plane: &Authority,
        error: &dyn Display,
    ) -> Refusal {
        tracing::warn!(%control_plane, %error, "admin request failed");
        Refusal {
            status: StatusCode::BAD_GATEWAY,
            message: format!("Control plane is unreachable at {control_plane}: {error}"),
        }
    }
}

/// The replicas one request was sent to, in order: both engines keep the
/// counters, the failover decisions and the refusals through it.
pub(crate) struct Attempts<'t> {
    tried: [&'t str; MAX_ATTEMPTS],
    count: usize,
    idempotent: bool,
}

impl<'t> Attempts<'t> {
    /// Attempts for a request whose method is `idempotent` or not.
    pub(crate) fn new(idempotent: bool) -> Self {
        Attempts {
            tried: [""; MAX_ATTEMPTS],
            count: 0,
            idempotent,
        }
    }

    /// Attempt number `attempt` goes to `upstream`.
    pub(crate) fn start(&mut self, attempt: usize, upstream: &'t Upstream, stats: &Stats) {
        if attempt > 0 {
            stats.retries.fetch_add(1, Ordering::Relaxed);
        }
        self.tried[attempt] = &upstream.name;
        self.count = attempt + 1;
        upstream.stats.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// `upstream` gave no response head within `timeout`: `None` to try
    /// the next replica (idempotent requests), else the 504.
    pub(crate) fn timed_out(&self, upstream: &Upstream, timeout: Duration) -> Option<Refusal> {
        upstream.stats.errors.fetch_add(1, Ordering::Relaxed);
        if self.idempotent {
            tracing::debug!(replica = %upstream.name, ?timeout, "no answer in time; trying the next replica");
            return None;
        }
        tracing::warn!(replica = %upstream.name, ?timeout, "replica did not answer a non-idempotent request in time");
        Some(Refusal {
            status: StatusCode::GATEWAY_TIMEOUT,
            message: format!(
                "Server replica '{}' did not answer within {timeout:?}",
                upstream.name
            ),
        })
    }

    /// The attempt on `upstream` failed with `error`: `None` to try the
    /// next replica (when nothing reached this one, or the method may be
    /// repeated), else the 502.
    pub(crate) fn failed(
        &self,
        upstream: &Upstream,
        error: &dyn Display,
        nothing_sent: bool,
        stats: &Stats,
    ) -> Option<Refusal> {
        upstream.stats.errors.fetch_add(1, Ordering::Relaxed);
        if nothing_sent || self.idempotent {
            tracing::debug!(replica = %upstream.name, %error, "attempt failed; trying the next replica");
            return None;
        }
        tracing::warn!(replica = %upstream.name, %error, "replica failed a non-idempotent request");
        stats.unreachable.fetch_add(1, Ordering::Relaxed);
        Some(Refusal {
            status: StatusCode::BAD_GATEWAY,
            message: format!(
                "Server replica '{}' failed the request: {error}",
                upstream.name
            ),
        })
    }

    /// Every attempt failed: the 502 naming the replicas tried.
    pub(crate) fn exhausted(&self, stats: &Stats) -> Refusal {
        stats.unreachable.fetch_add(1, Ordering::Relaxed);
        let tried = self.tried[..self.count].join(", ");
        tracing::warn!(%tried, "no replica reachable");
        Refusal {
            status: StatusCode::BAD_GATEWAY,
            message: format!("No server replica could be reached (tried {tried})"),
        }
    }
}

/// Paths served by the control plane.
pub(crate) fn is_admin(path: &str) -> bool {
    matches!(path, "/rep" | "/add" | "/rm")
}

/// Handle one request from a client at `client`.
pub async fn handle(
    shared: Arc<Shared>,
    client: IpAddr,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    if is_admin(req.uri().path()) {
        shared.stats.admin.fetch_add(1, Ordering::Relaxed);
        return forward_admin(&shared, req).await;
    }
    route(&shared, client, req).await
}

async fn route(shared: &Shared, client: IpAddr, req: Request<Incoming>) -> Response<ProxyBody> {
    let Some(table) = shared.table.load_full().filter(|t| !t.ring.is_empty()) else {
        shared.stats.no_replica.fetch_add(1, Ordering::Relaxed);
        return refused(Refusal::no_replicas());
    };
    let (parts, body) = req.into_parts();
    let key = crate::key::request_key(table.key_source, &parts, client);
    let (parts, path_and_query, body) = match outbound(parts, body, shared).await {
        Ok(outbound) => outbound,
        Err(response) => return response,
    };
    let idempotent = is_idempotent(&parts.method);

    let arrived = std::time::Instant::now();
    let mut attempts = Attempts::new(idempotent);
    for (attempt, member) in table.ring.candidates(key).take(MAX_ATTEMPTS).enumerate() {
        let upstream = &table.upstreams[member];
        attempts.start(attempt, upstream, &shared.stats);
        let request = upstream_request(
            &parts,
            upstream.pool.authority(),
            &path_and_query,
            body.clone(),
        );
        let timeout = shared.limits.upstream_timeout;
        let refusal = match tokio::time::timeout(timeout, upstream.pool.send(request)).await {
            Ok(Ok(response)) => {
                upstream.stats.latency.observe(arrived.elapsed());
                return from_replica(response, parts.uri.path());
            }
            Ok(Err(e)) => attempts.failed(upstream, &e, e.nothing_sent(), &shared.stats),
            Err(_) => attempts.timed_out(upstream, timeout),
        };
        if let Some(refusal) = refusal {
            return refused(refusal);
        }
    }
    refused(attempts.exhausted(&shared.stats))
}

/// Forward `/rep`, `/add`, `/rm` to the control plane's HTTP admin API.
async fn forward_admin(shared: &Shared, req: Request<Incoming>) -> Response<ProxyBody> {
    let (parts, body) = req.into_parts();
    let (parts, path_and_query, body) = match outbound(parts, body, shared).await {
        Ok(outbound) => outbound,
        Err(response) => return response,
    };
    let request = upstream_request(
        &parts,
        shared.admin.hyper.authority(),
        &path_and_query,
        body,
    );
    match shared.admin.hyper.send(request).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, Either::Left(body))
        }
        Err(e) => refused(Refusal::control_plane_unreachable(
            shared.admin.hyper.authority(),
            &e,
        )),
    }
}

/// What every forwarded request needs: the client's head without its
/// hop-by-hop headers, the origin-form target, and the body buffered (within
/// the limit) so that it can be sent again on failover.
async fn outbound(
    mut parts: http::request::Parts,
    body: Incoming,
    shared: &Shared,
) -> Result<(http::request::Parts, PathAndQuery, Full<Bytes>), Response<ProxyBody>> {
    let body = read_body(body, shared.limits.max_body_bytes).await?;
    strip_hop_by_hop(&mut parts.headers);
    let path_and_query = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Ok((parts, path_and_query, body))
}

fn upstream_request(
    parts: &http::request::Parts,
    authority: &Authority,
    path_and_query: &PathAndQuery,
    body: Full<Bytes>,
) -> Request<Full<Bytes>> {
    let mut request = Request::new(body);
    *request.method_mut() = parts.method.clone();
    // Origin form (`/path?query`), as HTTP/1.1 sends it to a server.
    *request.uri_mut() = Uri::from(path_and_query.clone());
    *request.headers_mut() = parts.headers.clone();
    if !request.headers().contains_key(header::HOST)
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        request.headers_mut().insert(header::HOST, host);
    }
    request
}

/// A replica's answer as the client gets it: unchanged, except that the
/// replica's 404 becomes the spec's 400 and hop-by-hop headers go.
fn from_replica(response: Response<PooledBody>, path: &str) -> Response<ProxyBody> {
    if response.status() == StatusCode::NOT_FOUND {
        return refused(Refusal::not_served(path));
    }
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, Either::Left(body))
}

/// Buffer a request body (so it can be sent again on failover), refusing
/// more than `limit` bytes with 413.
async fn read_body(body: Incoming, limit: usize) -> Result<Full<Bytes>, Response<ProxyBody>> {
    use http_body::Body as _;
    if body.is_end_stream() {
        return Ok(Full::new(Bytes::new()));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(Full::new(collected.to_bytes())),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(failure(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("Request body is larger than {limit} bytes"),
        )),
        Err(e) => Err(failure(
            StatusCode::BAD_REQUEST,
            &format!("Cannot read the request body: {e}"),
        )),
    }
}

/// RFC 9110 §9.2.2.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    )
}

/// Headers that concern one connection only (RFC 9110 §7.6.1, plus the
/// legacy `keep-alive` and `proxy-connection`), lowercase: both engines
/// drop them.
pub(crate) const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

/// Whether `name` is hop-by-hop in itself.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}

/// Remove the hop-by-hop headers, including any the `Connection` header
/// names. Most messages carry none: one pass over the names finds that,
/// without a hash lookup per candidate.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    let hop: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_hop_by_hop(n))
        .cloned()
        .collect();
    for name in named.iter().chain(hop.iter()) {
        headers.remove(name);
    }
}

/// The data plane's own answer for `refusal`.
pub(crate) fn refused(refusal: Refusal) -> Response<ProxyBody> {
    failure(refusal.status, &refusal.message)
}

/// A JSON error in the spec's shape.
pub fn failure(status: StatusCode, what: &str) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(ringlb_api::failure(
        what,
    )))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(ringlb_api::APPLICATION_JSON),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_end_to_end_ones_stay() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        headers.insert("x-request-id", HeaderValue::from_static("123456"));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut headers);
        let left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-request-id", "content-type"]);
    }

    #[test]
    fn idempotent_methods() {
        assert!(is_idempotent(&Method::GET));
        assert!(is_idempotent(&Method::PUT));
        assert!(!is_idempotent(&Method::POST));
        assert!(!is_idempotent(&Method::PATCH));
    }
}
