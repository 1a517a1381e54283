//! `--busy-poll`: a real data plane process keeps its thread polling after
//! requests, serves them exactly as without it, and stops spinning once the
//! window passes without one. Time bounds are generous (CPU seconds over
//! seconds of wall time) because the machine is shared.

use std::process::Command;
use std::time::Duration;

use ringlb_testkit::{System, bin, cpu_seconds, get, start_data_plane, wait_routed};

/// CPU seconds the process uses during `wall`.
async fn cpu_during(pid: u32, wall: Duration) -> f64 {
    let before = cpu_seconds(pid);
    tokio::time::sleep(wall).await;
    cpu_seconds(pid) - before
}

#[test]
fn busy_polling_needs_single_threaded_workers() {
    let out = Command::new(bin("data-plane"))
        .args(["--listen", "127.0.0.1:0", "--busy-poll", "50us"])
        .output()
        .expect("run data-plane");
    assert!(
        !out.status.success(),
        "started on the work-stealing runtime"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--busy-poll needs --workers N"), "{stderr}");
}

/// The names of the threads of process `pid`.
fn thread_names(pid: u32) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .flatten()
                .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
                .map(|name| name.trim().to_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// `--workers 2 --busy-poll`: two single-threaded workers, each with its
/// own listener and spinner; the data plane starts, serves every request
/// (each on a fresh connection, so both listeners get some), polls, and
/// stops on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_busy_polling_workers_serve() {
    let system = System::start(&[]).await;
    let cp = &system.control_plane;
    let dp = start_data_plane(&cp.grpc, &cp.http, &["--workers", "2", "--busy-poll", "3s"]);
    wait_routed(&dp.addr).await;
    let workers: Vec<String> = thread_names(dp.proc.pid())
        .into_iter()
        .filter(|name| name.starts_with("ringlb-worker-"))
        .collect();
    assert_eq!(workers, ["ringlb-worker-0", "ringlb-worker-1"]);
    for _ in 0..100 {
        let reply = get(&dp.addr, "/home").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert!(reply.text().contains("Hello from Server: "));
    }
    // Generous, as above: a spinning worker takes most of a core.
    let spinning = cpu_during(dp.proc.pid(), Duration::from_secs(1)).await;
    assert!(
        spinning > 0.15,
        "{spinning:.2} CPU s in 1 s right after requests: not polling"
    );
    // SIGTERM stops every worker and the process exits cleanly (the guard
    // would SIGKILL it after 10 s, which `stop` reports as None).
    let mut dp = dp;
    let status = dp.proc.stop();
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}: the workers did not stop on SIGTERM"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_polling_data_plane_serves_spins_then_sleeps() {
    let system = System::start(&[]).await;
    let cp = &system.control_plane;
    for engine in ["fast", "hyper"] {
        // A long window, so that "spinning" and "dormant" are seconds apart.
        let dp = start_data_plane(
            &cp.grpc,
            &cp.http,
            &["--workers", "1", "--busy-poll", "3s", "--engine", engine],
        );
        wait_routed(&dp.addr).await;
        for _ in 0..50 {
            let reply = get(&dp.addr, "/home").await;
            assert_eq!(reply.status, 200, "{engine}");
            assert!(reply.text().contains("Hello from Server: "), "{engine}");
        }
        // Within the window after the last request it polls: it uses CPU
        // with no traffic at all (a sleeping process uses ~0). Generous
        // bounds: a spinning process takes close to a whole core, 0.15 is
        // asked; a sleeping one close to none, under 0.1 is asked.
        let spinning = cpu_during(dp.proc.pid(), Duration::from_secs(1)).await;
        assert!(
            spinning > 0.15,
            "{engine}: {spinning:.2} CPU s in 1 s right after requests: not polling"
        );
        // Once the window has passed it sleeps.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let dormant = cpu_during(dp.proc.pid(), Duration::from_secs(2)).await;
        assert!(
            dormant < 0.1,
            "{engine}: {dormant:.2} CPU s in 2 s idle: still spinning"
        );
        // And the next request wakes it (and is served).
        assert_eq!(get(&dp.addr, "/home").await.status, 200, "{engine}");
        let woken = cpu_during(dp.proc.pid(), Duration::from_secs(1)).await;
        assert!(
            woken > 0.15,
            "{engine}: {woken:.2} CPU s in 1 s after a request: did not wake up"
        );
    }
}
