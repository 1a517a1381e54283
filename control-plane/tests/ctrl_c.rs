//! `make run` and Ctrl-C: the terminal sends SIGINT to its foreground
//! process group. The replicas have a group of their own, so the signal
//! reaches the control plane only; it stops them itself, and replaces none
//! of them on the way out.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ringlb_testkit::{Proc, alive, bin, children_of};

/// The process group of `pid` (field 5 of /proc/<pid>/stat).
fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

#[test]
fn ctrl_c_reaches_the_control_plane_only_and_nothing_is_replaced() {
    let mut cmd = Command::new(bin("control-plane"));
    cmd.args([
        "--http-listen",
        "127.0.0.1:0",
        "--grpc-listen",
        "127.0.0.1:0",
    ])
    .args(["--announce", "--replicas", "3"])
    .arg("--replica-bin")
    .arg(bin("replica"))
    .env("RUST_LOG", "info")
    .stderr(Stdio::piped())
    // In a group of its own, as a shell's foreground job is.
    .process_group(0);
    let (mut control_plane, _) = Proc::spawn_announcing(cmd, "control-plane", "ready");
    let pid = control_plane.pid();
    let replicas = children_of(pid);
    assert_eq!(replicas.len(), 3, "replicas: {replicas:?}");
    let group = process_group(pid).expect("control plane's group");
    assert_eq!(group, pid);
    for replica in &replicas {
        assert_ne!(
            process_group(*replica),
            Some(group),
            "replica {replica} shares the control plane's process group"
        );
    }

    // Ctrl-C in the terminal: SIGINT to the whole foreground group.
    let sent = Command::new("kill")
        .args(["-INT", "--", &format!("-{group}")])
        .status()
        .expect("kill");
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = control_plane.try_wait() {
            break status;
        }
        assert!(Instant::now() < deadline, "control plane still running");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    let log = control_plane.stderr_text();
    for unwanted in ["replica failed", "replicas replaced", "replica started"] {
        // "replica started" lines of the boot came before the signal: count
        // them instead.
        if unwanted == "replica started" {
            assert_eq!(log.matches(unwanted).count(), 3, "{log}");
        } else {
            assert!(!log.contains(unwanted), "{unwanted}: {log}");
        }
    }
    for replica in replicas {
        assert!(
            !alive(replica),
            "replica {replica} outlived the control plane"
        );
    }
}
