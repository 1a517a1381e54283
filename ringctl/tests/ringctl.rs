//! `ringctl` against a real control plane (a process, with its replicas):
//! every command, human and `--json`, the token from the flag and from the
//! environment, and the exit codes of the failures a script must tell
//! apart.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use ringlb_testkit::{ControlPlane, bin, start_control_plane};
use serde_json::Value;

const TOKEN: &str = "ctl-s3cret";

fn ringctl(cp: &ControlPlane, args: &[&str]) -> Output {
    Command::new(bin("ringctl"))
        .args(["--addr", &cp.grpc])
        .args(args)
        .env_remove("RINGLB_ADMIN_TOKEN")
        .env_remove("RINGLB_CONTROL_PLANE_GRPC")
        .output()
        .expect("ringctl runs")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "ringctl failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn json(output: &Output) -> Value {
    serde_json::from_str(&stdout(output)).expect("--json prints JSON")
}

fn names(value: &Value) -> Vec<String> {
    value["replicas"]
        .as_array()
        .expect("replicas")
        .iter()
        .map(|r| r["name"].as_str().expect("name").to_owned())
        .collect()
}

#[test]
fn every_command_against_a_real_control_plane() {
    let cp = start_control_plane(&[]);

    let list = json(&ringctl(&cp, &["list", "--json"]));
    assert_eq!(names(&list), ["server-1", "server-2", "server-3"]);
    assert_eq!(list["n"], 3);
    let version = list["version"].as_u64().expect("version");
    let text = stdout(&ringctl(&cp, &["list"]));
    assert!(
        text.starts_with(&format!("ring version {version}, 3 replicas\nNAME")),
        "{text}"
    );
    assert!(text.contains("server-2  2   127.0.0.1:"), "{text}");

    let added = json(&ringctl(&cp, &["add", "2", "--name", "S5", "--json"]));
    let after_add = names(&added);
    assert_eq!(after_add.len(), 5);
    assert_eq!(after_add[..4], ["server-1", "server-2", "server-3", "S5"]);
    assert_eq!(added["version"].as_u64(), Some(version + 1));

    let removed = stdout(&ringctl(&cp, &["rm", "1", "--name", "S5"]));
    assert!(removed.contains("4 replicas"), "{removed}");
    assert!(!removed.contains("S5"), "{removed}");

    let status = json(&ringctl(&cp, &["status", "--json"]));
    assert_eq!(status["replicas"].as_array().map(Vec::len), Some(4));
    let owned: u64 = status["replicas"]
        .as_array()
        .expect("replicas")
        .iter()
        .map(|r| {
            assert_eq!(r["vnodes"], 9);
            assert_eq!(r["state"], "serving");
            r["owned_slots"].as_u64().expect("owned")
        })
        .sum();
    assert_eq!(owned, 512, "the key space is shared out whole");
    let text = stdout(&ringctl(&cp, &["status"]));
    assert!(
        text.contains("REPLICA") && text.contains("DATA PLANE"),
        "{text}"
    );

    let config = json(&ringctl(&cp, &["config", "get", "--json"]));
    assert_eq!(config["vnodes"], 9);
    assert_eq!(config["request_hash"], "spec");
    let set = json(&ringctl(
        &cp,
        &[
            "config",
            "set",
            "--request-hash",
            "xxh3",
            "--vnodes",
            "16",
            "--json",
        ],
    ));
    assert_eq!(set["config"]["vnodes"], 16);
    assert_eq!(set["config"]["request_hash"], "xxh3");
    assert_eq!(set["config"]["slots"], 512, "unset fields keep their value");
    assert_eq!(
        stdout(&ringctl(&cp, &["config", "get"])).trim(),
        "slots=512 vnodes=16 request_hash=xxh3 vnode_hash=spec probing=linear key_source=request-id"
    );
}

#[test]
fn watch_prints_one_line_per_ring_version() {
    let cp = start_control_plane(&[]);
    let mut cmd = Command::new(bin("ringctl"));
    cmd.args(["--addr", &cp.grpc, "watch"])
        .stdout(Stdio::piped())
        .stdin(Stdio::null());
    let mut child = cmd.spawn().expect("ringctl watch runs");
    let out = child.stdout.take().expect("piped");
    // The guard kills it by PID when the test ends, even on failure.
    let _guard = KillOnDrop(Some(child));
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let wait = Duration::from_secs(30);
    let first = received.recv_timeout(wait).expect("the current version");
    assert!(
        first.starts_with("version 1: 3 replicas [server-1, server-2, server-3] slots=512"),
        "{first}"
    );
    stdout(&ringctl(&cp, &["add", "1", "--name", "W1"]));
    let second = received.recv_timeout(wait).expect("the next version");
    assert!(
        second.starts_with("version 2: 4 replicas [server-1, server-2, server-3, W1]"),
        "{second}"
    );
}

/// Kills (SIGKILL) and reaps a child started here when dropped.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn failures_have_clear_messages_and_exit_codes() {
    // Connection refused: a port from 0, bound but not listening.
    let closed = ringlb_testkit::closed_port();
    let refused = Command::new(bin("ringctl"))
        .args(["--addr", &closed.addr, "list"])
        .output()
        .expect("ringctl runs");
    assert_eq!(refused.status.code(), Some(69));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("cannot connect to the control plane at http://")
            && message.to_lowercase().contains("refused"),
        "{message}"
    );

    let cp = start_control_plane(&["--admin-token", TOKEN]);
    // Unauthenticated: no token, or a wrong one; reads stay open.
    for args in [&["add", "1"][..], &["--token", "wrong", "rm", "1"]] {
        let denied = ringctl(&cp, args);
        assert_eq!(denied.status.code(), Some(77), "{args:?}");
        let message = String::from_utf8_lossy(&denied.stderr);
        assert!(message.contains("unauthenticated"), "{message}");
    }
    stdout(&ringctl(&cp, &["list"]));
    // The token from the flag, and from the control plane's variable.
    stdout(&ringctl(
        &cp,
        &["--token", TOKEN, "add", "1", "--name", "T1"],
    ));
    let by_env = Command::new(bin("ringctl"))
        .args(["--addr", &cp.grpc, "rm", "1", "--name", "T1", "--json"])
        .env("RINGLB_ADMIN_TOKEN", TOKEN)
        .output()
        .expect("ringctl runs");
    assert!(!names(&json(&by_env)).contains(&"T1".to_string()));

    // Invalid arguments: refused by the control plane, nothing changes.
    for args in [
        &["--token", TOKEN, "add", "1", "--name", "a", "--name", "b"][..],
        &["--token", TOKEN, "rm", "1", "--name", "nobody"],
        &["--token", TOKEN, "config", "set", "--request-hash", "md5"],
    ] {
        let invalid = ringctl(&cp, args);
        assert_eq!(invalid.status.code(), Some(65), "{args:?}");
        assert!(!invalid.stderr.is_empty());
    }
    let message = String::from_utf8_lossy(
        &ringctl(&cp, &["--token", TOKEN, "rm", "1", "--name", "nobody"]).stderr,
    )
    .into_owned();
    assert!(message.contains("nobody"), "{message}");
    assert_eq!(names(&json(&ringctl(&cp, &["list", "--json"]))).len(), 3);
    // Bad usage is clap's (2).
    assert_eq!(ringctl(&cp, &["add"]).status.code(), Some(2));
}
