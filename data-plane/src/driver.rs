//! The request path's policy, once for both engines: which upstream a
//! request goes to, how long it may take, when it is sent again, and what
//! the client is told when it cannot be served.
//!
//! An engine parses the request, then hands the driver an [`Exchange`]: a
//! way to perform one attempt (send the request to one upstream and read
//! its response head). The driver loads the routing table, answers 503 on
//! an empty ring, walks the key's owner and its successors (at most
//! [`MAX_ATTEMPTS`]), times each attempt, decides from the [`AttemptError`]
//! whether the next replica may be tried, counts, and returns the
//! [`Outcome`]: a response head to forward, or a [`Refusal`] to answer
//! with. Admin paths go to the control plane, once, untimed. Modelled on
//! pingora-proxy's single retry loop.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use http::StatusCode;
use http::uri::Authority;
use tracing::Instrument;

use crate::access_log::{AccessLog, CLIENT_CLOSED_STATUS, Entry, Line, PendingLine};
use crate::balance;
use crate::completion::Completion;
use crate::config::MAX_ATTEMPTS;
use crate::error::{AttemptError, Chain, Side};
use crate::pool::ReplicaPools;
use crate::rules::Violation;
use crate::server::Shared;

/// What the data plane answers itself when a request cannot be served: a
/// status and the message of the spec's JSON error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
    /// Whether the client connection must close after the answer (the
    /// request's framing cannot be trusted).
    pub close: bool,
}

impl Refusal {
    fn new(status: StatusCode, message: String) -> Refusal {
        Refusal {
            status,
            message,
            close: false,
        }
    }

    /// No replica on the ring (503).
    pub fn no_replicas() -> Refusal {
        Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "No server replicas available".into(),
        )
    }

    /// The replica answered 404 for `path` (the spec's 400).
    pub fn not_served(path: &str) -> Refusal {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("'{path}' endpoint does not exist in server replicas"),
        )
    }

    /// A request the data plane will not forward; the connection closes,
    /// since what follows the request cannot be trusted.
    pub fn violation(violation: &Violation) -> Refusal {
        Refusal {
            status: violation.status(),
            message: violation.to_string(),
            close: true,
        }
    }

    /// A request line over the limit (414, RFC 9112 §3).
    pub fn line_too_long(limit: usize) -> Refusal {
        Refusal {
            status: StatusCode::URI_TOO_LONG,
            message: format!("Request line longer than {limit} bytes"),
            close: true,
        }
    }

    /// A header section over the limit (431, RFC 6585 §5).
    pub fn headers_too_large(limit: usize) -> Refusal {
        Refusal {
            status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            message: format!(
                "Request header section larger than {limit} bytes or with more than {} fields",
                crate::config::MAX_REQUEST_HEADERS
            ),
            close: true,
        }
    }

    /// A request body over the limit (413).
    pub fn body_too_large(limit: usize) -> Refusal {
        Refusal {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!("Request body is larger than {limit} bytes"),
            close: true,
        }
    }

    /// A request body that paused longer than `stall` (408, RFC 9110
    /// §15.5.9).
    pub fn body_stalled(stall: std::time::Duration) -> Refusal {
        Refusal {
            status: StatusCode::REQUEST_TIMEOUT,
            message: format!("The request body paused for more than {stall:?}"),
            close: true,
        }
    }

    /// A request body that could not be read (400).
    pub fn unreadable_body(error: &(dyn std::error::Error + 'static)) -> Refusal {
        Refusal {
            status: StatusCode::BAD_REQUEST,
            message: format!("Cannot read the request body: {}", Chain(error)),
            close: true,
        }
    }

    /// An admin request could not be forwarded (502).
    fn control_plane_unreachable(control_plane: &Authority, error: &AttemptError) -> Refusal {
        tracing::warn!(%control_plane, error = %Chain(error), "admin request failed");
        Refusal::new(
            StatusCode::BAD_GATEWAY,
            format!(
                "Control plane is unreachable at {control_plane}: {}",
                Chain(error)
            ),
        )
    }

    /// The attempt on replica `name` failed with `error`, which may not be
    /// retried: 504 for a timeout, else 502.
    fn replica_failed(name: &str, error: &AttemptError) -> Refusal {
        match error {
            AttemptError::Timeout { after, .. } => Refusal::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!("Server replica '{name}' did not answer within {after:?}"),
            ),
            AttemptError::InvalidResponse { .. } => Refusal::new(
                StatusCode::BAD_GATEWAY,
                format!(
                    "Server replica '{name}' sent a response that cannot be forwarded: {}",
                    Chain(error)
                ),
            ),
            _ => Refusal::new(
                StatusCode::BAD_GATEWAY,
                format!(
                    "Server replica '{name}' failed the request: {}",
                    Chain(error)
                ),
            ),
        }
    }

    /// Every replica tried failed (502).
    fn exhausted(tried: &[&str]) -> Refusal {
        Refusal::new(
            StatusCode::BAD_GATEWAY,
            format!(
                "No server replica could be reached (tried {})",
                tried.join(", ")
            ),
        )
    }
}

