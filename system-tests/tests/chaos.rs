//! Chaos, bounded (process mode): about 20 s of steady GET load through two
//! data planes while replicas are killed, added and removed. No GET may
//! fail; at the end the cluster is consistent, both data planes route by the
//! final ring, and stopping the control plane leaves no process behind.
//!
//! (A control-plane restart is part of the Docker test instead: in process
//! mode the replicas die with their control plane by design.)

use std::time::{Duration, Instant};

use http::Method;
use ringlb_proto::v1;
use ringlb_proto::v1::control_plane_client::ControlPlaneClient;
use ringlb_ring::{Ring, RingConfig};
use ringlb_testkit::load::Load;
use ringlb_testkit::{
    System, alive, assert_routes_like, children_of, get, replica_names, replica_pid, request,
    signal, start_data_plane, wait_routed,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_seconds_of_kills_adds_and_removes_lose_no_get() {
    let mut system = System::start(&[]).await;
    let cp_http = system.control_plane.http.clone();
    let cp_grpc = system.control_plane.grpc.clone();
    let second = start_data_plane(&cp_grpc, &cp_http, &[]);
    wait_routed(&second.addr).await;
    let planes = [system.lb().to_owned(), second.addr.clone()];
    let loads = [
        Load::start(
            &planes[0],
            3,
            Duration::from_millis(2),
            Duration::from_secs(60),
        ),
        Load::start(
            &planes[1],
            3,
            Duration::from_millis(2),
            Duration::from_secs(60),
        ),
    ];

    let started = Instant::now();
    let mut step = 0u32;
    while started.elapsed() < Duration::from_secs(20) {
        let names = replica_names(&get(&planes[0], "/rep").await);
        match step % 4 {
            // SIGKILL the oldest replica.
            0 => {
                if let Some(pid) = names
                    .first()
                    .and_then(|n| replica_pid(system.control_plane.proc.pid(), n))
                {
                    signal(pid, 9);
                }
            }
            1 => {
                let reply = request(&cp_http, Method::POST, "/add", r#"{"n": 2}"#, &[])
                    .await
                    .expect("add");
                assert_eq!(reply.status, 200, "{}", reply.text());
            }
            2 => {
                let reply = request(&planes[1], Method::DELETE, "/rm", r#"{"n": 1}"#, &[])
                    .await
                    .expect("rm");
                assert_eq!(reply.status, 200, "{}", reply.text());
            }
            _ => {
                let reply = request(&planes[0], Method::DELETE, "/rm", r#"{"n": 1}"#, &[])
                    .await
                    .expect("rm");
                assert_eq!(reply.status, 200, "{}", reply.text());
            }
        }
        step += 1;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    // Let the last replacement land, then stop the load.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut ok = 0;
    for load in loads {
        let (good, failed) = load.finish().await;
        assert_eq!(failed, 0, "{failed} GETs failed during the chaos");
        ok += good;
    }
    assert!(ok > 1000, "the load ran ({ok} GETs)");
    assert!(step >= 10, "only {step} chaos steps ran");

    // Consistent: unique ids and names, both data planes route by the ring
    // of the listed ids.
    let mut grpc = ControlPlaneClient::connect(format!("http://{cp_grpc}"))
        .await
        .expect("connect");
    let set = grpc
        .list_replicas(v1::ListReplicasRequest {})
        .await
        .expect("list")
        .into_inner();
    let names: Vec<String> = set.replicas.iter().map(|r| r.name.clone()).collect();
    let ids: Vec<u64> = set.replicas.iter().map(|r| r.id).collect();
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "ids unique");
    let ring = Ring::build(&RingConfig::default(), &ids).expect("ring");
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    for lb in &planes {
        assert_routes_like(lb, &ring, &name_refs, (300_000u64..300_100).step_by(9)).await;
    }

    // No orphans: every replica process goes with the control plane.
    let replicas = children_of(system.control_plane.proc.pid());
    assert_eq!(
        replicas.len(),
        names.len(),
        "one process per replica, no leftovers"
    );
    system.control_plane.proc.stop();
    for pid in replicas {
        assert!(
            !alive(pid),
            "replica process {pid} outlived the control plane"
        );
    }
}
