//! Replicas as Docker Swarm services, so that an existing cluster engine
//! schedules them over every node of the swarm.
//!
//! Each replica is one service named after the replica: one task
//! (replicated mode, 1 replica), restart condition `none` (a dead replica is
//! replaced by the control plane under a **new** name, as with the other
//! backends, instead of being restarted by Swarm under the old one), endpoint
//! mode `dnsrr` (VIPs need IPVS), `SERVER_ID` set, attached to one attachable
//! overlay network, a short stop grace period, and the same `ringlb.*`
//! labels on the service and its container as the Docker backend's.
//!
//! Failures are noticed three ways: the container's `die` event (tasks on
//! this node, at once), the service's `remove` event (`docker service rm`
//! by an operator), and a periodic reconcile of the owned services against
//! the task list (tasks on other nodes, and anything the event stream
//! missed). At start-up the labelled services with a running task are
//! adopted; the others are removed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::{
    EndpointSpec, EndpointSpecModeEnum, LocalNodeState, NetworkAttachmentConfig, ServiceSpec,
    ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec, TaskSpecContainerSpec,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum, TaskState,
};
use bollard::query_parameters::ListServicesOptionsBuilder;
use tokio::sync::broadcast;

mod task;
mod watch;

use task::state_of;
use watch::{Owned, reconcile, watch_deaths, watch_removals};

use super::docker::DockerSettings;
use super::engine::{
    self, STOP_GRACE_SECS, id_label, replica_filter, replica_labels, status_of, unavailable,
    weight_label,
};
use super::{Backend, BackendError, BackendEvent};
use crate::state::Replica;

/// How often the owned services are checked against the task list by
/// default.
pub const DEFAULT_RECONCILE_INTERVAL: Duration = Duration::from_secs(2);
/// How long a new service's task gets to reach `running` (scheduling and
/// starting its container) by default.
pub const DEFAULT_TASK_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between two looks at a starting task.
const TASK_POLL: Duration = Duration::from_millis(100);

/// Where and how replicas run on the swarm.
#[derive(Clone, Debug)]
pub struct SwarmSettings {
    /// Image, network (an attachable overlay) and port, as for containers.
    pub replicas: DockerSettings,
    /// How often owned services are reconciled against their tasks.
    pub reconcile_interval: Duration,
    /// How long a task gets to reach `running`.
    pub task_timeout: Duration,
}

impl Default for SwarmSettings {
    fn default() -> Self {
        SwarmSettings {
            replicas: DockerSettings::default(),
            reconcile_interval: DEFAULT_RECONCILE_INTERVAL,
            task_timeout: DEFAULT_TASK_TIMEOUT,
        }
    }
}

