//! The system under analysis: one the analysis starts itself (the control
//! plane with local replica processes and one data plane, as `make run`),
//! or one already running. Also: killing a replica for task A-3.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Processes the analysis started; stopped (SIGTERM, then SIGKILL) on
/// [`Local::stop`] or when dropped.
pub struct Local {
    children: Vec<Child>,
    /// The control plane's PID: its replicas are its children.
    pub control_plane_pid: Option<u32>,
    pub lb: String,
    pub admin: String,
    /// The data plane's Prometheus `/metrics`, `host:port`.
    pub metrics: String,
}

/// Where the sibling binaries live (the analysis is built with them).
fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe
        .parent()
        .map(|d| d.join(name))
        .context("no binary directory")?;
    if !path.exists() {
        bail!(
            "{} is missing: build the workspace's binaries first",
            path.display()
        );
    }
    Ok(path)
}

/// Start `cmd` and wait for its `ready <rest>` line; returns the child,
/// `<rest>` and the lines it printed before (e.g. `metrics <addr>`).
async fn spawn_announcing(
    mut cmd: Command,
    name: &str,
) -> anyhow::Result<(Child, String, Vec<String>)> {
    cmd.stdout(Stdio::piped())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut earlier = Vec::new();
    let ready = tokio::time::timeout(READY_WITHIN, async {
        loop {
            let line = lines
                .next_line()
                .await?
                .with_context(|| format!("{name} exited before it was ready"))?;
            match line.strip_prefix("ready ") {
                Some(rest) => return anyhow::Ok(rest.to_owned()),
                None if earlier.len() < MAX_LINES_BEFORE_READY => earlier.push(line),
                None => bail!("{name} said {earlier:?} but not ready"),
            }
        }
    })
    .await
    .with_context(|| format!("{name} did not become ready within {READY_WITHIN:?}"))??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, ready, earlier))
}

/// How long a process of the system may take to announce itself.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// Lines a process may print before `ready` (the data plane: `metrics <addr>`).
const MAX_LINES_BEFORE_READY: usize = 8;

impl Local {
    /// Start a control plane (process backend, `replicas` replicas) and a
    /// data plane, all on free loopback ports.
    pub async fn start(replicas: usize) -> anyhow::Result<Local> {
        let mut cp = Command::new(sibling("control-plane")?);
        cp.args([
            "--http-listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
            "--announce",
        ])
        .arg("--replica-bin")
        .arg(sibling("replica")?)
        .args(["--replicas", &replicas.to_string()])
        .env("RUST_LOG", "warn");
        let (cp, ready, _) = spawn_announcing(cp, "control-plane").await?;
        let field = |key: &str| {
            ready
                .split_whitespace()
                .find_map(|f| f.strip_prefix(key))
                .map(str::to_owned)
                .with_context(|| format!("no {key} in {ready:?}"))
        };
        let (admin, grpc) = (field("http=")?, field("grpc=")?);
        let mut dp = Command::new(sibling("data-plane")?);
        dp.args([
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--announce",
        ])
        .arg("--control-plane-grpc")
        .arg(format!("http://{grpc}"))
        .args(["--control-plane-http", &admin])
        .env("RUST_LOG", "warn");
        let (dp, lb, said) = spawn_announcing(dp, "data-plane").await?;
        let metrics = said
            .iter()
            .find_map(|l| l.strip_prefix("metrics "))
            .map(str::to_owned)
            .with_context(|| format!("the data plane did not announce its metrics: {said:?}"))?;
        let control_plane_pid = cp.id();
        Ok(Local {
            control_plane_pid,
            children: vec![dp, cp],
            lb,
            admin,
            metrics,
        })
    }

    /// Stop the data plane, then the control plane (which stops its replicas).
    pub async fn stop(mut self) {
        for child in &mut self.children {
            if let Some(pid) = child.id() {
                let _ = Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .status()
                    .await;
            }
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}

/// How A-3 kills a replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KillWith {
    /// `docker kill` when the replica is one of our containers, else a process.
    Auto,
    /// SIGKILL the local process started with `--server-id <name>`.
    Process,
    /// `docker kill <name>`.
    Docker,
}

/// Kill replica `name`; says how. With `parent`, only a child process of
/// that PID is considered (the analysis's own control plane), so replicas of
/// other systems on this machine with the same name are left alone.
pub async fn kill_replica(
    name: &str,
    with: KillWith,
    parent: Option<u32>,
) -> anyhow::Result<&'static str> {
    let docker = match with {
        KillWith::Docker => true,
        KillWith::Process => false,
        KillWith::Auto => is_our_container(name).await,
    };
    if docker {
        let status = Command::new("docker")
            .args(["kill", name])
            .stdout(Stdio::null())
            .status()
            .await?;
        if !status.success() {
            bail!("docker kill {name} failed");
        }
        return Ok("docker kill");
    }
    let pid = process_of(name, parent)?
        .with_context(|| format!("no local process runs replica {name}"))?;
    let status = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .await?;
    if !status.success() {
        bail!("kill -9 {pid} failed");
    }
    Ok("kill -9")
}

async fn is_our_container(name: &str) -> bool {
    Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{index .Config.Labels \"ringlb.managed\"}}",
            name,
        ])
        .stderr(Stdio::null())
        .output()
        .await
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "true")
}

/// The PID of the local process whose command line has `--server-id <name>`
/// (and whose parent is `parent`, when given).
fn process_of(name: &str, parent: Option<u32>) -> anyhow::Result<Option<u32>> {
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if parent.is_some_and(|parent| parent_of(pid) != Some(parent)) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(Path::new("/proc").join(pid.to_string()).join("cmdline"))
        else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args
            .windows(2)
            .any(|w| w[0] == b"--server-id" && w[1] == name.as_bytes())
        {
            return Ok(Some(pid));
        }
    }
    Ok(None)
}

/// The parent PID of `pid`, from /proc.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
