//! Both planes use the same ring: what the data plane does with real
//! requests matches what the ring crate computes.

use std::collections::HashMap;
use std::sync::Arc;

use http::Method;
use ringlb_ring::{HashFn, Ring, RingConfig};
use ringlb_testkit::{Pool, System, assert_routes_like, request, served_by};

#[tokio::test]
async fn ten_thousand_requests_land_in_the_rings_proportions() {
    let system = System::start(&[]).await;
    let lb = system.lb().to_owned();
    let pool = Pool::default();
    let counts: Arc<std::sync::Mutex<HashMap<String, u64>>> = Arc::default();
    const TOTAL: u64 = 10_000;
    const WORKERS: u64 = 50;
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (pool, lb, counts) = (pool.clone(), lb.clone(), counts.clone());
            tokio::spawn(async move {
                for _ in 0..TOTAL / WORKERS {
                    let reply = pool.get(&lb, "/home").await.expect("GET /home");
                    assert_eq!(reply.status, 200);
                    *counts
                        .lock()
                        .expect("lock")
                        .entry(served_by(&reply.text()))
                        .or_default() += 1;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker");
    }
    let counts = counts.lock().expect("lock").clone();
    assert_eq!(counts.values().sum::<u64>(), TOTAL);

    // Expected shares: every 6-digit id through the same ring.
    let ring = Ring::build(&RingConfig::default(), &[1, 2, 3]).expect("spec ring");
    let mut exact = [0u64; 3];
    for id in 100_000u64..=999_999 {
        exact[ring.lookup(id).expect("owner")] += 1;
    }
    for (i, name) in ["server-1", "server-2", "server-3"].iter().enumerate() {
        let p = exact[i] as f64 / 900_000.0;
        let expected = p * TOTAL as f64;
        let sigma = (TOTAL as f64 * p * (1.0 - p)).sqrt();
        let got = counts.get(*name).copied().unwrap_or(0) as f64;
        assert!(
            (got - expected).abs() <= 5.0 * sigma + 1.0,
            "{name}: {got} requests, expected {expected:.0} ± {:.0} ({counts:?})",
            5.0 * sigma
        );
    }
}

#[tokio::test]
async fn request_ids_route_exactly_as_the_ring_computes_before_and_after_a_config_change() {
    let system = System::start(&[]).await;
    let lb = system.lb();
    let names = ["server-1", "server-2", "server-3"];
    let spec = Ring::build(&RingConfig::default(), &[1, 2, 3]).expect("spec ring");
    assert_routes_like(lb, &spec, &names, (100_000..100_300).step_by(3)).await;

    // Switch hash functions and K at run time through the HTTP admin API.
    let change = r#"{"request_hash": "xxh3", "vnode_hash": "xxh3", "vnodes": 64, "slots": 4096}"#;
    let reply = request(
        &system.control_plane.http,
        Method::PUT,
        "/config",
        change,
        &[],
    )
    .await
    .expect("PUT /config");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.text(),
        r#"{"message": {"version": 2, "config": {"slots": 4096, "vnodes": 64, "request_hash": "xxh3", "vnode_hash": "xxh3", "probing": "linear", "key_source": "request-id", "hash_balance_factor": 0, "outlier_consecutive_failures": 0, "outlier_base_ejection_ms": 30000, "outlier_max_ejection_percent": 10, "slow_start_ms": 0}}, "status": "successful"}"#
    );
    let mixed_config = RingConfig {
        slots: 4096,
        vnodes: 64,
        request_hash: HashFn::Xxh3,
        vnode_hash: HashFn::Xxh3,
        ..RingConfig::default()
    };
    let mixed = Ring::build(&mixed_config, &[1, 2, 3]).expect("xxh3 ring");
    // /config answered after the data plane applied it: routing follows at once.
    assert_routes_like(lb, &mixed, &names, (100_000..100_300).step_by(3)).await;

    // A bad change is refused and changes nothing.
    let bad = request(
        &system.control_plane.http,
        Method::PUT,
        "/config",
        r#"{"probing": "cubic"}"#,
        &[],
    )
    .await
    .expect("PUT /config");
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.text(),
        r#"{"message": "<Error> Invalid ring configuration: unknown probing rule 'cubic' (known: linear, quadratic, shared)", "status": "failure"}"#
    );
    let too_small = request(
        &system.control_plane.http,
        Method::PUT,
        "/config",
        r#"{"slots": 100}"#,
        &[],
    )
    .await
    .expect("PUT /config");
    assert_eq!(too_small.status, 400, "{}", too_small.text());
    let current = request(&system.control_plane.http, Method::GET, "/config", "", &[])
        .await
        .expect("GET /config");
    assert!(
        current.text().contains(r#""version": 2"#),
        "{}",
        current.text()
    );
    assert_routes_like(lb, &mixed, &names, (200_000..200_030).step_by(3)).await;
}
