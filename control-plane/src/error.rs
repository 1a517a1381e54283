use std::time::Duration;

use ringlb_api::admin::AdminError;
use ringlb_ring::RingError;

use crate::backend::BackendError;

/// Why a change to the replica set or the ring was refused or failed.
/// `Display` is the text after `<Error> ` in the API's JSON.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error(transparent)]
    Invalid(#[from] AdminError),
    #[error("Hostname '{0}' already exists")]
    NameTaken(String),
    #[error("Hostname '{0}' is not a replica")]
    UnknownName(String),
    #[error("Cannot remove {n} replicas: only {present} exist")]
    NotEnough { n: usize, present: usize },
    #[error("Adding {n} replicas would make {total}, more than the maximum of {max}")]
    TooMany { n: usize, total: usize, max: usize },
    #[error("Invalid ring configuration: {0}")]
    Config(#[from] RingError),
    #[error("Replica '{name}' did not answer its heartbeat within {within:?}")]
    NotHealthy { name: String, within: Duration },
    #[error("{0}")]
    Backend(#[from] BackendError),
}

impl ManagerError {
    /// Whether the request was at fault (400) rather than the system (500/503).
    pub fn is_client_error(&self) -> bool {
        !matches!(
            self,
            ManagerError::NotHealthy { .. } | ManagerError::Backend(_)
        )
    }
}
