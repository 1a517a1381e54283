//! Graceful drain on `/rm`: the replicas an applied ring dropped, kept with
//! their counters while this data plane still has requests in flight to
//! them, so that its acknowledgements can tell the control plane when it
//! may stop them.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use ringlb_proto::v1;

use crate::stats::UpstreamStats;
use crate::table::RouteTable;

/// Replicas that left the ring, with their counters.
#[derive(Debug, Default)]
pub struct Draining {
    replicas: Mutex<Vec<(String, Arc<UpstreamStats>)>>,
}

impl Draining {
    fn lock(&self) -> MutexGuard<'_, Vec<(String, Arc<UpstreamStats>)>> {
        // A plain list: usable whatever a panicking holder did.
        self.replicas
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `next` replaces `previous`: the replicas it dropped start draining,
    /// the ones it holds again stop.
    pub fn update(&self, previous: Option<&RouteTable>, next: &RouteTable) {
        let holds = |name: &str| next.upstreams.iter().any(|u| u.name == name);
        let mut replicas = self.lock();
        replicas.retain(|(name, _)| !holds(name));
        if let Some(previous) = previous {
            for upstream in &previous.upstreams {
                if !holds(&upstream.name) && !replicas.iter().any(|(n, _)| *n == upstream.name) {
                    replicas.push((upstream.name.clone(), upstream.stats.clone()));
                }
            }
        }
    }

    /// The requests still in flight to drained replicas; the replicas with
    /// none are forgotten.
    pub fn report(&self) -> Vec<v1::InFlight> {
        let mut replicas = self.lock();
        replicas.retain(|(_, stats)| stats.in_flight.load(Ordering::Relaxed) > 0);
        replicas
            .iter()
            .map(|(name, stats)| v1::InFlight {
                name: name.clone(),
                requests: stats.in_flight.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Whether some replica is still being drained.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}
