//! Replicas as Docker containers, through the Docker Engine API (bollard).
//!
//! Each replica is a container of the replica image named after the replica,
//! on one network, with `SERVER_ID` set and labels that mark it as ours
//! (`ringlb.managed`, `ringlb.id`, `ringlb.network`, `ringlb.name`,
//! `ringlb.weight`). At start-up the labelled
//! containers that already run are adopted (a control-plane restart loses
//! nothing and duplicates nothing). Docker's event stream reports a `die` at
//! once, so `docker kill` / `docker stop` of a replica is acted on without
//! waiting for heartbeats. The control plane leaves its containers running
//! when it stops; `make down` removes them.

use std::collections::HashMap;

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::{ContainerCreateBody, ContainerSummaryStateEnum, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use tokio::sync::broadcast;

use super::engine::{
    self, LABEL_ID, LABEL_NAME, STOP_GRACE_SECS, id_label, replica_filter, replica_labels,
    status_of, unavailable, weight_label,
};
use super::{Backend, BackendError, BackendEvent};
use crate::state::Replica;

/// Where and how replicas run (the Swarm backend uses the same settings).
#[derive(Clone, Debug)]
pub struct DockerSettings {
    /// The replica image, e.g. `ringlb-replica:latest`.
    pub image: String,
    /// The network every replica joins, e.g. `net1`.
    pub network: String,
    /// The port the replica listens on inside its container.
    pub replica_port: u16,
}

/// The replica image by default (built by `make images`).
pub const DEFAULT_REPLICA_IMAGE: &str = "ringlb-replica:latest";
/// The network replicas join by default.
pub const DEFAULT_NETWORK: &str = "net1";
/// The port replicas listen on inside their containers by default.
pub const DEFAULT_REPLICA_PORT: u16 = 5000;

impl Default for DockerSettings {
    fn default() -> Self {
        DockerSettings {
            image: DEFAULT_REPLICA_IMAGE.into(),
            network: DEFAULT_NETWORK.into(),
            replica_port: DEFAULT_REPLICA_PORT,
        }
    }
}

/// Runs replicas as containers.
pub struct DockerBackend {
    docker: Docker,
    settings: DockerSettings,
    events: broadcast::Sender<BackendEvent>,
    watcher: tokio::task::JoinHandle<()>,
}

impl Drop for DockerBackend {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

impl DockerBackend {
    /// Connect to the engine (`DOCKER_HOST` or the local socket) and check
    /// that the image and the network exist, so that a missing one is a
    /// clear error at start-up rather than at the first `/add`.
    ///
    /// # Errors
    /// [`BackendError::Unavailable`] naming what is missing.
    pub async fn connect(settings: DockerSettings) -> Result<DockerBackend, BackendError> {
        let docker = engine::connect(&settings.image).await?;
        docker
            .inspect_network(
                &settings.network,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
            .map_err(|e| {
                unavailable(
                    &format!("Docker network '{}' is missing", settings.network),
                    e,
                )
            })?;
        let events = broadcast::channel(64).0;
        let watcher = tokio::spawn(watch_events(
            docker.clone(),
            settings.network.clone(),
            events.clone(),
        ));
        Ok(DockerBackend {
            docker,
            settings,
            events,
            watcher,
        })
    }

    fn address_in(
        &self,
        networks: Option<&HashMap<String, bollard::models::EndpointSettings>>,
    ) -> Option<String> {
        let ip = networks?
            .get(&self.settings.network)?
            .ip_address
            .as_deref()
            .filter(|ip| !ip.is_empty())?
            .to_owned();
        Some(format!("{ip}:{}", self.settings.replica_port))
    }

    async fn remove(&self, name: &str) -> Result<(), bollard::errors::Error> {
        let stop = StopContainerOptionsBuilder::default()
            .t(STOP_GRACE_SECS)
            .build();
        match self.docker.stop_container(name, Some(stop)).await {
            Ok(()) => {}
            // 304: already stopped; 404: already gone.
            Err(e) if matches!(status_of(&e), Some(304 | 404)) => {}
            Err(e) => return Err(e),
        }
        let remove = RemoveContainerOptionsBuilder::default().force(true).build();
        match self.docker.remove_container(name, Some(remove)).await {
            Ok(()) => Ok(()),
            Err(e) if matches!(status_of(&e), Some(404)) => Ok(()),
            // 409: removal already in progress (e.g. AutoRemove); fine.
            Err(e) if matches!(status_of(&e), Some(409)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl Backend for DockerBackend {
    fn kind(&self) -> &'static str {
        "docker"
    }

    async fn start(&self, name: &str, id: u64, weight: u32) -> Result<String, BackendError> {
        let fail = |reason: String| BackendError::StartFailed {
            name: name.to_owned(),
            reason,
        };
        let labels = replica_labels(name, id, weight, &self.settings.network);
        let body = ContainerCreateBody {
            image: Some(self.settings.image.clone()),
            env: Some(vec![
                format!("SERVER_ID={name}"),
                format!("PORT={}", self.settings.replica_port),
            ]),
            labels: Some(labels),
            host_config: Some(HostConfig {
                network_mode: Some(self.settings.network.clone()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default().name(name).build();
        if let Err(e) = self.docker.create_container(Some(options), body).await {
            return Err(fail(match status_of(&e) {
                Some(409) => format!("a container named '{name}' already exists"),
                Some(404) => format!(
                    "image '{}' or network '{}' is missing ({e})",
                    self.settings.image, self.settings.network
                ),
                _ => e.to_string(),
            }));
        }
        let started = async {
            self.docker
                .start_container(
                    name,
                    None::<bollard::query_parameters::StartContainerOptions>,
                )
                .await
                .map_err(|e| e.to_string())?;
            let inspect = self
                .docker
                .inspect_container(
                    name,
                    None::<bollard::query_parameters::InspectContainerOptions>,
                )
                .await
                .map_err(|e| e.to_string())?;
            let networks = inspect.network_settings.and_then(|s| s.networks);
            self.address_in(networks.as_ref()).ok_or_else(|| {
                format!(
                    "container has no address on network '{}'",
                    self.settings.network
                )
            })
        }
        .await;
        match started {
            Ok(address) => {
                tracing::debug!(%name, id, %address, "replica container started");
                Ok(address)
            }
            Err(reason) => {
                if let Err(e) = self.remove(name).await {
                    tracing::warn!(%name, error = %e, "removing a container that failed to start");
                }
                Err(fail(reason))
            }
        }
    }

    async fn stop(&self, name: &str) -> Result<(), BackendError> {
        self.remove(name)
            .await
            .map_err(|e| BackendError::StopFailed {
                name: name.to_owned(),
                reason: e.to_string(),
            })
    }

    async fn adopt(&self) -> Result<Vec<Replica>, BackendError> {
        let filters = HashMap::from([("label", replica_filter(&self.settings.network))]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| unavailable("cannot list containers", e))?;
        let mut adopted = Vec::new();
        for c in containers {
            let name = c
                .names
                .as_ref()
                .and_then(|names| names.first())
                .map(|n| n.trim_start_matches('/').to_owned())
                .unwrap_or_default();
            let id = id_label(c.labels.as_ref());
            let weight = weight_label(c.labels.as_ref());
            let running = c.state == Some(ContainerSummaryStateEnum::RUNNING);
            let address = self.address_in(
                c.network_settings
                    .as_ref()
                    .and_then(|s| s.networks.as_ref()),
            );
            match (running, id, address) {
                (true, Some(id), Some(address)) if !name.is_empty() => adopted.push(Replica {
                    id,
                    name,
                    address,
                    weight,
                }),
                _ => {
                    // Exited or unusable: remove it so its name is free.
                    tracing::info!(%name, "removing a stale replica container");
                    if let Err(e) = self.remove(&name).await {
                        tracing::warn!(%name, error = %e, "cannot remove a stale replica container");
                    }
                }
            }
        }
        // Ids grow with every replica started, so id order is age order
        // (creation times only have one-second resolution).
        adopted.sort_by_key(|r| r.id);
        Ok(adopted)
    }

    fn events(&self) -> broadcast::Receiver<BackendEvent> {
        self.events.subscribe()
    }

    async fn shutdown(&self) {
        tracing::info!("leaving replica containers running for the next control plane to adopt");
    }
}

/// Forward `die` events of our containers.
async fn watch_events(docker: Docker, network: String, events: broadcast::Sender<BackendEvent>) {
    let filters = HashMap::from([
        ("type", vec!["container".to_owned()]),
        ("event", vec!["die".to_owned()]),
        ("label", replica_filter(&network)),
    ]);
    engine::follow_events(docker, filters, |message| {
        let attributes = engine::attributes(message);
        // Containers made before the name label existed are named after
        // their replica.
        let Some(name) = attributes
            .get(LABEL_NAME)
            .or_else(|| attributes.get("name"))
            .cloned()
        else {
            return;
        };
        if let Some(id) = attributes.get(LABEL_ID).and_then(|id| id.parse().ok()) {
            tracing::info!(%name, id, "replica container died");
            let _ = events.send(BackendEvent::Exited { name, id });
        }
    })
    .await;
}
