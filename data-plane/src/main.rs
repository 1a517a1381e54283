//! `data-plane`: the consistent-hashing HTTP proxy on port 5000.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use ringlb_data_plane::access_log::{AccessLog, AccessLogFormat, AccessLogTarget};
use ringlb_data_plane::config::{self, Engine, Limits};
use ringlb_data_plane::{DataPlane, server};

/// Where the data plane serves clients by default.
const DEFAULT_LISTEN: &str = "0.0.0.0:5000";

/// mimalloc instead of glibc's malloc: the request path allocates small,
/// short-lived buffers, where glibc's arenas showed up at ~4 % of the data
/// plane's CPU in the profile (bench/RESULTS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The ringlb data plane: routes each request to a replica by consistent
/// hashing, using the ring it watches on the control plane.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to serve clients on.
    #[arg(long, env = "RINGLB_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,

    /// Set SO_REUSEPORT on the listening socket, so that several data-plane
    /// processes (each started with it) share --listen and the kernel
    /// spreads new connections over them (nginx's `reuseport`, Envoy's
    /// `enable_reuse_port`). Implied for the listeners of --workers N > 1.
    #[arg(long, env = "RINGLB_REUSE_PORT")]
    reuse_port: bool,

    /// The control plane's gRPC endpoint (ring stream); several, separated
    /// by commas, to follow one at a time and move to the next when it
    /// fails (like Envoy's list of management servers). Rings are ordered
    /// by (epoch, version) across all of them: an older one is not applied.
    #[arg(long, env = "RINGLB_CONTROL_PLANE_GRPC", value_delimiter = ',', default_value = server::DEFAULT_CONTROL_PLANE_GRPC)]
    control_plane_grpc: Vec<String>,

    /// The control plane's HTTP admin address (host:port) that /rep, /add
    /// and /rm are forwarded to. With several gRPC endpoints: one address
    /// for all, or one per endpoint in the same order (comma-separated),
    /// and admin requests go to the control plane whose ring is in force.
    #[arg(long, env = "RINGLB_CONTROL_PLANE_HTTP", value_delimiter = ',', default_value = server::DEFAULT_CONTROL_PLANE_HTTP)]
    control_plane_http: Vec<String>,

    /// Address of the Prometheus /metrics endpoint, with /healthz (alive)
    /// and /readyz (a ring is applied; stays ready with its last ring while
    /// the control plane is away); off unless given.
    #[arg(long, env = "RINGLB_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,

    /// The id reported to the control plane (default: `data-plane-<pid>-<random>`).
    #[arg(long, env = "RINGLB_SUBSCRIBER_ID")]
    subscriber_id: Option<String>,

    #[command(flatten)]
    limits: LimitArgs,

    /// How client connections are served: `fast`, the data plane's own
    /// HTTP/1.1 forwarding engine (anything it does not handle itself, such
    /// as HTTP/1.0, chunked request bodies, upgrades or HTTP/2, is handed to
    /// hyper on the same connection), or `hyper` for every connection.
    #[arg(long, env = "RINGLB_ENGINE", default_value = Engine::default().name())]
    engine: Engine,

    /// Workers: N threads, each running a single-threaded runtime with its
    /// own SO_REUSEPORT listener on --listen, serving the connections it
    /// accepts to their end (no work stealing, no cross-thread wake-ups;
    /// the kernel spreads connections over them). With 1, one
    /// single-threaded runtime on the main thread (the fastest choice for a
    /// data plane pinned to one core). Without the flag: one multi-threaded
    /// work-stealing runtime, a thread per core. All workers share one ring
    /// subscription, the counters and --max-connections.
    #[arg(long, env = "RINGLB_WORKERS", value_parser = clap::value_parser!(u16).range(1..))]
    workers: Option<u16>,

    /// Busy polling: after each request keep polling for new events for this
    /// long (e.g. `50us`) instead of sleeping, so the cores sending to the
    /// data plane do not pay to wake it (worth several percent of req/s when
    /// the clients' or replicas' cores are the bottleneck; see
    /// bench/RESULTS.md). Costs up to one core per worker under load and
    /// nothing once idle for that long. Needs --workers (any N: each worker
    /// spins on its own). Off by default (or 0).
    #[arg(long, env = "RINGLB_BUSY_POLL", value_parser = humantime::parse_duration)]
    busy_poll: Option<std::time::Duration>,

    /// Print `ready <addr>` on stdout once listening (for scripts and tests
    /// that bind port 0), after `metrics <addr>` if --metrics-listen is on.
    #[arg(long)]
    announce: bool,

    #[command(flatten)]
    operators: OperatorArgs,
}

