//! The control plane's decisions, in-process and on tokio's paused clock:
//! the manager and the heartbeat checker as they ship, in front of real
//! replica servers (`ringlb_replica::run`, HTTP on loopback port 0) that a
//! small in-process backend starts and stops. No process, no wall-clock
//! wait: each test runs in milliseconds whatever the machine's load.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ringlb_api::admin::ScaleRequest;
use ringlb_control_plane::backend::{Backend, BackendError, BackendEvent};
use ringlb_control_plane::health::{CheckerSettings, Prober, run_checker};
use ringlb_control_plane::manager::{Manager, ManagerSettings};
use ringlb_control_plane::state::Replica;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

/// Replicas as tasks of this runtime: each a real replica server on its
/// own loopback port. Names in `refuse` fail to start.
#[derive(Default)]
struct InProcess {
    running: Mutex<HashMap<String, JoinHandle<()>>>,
    refuse: Mutex<HashSet<String>>,
    starts: AtomicUsize,
    stopped: Mutex<Vec<String>>,
    events: Option<broadcast::Sender<BackendEvent>>,
}

impl InProcess {
    fn new() -> Arc<InProcess> {
        Arc::new(InProcess {
            events: Some(broadcast::channel(16).0),
            ..InProcess::default()
        })
    }

    /// The replica dies (its server task ends) without the backend being
    /// asked: only heartbeats can tell.
    fn crash(&self, name: &str) {
        if let Some(task) = lock(&self.running).remove(name) {
            task.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[async_trait]
impl Backend for InProcess {
    fn kind(&self) -> &'static str {
        "in-process"
    }

    async fn start(&self, name: &str, _id: u64, _weight: u32) -> Result<String, BackendError> {
        self.starts.fetch_add(1, Ordering::SeqCst);
        if lock(&self.refuse).contains(name) {
            return Err(BackendError::StartFailed {
                name: name.to_owned(),
                reason: "refused by the test".into(),
            });
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| BackendError::StartFailed {
                name: name.to_owned(),
                reason: e.to_string(),
            })?;
        let address = listener
            .local_addr()
            .map_err(|e| BackendError::StartFailed {
                name: name.to_owned(),
                reason: e.to_string(),
            })?;
        let id = name.to_owned();
        let task = tokio::spawn(async move {
            ringlb_replica::run(
                listener,
                &id,
                ringlb_replica::Routes::Spec,
                std::future::pending(),
            )
            .await;
        });
        lock(&self.running).insert(name.to_owned(), task);
        Ok(address.to_string())
    }

    async fn stop(&self, name: &str) -> Result<(), BackendError> {
        self.crash(name);
        lock(&self.stopped).push(name.to_owned());
        Ok(())
    }

    async fn adopt(&self) -> Result<Vec<Replica>, BackendError> {
        Ok(Vec::new())
    }

    fn events(&self) -> broadcast::Receiver<BackendEvent> {
        match &self.events {
            Some(events) => events.subscribe(),
            None => broadcast::channel(1).1,
        }
    }

    async fn shutdown(&self) {
        for (_, task) in lock(&self.running).drain() {
            task.abort();
        }
    }
}

async fn manager(backend: Arc<InProcess>, boot: usize) -> Arc<Manager> {
    let settings = ManagerSettings {
        boot_replicas: boot,
        ..ManagerSettings::default()
    };
    let manager = Arc::new(Manager::new(
        backend,
        Prober::new(Duration::from_secs(1)),
        settings,
    ));
    manager.bootstrap().await.expect("boot");
    manager
}

fn names(manager: &Manager) -> Vec<String> {
    manager
        .current()
        .replicas
        .iter()
        .map(|r| r.name.clone())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn an_add_that_fails_part_way_is_rolled_back() {
    let backend = InProcess::new();
    let manager = manager(backend.clone(), 3).await;
    let before = manager.current();
    lock(&backend.refuse).insert("S6".to_owned());
    let refused = manager
        .add(ScaleRequest {
            n: 3,
            hostnames: vec!["S5".into(), "S6".into()],
            weights: vec![],
        })
        .await;
    assert!(refused.is_err(), "{refused:?}");
    let after = manager.current();
    assert_eq!(after.version, before.version, "nothing published");
    assert_eq!(names(&manager), ["server-1", "server-2", "server-3"]);
    // What this request started is stopped again.
    let stopped = lock(&backend.stopped).clone();
    assert!(stopped.contains(&"S5".to_owned()), "{stopped:?}");
    assert_eq!(lock(&backend.running).len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_failure_reported_for_a_stale_id_changes_nothing() {
    let backend = InProcess::new();
    let manager = manager(backend.clone(), 3).await;
    let before = manager.current();
    let replica = before.find("server-2").expect("server-2").clone();
    // A report about an earlier replica of the same name (another id).
    manager
        .replica_failed(&replica.name, replica.id + 100, "late report")
        .await;
    assert_eq!(manager.current().version, before.version);
    assert_eq!(backend.starts.load(Ordering::SeqCst), 3);
    // The right id takes it off and heals.
    manager
        .replica_failed(&replica.name, replica.id, "crashed")
        .await;
    let after = manager.current();
    assert!(after.find("server-2").is_none());
    assert_eq!(after.replicas.len(), 3, "N restored: {:?}", names(&manager));
}

#[tokio::test(start_paused = true)]
async fn concurrent_heal_requests_coalesce() {
    let backend = InProcess::new();
    let manager = manager(backend.clone(), 4).await;
    let state = manager.current();
    let dead: Vec<Replica> = ["server-1", "server-3"]
        .iter()
        .map(|name| state.find(name).expect("booted").clone())
        .collect();
    for replica in &dead {
        backend.crash(&replica.name);
    }
    // Both failures reported at once, and heal asked for five more times
    // meanwhile (as heartbeat rounds and backend events would).
    let failures = dead
        .iter()
        .map(|r| manager.replica_failed(&r.name, r.id, "crashed"));
    let heals = (0..5).map(|_| manager.heal());
    tokio::join!(
        futures::future::join_all(failures),
        futures::future::join_all(heals)
    );
    let after = manager.current();
    assert_eq!(after.replicas.len(), 4, "N restored: {:?}", names(&manager));
    assert!(dead.iter().all(|r| after.find(&r.name).is_none()));
    // Two replacements, not one per request.
    assert_eq!(backend.starts.load(Ordering::SeqCst), 4 + 2);
    assert_eq!(lock(&backend.running).len(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_replica_is_replaced_after_the_threshold_of_missed_heartbeats() {
    let backend = InProcess::new();
    let manager = manager(backend.clone(), 3).await;
    let settings = CheckerSettings {
        interval: Duration::from_millis(100),
        consecutive_failures: 3,
    };
    backend.crash("server-2");
    // Rounds at 0, 100 and 200 ms (paused clock): the third miss is at
    // 200 ms.
    let checker = tokio::spawn(run_checker(manager.clone(), settings));
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        manager.current().find("server-2").is_some(),
        "replaced after two misses"
    );
    let mut rounds = 0;
    while manager.current().find("server-2").is_some() || manager.current().replicas.len() < 3 {
        rounds += 1;
        assert!(rounds < 100, "not replaced: {:?}", names(&manager));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(manager.current().replicas.len(), 3);
    assert_eq!(backend.starts.load(Ordering::SeqCst), 4);
    checker.abort();
}
