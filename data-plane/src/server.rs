//! The data plane as a server: its builder, the state every connection
//! shares, and the accept loop (connection limit, drain at shutdown), on
//! the caller's runtime ([`DataPlane::run`]) or on several single-threaded
//! runtimes, one per listener ([`DataPlane::run_workers`]).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::uri::Authority;
use ringlb_proto::RingVersion;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tonic::transport::Endpoint;

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

/// Where admin requests go: the HTTP admin API of the control plane whose
/// ring is in force (one address per gRPC endpoint, paired by position), or
/// the one address given for all of them.
pub(crate) struct Admin {
    /// One per HTTP address, this worker's connections.
    pools: Vec<ReplicaPools>,
    /// Index of the control plane that delivered the ring in force.
    current: Arc<AtomicUsize>,
}

impl Admin {
    /// The pools of the control plane to forward an admin request to.
    pub(crate) fn pools(&self) -> &ReplicaPools {
        let current = self.current.load(Ordering::Relaxed);
        let last = self.pools.len().saturating_sub(1);
        &self.pools[current.min(last)]
    }
}

/// State shared by every connection of one worker (one runtime).
pub(crate) struct Shared {
    pub(crate) table: Arc<ArcSwapOption<RouteTable>>,
    /// Which worker this is: the index of its connection pools in every
    /// routing-table entry.
    pub(crate) worker: usize,
    /// The control plane's admin API.
    pub(crate) admin: Admin,
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
    #[error("no control plane gRPC endpoint given")]
    NoControlPlane,
    #[error("control plane gRPC endpoint '{endpoint}' is not a URI")]
    GrpcEndpoint {
        endpoint: String,
        source: tonic::transport::Error,
    },
    #[error(
        "{http} control plane HTTP addresses for {grpc} gRPC endpoints: give one, or one per \
         gRPC endpoint in the same order"
    )]
    AdminCount { http: usize, grpc: usize },
}

/// Builds a [`DataPlane`].
#[derive(Debug, Clone)]
pub struct DataPlaneBuilder {
    grpc: Vec<String>,
    http: Vec<String>,
    subscriber: Option<String>,
    limits: Limits,
    engine: Engine,
    busy_poll: Option<Duration>,
    access_log: Option<Arc<AccessLog>>,
    bearer: crate::auth::Bearer,
}

impl DataPlaneBuilder {
    /// The control plane's gRPC endpoint, a URI such as
    /// `http://127.0.0.1:50051` (default [`DEFAULT_CONTROL_PLANE_GRPC`]).
    pub fn control_plane_grpc(mut self, endpoint: impl Into<String>) -> Self {
        self.grpc = vec![endpoint.into()];
        self
    }

    /// Several control planes' gRPC endpoints: the data plane follows one
    /// at a time and moves to the next (cycling) when it fails, the way
    /// Envoy cycles through an `ApiConfigSource`'s `grpc_services`. Ring
    /// snapshots are ordered by (epoch, version) across all of them.
    pub fn control_planes_grpc<S: Into<String>>(
        mut self,
        endpoints: impl IntoIterator<Item = S>,
    ) -> Self {
        self.grpc = endpoints.into_iter().map(Into::into).collect();
        self
    }

    /// The control plane's HTTP admin address (`host:port`, default
    /// [`DEFAULT_CONTROL_PLANE_HTTP`]), where `/rep`, `/add` and `/rm` are
    /// forwarded.
    pub fn control_plane_http(mut self, address: impl Into<String>) -> Self {
        self.http = vec![address.into()];
        self
    }