/// Access log and health probe ([`ringlb_data_plane::access_log`]).
#[derive(Debug, clap::Args)]
struct OperatorArgs {
    /// Write one line per request (time, client, method, target, status,
    /// bytes, duration, replica, attempts, key) to `stdout` or to this file
    /// (appended). Buffered and bounded: when the writer cannot keep up,
    /// lines are dropped and counted (ringlb_access_log_dropped_total),
    /// never waited for. Off unless given.
    #[arg(long, env = "RINGLB_ACCESS_LOG")]
    access_log: Option<AccessLogTarget>,

    /// The control plane's admin token (its --admin-token), sent with the
    /// ring subscription, acknowledgements and load reports, which such a
    /// control plane refuses without it. Off unless given.
    #[arg(long, env = "RINGLB_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,

    /// Access log line format: `json` (one object per line) or `combined`
    /// (NCSA combined, then duration in ms, replica, attempts and key).
    #[arg(long, env = "RINGLB_ACCESS_LOG_FORMAT", default_value = AccessLogFormat::default().name())]
    access_log_format: AccessLogFormat,

    /// Health check for images without curl: GET this URL (e.g.
    /// http://127.0.0.1:9100/readyz), exit 0 on a 2xx and 1 otherwise,
    /// and do nothing else.
    #[arg(long, value_name = "URL")]
    probe: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(url) = &args.operators.probe {
        std::process::exit(ringlb_rt::probe_exit(url));
    }
    if args.busy_poll.is_some_and(|window| !window.is_zero()) && args.workers.is_none() {
        anyhow::bail!(
            "--busy-poll needs --workers N (single-threaded runtimes: a spinner keeps its \
             worker's thread awake, which a work-stealing runtime cannot honour)"
        );
    }
    ringlb_rt::init_tracing("info");
    // With --workers N > 1 this runtime runs the ring subscription and the
    // metrics endpoint only; each worker builds its own.
    let mut runtime = match args.workers {
        Some(_) => tokio::runtime::Builder::new_current_thread(),
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    runtime
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(serve(args))
}

/// Where clients are accepted: one listener on this runtime, or one per
/// worker.
enum Listeners {
    One(tokio::net::TcpListener),
    Workers(Vec<std::net::TcpListener>),
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let access_log = match &args.operators.access_log {
        Some(target) => Some(Arc::new(
            AccessLog::open(target, args.operators.access_log_format)
                .context("cannot open the access log")?,
        )),
        None => None,
    };
    let mut builder = DataPlane::builder()
        .access_log(access_log.clone())
        .admin_token(args.operators.admin_token.as_deref())
        .context("invalid --admin-token")?
        .control_planes_grpc(args.control_plane_grpc.clone())
        .control_planes_http(args.control_plane_http.clone())
        .limits(args.limits.into())
        .engine(args.engine)
        .busy_poll(args.busy_poll);
    if let Some(id) = args.subscriber_id {
        builder = builder.subscriber_id(id);
    }
    let data_plane = builder
        .build()
        .context("invalid data plane configuration")?;
    let cannot_listen = || format!("cannot listen on {}", args.listen);
    let (listeners, local) = match args.workers {
        Some(workers) if workers > 1 => {
            let listeners = ringlb_rt::listen_many(args.listen, usize::from(workers))
                .with_context(cannot_listen)?;
            let local = listeners[0].local_addr()?;
            (Listeners::Workers(listeners), local)
        }
        _ => {
            let listener = ringlb_rt::listen(args.listen, args.reuse_port)
                .and_then(tokio::net::TcpListener::from_std)
                .with_context(cannot_listen)?;
            let local = listener.local_addr()?;
            (Listeners::One(listener), local)
        }
    };
    // Told when the data plane stops, so that the metrics server stops too.
    let (stopped, stop_seen) = tokio::sync::watch::channel(false);
    let metrics = match args.metrics_listen {
        Some(metrics) => {
            let metrics = tokio::net::TcpListener::bind(metrics)
                .await
                .with_context(|| format!("cannot listen on {metrics} (metrics)"))?;
            let metrics_addr = metrics.local_addr()?;
            tracing::info!(addr = %metrics_addr, "metrics serving");
            if args.announce {
                println!("metrics {metrics_addr}");
            }
            let stats = data_plane.stats();
            let applied = stats.clone();
            let render: ringlb_rt::Render = Arc::new(move || stats.render());
            // Ready once a ring is applied; it stays so with its last ring
            // while the control plane is away.
            let ready: ringlb_rt::Ready = Arc::new(move || {
                applied
                    .ring_version
                    .load(std::sync::atomic::Ordering::Relaxed)
                    > 0
            });
            let mut stop_seen = stop_seen.clone();
            let shutdown = async move {
                let _ = stop_seen.wait_for(|stopped| *stopped).await;
            };
            Some(tokio::spawn(ringlb_rt::serve_admin(
                metrics, render, ready, shutdown,
            )))
        }
        None => None,
    };
    tracing::info!(%local, control_planes = ?args.control_plane_grpc, workers = ?args.workers, reuse_port = args.reuse_port, "data plane serving");
    if args.announce {
        println!("ready {local}");
    }
    let shutdown = ringlb_rt::shutdown_signal();
    let served = match listeners {
        Listeners::One(listener) => data_plane.run(listener, shutdown).await,
        Listeners::Workers(listeners) => data_plane.run_workers(listeners, shutdown).await,
    };
    let _ = stopped.send(true);
    if let Some(metrics) = metrics {
        let _ = metrics.await;
    }
    if let Some(log) = &access_log {
        log.flush();
    }
    served?;
    tracing::info!("data plane stopped");
    Ok(())
}

/// Per-client limits; each default is the library's ([`config`]).
#[derive(Debug, clap::Args)]
struct LimitArgs {
    /// Largest request body forwarded, in bytes (413 beyond).
    #[arg(long, default_value_t = config::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,

