//! How the Swarm backend learns that a replica ended: the services it owns,
//! each reported at most once, and the three watchers that report them
//! (container `die` events, service `remove` events, a task-list
//! reconcile).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::models::TaskState;
use bollard::query_parameters::{ListServicesOptionsBuilder, ListTasksOptionsBuilder};
use tokio::sync::broadcast;

use super::state_of;
use crate::backend::BackendEvent;
use crate::backend::engine::{self, LABEL_ID, LABEL_NAME, replica_filter, status_of};

/// The services this backend runs and has not reported gone: each is
/// reported at most once, however many of the three watchers notice it.
pub(super) struct Owned {
    services: Mutex<HashMap<String, u64>>,
    pub(super) events: broadcast::Sender<BackendEvent>,
}

impl Owned {
    pub(super) fn new(events: broadcast::Sender<BackendEvent>) -> Owned {
        Owned {
            services: Mutex::new(HashMap::new()),
            events,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        // The map stays consistent whatever a panicking holder did.
        self.services
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn insert(&self, name: &str, id: u64) {
        self.lock().insert(name.to_owned(), id);
    }

    /// Stop following `name` (it is being removed on purpose).
    pub(super) fn forget(&self, name: &str) {
        self.lock().remove(name);
    }

    pub(super) fn snapshot(&self) -> Vec<(String, u64)> {
        self.lock()
            .iter()
            .map(|(name, id)| (name.clone(), *id))
            .collect()
    }

    /// Report `name` gone, once; `id`, when known, must match (a late event
    /// of an earlier replica of the same name is ignored).
    pub(super) fn gone(&self, name: &str, id: Option<u64>, why: &str) {
        let removed = {
            let mut services = self.lock();
            match services.get(name) {
                Some(owned) if id.is_none_or(|id| id == *owned) => services.remove(name),
                _ => None,
            }
        };
        if let Some(id) = removed {
            tracing::info!(%name, id, %why, "replica service ended");
            let _ = self.events.send(BackendEvent::Exited {
                name: name.to_owned(),
                id,
            });
        }
    }
}

/// A task's container died on this node.
pub(super) async fn watch_deaths(docker: Docker, network: String, owned: Arc<Owned>) {
    let filters = HashMap::from([
        ("type", vec!["container".to_owned()]),
        ("event", vec!["die".to_owned()]),
        ("label", replica_filter(&network)),
    ]);
    engine::follow_events(docker, filters, |message| {
        let attributes = engine::attributes(message);
        if let Some(name) = attributes.get(LABEL_NAME) {
            let id = attributes.get(LABEL_ID).and_then(|id| id.parse().ok());
            owned.gone(name, id, "its container died");
        }
    })
    .await;
}

/// A service was removed (e.g. `docker service rm` by an operator). The
/// event carries no labels: a name that exists again (a newer service of
/// the same name) is not reported.
pub(super) async fn watch_removals(docker: Docker, owned: Arc<Owned>) {
    let filters = HashMap::from([
        ("type", vec!["service".to_owned()]),
        ("event", vec!["remove".to_owned()]),
    ]);
    let (removed, mut names) = tokio::sync::mpsc::unbounded_channel::<String>();
    let check = {
        let (docker, owned) = (docker.clone(), owned.clone());
        tokio::spawn(async move {
            while let Some(name) = names.recv().await {
                let exists = docker
                    .inspect_service(
                        &name,
                        None::<bollard::query_parameters::InspectServiceOptions>,
                    )
                    .await;
                if exists.is_err_and(|e| status_of(&e) == Some(404)) {
                    owned.gone(&name, None, "its service was removed");
                }
            }
        })
    };
    engine::follow_events(docker, filters, |message| {
        if let Some(name) = engine::attributes(message).remove("name") {
            let _ = removed.send(name);
        }
    })
    .await;
    check.abort();
}

/// Every `interval`, each owned service must exist and have a running task:
/// the only way to learn of a task that ended on another node.
pub(super) async fn reconcile(
    docker: Docker,
    network: String,
    interval: Duration,
    owned: Arc<Owned>,
) {
    let filters = HashMap::from([("label", replica_filter(&network))]);
    loop {
        tokio::time::sleep(interval).await;
        let expected = owned.snapshot();
        if expected.is_empty() {
            continue;
        }
        let options = ListServicesOptionsBuilder::default()
            .filters(&filters)
            .build();
        let services = match docker.list_services(Some(options)).await {
            Ok(services) => services,
            Err(e) => {
                tracing::warn!(error = %e, "reconcile: cannot list services");
                continue;
            }
        };
        let by_id: HashMap<String, String> = services
            .iter()
            .filter_map(|s| Some((s.id.clone()?, s.spec.as_ref()?.name.clone()?)))
            .collect();
        let names: Vec<String> = by_id.values().cloned().collect();
        let task_filters = HashMap::from([("service", names)]);
        let options = ListTasksOptionsBuilder::default()
            .filters(&task_filters)
            .build();
        let tasks = match docker.list_tasks(Some(options)).await {
            Ok(tasks) => tasks,
            Err(e) => {
                tracing::warn!(error = %e, "reconcile: cannot list tasks");
                continue;
            }
        };
        let running: HashSet<&str> = tasks
            .iter()
            .filter(|t| state_of(t) == Some(&TaskState::RUNNING))
            .filter_map(|t| by_id.get(t.service_id.as_deref()?).map(String::as_str))
            .collect();
        let present: HashSet<&str> = by_id.values().map(String::as_str).collect();
        for (name, id) in expected {
            if !present.contains(name.as_str()) {
                owned.gone(&name, Some(id), "its service is gone");
            } else if !running.contains(name.as_str()) {
                owned.gone(&name, Some(id), "its task no longer runs");
            }
        }
    }
}
