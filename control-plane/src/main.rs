//! `control-plane`: owns the replicas and the ring; serves the admin HTTP API
//! and the gRPC API that data planes watch.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use ringlb_control_plane::Options;
use ringlb_control_plane::auth::AdminToken;
use ringlb_control_plane::backend::Backend;
use ringlb_control_plane::backend::docker::{self, DockerBackend, DockerSettings};
use ringlb_control_plane::backend::process::ProcessBackend;
use ringlb_control_plane::backend::swarm::{self, SwarmBackend, SwarmSettings};
use ringlb_control_plane::health::{self, CheckerSettings, Prober};
use ringlb_control_plane::manager::{self, Manager, ManagerSettings};
use ringlb_ring::{HashFn, KeySource, Probing, RingConfig};

/// Where replicas run.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum BackendKind {
    /// Child processes on loopback.
    Process,
    /// Containers through the Docker Engine API.
    Docker,
    /// Docker Swarm services, one per replica (the engine must be a swarm
    /// manager; the control plane must run on the overlay network).
    Swarm,
}

/// The ringlb control plane: starts and heals the replicas, keeps the
/// authoritative consistent-hash ring and streams it to data planes.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address of the HTTP admin API (/rep, /add, /rm, /config). Loopback by
    /// default; use 0.0.0.0:5100 to expose it.
    #[arg(long, env = "RINGLB_HTTP_LISTEN", default_value = ringlb_control_plane::DEFAULT_HTTP_LISTEN)]
    http_listen: SocketAddr,

    /// Address of the gRPC API that data planes and grpcurl use.
    #[arg(long, env = "RINGLB_GRPC_LISTEN", default_value = ringlb_control_plane::DEFAULT_GRPC_LISTEN)]
    grpc_listen: SocketAddr,

    /// Address of the Prometheus /metrics endpoint, with /healthz and
    /// /readyz as on the admin port; off unless given.
    #[arg(long, env = "RINGLB_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,

    /// Where replicas run.
    #[arg(long, env = "RINGLB_BACKEND", value_enum, default_value_t = BackendKind::Process)]
    backend: BackendKind,

    #[command(flatten)]
    docker: DockerArgs,

    #[command(flatten)]
    swarm: SwarmArgs,

    /// Path of the `replica` binary (process backend). Default: next to this
    /// binary, else `replica` on PATH.
    #[arg(long, env = "RINGLB_REPLICA_BIN")]
    replica_bin: Option<PathBuf>,

    /// Extra argument for every replica process (repeatable), e.g.
    /// `--replica-arg=--serve-any-path` for benchmarks.
    #[arg(long, allow_hyphen_values = true)]
    replica_arg: Vec<String>,

    #[command(flatten)]
    manager: ManagerArgs,

    #[command(flatten)]
    checker: CheckerArgs,

    #[command(flatten)]
    ring: RingArgs,

    /// Require `Authorization: Bearer <token>` for /add, /rm, config changes
    /// and the mutating gRPC calls (reads stay open). Off when unset.
    #[arg(long, env = "RINGLB_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,

    /// Print `ready http=<addr> grpc=<addr> [metrics=<addr>]` on stdout once serving (for
    /// scripts and tests that bind port 0).
    #[arg(long)]
    announce: bool,

    /// Health check for images without curl: GET this URL (e.g.
    /// http://127.0.0.1:5100/readyz), exit 0 on a 2xx and 1 otherwise, and
    /// do nothing else.
    #[arg(long, value_name = "URL")]
    probe: Option<String>,
}

/// The Docker and Swarm backends' settings ([`DockerSettings`]).
#[derive(Debug, clap::Args)]
struct DockerArgs {
    /// Docker and Swarm backends: the network every replica joins (for
    /// Swarm an attachable overlay network).
    #[arg(long, env = "RINGLB_DOCKER_NETWORK", default_value = docker::DEFAULT_NETWORK)]
    docker_network: String,

    /// Docker and Swarm backends: the replica image (with Swarm, it must be
    /// on every node).
    #[arg(long, env = "RINGLB_REPLICA_IMAGE", default_value = docker::DEFAULT_REPLICA_IMAGE)]
    replica_image: String,

    /// Docker and Swarm backends: the port replicas listen on inside their
    /// containers.
    #[arg(long, env = "RINGLB_REPLICA_PORT", default_value_t = docker::DEFAULT_REPLICA_PORT)]
    replica_port: u16,
}

impl From<DockerArgs> for DockerSettings {
    fn from(args: DockerArgs) -> DockerSettings {
        DockerSettings {
            image: args.replica_image,
            network: args.docker_network,
            replica_port: args.replica_port,
        }
    }
}

/// The Swarm backend's own settings ([`SwarmSettings`]).
#[derive(Debug, clap::Args)]
struct SwarmArgs {
    /// Swarm backend: how often the replica services are checked against
    /// their tasks (catches tasks that end on other nodes).
    #[arg(long, default_value_t = swarm::DEFAULT_RECONCILE_INTERVAL.into())]
    swarm_reconcile_interval: humantime::Duration,

