//! Following a replica service's one task: its state, why it ended, and
//! its address on the overlay network.

use std::collections::HashMap;
use std::time::Instant;

use bollard::models::{Task, TaskState};
use bollard::query_parameters::{InspectNetworkOptionsBuilder, ListTasksOptionsBuilder};

use super::{SwarmBackend, TASK_POLL};

pub(super) fn is_terminal(state: &TaskState) -> bool {
    matches!(
        state,
        TaskState::COMPLETE
            | TaskState::SHUTDOWN
            | TaskState::FAILED
            | TaskState::REJECTED
            | TaskState::REMOVE
            | TaskState::ORPHANED
    )
}

/// `state: err` (or `state: message`) of a task, for errors and logs.
fn describe(task: &Task) -> String {
    let status = task.status.as_ref();
    let state = status
        .and_then(|s| s.state.as_ref())
        .map_or_else(|| "unknown".to_owned(), ToString::to_string);
    let detail = status.and_then(|s| {
        s.err
            .as_deref()
            .filter(|e| !e.is_empty())
            .or(s.message.as_deref())
    });
    match detail {
        Some(detail) => format!("{state}: {detail}"),
        None => state,
    }
}

pub(super) fn state_of(task: &Task) -> Option<&TaskState> {
    task.status.as_ref()?.state.as_ref()
}

impl SwarmBackend {
    pub(super) async fn tasks_of(&self, name: &str) -> Result<Vec<Task>, bollard::errors::Error> {
        let filters = HashMap::from([("service", vec![name.to_owned()])]);
        let options = ListTasksOptionsBuilder::default().filters(&filters).build();
        self.docker.list_tasks(Some(options)).await
    }

    /// The task's address on the overlay network, `ip:port`: from its
    /// container when it runs on this node, else from the network's
    /// cluster-wide view (bollard's `Task` lacks the network attachments).
    pub(super) async fn address_of(&self, service: &str, task: &Task) -> Option<String> {
        let network = &self.settings.replicas.network;
        let port = self.settings.replicas.replica_port;
        let container = task
            .status
            .as_ref()
            .and_then(|s| s.container_status.as_ref())
            .and_then(|c| c.container_id.as_deref());
        if let Some(container) =
            container.filter(|_| task.node_id.as_deref() == Some(&self.node_id))
        {
            let inspected = self
                .docker
                .inspect_container(
                    container,
                    None::<bollard::query_parameters::InspectContainerOptions>,
                )
                .await
                .ok()?;
            let ip = inspected
                .network_settings?
                .networks?
                .get(network)?
                .ip_address
                .clone()
                .filter(|ip| !ip.is_empty())?;
            return Some(format!("{ip}:{port}"));
        }
        let task_id = task.id.as_deref()?;
        let options = InspectNetworkOptionsBuilder::default()
            .verbose(true)
            .scope("swarm")
            .build();
        let inspected = self
            .docker
            .inspect_network(network, Some(options))
            .await
            .ok()?;
        let tasks = inspected.services?.remove(service)?;
        let ip = tasks
            .get("Tasks")?
            .as_array()?
            .iter()
            .find(|t| {
                t.get("Name")
                    .and_then(|n| n.as_str())
                    .is_some_and(|n| n.ends_with(task_id))
            })?
            .get("EndpointIP")?
            .as_str()?
            .split('/')
            .next()?
            .to_owned();
        Some(format!("{ip}:{port}"))
    }

    /// Wait until the service's task runs and answer its address, or say why
    /// it will not (rejected, failed, no suitable node, timeout).
    pub(super) async fn await_task(&self, name: &str) -> Result<String, String> {
        let deadline = Instant::now() + self.settings.task_timeout;
        let mut last = "no task yet".to_owned();
        while Instant::now() < deadline {
            let tasks = self.tasks_of(name).await.map_err(|e| e.to_string())?;
            for task in &tasks {
                match state_of(task) {
                    Some(TaskState::RUNNING) => {
                        if let Some(address) = self.address_of(name, task).await {
                            return Ok(address);
                        }
                        last = "running without an address on the network yet".into();
                    }
                    Some(state) if is_terminal(state) => {
                        return Err(format!("its task ended ({})", describe(task)));
                    }
                    _ => last = describe(task),
                }
            }
            tokio::time::sleep(TASK_POLL).await;
        }
        Err(format!(
            "its task did not run within {:?} (last state: {last})",
            self.settings.task_timeout
        ))
    }
}
