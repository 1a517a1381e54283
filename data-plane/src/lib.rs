//! The data plane of ringlb: a consistent-hashing HTTP proxy.
//!
//! It subscribes to the control plane's ring stream over gRPC
//! ([`subscriber`]), compiles every snapshot into a routing table swapped in
//! atomically ([`table`]), and for each request derives a key ([`key`]),
//! looks its owner up in the current table (one atomic load, one hash, one
//! array index) and forwards the request over pooled keep-alive connections,
//! failing over along the ring ([`proxy`]).
//!
//! # Embedding
//!
//! ```no_run
//! # async fn embed() -> std::io::Result<()> {
//! let data_plane = ringlb_data_plane::DataPlane::builder()
//!     .control_plane_grpc("http://127.0.0.1:50051")
//!     .control_plane_http("127.0.0.1:5100")
//!     .build()
//!     .expect("valid addresses");
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:5000").await?;
//! data_plane.run(listener, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod busy_poll;
pub mod conn;
pub mod h1;
pub mod key;
pub mod proxy;
pub mod stats;
pub mod subscriber;
pub mod table;
pub mod upstream;

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::uri::Authority;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::busy_poll::Activity;
use crate::stats::Stats;
use crate::subscriber::Subscription;
use crate::table::RouteTable;
use crate::upstream::{Pools, ReplicaPools};

/// Largest request body forwarded by default.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// How long a client gets to send a request's headers by default.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head (request line and headers) by default.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// The smallest request-head limit hyper accepts.
pub const MIN_HEADER_BYTES: usize = 8192;
/// Client connections served at once by default; more wait to be accepted.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// How long a replica gets to answer with a response head by default.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// How long open connections get to finish after shutdown starts.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How client connections are served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Engine {
    /// The data plane's own HTTP/1.1 forwarding engine ([`h1`]), which
    /// hands hyper whatever it does not handle itself.
    #[default]
    Fast,
    /// hyper for every connection (HTTP/1.1 and HTTP/2).
    Hyper,
}

impl std::str::FromStr for Engine {
    type Err = String;

    fn from_str(s: &str) -> Result<Engine, String> {
        match s {
            "fast" => Ok(Engine::Fast),
            "hyper" => Ok(Engine::Hyper),
            other => Err(format!("unknown engine '{other}' (expected fast or hyper)")),
        }
    }
}

/// State shared by every connection.
pub struct Shared {
    pub(crate) table: Arc<ArcSwapOption<RouteTable>>,
    /// The control plane's admin API.
    pub(crate) admin: ReplicaPools,
    pub(crate) limits: Limits,
    pub(crate) stats: Arc<Stats>,
    pub(crate) engine: Engine,
    pub(crate) hyper: auto::Builder<TokioExecutor>,
    /// Told of every request and response when busy polling is on.
    pub(crate) activity: Option<Arc<Activity>>,
}

impl Shared {
    /// Note a request or a response (wakes the busy-poll spinner, if any).
    #[inline]
    pub(crate) fn note_activity(&self) {
        if let Some(activity) = &self.activity {
            activity.touch();
        }
    }
}

/// What one client may cost: each limit ends only the offending request or
/// connection.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest request body forwarded (413 beyond).
    pub max_body_bytes: usize,
    /// Time to send a request head before the connection is closed (fast
    /// engine: also the longest pause within a request body).
    pub header_read_timeout: Duration,
    /// Largest request head (431 beyond); at least [`MIN_HEADER_BYTES`].
    pub max_header_bytes: usize,
    /// Client connections served at once.
    pub max_connections: usize,
    /// Time a replica gets to answer with a response head (504 beyond,
    /// after failover for idempotent requests).
    pub upstream_timeout: Duration,
    /// Time a new connection to a replica gets to be established (then the
    /// next replica is tried: nothing was sent).
    pub upstream_connect_timeout: Duration,
    /// Time a client connection may stay idle between requests (fast
    /// engine).
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
            upstream_connect_timeout: upstream::DEFAULT_CONNECT_TIMEOUT,
            idle_timeout: h1::DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// A configuration value the builder cannot use.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("the request-head limit must be at least {MIN_HEADER_BYTES} bytes, got {0}")]
    HeaderLimit(usize),
    #[error("at least one client connection must be allowed")]
    NoConnections,
    #[error("control plane HTTP address '{0}' is not host:port")]
    AdminAddress(String),
    #[error("control plane gRPC endpoint is missing")]
    MissingGrpc,
}

/// Builds a [`DataPlane`].
#[derive(Debug, Clone)]
pub struct DataPlaneBuilder {
    grpc: Option<String>,
    http: String,
    subscriber: Option<String>,
    limits: Limits,
    engine: Engine,
    busy_poll: Option<Duration>,
}

impl DataPlaneBuilder {
    /// The control plane's gRPC endpoint, e.g. `http://127.0.0.1:50051`.
    pub fn control_plane_grpc(mut self, endpoint: impl Into<String>) -> Self {
        self.grpc = Some(endpoint.into());
        self
    }

    /// The control plane's HTTP admin address (`host:port`), where `/rep`,
    /// `/add` and `/rm` are forwarded.
    pub fn control_plane_http(mut self, address: impl Into<String>) -> Self {
        self.http = address.into();
        self
    }