    /// Swarm backend: how long a new replica's task gets to be scheduled and
    /// reach `running`.
    #[arg(long, default_value_t = swarm::DEFAULT_TASK_TIMEOUT.into())]
    swarm_task_timeout: humantime::Duration,
}

/// The replica set's limits and timeouts ([`ManagerSettings`], less the
/// ring).
#[derive(Debug, clap::Args)]
struct ManagerArgs {
    /// Replicas started at boot, named server-1..N.
    #[arg(long, env = "RINGLB_REPLICAS", default_value_t = manager::DEFAULT_BOOT_REPLICAS)]
    replicas: usize,

    /// The most replicas the set may hold; /add beyond it is refused.
    #[arg(long, env = "RINGLB_MAX_REPLICAS", default_value_t = manager::DEFAULT_MAX_REPLICAS)]
    max_replicas: usize,

    /// How long a new replica gets to answer its first heartbeat.
    #[arg(long, default_value_t = manager::DEFAULT_STARTUP_TIMEOUT.into())]
    startup_timeout: humantime::Duration,

    /// How long /add, /rm and config changes wait for every data plane to
    /// apply the new ring before answering anyway.
    #[arg(long, default_value_t = manager::DEFAULT_CONVERGE_TIMEOUT.into())]
    converge_timeout: humantime::Duration,

    /// Graceful drain: how long /rm waits, after the data planes applied the
    /// smaller ring, until they have no request in flight to the removed
    /// replicas, before stopping them (0s: off).
    #[arg(long, default_value_t = manager::DEFAULT_DRAIN_TIMEOUT.into())]
    drain_timeout: humantime::Duration,
}

/// Heartbeats ([`CheckerSettings`] and the probe's timeout).
#[derive(Debug, clap::Args)]
struct CheckerArgs {
    /// Time between two heartbeat rounds.
    #[arg(long, default_value_t = health::DEFAULT_HEARTBEAT_INTERVAL.into())]
    heartbeat_interval: humantime::Duration,

    /// How long one heartbeat may take before it counts as missed.
    #[arg(long, default_value_t = health::DEFAULT_HEARTBEAT_TIMEOUT.into())]
    heartbeat_timeout: humantime::Duration,

    /// Consecutive missed heartbeats before a replica is replaced.
    #[arg(long, default_value_t = health::DEFAULT_CONSECUTIVE_FAILURES,
          value_parser = clap::value_parser!(u32).range(1..))]
    failure_threshold: u32,
}

impl From<&CheckerArgs> for CheckerSettings {
    fn from(args: &CheckerArgs) -> CheckerSettings {
        CheckerSettings {
            interval: args.heartbeat_interval.into(),
            consecutive_failures: args.failure_threshold,
        }
    }
}

/// The ring at boot ([`RingConfig`]; `PUT /config` changes it at run time).
#[derive(Debug, clap::Args)]
struct RingArgs {
    /// Slots on the ring (M).
    #[arg(long, default_value_t = RingConfig::default().slots)]
    slots: u32,

    /// Virtual nodes per replica (K).
    #[arg(long, default_value_t = RingConfig::default().vnodes)]
    vnodes: u32,

    /// Request hash: spec, splitmix64, murmur3, xxh3.
    #[arg(long, default_value_t = RingConfig::default().request_hash)]
    request_hash: HashFn,

    /// Virtual-node hash: spec, splitmix64, murmur3, xxh3.
    #[arg(long, default_value_t = RingConfig::default().vnode_hash)]
    vnode_hash: HashFn,

    /// Collision rule for virtual nodes: linear, quadratic, shared.
    #[arg(long, default_value_t = RingConfig::default().probing)]
    probing: Probing,

    /// Request key: request-id (X-Request-ID or a random 6-digit id),
    /// random, client-ip, path.
    #[arg(long, default_value_t = RingConfig::default().key_source)]
    key_source: KeySource,

    /// Bounded load: percent of the average in-flight requests per replica
    /// a replica may take before its keys spill clockwise (0 = off, else
    /// at least 100; HAProxy's hash-balance-factor).
    #[arg(long, default_value_t = RingConfig::default().hash_balance_factor)]
    hash_balance_factor: u32,

    /// Outlier detection: consecutive failures (connect errors, timeouts,
    /// 5xx) that eject a replica on a data plane (0 = off).
    #[arg(long, default_value_t = RingConfig::default().outlier_consecutive_failures)]
    outlier_consecutive_failures: u32,

    /// Outlier detection: the first ejection's length in milliseconds (the
    /// n-th lasts n times as long, at most 10 times).
    #[arg(long, default_value_t = RingConfig::default().outlier_base_ejection_ms)]
    outlier_base_ejection_ms: u32,

    /// Outlier detection: the most replicas ejected at once, in percent (at
    /// least one may always be).
    #[arg(long, default_value_t = RingConfig::default().outlier_max_ejection_percent)]
    outlier_max_ejection_percent: u32,

