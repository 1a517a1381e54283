//! The data plane's counters, embedded in-process against a real control
//! plane and its replicas: every forwarded request is counted once for the
//! replica that answered, and timed into that replica's histogram.

use std::collections::BTreeMap;

use ringlb_data_plane::{DataPlane, Engine};
use ringlb_testkit::{get, start_control_plane, wait_routed};

/// `name{replica="x"} value` lines of a family, by replica.
fn by_replica(metrics: &str, name: &str) -> BTreeMap<String, f64> {
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix("{replica=\""))
        .filter_map(|rest| {
            let (replica, value) = rest.split_once("\"} ")?;
            Some((replica.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_is_counted_and_timed_for_the_replica_that_answered() {
    for engine in [Engine::Fast, Engine::Hyper] {
        let control_plane = start_control_plane(&[]);
        let data_plane = DataPlane::builder()
            .control_plane_grpc(format!("http://{}", control_plane.grpc))
            .control_plane_http(control_plane.http.clone())
            .engine(engine)
            .build()
            .expect("data plane");
        let stats = data_plane.stats();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(data_plane.run(listener, async {
            let _ = stopped.await;
        }));
        wait_routed(&addr).await;

        let before = stats.render();
        for _ in 0..50 {
            assert_eq!(get(&addr, "/home").await.status, 200, "{engine:?}");
        }
        let after = stats.render();

        let delta = |name: &str| -> BTreeMap<String, f64> {
            let old = by_replica(&before, name);
            by_replica(&after, name)
                .into_iter()
                .map(|(replica, v)| {
                    let was = old.get(&replica).copied().unwrap_or(0.0);
                    (replica, v - was)
                })
                .collect()
        };
        let requests = delta("ringlb_upstream_requests_total");
        let timed = delta("ringlb_upstream_response_seconds_count");
        assert_eq!(requests.values().sum::<f64>(), 50.0, "{engine:?}: {after}");
        assert_eq!(
            requests, timed,
            "{engine:?}: every answered request is timed"
        );
        for (replica, count) in by_replica(&after, "ringlb_upstream_response_seconds_count") {
            let inf = format!(
                "ringlb_upstream_response_seconds_bucket{{replica=\"{replica}\",le=\"+Inf\"}} {count}"
            );
            assert!(after.contains(&inf), "{engine:?}: no {inf:?} in {after}");
        }
        assert!(
            after.contains("# TYPE ringlb_upstream_response_seconds histogram"),
            "{after}"
        );

        let _ = stop.send(());
        serving.await.expect("join").expect("data plane ran");
    }
}