/// One engine's way to perform an attempt.
pub(crate) trait Exchange {
    /// A response head read from an upstream, with what it takes to forward
    /// its body.
    type Answer;

    /// The answer's status code.
    fn status(answer: &Self::Answer) -> u16;

    /// Send the request to the upstream of `pools` and read its final
    /// response head (forwarding any 1xx to the client on the way).
    async fn attempt(&mut self, pools: &ReplicaPools) -> Result<Self::Answer, AttemptError>;

    /// The answer's [`Completion`], which the engine keeps until the
    /// response has been forwarded whole: the body relayed to its end (or
    /// the relay stopped), or a protocol-switch tunnel closed.
    fn completion(answer: &mut Self::Answer) -> &mut Completion;
}

/// What the driver needs to know of a request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestInfo<'r> {
    /// The target's path, without the query.
    pub path: &'r str,
    /// The first `X-Request-ID` value.
    pub request_id: Option<&'r [u8]>,
    /// RFC 9110 §9.2.2.
    pub idempotent: bool,
    /// `/rep`, `/add`, `/rm`: for the control plane.
    pub admin: bool,
    /// The request line, for the access log.
    pub line: Line<'r>,
}

/// What the route taken was, for the access log.
#[derive(Debug, Default)]
struct Trace {
    key: Option<u64>,
    replica: Option<String>,
    attempts: usize,
}

/// What to answer a request with.
pub(crate) enum Outcome<A> {
    /// Forward this response.
    Forward(A),
    /// Answer with this refusal; the upstream's response, if there was one,
    /// is to be discarded.
    Refuse(Refusal, Option<A>),
    /// The client is gone: close its connection.
    Abort(AttemptError),
}

/// Serve one request: the control plane for admin paths, else the key's
/// replica with failover along the ring.
pub(crate) async fn drive<E: Exchange>(
    shared: &Shared,
    client: IpAddr,
    request: RequestInfo<'_>,
    exchange: &mut E,
) -> Outcome<E::Answer> {
    let span = tracing::debug_span!(
        "request",
        engine = shared.engine.name(),
        path = request.path,
        key = tracing::field::Empty,
        replica = tracing::field::Empty,
        attempt = tracing::field::Empty,
    );
    // With the access log off, this branch (and one per attempt in
    // `route`) is all the log costs: no clock read, no allocation.
    let Some(log) = shared.access_log.as_ref() else {
        return serve(shared, client, request, exchange, None)
            .instrument(span)
            .await;
    };
    logged(shared, log, client, request, exchange)
        .instrument(span)
        .await
}