    /// How long a client gets to send a request's head before its
    /// connection is closed (slow clients do not hold connections forever);
    /// also the longest pause in the middle of a body (408 or a close).
    #[arg(long, default_value_t = config::DEFAULT_HEADER_READ_TIMEOUT.into())]
    header_read_timeout: humantime::Duration,

    /// Longest request line (method, target, version), in bytes (414
    /// beyond; at least 1024).
    #[arg(long, default_value_t = config::DEFAULT_MAX_REQUEST_LINE_BYTES)]
    max_request_line_bytes: usize,

    /// Largest header section of a request (its header lines, the request
    /// line not counted), in bytes (431 beyond; at least 1024). At most
    /// 100 header fields either way.
    #[arg(long, default_value_t = config::DEFAULT_MAX_HEADER_BYTES)]
    max_header_bytes: usize,

    /// Client connections this process serves at once, all its workers
    /// together; more wait in the kernel's accept queue (with --workers N,
    /// in the queue of the worker's listener the kernel chose). Several
    /// processes sharing a port (--reuse-port) have a limit each.
    #[arg(long, default_value_t = config::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,

    /// How long a replica gets to answer (response head). Idempotent
    /// requests then fail over to the next replica; others get 504.
    #[arg(long, default_value_t = config::DEFAULT_UPSTREAM_TIMEOUT.into())]
    upstream_timeout: humantime::Duration,

    /// How long a new connection to a replica may take to establish; then
    /// the next replica on the ring is tried.
    #[arg(long, default_value_t = config::DEFAULT_UPSTREAM_CONNECT_TIMEOUT.into())]
    upstream_connect_timeout: humantime::Duration,

    /// How long a client connection may stay idle between two requests
    /// before it is closed.
    #[arg(long, default_value_t = config::DEFAULT_IDLE_TIMEOUT.into())]
    idle_timeout: humantime::Duration,

    /// How long open client connections get to finish at shutdown
    /// (SIGTERM, Ctrl-C) before the data plane exits anyway.
    #[arg(long, default_value_t = config::DEFAULT_DRAIN_TIMEOUT.into())]
    drain_timeout: humantime::Duration,
}

impl From<LimitArgs> for Limits {
    fn from(args: LimitArgs) -> Limits {
        Limits {
            max_body_bytes: args.max_body_bytes,
            header_read_timeout: args.header_read_timeout.into(),
            max_request_line_bytes: args.max_request_line_bytes,
            max_header_bytes: args.max_header_bytes,
            max_connections: args.max_connections,
            upstream_timeout: args.upstream_timeout.into(),
            upstream_connect_timeout: args.upstream_connect_timeout.into(),
            idle_timeout: args.idle_timeout.into(),
            drain_timeout: args.drain_timeout.into(),
        }
    }
}
