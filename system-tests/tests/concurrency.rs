//! Many `/add` and `/rm` racing from several clients end in a state that a
//! serial order of them could give: ids and names unique, the ring equal to
//! the membership, every data plane on the same version.

use std::collections::HashSet;

use http::Method;
use ringlb_proto::v1;
use ringlb_proto::v1::control_plane_client::ControlPlaneClient;
use ringlb_ring::{Ring, RingConfig};
use ringlb_testkit::{System, assert_routes_like, get, replica_names, request, start_data_plane};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_adds_and_removes_leave_a_consistent_cluster() {
    let system = System::start(&["--max-replicas", "40"]).await;
    let cp = &system.control_plane;
    let second = start_data_plane(&cp.grpc, &cp.http, &[]);
    let planes = [system.lb().to_owned(), second.addr.clone()];

    // 6 clients x 5 changes each, every client on both ports in turn.
    let clients: Vec<_> = (0..6u32)
        .map(|c| {
            let targets = [planes[0].clone(), cp.http.clone()];
            tokio::spawn(async move {
                let mut accepted = 0i64;
                for step in 0..5u32 {
                    let addr = &targets[((c + step) % 2) as usize];
                    let (method, path, body, delta) = if (c + step) % 3 == 2 {
                        (Method::DELETE, "/rm", r#"{"n": 1}"#.to_owned(), -1)
                    } else {
                        (
                            Method::POST,
                            "/add",
                            format!(r#"{{"n": 1, "hostnames": ["c{c}-s{step}"]}}"#),
                            1,
                        )
                    };
                    let reply = request(addr, method, path, &body, &[])
                        .await
                        .expect("answer");
                    assert!(
                        reply.status == 200 || reply.status == 400,
                        "{}",
                        reply.text()
                    );
                    if reply.status == 200 {
                        accepted += delta;
                    }
                }
                accepted
            })
        })
        .collect();
    let mut net = 0i64;
    for client in clients {
        net += client.await.expect("client");
    }

    let names = replica_names(&get(&planes[0], "/rep").await);
    assert_eq!(
        names.len() as i64,
        3 + net,
        "N = 3 + accepted adds - accepted removes"
    );
    assert_eq!(
        names.iter().collect::<HashSet<_>>().len(),
        names.len(),
        "names unique: {names:?}"
    );

    let mut grpc = ControlPlaneClient::connect(format!("http://{}", cp.grpc))
        .await
        .expect("connect");
    let set = grpc
        .list_replicas(v1::ListReplicasRequest {})
        .await
        .expect("list")
        .into_inner();
    let listed: Vec<&str> = set.replicas.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(listed, names.iter().map(String::as_str).collect::<Vec<_>>());
    let ids: Vec<u64> = set.replicas.iter().map(|r| r.id).collect();
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        ids.len(),
        "ids unique: {ids:?}"
    );

    // Ring = membership, on every data plane: each routes request ids
    // exactly as a ring built from the listed ids says.
    let ring = Ring::build(&RingConfig::default(), &ids).expect("ring");
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    for lb in &planes {
        assert_routes_like(lb, &ring, &names, (100_000u64..100_200).step_by(7)).await;
    }
}