async fn serve<E: Exchange>(
    shared: &Shared,
    client: IpAddr,
    request: RequestInfo<'_>,
    exchange: &mut E,
    trace: Option<&mut Trace>,
) -> Outcome<E::Answer> {
    if request.admin {
        shared.stats.admin.fetch_add(1, Ordering::Relaxed);
        return admin(shared, exchange).await;
    }
    route(shared, client, request, exchange, trace).await
}

/// [`serve`], then one access log line: now for an answer of the data
/// plane's own, when the response is over for a forwarded one.
async fn logged<E: Exchange>(
    shared: &Shared,
    log: &Arc<AccessLog>,
    client: IpAddr,
    request: RequestInfo<'_>,
    exchange: &mut E,
) -> Outcome<E::Answer> {
    let at = SystemTime::now();
    let started = Instant::now();
    let mut trace = Trace::default();
    // hyper drops a request's future when its client goes away mid-request:
    // the line is then written here, as 499.
    let mut unfinished = Unfinished {
        log,
        shared,
        entry: Entry {
            at,
            client,
            line: request.line,
            status: CLIENT_CLOSED_STATUS,
            bytes: None,
            duration: Duration::ZERO,
            replica: None,
            attempts: 0,
            key: None,
        },
        started,
        armed: true,
    };
    let mut outcome = serve(shared, client, request, exchange, Some(&mut trace)).await;
    unfinished.armed = false;
    let (status, bytes) = match &outcome {
        Outcome::Forward(answer) => (E::status(answer), None),
        Outcome::Refuse(refusal, _) => (
            refusal.status.as_u16(),
            Some(if request.line.is_head() {
                0
            } else {
                ringlb_api::failure(&refusal.message).len() as u64
            }),
        ),
        Outcome::Abort(_) => (CLIENT_CLOSED_STATUS, None),
    };
    let entry = Entry {
        status,
        bytes,
        duration: started.elapsed(),
        replica: trace.replica.as_deref(),
        attempts: trace.attempts,
        key: trace.key,
        ..unfinished.entry
    };
    match &mut outcome {
        Outcome::Forward(answer) => E::completion(answer).log_when_done(PendingLine::new(
            log.clone(),
            shared.stats.clone(),
            &entry,
            started,
        )),
        _ => log.record(&shared.stats, &entry),
    }
    outcome
}

/// The access log line of a request whose future may be dropped before the
/// driver finishes it: `entry` (status 499) is written on drop while
/// `armed`.
struct Unfinished<'a, 'r> {
    log: &'a AccessLog,
    shared: &'a Shared,
    entry: Entry<'r>,
    started: Instant,
    armed: bool,
}

impl Drop for Unfinished<'_, '_> {
    fn drop(&mut self) {
        if self.armed {
            self.entry.duration = self.started.elapsed();
            self.log.record(&self.shared.stats, &self.entry);
        }
    }
}

/// `/rep`, `/add`, `/rm`: to the control plane, once and untimed (an `/add`
/// waits for new replicas and for every data plane).
async fn admin<E: Exchange>(shared: &Shared, exchange: &mut E) -> Outcome<E::Answer> {
    let control_plane = shared.admin.pools();
    match exchange.attempt(control_plane).await {
        Ok(answer) => Outcome::Forward(answer),
        Err(e) if e.side() == Side::Client => Outcome::Abort(e),
        Err(e) => Outcome::Refuse(
            Refusal::control_plane_unreachable(control_plane.authority(), &e),
            None,
        ),
    }
}