/// Runs replicas as Swarm services.
pub struct SwarmBackend {
    docker: Docker,
    settings: SwarmSettings,
    node_id: String,
    owned: Arc<Owned>,
    watchers: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for SwarmBackend {
    fn drop(&mut self) {
        for watcher in &self.watchers {
            watcher.abort();
        }
    }
}

impl SwarmBackend {
    /// Connect to the engine and check, so that each is a clear error at
    /// start-up: the engine answers, is a manager of an active swarm, has
    /// the replica image, and the network exists as an attachable overlay.
    ///
    /// # Errors
    /// [`BackendError::Unavailable`] naming what is wrong and how to fix it.
    pub async fn connect(settings: SwarmSettings) -> Result<SwarmBackend, BackendError> {
        let docker = engine::connect(&settings.replicas.image).await?;
        let info = docker
            .info()
            .await
            .map_err(|e| unavailable("cannot read the Docker engine's state", e))?;
        let swarm = info.swarm.unwrap_or_default();
        let state = swarm.local_node_state.unwrap_or(LocalNodeState::EMPTY);
        if state != LocalNodeState::ACTIVE {
            return Err(BackendError::Unavailable(format!(
                "the Docker engine is not in swarm mode (state '{state}'): run \
                 `docker swarm init` or `make swarm-up`"
            )));
        }
        if swarm.control_available != Some(true) {
            return Err(BackendError::Unavailable(
                "this Docker engine is a swarm worker: run the control plane on a manager node"
                    .into(),
            ));
        }
        let node_id = swarm.node_id.unwrap_or_default();
        let network = &settings.replicas.network;
        let create = format!("docker network create --driver overlay --attachable {network}");
        let inspected = docker
            .inspect_network(
                network,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
            .map_err(|e| {
                unavailable(
                    &format!("Docker network '{network}' is missing (create it with `{create}`)"),
                    e,
                )
            })?;
        let driver = inspected.driver.unwrap_or_default();
        if driver != "overlay" || inspected.attachable != Some(true) {
            return Err(BackendError::Unavailable(format!(
                "Docker network '{network}' is not an attachable overlay network (driver \
                 '{driver}'); create one with `{create}`"
            )));
        }
        let events = broadcast::channel(64).0;
        let owned = Arc::new(Owned::new(events));
        let watchers = vec![
            tokio::spawn(watch_deaths(docker.clone(), network.clone(), owned.clone())),
            tokio::spawn(watch_removals(docker.clone(), owned.clone())),
            tokio::spawn(reconcile(
                docker.clone(),
                network.clone(),
                settings.reconcile_interval,
                owned.clone(),
            )),
        ];
        Ok(SwarmBackend {
            docker,
            settings,
            node_id,
            owned,
            watchers,
        })
    }

    fn spec(&self, name: &str, id: u64, weight: u32) -> ServiceSpec {
        let replicas = &self.settings.replicas;
        let labels = replica_labels(name, id, weight, &replicas.network);
        ServiceSpec {
            name: Some(name.to_owned()),
            labels: Some(labels.clone()),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some(replicas.image.clone()),
                    env: Some(vec![
                        format!("SERVER_ID={name}"),
                        format!("PORT={}", replicas.replica_port),
                    ]),
                    labels: Some(labels),
                    stop_grace_period: Some(i64::from(STOP_GRACE_SECS) * 1_000_000_000),
                    ..Default::default()
                }),
                restart_policy: Some(TaskSpecRestartPolicy {
                    condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                    ..Default::default()
                }),
                networks: Some(vec![NetworkAttachmentConfig {
                    target: Some(replicas.network.clone()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            mode: Some(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
                ..Default::default()
            }),
            endpoint_spec: Some(EndpointSpec {
                mode: Some(EndpointSpecModeEnum::DNSRR),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    async fn remove(&self, name: &str) -> Result<(), bollard::errors::Error> {
        match self.docker.delete_service(name).await {
            Err(e) if status_of(&e) != Some(404) => Err(e),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl Backend for SwarmBackend {
    fn kind(&self) -> &'static str {
        "swarm"
    }

    async fn start(&self, name: &str, id: u64, weight: u32) -> Result<String, BackendError> {
        let fail = |reason: String| BackendError::StartFailed {
            name: name.to_owned(),
            reason,
        };
        if let Err(e) = self
            .docker
            .create_service(self.spec(name, id, weight), None)
            .await
        {
            let replicas = &self.settings.replicas;
            return Err(fail(match status_of(&e) {
                Some(409) => format!("a service named '{name}' already exists"),
                Some(404) => format!(
                    "image '{}' or network '{}' is missing ({e})",
                    replicas.image, replicas.network
                ),
                Some(503) => format!("the swarm cannot take the service ({e})"),
                _ => e.to_string(),
            }));
        }
        match self.await_task(name).await {
            Ok(address) => {
                self.owned.insert(name, id);
                tracing::debug!(%name, id, %address, "replica service running");
                Ok(address)
            }
            Err(reason) => {
                if let Err(e) = self.remove(name).await {
                    tracing::warn!(%name, error = %e, "removing a service that failed to start");
                }
                Err(fail(reason))
            }
        }
    }

    async fn stop(&self, name: &str) -> Result<(), BackendError> {
        self.owned.forget(name);
        self.remove(name)
            .await
            .map_err(|e| BackendError::StopFailed {
                name: name.to_owned(),
                reason: e.to_string(),
            })
    }

    async fn adopt(&self) -> Result<Vec<Replica>, BackendError> {
        let filters = HashMap::from([("label", replica_filter(&self.settings.replicas.network))]);
        let options = ListServicesOptionsBuilder::default()
            .filters(&filters)
            .build();
        let services = self
            .docker
            .list_services(Some(options))
            .await
            .map_err(|e| unavailable("cannot list services", e))?;
        let mut adopted = Vec::new();
        for service in services {
            let spec = service.spec.unwrap_or_default();
            let name = spec.name.unwrap_or_default();
            let id = id_label(spec.labels.as_ref());
            let weight = weight_label(spec.labels.as_ref());
            let tasks = self
                .tasks_of(&name)
                .await
                .map_err(|e| unavailable("cannot list tasks", e))?;
            let mut address = None;
            for task in &tasks {
                let wanted = task.desired_state == Some(TaskState::RUNNING);
                if wanted && state_of(task) == Some(&TaskState::RUNNING) {
                    address = self.address_of(&name, task).await;
                }
            }
            match (id, address) {
                (Some(id), Some(address)) if !name.is_empty() => {
                    self.owned.insert(&name, id);
                    adopted.push(Replica {
                        id,
                        name,
                        address,
                        weight,
                    });
                }
                _ => {
                    tracing::info!(%name, "removing a stale replica service");
                    if let Err(e) = self.remove(&name).await {
                        tracing::warn!(%name, error = %e, "cannot remove a stale replica service");
                    }
                }
            }
        }
        // Ids grow with every replica started, so id order is age order.
        adopted.sort_by_key(|r| r.id);
        Ok(adopted)
    }

    fn events(&self) -> broadcast::Receiver<BackendEvent> {
        self.owned.events.subscribe()
    }

    async fn shutdown(&self) {
        tracing::info!("leaving replica services running for the next control plane to adopt");
    }
}
