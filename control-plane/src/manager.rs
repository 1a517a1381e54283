//! The replica manager: the one place that changes the replica set and the
//! ring. Every change runs under one operation lock (so `/add`, `/rm`,
//! replacements and config changes are serialised), is validated before
//! anything happens, and is published as exactly one new ring version.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ringlb_api::admin::ScaleRequest;
use ringlb_ring::{RingConfig, RingError};
use tokio::sync::{Mutex, watch};

use crate::backend::Backend;
use crate::epoch::Epoch;
use crate::error::ManagerError;
use crate::health::Prober;
use crate::live::{Change, Live};
use crate::names;
use crate::state::{Replica, RingState, SharedState, build_ring};
use crate::subscribers::Subscribers;

/// Replicas started at boot by default.
pub const DEFAULT_BOOT_REPLICAS: usize = 3;
/// The most replicas the set may hold by default.
pub const DEFAULT_MAX_REPLICAS: usize = 50;
/// How long a new replica gets to answer its first heartbeat by default.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a change waits for every data plane to apply it by default.
pub const DEFAULT_CONVERGE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `/rm` waits for the data planes' requests in flight to removed
/// replicas by default: 0, off (SPEC.md's `/rm` answers at once).
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::ZERO;

/// Limits and timeouts of the manager.
#[derive(Clone, Debug)]
pub struct ManagerSettings {
    /// Replicas started at boot (`server-1..N`) when none are adopted.
    pub boot_replicas: usize,
    /// The most replicas the set may hold (and the largest `n` of a request).
    pub max_replicas: usize,
    /// How long a new replica gets to answer its first heartbeat.
    pub startup_timeout: Duration,
    /// How long a change waits for every data plane to apply it.
    pub converge_timeout: Duration,
    /// Graceful drain: how long `/rm` waits, once the data planes applied
    /// the smaller ring, for their requests in flight to the removed
    /// replicas before stopping them (zero: it does not wait).
    pub drain_timeout: Duration,
    /// The ring configuration at boot.
    pub ring: RingConfig,
}

impl Default for ManagerSettings {
    fn default() -> Self {
        ManagerSettings {
            boot_replicas: DEFAULT_BOOT_REPLICAS,
            max_replicas: DEFAULT_MAX_REPLICAS,
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            converge_timeout: DEFAULT_CONVERGE_TIMEOUT,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            ring: RingConfig::default(),
        }
    }
}

/// Owns the replica set.
pub struct Manager {
    backend: Arc<dyn Backend>,
    prober: Prober,
    settings: ManagerSettings,
    /// The operation lock, the one mechanism that serialises membership
    /// and configuration changes (boot, `/add`, `/rm`, `PUT /config`, a
    /// failure taken off the ring, healing). It holds the replica count to
    /// keep (N) and is held on purpose across starting replicas and, for
    /// `/rm`, across the data planes' convergence, so that no two changes
    /// interleave. Heartbeats never wait on it: [`Manager::deficit`] and
    /// [`Manager::heal`] only try it, so heal requests made while a change
    /// is under way coalesce into the next heartbeat round's.
    desired: Mutex<usize>,
    state: watch::Sender<SharedState>,
    /// Orders this control plane's ring versions after earlier ones.
    epoch: Epoch,
    subscribers: Arc<Subscribers>,
    next_id: AtomicU64,
    /// The weights of failed replicas not yet replaced: their replacements
    /// take them (changed only under the operation lock).
    lost_weights: std::sync::Mutex<Vec<u32>>,
    /// Set once shutdown began: a replica that exits then is not replaced.
    stopping: AtomicBool,
    /// Replicas started (boot, `/add`, replacements) and replicas that failed.
    started: AtomicU64,
    failed: AtomicU64,
    /// Graceful drains on `/rm` that completed, and that timed out.
    drained: AtomicU64,
    drain_timeouts: AtomicU64,
    /// Events, heartbeats and load for the live ring page.
    live: Live,
}

impl Manager {
    pub fn new(backend: Arc<dyn Backend>, prober: Prober, settings: ManagerSettings) -> Manager {
        let initial = RingState {
            version: 0,
            config: settings.ring,
            replicas: Vec::new(),
        };
        Manager {
            backend,
            prober,
            desired: Mutex::new(0),
            state: watch::channel(Arc::new(initial)).0,
            epoch: Epoch::from_clock(),
            subscribers: Arc::new(Subscribers::default()),
            next_id: AtomicU64::new(1),
            lost_weights: std::sync::Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
            started: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            drained: AtomicU64::new(0),
            drain_timeouts: AtomicU64::new(0),
            live: Live::default(),
            settings,
        }
    }

