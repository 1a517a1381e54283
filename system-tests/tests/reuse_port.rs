//! Several data-plane processes on one port (`--reuse-port`): the kernel
//! spreads new connections over them, so both serve; when one is killed
//! (SIGKILL), the other takes every new connection and no request fails.

use std::process::Command;
use std::time::Duration;

use ringlb_testkit::{
    Proc, bin, eventually, get, request, start_control_plane, start_data_plane_metered,
};

/// A data plane on `listen` with `--reuse-port` and metrics on a free port;
/// the guard, its client address and its metrics address.
fn reuse_port_data_plane(listen: &str, grpc: &str, http: &str) -> (Proc, String, String) {
    start_data_plane_metered(&[
        "--listen",
        listen,
        "--reuse-port",
        "--control-plane-grpc",
        &format!("http://{grpc}"),
        "--control-plane-http",
        http,
    ])
}

/// The sum of a metric family's samples on the data plane's `/metrics`.
async fn metric_sum(metrics: &str, name: &str) -> f64 {
    let text = get(metrics, "/metrics").await.text();
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Requests forwarded to replicas by the data plane of `metrics`.
async fn forwarded(metrics: &str) -> f64 {
    metric_sum(metrics, "ringlb_upstream_requests_total").await
}

/// `count` `GET /home`, each on a fresh connection (so a fresh source port
/// for the kernel to hash); the failures, as text.
async fn homes(addr: &str, count: usize) -> Vec<String> {
    let mut failures = Vec::new();
    for _ in 0..count {
        match request(addr, http::Method::GET, "/home", "", &[]).await {
            Ok(reply) if reply.status == 200 => {}
            Ok(reply) => failures.push(format!("{}: {}", reply.status, reply.text())),
            Err(e) => failures.push(e),
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_data_planes_share_a_port_and_the_survivor_serves_alone() {
    let cp = start_control_plane(&[]);
    let (first, addr, first_metrics) = reuse_port_data_plane("127.0.0.1:0", &cp.grpc, &cp.http);
    let (mut second, second_addr, second_metrics) =
        reuse_port_data_plane(&addr, &cp.grpc, &cp.http);
    assert_eq!(second_addr, addr, "both listen on one address");
    // Both have the ring before any counting starts.
    for metrics in [&first_metrics, &second_metrics] {
        eventually(Duration::from_secs(20), "a ring applied", || async move {
            (metric_sum(metrics, "ringlb_ring_version").await > 0.0).then_some(())
        })
        .await;
    }

    // 200 connections: the kernel hashes each to one of the two listeners.
    let before = [
        forwarded(&first_metrics).await,
        forwarded(&second_metrics).await,
    ];
    let failures = homes(&addr, 200).await;
    assert!(failures.is_empty(), "{failures:?}");
    let after = [
        forwarded(&first_metrics).await,
        forwarded(&second_metrics).await,
    ];
    let served = [after[0] - before[0], after[1] - before[1]];
    assert_eq!(served[0] + served[1], 200.0, "{served:?}");
    // Both got traffic: all 200 random source ports hashed to one side
    // would happen with probability 2^-199.
    assert!(served[0] > 0.0 && served[1] > 0.0, "{served:?}");

    // SIGKILL the second by its PID: its listener closes with it and the
    // kernel stops hashing new connections to it.
    let pid = second.pid();
    second.kill9();
    assert!(!ringlb_testkit::alive(pid), "the second data plane is gone");
    let before = forwarded(&first_metrics).await;
    let failures = homes(&addr, 200).await;
    assert!(failures.is_empty(), "after the kill: {failures:?}");
    assert_eq!(forwarded(&first_metrics).await - before, 200.0);
    drop(first);
}

/// Without `--reuse-port` a data plane keeps its address to itself: a
/// second one cannot bind it and says so.
#[test]
fn without_reuse_port_a_second_data_plane_is_refused_the_address() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = holder.local_addr().expect("addr").to_string();
    let out = Command::new(bin("data-plane"))
        .args(["--listen", &addr])
        .args(["--control-plane-grpc", "http://127.0.0.1:1"])
        .output()
        .expect("run data-plane");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
}
