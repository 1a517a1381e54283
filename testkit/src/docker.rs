//! Helpers for the tests that drive a real Docker engine (Compose and
//! Swarm): the `docker` CLI, `make` targets with an environment, free
//! published ports, and control planes that must refuse to start.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Proc, bin};

/// The workspace's root (where the Makefile is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Whether a Docker engine answers `docker info`.
pub fn answers() -> bool {
    Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `N` distinct ports free on every interface (Docker publishes on
/// 0.0.0.0): all are held until all are picked, so none is picked twice.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("0.0.0.0:0").expect("a free port"))
        .collect();
    std::array::from_fn(|i| held[i].local_addr().expect("bound").port())
}

/// Run a command to completion; panic with its output if it fails. Answers
/// stdout and stderr together.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// `docker args…`, which must succeed.
pub fn docker(args: &[&str]) -> String {
    run(Command::new("docker").args(args))
}

/// The non-empty lines of `docker args…`, sorted.
pub fn docker_lines(args: &[&str]) -> Vec<String> {
    let mut lines: Vec<String> = docker(args)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

/// Panic unless every image is present (built by `make build`).
pub fn assert_images(images: &[&str]) {
    for image in images {
        let present = Command::new("docker")
            .args(["image", "inspect", image])
            .output();
        assert!(
            present.is_ok_and(|o| o.status.success()),
            "image {image} is missing: run `make build` (make test does)"
        );
    }
}

/// `make target` in the workspace root with `env`, which must succeed.
pub fn make(target: &str, env: &[(&'static str, String)]) -> String {
    let mut cmd = Command::new("make");
    cmd.arg("--no-print-directory")
        .arg(target)
        .current_dir(repo_root());
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd)
}

/// `make target` for a guard's `Drop`: failures are printed, not raised.
pub fn make_quietly(target: &str, env: &[(&'static str, String)]) {
    let mut cmd = Command::new("make");
    cmd.args(["--no-print-directory", target])
        .current_dir(repo_root());
    for (k, v) in env {
        cmd.env(k, v);
    }
    match cmd.output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => eprintln!(
            "make {target} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!("make {target}: {e}"),
    }
}

/// Start a control plane on the host with `--backend backend` and `args`,
/// and expect it to refuse to start, saying `expected` on stderr.
pub fn refuses_to_start(backend: &str, args: &[&str], env: &[(&str, &str)], expected: &str) {
    let mut cmd = Command::new(bin("control-plane"));
    cmd.args([
        "--backend",
        backend,
        "--http-listen",
        "127.0.0.1:0",
        "--grpc-listen",
        "127.0.0.1:0",
    ])
    .args(args)
    .env("RUST_LOG", "warn")
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut proc = Proc::spawn(cmd, "control-plane");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = proc.try_wait() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the control plane did not exit on {args:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = proc.stderr_text();
    assert!(!status.success(), "exited 0 with {args:?}");
    assert!(
        stderr.contains(expected),
        "stderr does not say '{expected}':\n{stderr}"
    );
}
