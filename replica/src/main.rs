//! `replica`: serves `GET /home` and `GET /heartbeat` for one replica.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

/// A ringlb replica: answers `GET /home` with its name and `GET /heartbeat`
/// with an empty 200.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The replica's name, reported by `/home` (the control plane sets it to
    /// the name `/rep` lists).
    #[arg(long, env = "SERVER_ID", default_value = ringlb_replica::DEFAULT_SERVER_ID)]
    server_id: String,

    /// TCP port to listen on; 0 picks a free one (see --announce).
    #[arg(long, env = "PORT", default_value_t = ringlb_replica::DEFAULT_PORT)]
    port: u16,

    /// Address to bind.
    #[arg(long, env = "HOST", default_value = ringlb_replica::DEFAULT_HOST)]
    host: std::net::IpAddr,

    /// Print `listening <addr>` on stdout once bound, so a supervisor that
    /// passed port 0 learns the port.
    #[arg(long)]
    announce: bool,

    /// Answer every path like /home (for benchmarks that spread keys over
    /// many paths). Off by default: the spec's replica answers 404 there.
    #[arg(long)]
    serve_any_path: bool,

    /// Exit when this process is no longer our parent (the supervisor died,
    /// even by SIGKILL): no orphaned replicas.
    #[arg(long, env = "RINGLB_PARENT_PID")]
    parent_pid: Option<u32>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ringlb_rt::init_tracing("info");
    // One small replica needs no thread pool: a current-thread runtime keeps
    // it cheap to run dozens of them on one machine.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let addr = SocketAddr::new(args.host, args.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr().context("listener has no address")?;
    if args.announce {
        println!("listening {local}");
    }
    tracing::info!(server_id = %args.server_id, %local, "replica serving");
    let shutdown = async move {
        tokio::select! {
            () = ringlb_rt::shutdown_signal() => {}
            () = parent_gone(args.parent_pid) => tracing::warn!("supervisor is gone, exiting"),
        }
    };
    let routes = if args.serve_any_path {
        ringlb_replica::Routes::AnyPath
    } else {
        ringlb_replica::Routes::Spec
    };
    ringlb_replica::run(listener, &args.server_id, routes, shutdown).await;
    tracing::info!(server_id = %args.server_id, "replica stopped");
    Ok(())
}

/// Resolves once our parent is no longer `expected` (we were re-parented).
async fn parent_gone(expected: Option<u32>) {
    let Some(expected) = expected else {
        return std::future::pending().await;
    };
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tick.tick().await;
        if std::os::unix::process::parent_id() != expected {
            return;
        }
    }
}
