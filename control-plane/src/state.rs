//! What the control plane publishes: one immutable, versioned view of the
//! ring (configuration + replicas, oldest first).

use std::sync::Arc;

use ringlb_proto::v1;
use ringlb_ring::RingConfig;

/// A replica on the ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replica {
    /// Numeric id for the virtual-node hash; never reused while it lives.
    pub id: u64,
    /// Its name (`server-1`, `S5`, `server-3fa9c1`): container name, `SERVER_ID`.
    pub name: String,
    /// Where it is reached, `host:port`.
    pub address: String,
    /// Its weight: K × weight virtual nodes on the ring (1 unless `/add`
    /// gave `weights`).
    pub weight: u32,
}

/// One published version of the ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingState {
    /// Grows by one with every change.
    pub version: u64,
    pub config: RingConfig,
    /// Oldest first.
    pub replicas: Vec<Replica>,
}

/// A shared, immutable ring state.
pub type SharedState = Arc<RingState>;

impl RingState {
    pub fn names(&self) -> Vec<String> {
        self.replicas.iter().map(|r| r.name.clone()).collect()
    }

    /// The ring of this state (its configuration over its replicas' ids and
    /// weights).
    ///
    /// # Errors
    /// The [`RingError`](ringlb_ring::RingError) when they do not fit.
    pub fn ring(&self) -> Result<ringlb_ring::Ring, ringlb_ring::RingError> {
        build_ring(&self.config, &self.replicas)
    }

    pub fn find(&self, name: &str) -> Option<&Replica> {
        self.replicas.iter().find(|r| r.name == name)
    }

    /// The `message` of `/rep`, `/add`, `/rm` replies.
    pub fn replica_list(&self) -> ringlb_api::reply::ReplicaList {
        ringlb_api::reply::ReplicaList {
            n: self.replicas.len(),
            replicas: self.names(),
        }
    }

    /// The next version with other replicas.
    pub fn with_replicas(&self, replicas: Vec<Replica>) -> RingState {
        RingState {
            version: self.version + 1,
            config: self.config,
            replicas,
        }
    }
}

/// The ring of `config` over `replicas` (ids and weights).
///
/// # Errors
/// The [`RingError`](ringlb_ring::RingError) when they do not fit.
pub fn build_ring(
    config: &RingConfig,
    replicas: &[Replica],
) -> Result<ringlb_ring::Ring, ringlb_ring::RingError> {
    let ids: Vec<u64> = replicas.iter().map(|r| r.id).collect();
    let weights: Vec<u32> = replicas.iter().map(|r| r.weight).collect();
    ringlb_ring::Ring::build_weighted(config, &ids, &weights)
}

impl From<&Replica> for v1::Replica {
    fn from(r: &Replica) -> Self {
        v1::Replica {
            name: r.name.clone(),
            id: r.id,
            address: r.address.clone(),
            state: v1::ReplicaState::Serving as i32,
            weight: r.weight,
        }
    }
}

impl RingState {
    /// This version as a snapshot of epoch `epoch` (the control plane's,
    /// [`crate::epoch::Epoch`]).
    pub fn snapshot(&self, epoch: u64) -> v1::RingSnapshot {
        v1::RingSnapshot {
            version: self.version,
            config: Some((&self.config).into()),
            replicas: self.replicas.iter().map(Into::into).collect(),
            epoch,
        }
    }

    /// The replica set of this version, of epoch `epoch`.
    pub fn replica_set(&self, epoch: u64) -> v1::ReplicaSet {
        v1::ReplicaSet {
            n: self.replicas.len() as u32,
            replicas: self.replicas.iter().map(Into::into).collect(),
            version: self.version,
            epoch,
        }
    }
}