    /// Slow start: the window in milliseconds over which a new replica
    /// takes its share of keys (0 = off).
    #[arg(long, default_value_t = RingConfig::default().slow_start_ms)]
    slow_start_ms: u32,
}

impl From<RingArgs> for RingConfig {
    fn from(args: RingArgs) -> RingConfig {
        RingConfig {
            slots: args.slots,
            vnodes: args.vnodes,
            request_hash: args.request_hash,
            vnode_hash: args.vnode_hash,
            probing: args.probing,
            key_source: args.key_source,
            hash_balance_factor: args.hash_balance_factor,
            outlier_consecutive_failures: args.outlier_consecutive_failures,
            outlier_base_ejection_ms: args.outlier_base_ejection_ms,
            outlier_max_ejection_percent: args.outlier_max_ejection_percent,
            slow_start_ms: args.slow_start_ms,
        }
    }
}

fn replica_bin(explicit: Option<PathBuf>) -> PathBuf {
    explicit.unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join("replica")))
            .filter(|candidate| candidate.exists())
            .unwrap_or_else(|| PathBuf::from("replica"))
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(url) = &args.probe {
        std::process::exit(ringlb_rt::probe_exit(url));
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    ringlb_rt::init_tracing("info");
    let checker = CheckerSettings::from(&args.checker);
    let heartbeat_timeout = args.checker.heartbeat_timeout.into();
    let ring = RingConfig::from(args.ring);
    ring.validate().context("invalid ring configuration")?;
    let backend: Arc<dyn Backend> = match args.backend {
        BackendKind::Docker => Arc::new(
            DockerBackend::connect(args.docker.into())
                .await
                .context("cannot use the Docker backend")?,
        ),
        BackendKind::Swarm => Arc::new(
            SwarmBackend::connect(SwarmSettings {
                replicas: args.docker.into(),
                reconcile_interval: args.swarm.swarm_reconcile_interval.into(),
                task_timeout: args.swarm.swarm_task_timeout.into(),
            })
            .await
            .context("cannot use the Swarm backend")?,
        ),
        BackendKind::Process => Arc::new(ProcessBackend::with_args(
            replica_bin(args.replica_bin),
            args.replica_arg.clone(),
        )),
    };
    tracing::info!(backend = backend.kind(), "replica backend ready");
    let settings = ManagerSettings {
        boot_replicas: args.manager.replicas,
        max_replicas: args.manager.max_replicas,
        startup_timeout: args.manager.startup_timeout.into(),
        converge_timeout: args.manager.converge_timeout.into(),
        drain_timeout: args.manager.drain_timeout.into(),
        ring,
    };
    let manager = Arc::new(Manager::new(
        backend,
        Prober::new(heartbeat_timeout),
        settings,
    ));
    let http = tokio::net::TcpListener::bind(args.http_listen)
        .await
        .with_context(|| format!("cannot listen on {} (HTTP admin)", args.http_listen))?;
    let grpc = tokio::net::TcpListener::bind(args.grpc_listen)
        .await
        .with_context(|| format!("cannot listen on {} (gRPC)", args.grpc_listen))?;
    // Cancelled when the control plane stops, so that the metrics server
    // stops too.
    let metrics_stop = tokio_util::sync::CancellationToken::new();
    let mut metrics_task = None;
    let metrics_addr = match args.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (metrics)"))?;
            let local = listener.local_addr()?;
            let source = manager.clone();
            let render: ringlb_rt::Render =
                Arc::new(move || ringlb_control_plane::metrics::render(&source));
            let probed = manager.clone();
            let ready: ringlb_rt::Ready =
                Arc::new(move || ringlb_control_plane::ui::ready(&probed).is_ok());
            let stop = metrics_stop.clone();
            metrics_task = Some(tokio::spawn(ringlb_rt::serve_admin(
                listener,
                render,
                ready,
                stop.cancelled_owned(),
            )));
            Some(local)
        }
        None => None,
    };
    let http_addr = http.local_addr()?;
    let grpc_addr = grpc.local_addr()?;
    let announce = args.announce;
    let ready = move || {
        tracing::info!(http = %http_addr, grpc = %grpc_addr, "control plane serving");
        if announce {
            match metrics_addr {
                Some(metrics) => {
                    println!("ready http={http_addr} grpc={grpc_addr} metrics={metrics}")
                }
                None => println!("ready http={http_addr} grpc={grpc_addr}"),
            }
        }
    };
    let options = Options {
        checker,
        admin_token: AdminToken::new(args.admin_token),
    };
    if options.admin_token.is_enabled() {
        tracing::info!("admin token required for changes");
    }
    let served = ringlb_control_plane::run(
        manager,
        options,
        http,
        grpc,
        ready,
        ringlb_rt::shutdown_signal(),
    )
    .await;
    metrics_stop.cancel();
    if let Some(metrics) = metrics_task {
        let _ = metrics.await;
    }
    served.context("control plane failed")
}
