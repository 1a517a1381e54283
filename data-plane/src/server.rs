//! The data plane as a server: its builder, the state every connection
//! shares, and the accept loop (connection limit, drain at shutdown).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::uri::Authority;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::access_log::AccessLog;
use crate::busy_poll::{self, Activity};
use crate::config::{Engine, Limits, MIN_HEAD_LIMIT};
use crate::engine;
use crate::pool::{Pools, ReplicaPools};
use crate::stats::Stats;
use crate::subscriber::Subscription;
use crate::table::RouteTable;

/// The control plane's HTTP admin address by default.
pub const DEFAULT_CONTROL_PLANE_HTTP: &str = "127.0.0.1:5100";
/// The control plane's gRPC endpoint by default.
pub const DEFAULT_CONTROL_PLANE_GRPC: &str = "http://127.0.0.1:50051";

/// State shared by every connection.
pub(crate) struct Shared {
    pub(crate) table: Arc<ArcSwapOption<RouteTable>>,
    /// The control plane's admin API.
    pub(crate) admin: ReplicaPools,
    pub(crate) limits: Limits,
    pub(crate) stats: Arc<Stats>,
    pub(crate) engine: Engine,
    pub(crate) hyper: engine::hyper::Server,
    /// Told of every request and response when busy polling is on.
    pub(crate) activity: Option<Arc<Activity>>,
    /// Where the driver writes a line per request, when on.
    pub(crate) access_log: Option<Arc<AccessLog>>,
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

/// A configuration value the builder cannot use.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("the request-line and header-section limits must be at least {MIN_HEAD_LIMIT} bytes")]
    HeadLimit,
    #[error("at least one client connection must be allowed")]
    NoConnections,
    #[error("control plane HTTP address '{0}' is not host:port")]
    AdminAddress(String),
}

/// Builds a [`DataPlane`].
#[derive(Debug, Clone)]
pub struct DataPlaneBuilder {
    grpc: String,
    http: String,
    subscriber: Option<String>,
    limits: Limits,
    engine: Engine,
    busy_poll: Option<Duration>,
    access_log: Option<Arc<AccessLog>>,
}

impl DataPlaneBuilder {
    /// The control plane's gRPC endpoint (default
    /// [`DEFAULT_CONTROL_PLANE_GRPC`]).
    pub fn control_plane_grpc(mut self, endpoint: impl Into<String>) -> Self {
        self.grpc = endpoint.into();
        self
    }

    /// The control plane's HTTP admin address (`host:port`, default
    /// [`DEFAULT_CONTROL_PLANE_HTTP`]), where `/rep`, `/add` and `/rm` are
    /// forwarded.
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
    /// Off (`None` or zero) by default.
    pub fn busy_poll(mut self, window: Option<Duration>) -> Self {
        self.busy_poll = window.filter(|w| !w.is_zero());
        self
    }

    /// Write a line per request to `log` ([`crate::access_log`]); off
    /// (`None`) by default.
    pub fn access_log(mut self, log: Option<Arc<AccessLog>>) -> Self {
        self.access_log = log;
        self
    }

    /// # Errors
    /// A [`BuildError`] for a limit or an address it cannot use.
    pub fn build(self) -> Result<DataPlane, BuildError> {
        let limits = self.limits;
        if limits.max_header_bytes < MIN_HEAD_LIMIT
            || limits.max_request_line_bytes < MIN_HEAD_LIMIT
        {
            return Err(BuildError::HeadLimit);
        }
        if limits.max_connections == 0 {
            return Err(BuildError::NoConnections);
        }
        let admin = self
            .http
            .parse::<Authority>()
            .map_err(|_| BuildError::AdminAddress(self.http.clone()))?;
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
            endpoint: self.grpc,
            subscriber,
            table: table.clone(),
            stats: stats.clone(),
            pools: Arc::new(Pools::new(limits.upstream_connect_timeout)),
            applied,
        };
        Ok(DataPlane {
            shared: Arc::new(Shared {
                table,
                admin: ReplicaPools::new(admin, limits.upstream_connect_timeout),
                limits,
                stats,
                engine: self.engine,
                hyper: engine::hyper::Server::new(&limits),
                activity: self.busy_poll.map(|window| Arc::new(Activity::new(window))),
                access_log: self.access_log,
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
            grpc: DEFAULT_CONTROL_PLANE_GRPC.into(),
            http: DEFAULT_CONTROL_PLANE_HTTP.into(),
            subscriber: None,
            limits: Limits::default(),
            engine: Engine::default(),
            busy_poll: None,
            access_log: None,
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
    /// `shutdown` resolves; then drain open connections (at most
    /// [`Limits::drain_timeout`]).
    ///
    /// # Errors
    /// With busy polling on, at once unless called on a current-thread
    /// runtime.
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
        let reporter = tokio::spawn(crate::report::run(
            self.subscription.endpoint.clone(),
            self.subscription.subscriber.clone(),
            self.shared.stats.clone(),
        ));
        let watcher = tokio::spawn(self.subscription.run());
        serve(listener, self.shared, shutdown).await;
        watcher.abort();
        reporter.abort();
        if let Some(spinner) = spinner {
            spinner.abort();
        }
        Ok(())
    }
}

/// Accept connections (at most `max_connections` at once; more wait in the
/// kernel's accept queue) and serve each on its own task with the chosen
/// engine; at shutdown stop accepting and wait for the open ones.
async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: impl Future<Output = ()>) {
    let max_connections = shared.limits.max_connections;
    // At shutdown, every permit back means every connection ended.
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
            accepted = ringlb_rt::accept(&listener) => accepted,
            () = &mut shutdown => break,
        };
        let shared = shared.clone();
        let stopped = stopped.clone();
        tokio::spawn(async move {
            match shared.engine {
                Engine::Fast => {
                    engine::fast::serve_connection(stream, peer.ip(), shared, stopped).await;
                }
                Engine::Hyper => {
                    engine::hyper::serve_connection(stream, peer.ip(), shared, stopped).await;
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    let drain = shared.limits.drain_timeout;
    if tokio::time::timeout(drain, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            ?drain,
            "client connections still open after the drain timeout"
        );
    }
}
