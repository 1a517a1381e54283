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

/// A large ring is compiled off the request path: while the data plane
/// builds a ring of some 800,000 virtual nodes over 4 Mi slots, requests
/// keep being answered from the ring in force, none stalls behind the build.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_ring_is_built_while_requests_are_served() {
    let system = System::start(&[
        "--request-hash",
        "xxh3",
        "--vnode-hash",
        "xxh3",
        "--slots",
        "4194304",
        "--vnodes",
        "4096",
        "--probing",
        "shared",
    ])
    .await;
    let lb = system.lb().to_owned();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prober = {
        let (lb, stop) = (lb.clone(), stop.clone());
        tokio::spawn(async move {
            let pool = ringlb_testkit::Pool::default();
            let mut slowest = std::time::Duration::ZERO;
            let mut answered = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && answered < 10_000 {
                let started = std::time::Instant::now();
                let reply = pool.get(&lb, "/home").await.expect("GET /home");
                assert_eq!(reply.status, 200, "{}", reply.text());
                slowest = slowest.max(started.elapsed());
                answered += 1;
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            (answered, slowest)
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let added = request(
        &system.control_plane.http,
        Method::POST,
        "/add",
        r#"{"n": 2, "weights": [100, 100]}"#,
        &[],
    )
    .await
    .expect("/add");
    assert_eq!(added.status, 200, "{}", added.text());
    // /add answers once the data plane acknowledged the new ring.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (answered, slowest) = prober.await.expect("prober");
    eprintln!("{answered} requests during the rebuild, the slowest {slowest:?}");
    assert!(answered >= 10, "the prober ran ({answered})");
    assert!(
        slowest < std::time::Duration::from_millis(500),
        "a request waited {slowest:?}: the ring build blocked the request path"
    );
}
