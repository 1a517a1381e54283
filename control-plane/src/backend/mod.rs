//! Where replicas run. The manager only speaks this trait; `process` runs
//! replicas as local child processes, `docker` as containers, `swarm` as
//! Docker Swarm services (`engine` holds what the last two share).

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::state::Replica;

pub mod docker;
pub mod engine;
pub mod process;
pub mod swarm;

/// What went wrong in a backend; the text is shown to API clients.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    #[error("replica '{name}' failed to start: {reason}")]
    StartFailed { name: String, reason: String },
    #[error("replica '{name}' could not be stopped: {reason}")]
    StopFailed { name: String, reason: String },
    #[error("the replica backend is unavailable: {0}")]
    Unavailable(String),
}

/// Something the backend noticed on its own (a process exit, a Docker event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendEvent {
    /// The replica stopped without being asked to.
    Exited { name: String, id: u64 },
}

#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// A short name for logs (`process`, `docker`, `swarm`).
    fn kind(&self) -> &'static str;

    /// Start replica `name` with numeric `id` and ring `weight` (kept where
    /// [`adopt`](Self::adopt) can read it back); answer its `host:port` once
    /// it listens (its heartbeat is checked by the caller).
    async fn start(&self, name: &str, id: u64, weight: u32) -> Result<String, BackendError>;

    /// Stop and remove replica `name`, so the name is free again. Stopping a
    /// replica that is already gone succeeds.
    async fn stop(&self, name: &str) -> Result<(), BackendError>;

    /// Replicas this backend already runs from an earlier control plane
    /// (adopted at start-up), in start order.
    async fn adopt(&self) -> Result<Vec<Replica>, BackendError>;

    /// Events the backend notices by itself.
    fn events(&self) -> broadcast::Receiver<BackendEvent>;

    /// Called once when the control plane stops.
    async fn shutdown(&self);
}
