//! Process plumbing shared by ringlb's binaries.
#![forbid(unsafe_code)]

mod accept;
mod listen;
mod metrics;
mod probe;

pub use accept::{MAX_ACCEPT_BACKOFF, MIN_ACCEPT_BACKOFF, accept};
pub use listen::{LISTEN_BACKLOG, listen, listen_many};

pub use metrics::{Ready, Render, serve_admin, serve_metrics};
pub use probe::{PROBE_TIMEOUT, ProbeError, probe, probe_exit};
use tracing_subscriber::EnvFilter;

/// How long every ringlb server gives its open connections to finish once
/// shutdown starts, before it closes them: one figure for the data plane
/// (its default; `--drain-timeout` changes it), the control plane and the
/// replicas, well inside Docker's 10 s stop grace period.
pub const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Log to stderr; `RUST_LOG` overrides `default_filter` (e.g. `"info"`).
pub fn init_tracing(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // A second initialisation (tests embedding several servers) is harmless.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Resolves on the first SIGINT or SIGTERM (Ctrl-C elsewhere).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
                    _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
                }
                return;
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "cannot install signal handlers, falling back to Ctrl-C");
            }
        }
    }
    if tokio::signal::ctrl_c().await.is_err() {
        // No way to be told to stop: run until killed.
        std::future::pending::<()>().await;
    }
}
