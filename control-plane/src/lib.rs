//! The control plane of ringlb.
//!
//! It owns the replicas (through a [`backend::Backend`]), keeps the
//! authoritative ring ([`manager::Manager`]), checks heartbeats and replaces
//! dead replicas ([`health`]), serves the HTTP admin API ([`http_api`]) and
//! the gRPC API ([`grpc`]), and streams versioned ring snapshots to every
//! data plane. The admin port also serves the live ring page ([`ui`]) and
//! the health endpoints.
//!
//! Unsafe code is denied except for two audited calls in the process backend
//! (`prctl` and `kill`).
//!
//! [`run`] takes bound listeners and a shutdown future, so tests bind port 0
//! and run the real thing in-process or as a process.
#![deny(unsafe_code)]

pub mod auth;
pub mod backend;
pub mod epoch;
pub mod error;
pub mod grpc;
pub mod health;
pub mod http_api;
pub mod live;
pub mod manager;
pub mod metrics;
pub mod names;
pub mod state;
pub mod subscribers;
pub mod ui;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::AdminToken;
use crate::backend::BackendEvent;
use crate::health::CheckerSettings;
use crate::manager::Manager;

/// How long open connections get to finish after shutdown starts.
pub const DRAIN_TIMEOUT: std::time::Duration = ringlb_rt::DRAIN_TIMEOUT;

/// Where the HTTP admin API listens by default (loopback: expose it on
/// purpose).
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:5100";
/// Where the gRPC API listens by default.
pub const DEFAULT_GRPC_LISTEN: &str = "127.0.0.1:50051";

/// Why the control plane stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    #[error("cannot start the initial replicas: {0}")]
    Bootstrap(#[from] error::ManagerError),
    #[error("gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("HTTP admin server failed: {0}")]
    Http(#[from] std::io::Error),
}

/// How the control plane serves, besides the manager's own settings.
#[derive(Clone, Debug)]
pub struct Options {
    pub checker: CheckerSettings,
    /// Guards `/add`, `/rm`, config changes and the mutating gRPC calls.
    pub admin_token: AdminToken,
}

/// Start the replicas, then serve the admin HTTP API on `http` and gRPC on
/// `grpc` until `shutdown` resolves; `ready` runs once everything serves.
/// On the way out the backend stops what it must (process replicas).
///
/// # Errors
/// A [`ControlPlaneError`]: the initial replicas could not start, or a
/// server failed.
pub async fn run(
    manager: Arc<Manager>,
    options: Options,
    http: TcpListener,
    grpc: TcpListener,
    ready: impl FnOnce(),
    shutdown: impl Future<Output = ()>,
) -> Result<(), ControlPlaneError> {
    let stop = CancellationToken::new();
    let outcome = serve(
        manager.clone(),
        options,
        http,
        grpc,
        ready,
        stop.clone(),
        shutdown,
    )
    .await;
    manager.begin_shutdown();
    stop.cancel();
    tracing::info!(backend = manager.backend().kind(), "control plane stopping");
    manager.backend().shutdown().await;
    outcome
}

async fn serve(
    manager: Arc<Manager>,
    options: Options,
    http: TcpListener,
    grpc: TcpListener,
    ready: impl FnOnce(),
    stop: CancellationToken,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ControlPlaneError> {
    let bootstrap = manager.bootstrap();
    tokio::pin!(shutdown);
    tokio::select! {
        result = bootstrap => { result?; }
        () = &mut shutdown => return Ok(()),
    }
    // Dropping the set (also when this future is dropped) aborts them.
    let mut background = tokio::task::JoinSet::new();
    background.spawn(health::run_checker(manager.clone(), options.checker));
    background.spawn(watch_backend(manager.clone()));

    let http_server = axum::serve(
        Accepting(http),
        http_api::router(manager.clone(), options.admin_token.clone())
            .merge(ui::router(manager.clone())),
    )
    .with_graceful_shutdown(stop.clone().cancelled_owned());
    let grpc_server = grpc::serve(manager.clone(), grpc, stop.clone(), options.admin_token);
    let servers = async {
        let (h, g) = tokio::join!(
            async { http_server.await.map_err(ControlPlaneError::from) },
            async { grpc_server.await.map_err(ControlPlaneError::from) },
        );
        h.and(g)
    };
    ready();
    tokio::pin!(servers);
    let result = tokio::select! {
        result = &mut servers => result,
        () = &mut shutdown => {
            manager.begin_shutdown();
            stop.cancel();
            // Clients that do not hang up must not hold the shutdown forever.
            match tokio::time::timeout(DRAIN_TIMEOUT, servers).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::warn!(timeout = ?DRAIN_TIMEOUT, "connections still open after the drain timeout; closing them");
                    Ok(())
                }
            }
        }
    };
    background.abort_all();
    result
}

/// The admin API's listener for axum, accepting through the workspace's
/// one accept loop ([`ringlb_rt::accept`]: backoff on errors,
/// `TCP_NODELAY`).
struct Accepting(TcpListener);

impl axum::serve::Listener for Accepting {
    type Io = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        ringlb_rt::accept(&self.0).await
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// Replace replicas the backend reports dead, without waiting for
/// heartbeats. The failure handling runs beside the watcher, owned by it:
/// aborting the watcher at shutdown aborts it too.
async fn watch_backend(manager: Arc<Manager>) {
    let mut events = manager.backend().events();
    let mut operations = tokio::task::JoinSet::new();
    loop {
        let event = events.recv().await;
        while operations.try_join_next().is_some() {}
        match event {
            Ok(BackendEvent::Exited { name, id }) => {
                let manager = manager.clone();
                operations.spawn(async move { manager.replica_failed(&name, id, "exited").await });
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "backend events lagged; heartbeats will catch up"
                );
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}
