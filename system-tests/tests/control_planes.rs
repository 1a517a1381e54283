//! A data plane that follows several control planes (`--control-plane-grpc
//! a,b`), and ring versions ordered by (epoch, version) across control-plane
//! restarts: a restarted control plane counts versions from 1 again under a
//! higher epoch, and the data plane follows it.

use std::process::Command;
use std::time::Duration;

use ringlb_testkit::{
    Proc, bin, closed_port, eventually, get, replica_names, request, start_control_plane,
    start_control_plane_on, start_data_plane_metered, wait_routed,
};

/// A data plane with `--metrics-listen` and the given control-plane lists;
/// the guard, its client address and its metrics address.
fn data_plane(grpc: &str, http: &str) -> (Proc, String, String) {
    start_data_plane_metered(&[
        "--listen",
        "127.0.0.1:0",
        "--control-plane-grpc",
        grpc,
        "--control-plane-http",
        http,
    ])
}

/// The value of an unlabelled metric on a `/metrics` endpoint.
async fn metric(metrics: &str, name: &str) -> u64 {
    let text = get(metrics, "/metrics").await.text();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// The data plane's ring in force: (epoch, version).
async fn ring(metrics: &str) -> (u64, u64) {
    (
        metric(metrics, "ringlb_ring_epoch").await,
        metric(metrics, "ringlb_ring_version").await,
    )
}

async fn rep(lb: &str) -> Vec<String> {
    let reply = get(lb, "/rep").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    replica_names(&reply)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_control_plane_is_followed_when_the_first_is_down() {
    let closed = closed_port();
    let down = &closed.addr;
    let cp = start_control_plane(&["--replicas", "2", "--metrics-listen", "127.0.0.1:0"]);
    let (_dp, lb, metrics) = data_plane(
        &format!("http://{down},http://{}", cp.grpc),
        &format!("{down},{}", cp.http),
    );
    wait_routed(&lb).await;
    for _ in 0..20 {
        let reply = get(&lb, "/home").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    // Admin requests go to the HTTP API paired with the control plane whose
    // ring is in force, not to the first (closed) one.
    assert_eq!(rep(&lb).await, ["server-1", "server-2"]);
    let cp_metrics = cp.metrics.as_deref().expect("control plane metrics");
    assert_eq!(
        ring(&metrics).await,
        (
            metric(cp_metrics, "ringlb_ring_epoch").await,
            metric(cp_metrics, "ringlb_ring_version").await
        ),
        "the data plane serves the control plane's (epoch, version)"
    );
}

/// The first control plane serves rings up to some version V; it is killed
/// and another starts on the same addresses: its versions start over below
/// V, under a higher epoch, and the data plane follows it at once (no grace
/// period), while a data plane that has seen (E, V) would refuse (E, v < V).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_control_plane_is_followed_with_a_higher_epoch() {
    let mut first = start_control_plane(&["--replicas", "2"]);
    let (_dp, lb, metrics) = data_plane(&format!("http://{}", first.grpc), &first.http);
    wait_routed(&lb).await;
    // A few more versions on the first control plane.
    for (path, method) in [("/add", http::Method::POST), ("/rm", http::Method::DELETE)] {
        let reply = request(&lb, method, path, r#"{"n": 2}"#, &[])
            .await
            .expect("admin request");
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    }
    let (old_epoch, old_version) = ring(&metrics).await;
    assert!(old_epoch > 0, "a control plane sets an epoch");

    // Killed by its PID (its replicas die with it); a new one on the same
    // addresses with another replica count.
    first.proc.kill9();
    let second = start_control_plane_on(
        &first.http,
        &first.grpc,
        &["--replicas", "3", "--metrics-listen", "127.0.0.1:0"],
    );
    let cp_metrics = second.metrics.clone().expect("control plane metrics");
    let new_version = metric(&cp_metrics, "ringlb_ring_version").await;
    assert!(
        new_version < old_version,
        "the new control plane counts from 1 again: {new_version} vs {old_version}"
    );
    // The data plane reconnects (backoff at most 5 s) and applies the new
    // control plane's ring although its version is lower.
    let (new_epoch, applied) = eventually(
        Duration::from_secs(20),
        "the data plane to follow the restarted control plane",
        || {
            let metrics = metrics.clone();
            async move {
                let (epoch, version) = ring(&metrics).await;
                (epoch != old_epoch).then_some((epoch, version))
            }
        },
    )
    .await;
    assert!(new_epoch > old_epoch, "{new_epoch} after {old_epoch}");
    assert_eq!(new_epoch, metric(&cp_metrics, "ringlb_ring_epoch").await);
    assert!(applied < old_version, "{applied} after {old_version}");
    assert_eq!(rep(&lb).await, ["server-1", "server-2", "server-3"]);
    wait_routed(&lb).await;
    assert_eq!(metric(&metrics, "ringlb_ring_refused_total").await, 0);
}

/// The control plane a data plane follows dies: the data plane moves to the
/// next in its list, serves that one's ring and forwards admin requests to
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_control_plane_is_followed_when_the_current_one_dies() {
    let mut first = start_control_plane(&["--replicas", "2"]);
    let second = start_control_plane(&["--replicas", "3"]);
    let (_dp, lb, metrics) = data_plane(
        &format!("http://{},http://{}", first.grpc, second.grpc),
        &format!("{},{}", first.http, second.http),
    );
    wait_routed(&lb).await;
    assert_eq!(
        rep(&lb).await,
        ["server-1", "server-2"],
        "the first of the list"
    );
    let (first_epoch, _) = ring(&metrics).await;

    first.proc.kill9();
    eventually(
        Duration::from_secs(20),
        "the data plane to follow the second control plane",
        || {
            let metrics = metrics.clone();
            async move { (ring(&metrics).await.0 != first_epoch).then_some(()) }
        },
    )
    .await;
    assert_eq!(rep(&lb).await, ["server-1", "server-2", "server-3"]);
    for _ in 0..20 {
        let reply = get(&lb, "/home").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    assert!(ring(&metrics).await.0 > first_epoch);
}

/// Two HTTP admin addresses for three gRPC endpoints cannot be paired: the
/// data plane refuses to start and says why.
#[test]
fn admin_addresses_must_pair_with_the_grpc_endpoints() {
    let out = Command::new(bin("data-plane"))
        .args(["--listen", "127.0.0.1:0"])
        .args([
            "--control-plane-grpc",
            "http://127.0.0.1:1,http://127.0.0.1:2,http://127.0.0.1:3",
        ])
        .args(["--control-plane-http", "127.0.0.1:1,127.0.0.1:2"])
        .output()
        .expect("run data-plane");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("2 control plane HTTP addresses for 3 gRPC endpoints"),
        "{stderr}"
    );
}