    /// The ring state in force.
    pub fn current(&self) -> SharedState {
        self.state.borrow().clone()
    }

    /// Every published state, current first.
    pub fn watch(&self) -> watch::Receiver<SharedState> {
        self.state.subscribe()
    }

    /// The epoch of every version this control plane publishes.
    pub fn epoch(&self) -> &Epoch {
        &self.epoch
    }

    pub fn subscribers(&self) -> &Arc<Subscribers> {
        &self.subscribers
    }

    pub fn prober(&self) -> &Prober {
        &self.prober
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    pub fn settings(&self) -> &ManagerSettings {
        &self.settings
    }

    /// Events, heartbeats and load for the live ring page ([`crate::ui`]).
    pub fn live(&self) -> &Live {
        &self.live
    }

    /// Adopt the replicas the backend already runs, or start `server-1..N`.
    ///
    /// # Errors
    /// A [`ManagerError`] when the backend cannot list or start replicas,
    /// or they do not fit on the ring.
    pub async fn bootstrap(&self) -> Result<SharedState, ManagerError> {
        let mut desired = self.desired.lock().await;
        let adopted = self.backend.adopt().await?;
        let replicas = if adopted.is_empty() {
            let boot: Vec<Planned> = (1..=self.settings.boot_replicas as u64)
                .map(|id| Planned {
                    name: names::boot_name(id),
                    id,
                    weight: 1,
                })
                .collect();
            self.next_id.store(boot.len() as u64 + 1, Ordering::SeqCst);
            self.start_all(boot).await?
        } else {
            let max_id = adopted.iter().map(|r| r.id).max().unwrap_or(0);
            self.next_id.store(max_id + 1, Ordering::SeqCst);
            tracing::info!(replicas = ?adopted.iter().map(|r| &r.name).collect::<Vec<_>>(), "adopted running replicas");
            adopted
        };
        *desired = replicas.len();
        let next = self.current().with_replicas(replicas);
        next.ring()?;
        Ok(self.publish(next, Change::Boot))
    }

    /// `/add`: start `n` replicas (the given names first), all or nothing.
    ///
    /// # Errors
    /// A [`ManagerError`] for a name already present, more than
    /// `max_replicas` in total, a ring that cannot hold them, or a replica
    /// that fails to start (those this request started are stopped again).
    #[tracing::instrument(name = "add", skip_all, fields(n = request.n))]
    pub async fn add(&self, request: ScaleRequest) -> Result<SharedState, ManagerError> {
        let published = {
            let mut desired = self.desired.lock().await;
            let current = self.current();
            for name in &request.hostnames {
                if current.find(name).is_some() {
                    return Err(ManagerError::NameTaken(name.clone()));
                }
            }
            let total = current.replicas.len() + request.n;
            if total > self.settings.max_replicas {
                return Err(ManagerError::TooMany {
                    n: request.n,
                    total,
                    max: self.settings.max_replicas,
                });
            }
            let planned = self.plan(
                &current,
                request.hostnames.clone(),
                request.n,
                &request.weights,
            );
            // Refuse a ring that cannot hold them before starting anything.
            let mut prospective = current.replicas.clone();
            prospective.extend(planned.iter().map(|p| Replica {
                id: p.id,
                name: p.name.clone(),
                address: String::new(),
                weight: p.weight,
            }));
            build_ring(&current.config, &prospective)?;

            let started = self.start_all(planned).await?;
            let mut replicas = current.replicas.clone();
            replicas.extend(started);
            *desired += request.n;
            self.publish(current.with_replicas(replicas), Change::Added)
        };
        self.await_convergence(published.version).await;
        Ok(published)
    }

    /// `/rm`: take `n` replicas (the given names first, then random others)
    /// off the ring, let the data planes apply it, then stop them.
    ///
    /// # Errors
    /// A [`ManagerError`] for more removals than replicas or an unknown
    /// name; nothing changes then.
    #[tracing::instrument(name = "rm", skip_all, fields(n = request.n))]
    pub async fn remove(&self, request: ScaleRequest) -> Result<SharedState, ManagerError> {
        let mut desired = self.desired.lock().await;
        let current = self.current();
        if request.n > current.replicas.len() {
            return Err(ManagerError::NotEnough {
                n: request.n,
                present: current.replicas.len(),
            });
        }
        for name in &request.hostnames {
            if current.find(name).is_none() {
                return Err(ManagerError::UnknownName(name.clone()));
            }
        }
        let mut others: Vec<&Replica> = current
            .replicas
            .iter()
            .filter(|r| !request.hostnames.contains(&r.name))
            .collect();
        fastrand::shuffle(&mut others);
        let mut victims: Vec<String> = request.hostnames.clone();
        victims.extend(
            others
                .iter()
                .take(request.n - request.hostnames.len())
                .map(|r| r.name.clone()),
        );
        let remaining: Vec<Replica> = current
            .replicas
            .iter()
            .filter(|r| !victims.contains(&r.name))
            .cloned()
            .collect();
        *desired = desired.saturating_sub(request.n);
        let published = self.publish(current.with_replicas(remaining), Change::Removed);
        self.await_convergence(published.version).await;
        let within = self.settings.drain_timeout;
        if !within.is_zero() {
            match self.subscribers.drained(&victims, within).await {
                Ok(()) => {
                    self.drained.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(replicas = ?victims, "data planes drained the removed replicas")
                }
                Err(busy) => {
                    self.drain_timeouts.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(replicas = ?victims, ?busy, ?within, "data planes still had requests in flight to removed replicas; stopping them anyway")
                }
            }
        }
        // Nothing routes to them any more: stop them, so their names are free.
        let stops = victims.iter().map(|name| self.backend.stop(name));
        for (name, result) in victims.iter().zip(futures::future::join_all(stops).await) {
            match result {
                Ok(()) => tracing::info!(%name, "replica removed"),
                Err(e) => {
                    tracing::warn!(%name, error = %e, "replica left the ring but did not stop cleanly")
                }
            }
        }
        Ok(published)
    }

    /// Change the ring configuration; published like a membership change.
    ///
    /// # Errors
    /// The error `change` returns, or a ring that cannot be built with the
    /// result; nothing changes then.
    #[tracing::instrument(name = "config", skip_all)]
    pub async fn set_config(
        &self,
        change: impl FnOnce(&RingConfig) -> Result<RingConfig, RingError>,
    ) -> Result<SharedState, ManagerError> {
        let published = {
            let _ops = self.desired.lock().await;
            let current = self.current();
            let config = change(&current.config)?;
            if config == current.config {
                // Nothing changes: no new version for the data planes.
                return Ok(current);
            }
            build_ring(&config, &current.replicas)?;
            tracing::info!(?config, "ring configuration changed");
            self.publish(
                RingState {
                    version: current.version + 1,
                    config,
                    replicas: current.replicas.clone(),
                },
                Change::Config,
            )
        };
        self.await_convergence(published.version).await;
        Ok(published)
    }

    /// A replica stopped answering (or exited): take it off the ring at once,
    /// clean up after it, and start a replacement under a new name.
    #[tracing::instrument(name = "replica_failed", skip(self), fields(replica = name))]
    pub async fn replica_failed(&self, name: &str, id: u64, reason: &str) {
        if self.stopping() {
            tracing::info!(%name, id, %reason, "replica ended during shutdown; not replaced");
            return;
        }
        {
            let _ops = self.desired.lock().await;
            let current = self.current();
            if current.find(name).is_none_or(|r| r.id != id) {
                return; // already removed or replaced
            }
            tracing::warn!(%name, id, %reason, "replica failed; taking it off the ring");
            self.failed.fetch_add(1, Ordering::Relaxed);
            if let Some(failed) = current.find(name) {
                self.lost_weights().push(failed.weight);
            }
            let remaining = current
                .replicas
                .iter()
                .filter(|r| r.name != name)
                .cloned()
                .collect();
            self.publish(
                current.with_replicas(remaining),
                Change::Failed {
                    reason: reason.to_owned(),
                },
            );
            if let Err(e) = self.backend.stop(name).await {
                tracing::warn!(%name, error = %e, "cleaning up the failed replica");
            }
        }
        self.heal().await;
    }

    /// Shutdown began: from now on no replica is replaced (they are about
    /// to be stopped; one that ends first, e.g. from the same Ctrl-C, is
    /// not a failure).
    pub fn begin_shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Whether [`begin_shutdown`](Self::begin_shutdown) was called.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// How many replicas are missing from N. Never waits: while a change is
    /// under way (the operation lock is held) it answers 0, and the next
    /// heartbeat round asks again, so heartbeats never stall behind a slow
    /// `/add`.
    pub fn deficit(&self) -> usize {
        match self.desired.try_lock() {
            Ok(desired) => desired.saturating_sub(self.current().replicas.len()),
            Err(_) => 0,
        }
    }

    /// Start replicas under new names until N replicas run again. A failed
    /// start is logged and retried on the next heartbeat round.
    #[tracing::instrument(name = "heal", skip_all)]
    pub async fn heal(&self) {
        if self.stopping() {
            return;
        }
        // Busy: another change (or heal) is under way; the next heartbeat
        // round asks again if replicas are still missing.
        let Ok(desired) = self.desired.try_lock() else {
            return;
        };
        let current = self.current();
        let missing = desired.saturating_sub(current.replicas.len());
        if missing == 0 {
            // Nothing to replace (e.g. an /rm lowered N): no weight to keep.
            self.lost_weights().clear();
        } else {
            let weights = self.lost_weights().clone();
            let planned = self.plan(&current, Vec::new(), missing, &weights);
            match self.start_all(planned).await {
                Ok(started) => {
                    let mut lost = self.lost_weights();
                    let used = started.len().min(lost.len());
                    lost.drain(..used);
                    drop(lost);
                    let names: Vec<&str> = started.iter().map(|r| r.name.as_str()).collect();
                    tracing::info!(replacements = ?names, n = *desired, "replicas replaced; N restored");
                    let mut replicas = current.replicas.clone();
                    replicas.extend(started);
                    self.publish(current.with_replicas(replicas), Change::Replaced);
                }
                Err(e) => {
                    tracing::error!(error = %e, missing, "cannot start replacement replicas; will retry")
                }
            }
        }
        drop(desired);
    }

    /// Names, ids and weights for `n` new replicas: the `given` names
    /// first, then generated ones that neither `current` nor the plan holds;
    /// `weights[i]` for the i-th (1 when `weights` is shorter).
    fn plan(
        &self,
        current: &RingState,
        given: Vec<String>,
        n: usize,
        weights: &[u32],
    ) -> Vec<Planned> {
        let mut planned = given;
        while planned.len() < n {
            let name =
                names::generate(|n| current.find(n).is_some() || planned.iter().any(|p| p == n));
            planned.push(name);
        }
        planned
            .into_iter()
            .enumerate()
            .map(|(i, name)| Planned {
                name,
                id: self.next_id.fetch_add(1, Ordering::SeqCst),
                weight: weights.get(i).copied().unwrap_or(1),
            })
            .collect()
    }

    /// Start every planned replica, wait for their heartbeats; on any
    /// failure stop the ones that started and return the first error.
    async fn start_all(&self, planned: Vec<Planned>) -> Result<Vec<Replica>, ManagerError> {
        let starts = planned.into_iter().map(|p| self.start_one(p));
        let results = futures::future::join_all(starts).await;
        let mut started = Vec::with_capacity(results.len());
        let mut first_error = None;
        for result in results {
            match result {
                Ok(replica) => started.push(replica),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(error) = first_error {
            tracing::warn!(error = %error, undone = started.len(), "start failed; removing the replicas this change started");
            let stops = started.iter().map(|r| self.backend.stop(&r.name));
            futures::future::join_all(stops).await;
            return Err(error);
        }
        Ok(started)
    }

    async fn start_one(&self, planned: Planned) -> Result<Replica, ManagerError> {
        let Planned { name, id, weight } = planned;
        let address = self.backend.start(&name, id, weight).await?;
        let within = self.settings.startup_timeout;
        if !self.prober.wait_healthy(&address, within).await {
            if let Err(e) = self.backend.stop(&name).await {
                tracing::warn!(%name, error = %e, "stopping a replica that never became healthy");
            }
            return Err(ManagerError::NotHealthy { name, within });
        }
        tracing::info!(%name, id, %address, "replica started");
        self.started.fetch_add(1, Ordering::Relaxed);
        Ok(Replica {
            id,
            name,
            address,
            weight,
        })
    }

    fn lost_weights(&self) -> std::sync::MutexGuard<'_, Vec<u32>> {
        // A plain list: whatever a panicking holder did, it is usable.
        self.lost_weights
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Graceful drains on `/rm` that completed and that timed out, since
    /// start.
    pub fn drain_counts(&self) -> (u64, u64) {
        (
            self.drained.load(Ordering::Relaxed),
            self.drain_timeouts.load(Ordering::Relaxed),
        )
    }

    /// Replicas started (boot, `/add`, replacements) and replicas that
    /// failed, since start.
    pub fn lifecycle_counts(&self) -> (u64, u64) {
        (
            self.started.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    fn publish(&self, next: RingState, why: Change) -> SharedState {
        let next = Arc::new(next);
        tracing::info!(version = next.version, replicas = ?next.names(), "ring version published");
        let previous = self.state.send_replace(next.clone());
        self.live.published(&previous, &next, &why);
        next
    }

    async fn await_convergence(&self, version: u64) {
        if let Err(lagging) = self
            .subscribers
            .converged(version, self.settings.converge_timeout)
            .await
        {
            tracing::warn!(version, ?lagging, within = ?self.settings.converge_timeout, "data planes did not apply the ring version in time; answering anyway");
        }
    }
}

/// A replica about to be started.
struct Planned {
    name: String,
    id: u64,
    weight: u32,
}