async fn route<E: Exchange>(
    shared: &Shared,
    client: IpAddr,
    request: RequestInfo<'_>,
    exchange: &mut E,
    mut trace: Option<&mut Trace>,
) -> Outcome<E::Answer> {
    let stats = &shared.stats;
    let Some(table) = shared.table.load_full().filter(|t| !t.ring.is_empty()) else {
        stats.no_replica.fetch_add(1, Ordering::Relaxed);
        return Outcome::Refuse(Refusal::no_replicas(), None);
    };
    let key = crate::key::key_of(table.key_source, request.path, request.request_id, client);
    let span = tracing::Span::current();
    span.record("key", key);
    if let Some(trace) = trace.as_deref_mut() {
        trace.key = Some(key);
    }
    let timeout = shared.limits.upstream_timeout;
    let arrived = Instant::now();
    let mut tried = [""; MAX_ATTEMPTS];
    let mut count = 0;
    for (attempt, member) in balance::attempts(&table, key, stats).iter().enumerate() {
        let upstream = &table.upstreams[member];
        span.record("replica", upstream.name.as_str());
        span.record("attempt", attempt);
        if attempt > 0 {
            stats.retries.fetch_add(1, Ordering::Relaxed);
        }
        tried[attempt] = &upstream.name;
        count = attempt + 1;
        if let Some(trace) = trace.as_deref_mut() {
            trace.replica = Some(upstream.name.clone());
            trace.attempts = count;
        }
        upstream.stats.requests.fetch_add(1, Ordering::Relaxed);
        let in_flight = balance::InFlight::start(&upstream.stats);
        let pools = upstream.pools(shared.worker);
        let result = match tokio::time::timeout(timeout, exchange.attempt(pools)).await {
            Ok(result) => result,
            Err(_) => Err(AttemptError::Timeout {
                authority: pools.authority().clone(),
                after: timeout,
            }),
        };
        let error = match result {
            Ok(mut answer) => {
                upstream.stats.latency.observe(arrived.elapsed());
                balance::record(&table, member, E::status(&answer) >= 500, stats);
                if E::status(&answer) == 404 {
                    return Outcome::Refuse(Refusal::not_served(request.path), Some(answer));
                }
                E::completion(&mut answer).count_in_flight(in_flight);
                return Outcome::Forward(answer);
            }
            Err(error) => error,
        };
        drop(in_flight);
        if error.side() == Side::Client {
            tracing::debug!(error = %Chain(&error), "client gone during the attempt");
            return Outcome::Abort(error);
        }
        upstream.stats.errors.fetch_add(1, Ordering::Relaxed);
        balance::record(&table, member, true, stats);
        if error.retryable(request.idempotent) {
            tracing::debug!(error = %Chain(&error), "attempt failed; trying the next replica");
            continue;
        }
        tracing::warn!(replica = %upstream.name, error = %Chain(&error), "attempt failed; not retried");
        stats.unreachable.fetch_add(1, Ordering::Relaxed);
        return Outcome::Refuse(Refusal::replica_failed(&upstream.name, &error), None);
    }
    stats.unreachable.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(tried = %tried[..count].join(", "), "no replica reachable");
    Outcome::Refuse(Refusal::exhausted(&tried[..count]), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_say_what_happened() {
        let authority = Authority::from_static("127.0.0.1:9");
        let timeout = AttemptError::Timeout {
            authority: authority.clone(),
            after: std::time::Duration::from_secs(2),
        };
        let refusal = Refusal::replica_failed("server-1", &timeout);
        assert_eq!(refusal.status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            refusal.message,
            "Server replica 'server-1' did not answer within 2s"
        );
        let invalid = AttemptError::InvalidResponse {
            authority,
            source: "invalid Content-Length".into(),
        };
        let refusal = Refusal::replica_failed("server-2", &invalid);
        assert_eq!(refusal.status, StatusCode::BAD_GATEWAY);
        assert!(
            refusal.message.contains("'server-2'"),
            "{}",
            refusal.message
        );
        assert!(refusal.message.ends_with("invalid Content-Length"));
        assert_eq!(
            Refusal::exhausted(&["a", "b"]).message,
            "No server replica could be reached (tried a, b)"
        );
        assert!(Refusal::violation(&Violation::NoHost).close);
        assert_eq!(
            Refusal::violation(&Violation::Connect).status,
            StatusCode::NOT_IMPLEMENTED
        );
    }
}