    /// The HTTP admin addresses of several control planes: one per gRPC
    /// endpoint, in the same order (admin requests then go to the control
    /// plane whose ring is in force), or a single one for all.
    pub fn control_planes_http<S: Into<String>>(
        mut self,
        addresses: impl IntoIterator<Item = S>,
    ) -> Self {
        self.http = addresses.into_iter().map(Into::into).collect();
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

    /// The control plane's admin token, sent with the data plane's own
    /// calls (subscription, acknowledgements, load reports); a control
    /// plane started with `--admin-token` refuses them without it.
    ///
    /// # Errors
    /// [`InvalidToken`](crate::auth::InvalidToken) for a token that is not
    /// visible ASCII.
    pub fn admin_token(mut self, token: Option<&str>) -> Result<Self, crate::auth::InvalidToken> {
        self.bearer = crate::auth::Bearer::new(token)?;
        Ok(self)
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
        if self.grpc.is_empty() {
            return Err(BuildError::NoControlPlane);
        }
        if self.http.len() != 1 && self.http.len() != self.grpc.len() {
            return Err(BuildError::AdminCount {
                http: self.http.len(),
                grpc: self.grpc.len(),
            });
        }
        let admin = self
            .http
            .iter()
            .map(|http| {
                http.parse::<Authority>()
                    .map_err(|_| BuildError::AdminAddress(http.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let endpoints = self
            .grpc
            .iter()
            .map(|endpoint| {
                Endpoint::from_shared(endpoint.clone()).map_err(|source| BuildError::GrpcEndpoint {
                    endpoint: endpoint.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let subscriber = self.subscriber.unwrap_or_else(|| {
            format!(
                "data-plane-{}-{:04x}",
                std::process::id(),
                fastrand::u16(..)
            )
        });
        let table = Arc::new(ArcSwapOption::empty());
        let stats = Arc::new(Stats::default());
        let (applied, _) = watch::channel(RingVersion::default());
        let current = Arc::new(AtomicUsize::new(0));
        let subscription = Subscription {
            endpoints,
            subscriber,
            table: table.clone(),
            stats: stats.clone(),
            pools: Arc::new(Pools::new(limits.upstream_connect_timeout, 1)),
            applied,
            draining: Default::default(),
            current: current.clone(),
            bearer: self.bearer,
        };
        Ok(DataPlane {
            parts: Parts {
                table,
                admin,
                current,
                limits,
                stats,
                engine: self.engine,
                busy_poll: self.busy_poll,
                access_log: self.access_log,
            },
            subscription,
        })
    }
}

/// What each worker's [`Shared`] is made of: the routing table, counters
/// and settings common to all, connections and busy polling per worker.
struct Parts {
    table: Arc<ArcSwapOption<RouteTable>>,
    admin: Vec<Authority>,
    current: Arc<AtomicUsize>,
    limits: Limits,
    stats: Arc<Stats>,
    engine: Engine,
    busy_poll: Option<Duration>,
    access_log: Option<Arc<AccessLog>>,
}

impl Parts {
    fn shared(&self, worker: usize) -> Arc<Shared> {
        let timeout = self.limits.upstream_connect_timeout;
        Arc::new(Shared {
            table: self.table.clone(),
            worker,
            admin: Admin {
                pools: self
                    .admin
                    .iter()
                    .map(|authority| ReplicaPools::new(authority.clone(), timeout))
                    .collect(),
                current: self.current.clone(),
            },
            limits: self.limits,
            stats: self.stats.clone(),
            engine: self.engine,
            hyper: engine::hyper::Server::new(&self.limits),
            activity: self.busy_poll.map(|window| Arc::new(Activity::new(window))),
            access_log: self.access_log.clone(),
        })
    }
}

/// A data plane, ready to [`run`](DataPlane::run) on the caller's runtime
/// or [`run_workers`](DataPlane::run_workers) on runtimes of its own.
pub struct DataPlane {
    parts: Parts,
    subscription: Subscription,
}

impl DataPlane {
    /// A builder with every default: one control plane at
    /// [`DEFAULT_CONTROL_PLANE_GRPC`] and [`DEFAULT_CONTROL_PLANE_HTTP`],
    /// [`Limits::default`], the fast engine, no busy polling.
    pub fn builder() -> DataPlaneBuilder {
        DataPlaneBuilder {
            grpc: vec![DEFAULT_CONTROL_PLANE_GRPC.into()],
            http: vec![DEFAULT_CONTROL_PLANE_HTTP.into()],
            subscriber: None,
            limits: Limits::default(),
            engine: Engine::default(),
            busy_poll: None,
            access_log: None,
            bearer: crate::auth::Bearer::default(),
        }
    }

    /// The ring in force: its (epoch, version), 0.0 until the first
    /// snapshot.
    pub fn applied_ring(&self) -> watch::Receiver<RingVersion> {
        self.subscription.applied.subscribe()
    }

    /// The data plane's counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.parts.stats.clone()
    }

    /// The load reports for the control plane's ring page.
    fn reporter(&self) -> impl Future<Output = ()> + use<> {
        crate::report::run(
            self.subscription.endpoints.clone(),
            self.subscription.current.clone(),
            self.subscription.bearer.clone(),
            self.subscription.subscriber.clone(),
            self.parts.stats.clone(),
        )
    }

    /// Watch the ring and proxy requests accepted on `listener` until
    /// `shutdown` resolves; then drain open connections (at most
    /// [`Limits::drain_timeout`]). Everything runs on the caller's runtime.
    ///
    /// # Errors
    /// With busy polling on, at once unless called on a current-thread
    /// runtime.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let shared = self.parts.shared(0);
        let spinner = match &shared.activity {
            Some(activity) => {
                busy_poll::check_runtime().map_err(std::io::Error::other)?;
                Some(tokio::spawn(busy_poll::spin(activity.clone())))
            }
            None => None,
        };
        let reporter = tokio::spawn(self.reporter());
        let watcher = tokio::spawn(self.subscription.run());
        let limits = self.parts.limits;
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let (stop, stopped) = watch::channel(false);
        accept_loop(listener, shared, slots.clone(), stopped, shutdown).await;
        let _ = stop.send(true);
        drain(&slots, &limits).await;
        watcher.abort();
        reporter.abort();
        if let Some(spinner) = spinner {
            spinner.abort();
        }
        Ok(())
    }

    /// Serve with one worker per listener, each on a thread of its own
    /// running a single-threaded (current-thread) runtime, until `shutdown`
    /// resolves; then drain as [`run`](DataPlane::run) does.
    ///
    /// The listeners are meant to share one address with `SO_REUSEPORT`
    /// ([`ringlb_rt::listen_many`]), so that the kernel spreads connections
    /// over the workers; a worker serves every connection it accepts to its
    /// end (no work stealing, no cross-thread wake-ups on the request path).
    /// This is Envoy's worker model (`--concurrency`, a listener per worker
    /// with `enable_reuse_port`) and nginx's `reuseport`. What the workers
    /// share: the one ring subscription (run on the caller's runtime), the
    /// routing table (a lock-free snapshot), the counters, and the
    /// connection limit: at most [`Limits::max_connections`] client
    /// connections across all workers together. Each worker has its own
    /// connections to replicas and control plane, and with busy polling
    /// its own spinner.
    ///
    /// # Errors
    /// `InvalidInput` without a listener; a worker whose thread or runtime
    /// cannot be started, or whose listener cannot join its runtime (then
    /// the others stop too).
    pub async fn run_workers(
        mut self,
        listeners: Vec<std::net::TcpListener>,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        if listeners.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "no listener to serve",
            ));
        }
        let limits = self.parts.limits;
        self.subscription.pools =
            Arc::new(Pools::new(limits.upstream_connect_timeout, listeners.len()));
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let (stop, stopped) = watch::channel(false);
        // Each worker reports once, when its runtime is done.
        let (done, mut finished) = mpsc::unbounded_channel::<std::io::Result<()>>();
        let mut started = 0;
        let mut failure = None;
        for (worker, listener) in listeners.into_iter().enumerate() {
            let spawned = spawn_worker(
                worker,
                listener,
                self.parts.shared(worker),
                slots.clone(),
                stopped.clone(),
                done.clone(),
            );
            match spawned {
                Ok(()) => started += 1,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        drop(done);
        let reporter = tokio::spawn(self.reporter());
        let watcher = tokio::spawn(self.subscription.run());
        if failure.is_none() {
            tokio::select! {
                () = shutdown => {}
                Some(result) = finished.recv() => {
                    started -= 1;
                    failure = result.err().or_else(|| Some(std::io::Error::other("a worker stopped")));
                }
            }
        }
        let _ = stop.send(true);
        for _ in 0..started {
            match finished.recv().await {
                Some(Err(e)) if failure.is_none() => failure = Some(e),
                Some(_) => {}
                None => break,
            }
        }
        watcher.abort();
        reporter.abort();
        failure.map_or(Ok(()), Err)
    }
}

/// Start worker `worker` on a thread of its own: a current-thread runtime
/// serving `listener` until `stopped` turns true, then draining; it sends
/// its outcome on `done` when its runtime is gone.
///
/// # Errors
/// The runtime or the thread could not be created.
fn spawn_worker(
    worker: usize,
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    slots: Arc<Semaphore>,
    stopped: watch::Receiver<bool>,
    done: mpsc::UnboundedSender<std::io::Result<()>>,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name(format!("ringlb-worker-{worker}"))
        .spawn(move || {
            let limits = shared.limits;
            let served = runtime.block_on(async move {
                let listener = TcpListener::from_std(listener)?;
                let spinner = shared
                    .activity
                    .clone()
                    .map(|activity| tokio::spawn(busy_poll::spin(activity)));
                let shutdown = {
                    let mut stopped = stopped.clone();
                    async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    }
                };
                accept_loop(listener, shared, slots.clone(), stopped, shutdown).await;
                // Stay up while the connections on this runtime finish.
                drain(&slots, &limits).await;
                if let Some(spinner) = spinner {
                    spinner.abort();
                }
                Ok(())
            });
            drop(runtime);
            let _ = done.send(served);
        })?;
    Ok(())
}

/// Accept connections and serve each on its own task with the chosen
/// engine, until `shutdown` resolves; connections are told to finish
/// through `stopped`. A connection is served once it holds a slot of the
/// connection limit (`slots`, shared by every worker). A worker takes its
/// slot after accepting, not before: a slot that frees then goes to a
/// worker that has a connection waiting for it, never to one idle in
/// `accept` while a connection waits in another worker's queue. So past
/// the limit each worker holds at most one accepted connection, unserved
/// until a slot frees, and the rest wait in its listener's accept queue.
async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    slots: Arc<Semaphore>,
    stopped: watch::Receiver<bool>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = ringlb_rt::accept(&listener) => accepted,
            () = &mut shutdown => break,
        };
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
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
}

/// Wait until every slot of `slots` is back, i.e. every client connection
/// (of every worker) ended, for at most [`Limits::drain_timeout`].
async fn drain(slots: &Semaphore, limits: &Limits) {
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let drain = limits.drain_timeout;
    match tokio::time::timeout(drain, slots.acquire_many(all)).await {
        // Given back at once: another worker may be waiting for them too.
        Ok(permits) => drop(permits),
        Err(_) => tracing::warn!(
            ?drain,
            "client connections still open after the drain timeout"
        ),
    }
}
