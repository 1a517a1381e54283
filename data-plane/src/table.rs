//! The routing table: one ring snapshot compiled for the request path.
//! Built off the hot path when a snapshot arrives, swapped in atomically,
//! read without locks.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::uri::Authority;
use ringlb_proto::{RingVersion, v1};
use ringlb_ring::{KeySource, Ring, RingConfig};

use crate::balance::Balancing;
use crate::pool::{Pools, ReplicaPools};
use crate::stats::{NOT_JOINED, Stats, UpstreamStats};

/// A replica as the request path needs it.
#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    /// Its connections, one pool per engine, for each worker (indexed by
    /// worker; see [`Pools`]).
    pub pools: Arc<[ReplicaPools]>,
    pub stats: Arc<UpstreamStats>,
}

impl Upstream {
    /// The pools of worker `worker` (the first worker's if out of range).
    #[inline]
    pub fn pools(&self, worker: usize) -> &ReplicaPools {
        self.pools.get(worker).unwrap_or(&self.pools[0])
    }
}

/// One ring version, ready for routing.
#[derive(Debug)]
pub struct RouteTable {
    /// The snapshot's (epoch, version).
    pub version: RingVersion,
    pub ring: Ring,
    /// Indexed like the ring's members.
    pub upstreams: Vec<Upstream>,
    pub key_source: KeySource,
    /// Bounded load, outlier detection, slow start (all off by default).
    pub balancing: Balancing,
}

/// A snapshot the data plane cannot use; the last good one stays in force.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot {version} has no ring configuration")]
    MissingConfig { version: u64 },
    #[error("snapshot {version}: {source}")]
    Config {
        version: u64,
        source: ringlb_proto::ConfigError,
    },
    #[error("snapshot {version}: {source}")]
    Ring {
        version: u64,
        source: ringlb_ring::RingError,
    },
    #[error("snapshot {version}: replica '{name}' has an invalid address '{address}'")]
    Address {
        version: u64,
        name: String,
        address: String,
    },
}

impl RouteTable {
    /// Compile a snapshot; per-replica counters and connection pools are
    /// kept across versions.
    pub fn from_snapshot(
        snapshot: &v1::RingSnapshot,
        stats: &Stats,
        pools: &Pools,
    ) -> Result<RouteTable, SnapshotError> {
        let version = snapshot.version;
        let wire = snapshot
            .config
            .as_ref()
            .ok_or(SnapshotError::MissingConfig { version })?;
        let config = RingConfig::try_from(wire)
            .map_err(|source| SnapshotError::Config { version, source })?;
        let ids: Vec<u64> = snapshot.replicas.iter().map(|r| r.id).collect();
        // 0: from a control plane that predates weights.
        let weights: Vec<u32> = snapshot.replicas.iter().map(|r| r.weight.max(1)).collect();
        let ring = Ring::build_weighted(&config, &ids, &weights)
            .map_err(|source| SnapshotError::Ring { version, source })?;
        // Replicas of the first ring this data plane applies are not new
        // (no slow start at boot); later ones joined now.
        let joined = if stats.ring_version.load(Ordering::Relaxed) == 0 {
            0
        } else {
            stats.now_ms()
        };
        let upstreams = snapshot
            .replicas
            .iter()
            .map(|r| {
                let authority =
                    r.address
                        .parse::<Authority>()
                        .map_err(|_| SnapshotError::Address {
                            version,
                            name: r.name.clone(),
                            address: r.address.clone(),
                        })?;
                let upstream_stats = stats.upstream(&r.name);
                let _ = upstream_stats.joined_ms.compare_exchange(
                    NOT_JOINED,
                    joined,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                Ok(Upstream {
                    name: r.name.clone(),
                    pools: pools.get(&authority),
                    stats: upstream_stats,
                })
            })
            .collect::<Result<Vec<_>, SnapshotError>>()?;
        stats.retain(|name| upstreams.iter().any(|u| u.name == name));
        pools.retain(|authority| {
            upstreams
                .iter()
                .any(|u| u.pools(0).authority() == authority)
        });
        Ok(RouteTable {
            version: snapshot.ring_version(),
            ring,
            upstreams,
            key_source: config.key_source,
            balancing: Balancing::from(&config),
        })
    }
}
