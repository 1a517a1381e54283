//! Heartbeats: a prober that asks one replica `GET /heartbeat`, and the
//! checker that probes every replica on an interval and reports the ones
//! that miss `consecutive_failures` heartbeats in a row.
//!
//! A busy replica is not a dead one: the probe uses its own pooled
//! connection (it never queues behind request traffic in an accept backlog)
//! and only a run of consecutive misses counts; a process that exits is
//! reported at once through the backend's events instead.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::manager::Manager;

/// Asks replicas for their heartbeat.
#[derive(Clone)]
pub struct Prober {
    client: Client<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
}

impl Prober {
    pub fn new(timeout: Duration) -> Prober {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1)
            .build(connector);
        Prober { client, timeout }
    }

    /// One heartbeat: `Ok` on a 200 within the timeout.
    ///
    /// # Errors
    /// Why the heartbeat counts as missed (no answer in time, another
    /// status, a connection error), for the log.
    pub async fn probe(&self, address: &str) -> Result<(), String> {
        let req = Request::get(format!("http://{address}/heartbeat"))
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
            Ok(Err(e)) => Err(e.to_string()),
            Ok(Ok(resp)) if resp.status() == StatusCode::OK => Ok(()),
            Ok(Ok(resp)) => Err(format!("answered {}", resp.status())),
        }
    }

    /// Probe every 25 ms until one succeeds or `within` passes.
    pub async fn wait_healthy(&self, address: &str, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.probe(address).await.is_ok() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Time between two heartbeat rounds by default.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);
/// How long one heartbeat may take by default before it counts as missed.
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(1);
/// Heartbeats missed in a row, by default, before a replica is replaced.
pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 2;

/// Heartbeat schedule.
#[derive(Clone, Copy, Debug)]
pub struct CheckerSettings {
    /// Time between two heartbeat rounds.
    pub interval: Duration,
    /// Heartbeats missed in a row before a replica is declared dead (≥ 1).
    pub consecutive_failures: u32,
}

impl Default for CheckerSettings {
    fn default() -> Self {
        CheckerSettings {
            interval: DEFAULT_HEARTBEAT_INTERVAL,
            consecutive_failures: DEFAULT_CONSECUTIVE_FAILURES,
        }
    }
}

/// Probe every replica each interval; hand dead ones to the manager, and
/// ask it to heal whenever fewer replicas run than it should have.
///
/// The failure handling and healing it starts run beside it (heartbeats
/// never wait for them), owned by it: aborting the checker at shutdown
/// aborts them too.
pub async fn run_checker(manager: Arc<Manager>, settings: CheckerSettings) {
    let mut misses: HashMap<(String, u64), u32> = HashMap::new();
    let mut tick = tokio::time::interval(settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut operations = tokio::task::JoinSet::new();
    loop {
        tick.tick().await;
        while operations.try_join_next().is_some() {}
        let state = manager.current();
        let probes = state.replicas.iter().map(|r| {
            let prober = manager.prober().clone();
            async move { (r, prober.probe(&r.address).await) }
        });
        let results = futures::future::join_all(probes).await;
        misses.retain(|(name, id), _| state.find(name).is_some_and(|r| r.id == *id));
        for (replica, result) in results {
            manager.live().heartbeat(
                &replica.name,
                replica.id,
                result.as_ref().err().map(String::as_str),
            );
            let key = (replica.name.clone(), replica.id);
            match result {
                Ok(()) => {
                    misses.remove(&key);
                }
                Err(reason) => {
                    let count = misses.entry(key.clone()).or_insert(0);
                    *count += 1;
                    tracing::debug!(name = %replica.name, misses = *count, %reason, "heartbeat missed");
                    if *count >= settings.consecutive_failures {
                        misses.remove(&key);
                        let manager = manager.clone();
                        let why = format!(
                            "{} heartbeats missed ({reason})",
                            settings.consecutive_failures
                        );
                        operations.spawn(async move {
                            manager.replica_failed(&key.0, key.1, &why).await;
                        });
                    }
                }
            }
        }
        if manager.deficit() > 0 {
            let manager = manager.clone();
            operations.spawn(async move { manager.heal().await });
        }
    }
}
