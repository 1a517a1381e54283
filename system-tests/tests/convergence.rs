//! `/add` and `/rm` answer only after every connected data plane applied the
//! new ring: right after the answer, each data plane routes by it.

use http::Method;
use ringlb_ring::{Ring, RingConfig};
use ringlb_testkit::{System, replica_names, request, start_data_plane};

async fn served_by(lb: &str, id: u64) -> String {
    let reply = request(
        lb,
        Method::GET,
        "/home",
        "",
        &[("X-Request-ID", &id.to_string())],
    )
    .await
    .expect("GET /home");
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_data_plane_routes_by_the_new_ring_when_add_and_rm_answer() {
    let system = System::start(&[]).await;
    let second = start_data_plane(&system.control_plane.grpc, &system.control_plane.http, &[]);
    let third = start_data_plane(&system.control_plane.grpc, &system.control_plane.http, &[]);
    let planes = [
        system.lb().to_owned(),
        second.addr.clone(),
        third.addr.clone(),
    ];
    for lb in &planes[1..] {
        // Wait until these two have a ring too.
        ringlb_testkit::wait_routed(lb).await;
    }

    // With ids 1..=4 the ring gives some request ids to the new replica (id 4).
    let grown = Ring::build(&RingConfig::default(), &[1, 2, 3, 4]).expect("ring");
    let to_new: Vec<u64> = (100_000u64..)
        .filter(|&id| grown.lookup(id) == Some(3))
        .take(5)
        .collect();

    let added = request(
        system.lb(),
        Method::POST,
        "/add",
        r#"{"n": 1, "hostnames": ["S5"]}"#,
        &[],
    )
    .await
    .expect("POST /add");
    assert_eq!(
        replica_names(&added),
        ["server-1", "server-2", "server-3", "S5"]
    );
    for lb in &planes {
        for &id in &to_new {
            assert_eq!(
                served_by(lb, id).await,
                r#"{"message": "Hello from Server: S5", "status": "successful"}"#,
                "data plane {lb}, request id {id}"
            );
        }
    }

    let removed = request(
        &planes[1],
        Method::DELETE,
        "/rm",
        r#"{"n": 1, "hostnames": ["S5"]}"#,
        &[],
    )
    .await
    .expect("DELETE /rm");
    assert_eq!(removed.status, 200);
    let spec = Ring::build(&RingConfig::default(), &[1, 2, 3]).expect("ring");
    for lb in &planes {
        for &id in &to_new {
            let expected = ["server-1", "server-2", "server-3"][spec.lookup(id).expect("owner")];
            assert_eq!(
                served_by(lb, id).await,
                format!(
                    r#"{{"message": "Hello from Server: {expected}", "status": "successful"}}"#
                ),
                "data plane {lb}, request id {id}"
            );
        }
    }
}
