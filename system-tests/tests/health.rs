//! `/healthz` and `/readyz` on each plane's admin and metrics ports, and
//! the binaries' `--probe URL` mode that the `FROM scratch` images'
//! healthchecks run.

use std::process::Command;
use std::time::Duration;

use ringlb_testkit::{
    Proc, bin, closed_port, eventually, get, start_control_plane, start_data_plane_metered,
    wait_routed,
};

/// A data plane with its metrics port; its client and metrics addresses.
fn data_plane(grpc: &str, http: &str) -> (Proc, String, String) {
    start_data_plane_metered(&[
        "--listen",
        "127.0.0.1:0",
        "--control-plane-grpc",
        &format!("http://{grpc}"),
        "--control-plane-http",
        http,
    ])
}

/// The exit code of `binary --probe url`.
fn probe(binary: &str, url: &str) -> Option<i32> {
    Command::new(bin(binary))
        .args(["--probe", url])
        .output()
        .expect("the probe runs")
        .status
        .code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_is_alive_and_ready_on_both_ports() {
    let cp = start_control_plane(&["--metrics-listen", "127.0.0.1:0"]);
    let metrics = cp.metrics.clone().expect("metrics address announced");
    for addr in [cp.http.as_str(), metrics.as_str()] {
        assert_eq!(get(addr, "/healthz").await.status, 200, "{addr}");
        assert_eq!(get(addr, "/readyz").await.status, 200, "{addr}");
    }
    assert_eq!(
        get(&cp.http, "/readyz").await.text(),
        r#"{"message": "ready", "status": "successful"}"#
    );
    assert_eq!(
        probe("control-plane", &format!("http://{}/readyz", cp.http)),
        Some(0)
    );
    assert_eq!(
        probe("control-plane", &format!("http://{metrics}/healthz")),
        Some(0)
    );
    assert_eq!(
        probe("control-plane", &format!("http://{}/nothing", cp.http)),
        Some(1)
    );
    assert_eq!(
        probe(
            "control-plane",
            &format!("http://{}/readyz", closed_port().addr)
        ),
        Some(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_plane_is_ready_once_a_ring_is_applied_and_stays_so_without_the_control_plane() {
    // No control plane: alive, not ready.
    let closed = closed_port();
    let nowhere = &closed.addr;
    let (_lonely, _, lonely_metrics) = data_plane(nowhere, nowhere);
    assert_eq!(get(&lonely_metrics, "/healthz").await.status, 200);
    assert_eq!(get(&lonely_metrics, "/readyz").await.status, 503);
    assert_eq!(
        probe("data-plane", &format!("http://{lonely_metrics}/readyz")),
        Some(1)
    );
    assert_eq!(
        probe("data-plane", &format!("http://{lonely_metrics}/healthz")),
        Some(0)
    );

    let mut cp = start_control_plane(&[]);
    let (_proc, addr, metrics) = data_plane(&cp.grpc, &cp.http);
    wait_routed(&addr).await;
    eventually(
        Duration::from_secs(20),
        "the data plane to be ready",
        || async { (get(&metrics, "/readyz").await.status == 200).then_some(()) },
    )
    .await;
    assert_eq!(
        probe("data-plane", &format!("http://{metrics}/readyz")),
        Some(0)
    );

    // The control plane goes away: still ready, with its last ring.
    cp.proc.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(get(&metrics, "/readyz").await.status, 200);
    assert_eq!(
        probe("data-plane", &format!("http://{metrics}/readyz")),
        Some(0)
    );
}