    /// The id this data plane reports to the control plane (default:
    /// `data-plane-<pid>-<random>`).
    pub fn subscriber_id(mut self, id: impl Into<String>) -> Self {
        self.subscriber = Some(id.into());
        self
    }

    /// Per-client limits (see [`Limits`]).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// How client connections are served (default: [`Engine::Fast`]).
    pub fn engine(mut self, engine: Engine) -> Self {
        self.engine = engine;
        self
    }

    /// Keep the runtime's thread polling for `window` after each request
    /// instead of sleeping ([`busy_poll`]); needs a current-thread runtime.
    /// Off (`None`) by default.
    pub fn busy_poll(mut self, window: Option<Duration>) -> Self {
        self.busy_poll = window.filter(|w| !w.is_zero());
        self
    }

    pub fn build(self) -> Result<DataPlane, BuildError> {
        if self.limits.max_header_bytes < MIN_HEADER_BYTES {
            return Err(BuildError::HeaderLimit(self.limits.max_header_bytes));
        }
        if self.limits.max_connections == 0 {
            return Err(BuildError::NoConnections);
        }
        let admin = self
            .http
            .parse::<Authority>()
            .map_err(|_| BuildError::AdminAddress(self.http.clone()))?;
        let endpoint = self.grpc.ok_or(BuildError::MissingGrpc)?;
        let subscriber = self.subscriber.unwrap_or_else(|| {
            format!(
                "data-plane-{}-{:04x}",
                std::process::id(),
                fastrand::u16(..)
            )
        });
        let table = Arc::new(ArcSwapOption::empty());
        let stats = Arc::new(Stats::default());
        let (applied, _) = watch::channel(0);
        let subscription = Subscription {
            endpoint,
            subscriber,
            table: table.clone(),
            stats: stats.clone(),
            pools: Arc::new(Pools::new(self.limits.upstream_connect_timeout)),
            applied,
        };
        Ok(DataPlane {
            shared: Arc::new(Shared {
                table,
                admin: ReplicaPools::new(admin, self.limits.upstream_connect_timeout),
                limits: self.limits,
                stats,
                engine: self.engine,
                hyper: hyper_server(&self.limits),
                activity: self.busy_poll.map(|window| Arc::new(Activity::new(window))),
            }),
            subscription,
        })
    }
}

/// A data plane, ready to [`run`](DataPlane::run).
pub struct DataPlane {
    shared: Arc<Shared>,
    subscription: Subscription,
}

impl DataPlane {
    pub fn builder() -> DataPlaneBuilder {
        DataPlaneBuilder {
            grpc: None,
            http: "127.0.0.1:5100".into(),
            subscriber: None,
            limits: Limits::default(),
            engine: Engine::default(),
            busy_poll: None,
        }
    }

    /// The ring version in force (0 until the first snapshot).
    pub fn applied_version(&self) -> watch::Receiver<u64> {
        self.subscription.applied.subscribe()
    }

    /// The data plane's counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.shared.stats.clone()
    }

    /// Watch the ring and proxy requests accepted on `listener` until
    /// `shutdown` resolves; then drain open connections. With busy polling
    /// on, fails at once unless called on a current-thread runtime.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let spinner = match &self.shared.activity {
            Some(activity) => {
                busy_poll::check_runtime().map_err(std::io::Error::other)?;
                Some(tokio::spawn(busy_poll::spin(activity.clone())))
            }
            None => None,
        };
        let watcher = tokio::spawn(self.subscription.run());
        let result = serve(listener, self.shared, shutdown).await;
        watcher.abort();
        if let Some(spinner) = spinner {
            spinner.abort();
        }
        result
    }
}

fn hyper_server(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes);
    http
}

async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let max_connections = shared.limits.max_connections;
    // Connections past the limit wait in the kernel's accept queue; at
    // shutdown, every permit back means every connection ended.
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let (stop, stopped) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let stopped = stopped.clone();
        tokio::spawn(async move {
            match shared.engine {
                Engine::Fast => h1::serve_connection(stream, peer.ip(), shared, stopped).await,
                Engine::Hyper => serve_with_hyper(stream, peer.ip(), shared, stopped).await,
            }
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(DRAIN_TIMEOUT, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("client connections still open after the drain timeout");
    }
    Ok(())
}

/// Serve a client connection with hyper (HTTP/1.1 or HTTP/2) until it ends;
/// once `stopped` turns true, it finishes what it has and closes.
pub(crate) async fn serve_with_hyper<I>(
    io: I,
    client: IpAddr,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http = shared.hyper.clone();
    let service = service_fn(move |req| {
        let shared = shared.clone();
        shared.note_activity();
        async move {
            let activity = shared.activity.clone();
            let response = proxy::handle(shared, client, req).await;
            if let Some(activity) = activity {
                activity.touch();
            }
            Ok::<_, Infallible>(response)
        }
    });
    let conn = http.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        if !stopping && *stopped.borrow() {
            stopping = true;
            conn.as_mut().graceful_shutdown();
        }
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
        }
    }
}
