//! Replicas as child processes of the `replica` binary on loopback ports.
//!
//! No orphans: each child gets `PR_SET_PDEATHSIG = SIGKILL` (the kernel kills
//! it when the control plane dies, even by SIGKILL) and `--parent-pid` (the
//! replica exits by itself if it is re-parented, covering the window before
//! the prctl and thread-exit corner cases). A clean shutdown stops them all.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{broadcast, oneshot};

use super::{Backend, BackendError, BackendEvent};
use crate::state::Replica;

/// How long a replica gets to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a replica gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);

struct Running {
    pid: Option<u32>,
    stop: oneshot::Sender<oneshot::Sender<()>>,
}

/// Runs replicas as local processes.
pub struct ProcessBackend {
    replica_bin: PathBuf,
    /// Extra arguments for every replica process.
    replica_args: Vec<String>,
    running: Mutex<HashMap<String, Running>>,
    events: broadcast::Sender<BackendEvent>,
}

impl ProcessBackend {
    pub fn new(replica_bin: PathBuf) -> ProcessBackend {
        Self::with_args(replica_bin, Vec::new())
    }

    /// Like [`ProcessBackend::new`], passing `replica_args` to every replica.
    pub fn with_args(replica_bin: PathBuf, replica_args: Vec<String>) -> ProcessBackend {
        ProcessBackend {
            replica_bin,
            replica_args,
            running: Mutex::new(HashMap::new()),
            events: broadcast::channel(64).0,
        }
    }

    /// PIDs of the replicas this backend runs (for tests and diagnostics).
    pub fn pids(&self) -> Vec<u32> {
        self.lock().values().filter_map(|r| r.pid).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (every critical section is a single insert or remove).
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn command(&self, name: &str) -> Command {
        let mut cmd = Command::new(&self.replica_bin);
        cmd.args(["--port", "0", "--host", "127.0.0.1", "--announce"])
            // The name on the command line too, so `pkill -f -- '--server-id S5'` finds it.
            .args(["--server-id", name])
            .args(&self.replica_args)
            .arg("--parent-pid")
            .arg(std::process::id().to_string())
            .env("SERVER_ID", name)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            // A process group of its own: a terminal's Ctrl-C (SIGINT to the
            // foreground group) reaches the control plane only, which then
            // stops the replicas itself.
            .process_group(0);
        die_with_parent(&mut cmd);
        cmd
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl(2) is async-signal-safe and touches no memory of the
    // parent; it runs in the forked child before exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut Command) {}

#[async_trait]
impl Backend for ProcessBackend {
    fn kind(&self) -> &'static str {
        "process"
    }

    async fn start(&self, name: &str, id: u64, _weight: u32) -> Result<String, BackendError> {
        let fail = |reason: String| BackendError::StartFailed {
            name: name.to_owned(),
            reason,
        };
        let mut child = self
            .command(name)
            .spawn()
            .map_err(|e| fail(format!("cannot run {}: {e}", self.replica_bin.display())))?;
        let pid = child.id();
        let address = match tokio::time::timeout(START_TIMEOUT, read_address(&mut child)).await {
            Ok(Ok(address)) => address,
            Ok(Err(reason)) => {
                let _ = child.kill().await;
                return Err(fail(reason));
            }
            Err(_) => {
                let _ = child.kill().await;
                return Err(fail(format!(
                    "no address announced within {START_TIMEOUT:?}"
                )));
            }
        };
        let (stop_tx, stop_rx) = oneshot::channel();
        self.lock()
            .insert(name.to_owned(), Running { pid, stop: stop_tx });
        tokio::spawn(supervise(
            child,
            name.to_owned(),
            id,
            stop_rx,
            self.events.clone(),
        ));
        tracing::debug!(%name, id, ?pid, %address, "replica process started");
        Ok(address)
    }

    async fn stop(&self, name: &str) -> Result<(), BackendError> {
        let Some(running) = self.lock().remove(name) else {
            return Ok(());
        };
        let (done_tx, done_rx) = oneshot::channel();
        if running.stop.send(done_tx).is_ok() {
            // The supervisor answers once the process is gone.
            let _ = done_rx.await;
        }
        Ok(())
    }

    async fn adopt(&self) -> Result<Vec<Replica>, BackendError> {
        // Child processes die with their parent: there is never anything to adopt.
        Ok(Vec::new())
    }

    fn events(&self) -> broadcast::Receiver<BackendEvent> {
        self.events.subscribe()
    }

    async fn shutdown(&self) {
        let names: Vec<String> = self.lock().keys().cloned().collect();
        futures::future::join_all(names.iter().map(|name| self.stop(name))).await;
    }
}

/// Read the replica's `listening <addr>` line.
async fn read_address(child: &mut Child) -> Result<String, String> {
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let mut line = String::new();
    let read = BufReader::new(stdout)
        .read_line(&mut line)
        .await
        .map_err(|e| format!("reading its address: {e}"))?;
    if read == 0 {
        let status = child.wait().await.map_err(|e| e.to_string())?;
        return Err(format!("exited before listening ({status})"));
    }
    line.trim()
        .strip_prefix("listening ")
        .map(str::to_owned)
        .ok_or_else(|| format!("unexpected first line {line:?}"))
}

/// Own the child: report an unrequested exit, or stop it when asked.
async fn supervise(
    mut child: Child,
    name: String,
    id: u64,
    stop: oneshot::Receiver<oneshot::Sender<()>>,
    events: broadcast::Sender<BackendEvent>,
) {
    tokio::select! {
        status = child.wait() => {
            tracing::info!(%name, id, status = ?status.ok(), "replica process exited");
            let _ = events.send(BackendEvent::Exited { name, id });
        }
        done = stop => {
            terminate(&mut child).await;
            if let Ok(done) = done {
                let _ = done.send(());
            }
        }
    }
}

/// SIGTERM, a grace period, then SIGKILL; always reaps.
async fn terminate(child: &mut Child) {
    if let Some(pid) = child.id() {
        send_sigterm(pid);
        if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_ok() {
            return;
        }
    }
    let _ = child.kill().await;
}

#[allow(unsafe_code)]
fn send_sigterm(pid: u32) {
    // SAFETY: kill(2) on the PID of a child we have not yet reaped, so the
    // PID cannot have been reused.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
}
