//! What the two Docker backends share: the engine connection and the
//! start-up checks, the labels that mark a replica as ours, the mapping of
//! Docker API errors, and the event-stream loop.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::models::EventMessage;
use bollard::query_parameters::EventsOptionsBuilder;
use futures::StreamExt;

use super::BackendError;

/// Label set on every container and service a Docker backend makes.
pub const LABEL_MANAGED: &str = "ringlb.managed";
/// Label holding the replica's numeric id.
pub const LABEL_ID: &str = "ringlb.id";
/// Label holding the network the replica belongs to (one cluster per network).
pub const LABEL_NETWORK: &str = "ringlb.network";
/// Label holding the replica's ring weight (absent: 1).
pub const LABEL_WEIGHT: &str = "ringlb.weight";
/// Label holding the replica's name (a Swarm task's container is not named
/// after its replica, so its events carry the name here).
pub const LABEL_NAME: &str = "ringlb.name";
/// Seconds a replica gets between SIGTERM and SIGKILL on removal.
pub const STOP_GRACE_SECS: i32 = 2;
/// Pause before the event stream is opened again after it ended.
const EVENTS_RECONNECT: Duration = Duration::from_secs(1);

/// The labels of replica `name` with `id` and `weight` on `network`.
pub fn replica_labels(name: &str, id: u64, weight: u32, network: &str) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_MANAGED.to_owned(), "true".to_owned()),
        (LABEL_ID.to_owned(), id.to_string()),
        (LABEL_WEIGHT.to_owned(), weight.to_string()),
        (LABEL_NETWORK.to_owned(), network.to_owned()),
        (LABEL_NAME.to_owned(), name.to_owned()),
    ])
}

/// The label filter that selects the replicas of `network`.
pub fn replica_filter(network: &str) -> Vec<String> {
    vec![
        format!("{LABEL_MANAGED}=true"),
        format!("{LABEL_NETWORK}={network}"),
    ]
}

/// The replica id in a label map, if it is there and a number.
pub fn id_label(labels: Option<&HashMap<String, String>>) -> Option<u64> {
    labels?.get(LABEL_ID)?.parse().ok()
}

/// The replica weight in a label map (1 when absent or invalid: replicas
/// made before weights).
pub fn weight_label(labels: Option<&HashMap<String, String>>) -> u32 {
    labels
        .and_then(|l| l.get(LABEL_WEIGHT))
        .and_then(|w| w.parse().ok())
        .filter(|w| *w >= 1)
        .unwrap_or(1)
}

pub fn unavailable(what: &str, e: impl std::fmt::Display) -> BackendError {
    BackendError::Unavailable(format!("{what}: {e}"))
}

/// The HTTP status of a Docker API error, if it is one.
pub fn status_of(e: &bollard::errors::Error) -> Option<u16> {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// Connect to the engine (`DOCKER_HOST` or the local socket) and check that
/// it answers and has the replica image, so that a missing one is a clear
/// error at start-up rather than at the first `/add`.
///
/// # Errors
/// [`BackendError::Unavailable`] naming what is missing.
pub async fn connect(image: &str) -> Result<Docker, BackendError> {
    let docker = Docker::connect_with_local_defaults()
        .map_err(|e| unavailable("cannot reach the Docker engine", e))?;
    docker
        .ping()
        .await
        .map_err(|e| unavailable("the Docker engine does not answer", e))?;
    docker.inspect_image(image).await.map_err(|e| {
        unavailable(
            &format!("replica image '{image}' is missing (build it with `make build`)"),
            e,
        )
    })?;
    Ok(docker)
}

/// Follow the engine's events matching `filters`, handing each to
/// `on_event`; open the stream again whenever it ends or fails. Runs until
/// its task is aborted.
pub async fn follow_events(
    docker: Docker,
    filters: HashMap<&'static str, Vec<String>>,
    mut on_event: impl FnMut(EventMessage),
) {
    loop {
        let options = EventsOptionsBuilder::default().filters(&filters).build();
        let mut stream = docker.events(Some(options));
        while let Some(event) = stream.next().await {
            match event {
                Ok(message) => on_event(message),
                Err(e) => {
                    tracing::warn!(error = %e, "Docker event stream failed; reconnecting");
                    break;
                }
            }
        }
        tokio::time::sleep(EVENTS_RECONNECT).await;
    }
}

/// The attributes of an event's actor (a container's labels among them).
pub fn attributes(message: EventMessage) -> HashMap<String, String> {
    message.actor.and_then(|a| a.attributes).unwrap_or_default()
}
