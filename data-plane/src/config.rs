//! Every limit of the data plane and its default, once: the `data-plane`
//! binary's flags take their defaults from here, and so does
//! [`Limits::default`].

use std::time::Duration;

/// Largest request body forwarded by default, in bytes (413 beyond).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// How long a client gets to send a request head by default.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest request line (method, target, version) by default, in bytes
/// (414 beyond; RFC 9112 §3 recommends supporting at least 8000 octets).
pub const DEFAULT_MAX_REQUEST_LINE_BYTES: usize = 8 * 1024;
/// Largest header section of a request (its field lines, the request line
/// not counted) by default, in bytes (431 beyond, RFC 6585 §5).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// The smallest request-line or header-section limit accepted.
pub const MIN_HEAD_LIMIT: usize = 1024;
/// Most header fields in a request (431 beyond): hyper's default.
pub const MAX_REQUEST_HEADERS: usize = 100;
/// Largest response head accepted from a replica, in bytes (502 beyond):
/// hyper's default read buffer (8 KiB + 100 × 4 KiB).
pub const MAX_RESPONSE_HEAD_BYTES: usize = 8192 + 4096 * 100;
/// Most header fields in a replica's response (502 beyond): more than
/// hyper's default (100).
pub const MAX_RESPONSE_HEADERS: usize = 128;
/// Interim (1xx) responses forwarded for one request; a replica that sends
/// more gets a 502 (fast engine) or has the rest dropped (hyper engine).
pub const MAX_INTERIM_RESPONSES: usize = 16;
/// Client connections served at once by default; more wait to be accepted.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// How long a replica gets to answer with a response head by default.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// How long establishing a connection to a replica may take by default.
pub const DEFAULT_UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long an idle client connection stays open between requests by
/// default.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long open client connections get to finish after shutdown starts
/// (the workspace's one drain timeout).
pub const DEFAULT_DRAIN_TIMEOUT: Duration = ringlb_rt::DRAIN_TIMEOUT;
/// Replicas tried for one request: the owner and up to two more.
pub const MAX_ATTEMPTS: usize = 3;
/// Idle connections kept per upstream.
pub const MAX_IDLE_PER_UPSTREAM: usize = 1024;

/// How client connections are served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Engine {
    /// The data plane's own HTTP/1.1 forwarding engine, which hands hyper
    /// the connections it does not handle itself (HTTP/1.0, HTTP/2, chunked
    /// request bodies, upgrades, `Expect`, absolute-form targets).
    #[default]
    Fast,
    /// hyper for every connection (HTTP/1.1 and HTTP/2).
    Hyper,
}

impl Engine {
    /// The engine's name, as the `--engine` flag spells it.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Fast => "fast",
            Engine::Hyper => "hyper",
        }
    }
}

/// An `--engine` value that names no engine.
#[derive(Debug, thiserror::Error)]
#[error("unknown engine '{0}' (expected fast or hyper)")]
pub struct UnknownEngine(String);

impl std::str::FromStr for Engine {
    type Err = UnknownEngine;

    fn from_str(s: &str) -> Result<Engine, UnknownEngine> {
        match s {
            "fast" => Ok(Engine::Fast),
            "hyper" => Ok(Engine::Hyper),
            other => Err(UnknownEngine(other.to_owned())),
        }
    }
}

/// What one client may cost: each limit ends only the offending request or
/// connection.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest request body forwarded, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Time to send a request head before the connection is closed (also
    /// the longest pause within a request body, and how long a new
    /// connection may stay silent).
    pub header_read_timeout: Duration,
    /// Longest request line, in bytes (414 beyond); at least
    /// [`MIN_HEAD_LIMIT`].
    pub max_request_line_bytes: usize,
    /// Largest header section of a request, in bytes (431 beyond); at least
    /// [`MIN_HEAD_LIMIT`].
    pub max_header_bytes: usize,
    /// Client connections served at once.
    pub max_connections: usize,
    /// Time a replica gets to answer with a response head (504 beyond,
    /// after failover for idempotent requests).
    pub upstream_timeout: Duration,
    /// Time a new connection to a replica gets to be established (then the
    /// next replica is tried: nothing was sent).
    pub upstream_connect_timeout: Duration,
    /// Time a client connection may stay idle between requests.
    pub idle_timeout: Duration,
    /// Time open client connections get to finish once shutdown starts.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_request_line_bytes: DEFAULT_MAX_REQUEST_LINE_BYTES,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
            upstream_connect_timeout: DEFAULT_UPSTREAM_CONNECT_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        }
    }
}

impl Limits {
    /// The most bytes a request head may take: both limits, their line ends.
    pub fn max_head_bytes(&self) -> usize {
        self.max_request_line_bytes + 2 + self.max_header_bytes + 2
    }
}
