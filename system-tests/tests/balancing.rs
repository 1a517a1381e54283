//! The balancing features, each with real processes: weights on `/add`,
//! bounded load on a hot key, outlier detection of a replica that answers
//! 503, slow start of a new replica, and graceful drain on `/rm`. Every
//! feature is off unless asked for; these tests turn each on through the
//! control plane (`PUT /config`, `/add`'s `weights`, `--drain-timeout`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use http::Method;
use ringlb_proto::v1;
use ringlb_proto::v1::control_plane_client::ControlPlaneClient;
use ringlb_testkit::{
    ControlPlane, Pool, Proc, eventually, request, start_control_plane,
    start_control_plane_running, start_data_plane_metered, wait_routed,
};

/// Hashes with well-mixed output and enough virtual nodes that ring
/// shares are close to the weights.
const MIXED: &[&str] = &[
    "--request-hash",
    "xxh3",
    "--vnode-hash",
    "xxh3",
    "--vnodes",
    "64",
    "--slots",
    "8192",
];

struct System {
    /// The data plane's process (stopped on drop), client and metrics
    /// addresses; dropped before its control plane.
    _data_plane: Proc,
    lb: String,
    metrics: String,
    control_plane: ControlPlane,
}

/// A data plane with `/metrics` following `control_plane`, once it routes.
async fn with_data_plane(control_plane: ControlPlane) -> System {
    with_data_plane_args(control_plane, &[]).await
}

/// [`with_data_plane`], the data plane started with `extra` arguments too.
async fn with_data_plane_args(control_plane: ControlPlane, extra: &[&str]) -> System {
    let grpc = format!("http://{}", control_plane.grpc);
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--control-plane-grpc",
        &grpc,
        "--control-plane-http",
        &control_plane.http,
    ];
    args.extend_from_slice(extra);
    let (proc, lb, metrics) = start_data_plane_metered(&args);
    wait_routed(&lb).await;
    System {
        _data_plane: proc,
        lb,
        metrics,
        control_plane,
    }
}

/// A control plane running `replica_bin` with `args`, and a data plane with
/// `/metrics` that routes.
async fn start(replica_bin: &str, args: &[&str]) -> System {
    let control_plane = if replica_bin == "replica" {
        start_control_plane(args)
    } else {
        start_control_plane_running(replica_bin, "127.0.0.1:0", "127.0.0.1:0", args)
    };
    with_data_plane(control_plane).await
}

impl System {
    fn lb(&self) -> &str {
        &self.lb
    }

    async fn grpc(&self) -> ControlPlaneClient<tonic::transport::Channel> {
        ControlPlaneClient::connect(format!("http://{}", self.control_plane.grpc))
            .await
            .expect("gRPC")
    }

    async fn replicas(&self) -> Vec<v1::Replica> {
        self.grpc()
            .await
            .list_replicas(v1::ListReplicasRequest {})
            .await
            .expect("list")
            .into_inner()
            .replicas
    }

    /// `PUT /config` with `body`, then wait until the data plane applied it.
    async fn configure(&self, body: &str) {
        let reply = request(&self.control_plane.http, Method::PUT, "/config", body, &[])
            .await
            .expect("PUT /config");
        assert_eq!(reply.status, 200, "{}", reply.text());
    }

    /// A data plane counter or gauge from its `/metrics`.
    async fn metric(&self, line_start: &str) -> u64 {
        let text = request(&self.metrics, Method::GET, "/metrics", "", &[])
            .await
            .expect("metrics")
            .text();
        text.lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {line_start} in\n{text}"))
    }
}

/// Who answered: the name after `from: ` (scripted replica) or `Server: `
/// (replica) in the body.
fn answered_by(body: &str) -> String {
    let after = body
        .split_once("from: ")
        .or_else(|| body.split_once("Server: "))
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("no replica name in {body}"));
    after
        .trim_end_matches(|c: char| c == '}' || c == '"' || c.is_whitespace())
        .split('"')
        .next()
        .unwrap_or_default()
        .to_owned()
}

async fn get_with_id(pool: &Pool, lb: &str, path: &str, id: u64) -> (u16, String) {
    let reply = pool
        .send(
            lb,
            Method::GET,
            path,
            "",
            &[("X-Request-ID", &id.to_string())],
        )
        .await
        .expect("GET");
    (reply.status.as_u16(), reply.text())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_one_and_three_give_shares_of_one_to_three() {
    let mut args = vec!["--replicas", "0", "--metrics-listen", "127.0.0.1:0"];
    args.extend_from_slice(MIXED);
    let control_plane = start_control_plane(&args);
    let added = request(
        &control_plane.http,
        Method::POST,
        "/add",
        r#"{"n": 2, "hostnames": ["W1", "W3"], "weights": [1, 3]}"#,
        &[],
    )
    .await
    .expect("/add");
    // /rep's shape is SPEC.md's: weights are not in it.
    assert_eq!(
        added.text(),
        r#"{"message": {"N": 2, "replicas": ["W1", "W3"]}, "status": "successful"}"#
    );
    let system = with_data_plane(control_plane).await;
    let replicas = system.replicas().await;
    let weights: Vec<(&str, u32)> = replicas
        .iter()
        .map(|r| (r.name.as_str(), r.weight))
        .collect();
    assert_eq!(weights, [("W1", 1), ("W3", 3)], "weights through gRPC");

    let pool = Pool::default();
    const TOTAL: u64 = 4_000;
    let mut counts: HashMap<String, u64> = HashMap::new();
    for i in 0..TOTAL {
        let (status, body) =
            get_with_id(&pool, system.lb(), "/home", 100_000 + i * 7_919 % 900_000).await;
        assert_eq!(status, 200, "{body}");
        *counts.entry(answered_by(&body)).or_default() += 1;
    }
    let share = counts.get("W3").copied().unwrap_or(0) as f64 / TOTAL as f64;
    // 3/4 of the keys, within sampling error (σ ≈ 0.007) and the ring's
    // own spread with 64 virtual nodes per weight unit.
    assert!(
        (share - 0.75).abs() < 0.06,
        "W3 served {share:.3} of the requests, expected 0.75 ({counts:?})"
    );
    let control_metrics = system
        .control_plane
        .metrics
        .clone()
        .expect("--metrics-listen");
    let text = request(&control_metrics, Method::GET, "/metrics", "", &[])
        .await
        .expect("control-plane metrics")
        .text();
    assert!(
        text.contains("ringlb_replica_weight{replica=\"W3\"} 3\n"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_weights_are_refused_and_change_nothing() {
    let control_plane = start_control_plane(&[]);
    let before = request(&control_plane.http, Method::GET, "/rep", "", &[])
        .await
        .expect("/rep")
        .text();
    for (body, message) in [
        (
            r#"{"n": 2, "weights": [1]}"#,
            "Length of weights list must equal n (2), got 1",
        ),
        (
            r#"{"n": 1, "weights": [0]}"#,
            "Field 'weights' must be a list of integers between 1 and 100, got 0",
        ),
        (
            r#"{"n": 2, "weights": [60, 60]}"#,
            "Invalid ring configuration: 5 replicas (total weight 123) x 9 virtual nodes do not fit in 512 slots with linear probing",
        ),
    ] {
        let reply = request(&control_plane.http, Method::POST, "/add", body, &[])
            .await
            .expect("/add");
        assert_eq!(reply.status, 400, "{body}: {}", reply.text());
        assert_eq!(
            reply.text(),
            format!(r#"{{"message": "<Error> {message}", "status": "failure"}}"#),
            "{body}"
        );
    }
    let after = request(&control_plane.http, Method::GET, "/rep", "", &[])
        .await
        .expect("/rep")
        .text();
    assert_eq!(before, after);
    // PUT /config: what is not an object, malformed JSON, an unknown field.
    let config_before = request(&control_plane.http, Method::GET, "/config", "", &[])
        .await
        .expect("GET /config")
        .text();
    for (body, message) in [
        (
            r#"[1024, 9, "xxh3", "xxh3", "linear", "request-id", 150, 3, 1000, 50, 0]"#,
            "Request body must be a JSON object".to_owned(),
        ),
        ("null", "Request body must be a JSON object".to_owned()),
        (
            r#"{"slots": "#,
            "Malformed JSON body: EOF while parsing a value at line 1 column 10".to_owned(),
        ),
        (
            r#"{"hash_balance_factr": 150}"#,
            "Invalid ring configuration: unknown field `hash_balance_factr`".to_owned(),
        ),
        (
            r#"{"hash_balance_factor": 99}"#,
            "Invalid ring configuration: hash_balance_factor = 99 must be 0 (off) or at least 100"
                .to_owned(),
        ),
    ] {
        let reply = request(&control_plane.http, Method::PUT, "/config", body, &[])
            .await
            .expect("PUT /config");
        assert_eq!(reply.status, 400, "{body}: {}", reply.text());
        assert!(
            reply
                .text()
                .starts_with(&format!(r#"{{"message": "<Error> {message}"#)),
            "{body}: {}",
            reply.text()
        );
    }
    // A change that changes nothing publishes no new version.
    let same = request(&control_plane.http, Method::PUT, "/config", "{}", &[])
        .await
        .expect("PUT /config {}");
    assert_eq!(same.status, 200);
    let config_after = request(&control_plane.http, Method::GET, "/config", "", &[])
        .await
        .expect("GET /config")
        .text();
    assert_eq!(
        config_before, config_after,
        "nothing changed, not even the version"
    );
}

/// `n` concurrent `GET /slow?ms=…` with one `X-Request-ID`: who answered.
async fn hot_key_burst(lb: &str, n: usize, id: u64) -> HashMap<String, u64> {
    let pool = Pool::default();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (pool, lb) = (pool.clone(), lb.to_owned());
            tokio::spawn(async move { get_with_id(&pool, &lb, "/slow?ms=400", id).await })
        })
        .collect();
    let mut counts = HashMap::new();
    for task in tasks {
        let (status, body) = task.await.expect("request task");
        assert_eq!(status, 200, "{body}");
        *counts.entry(answered_by(&body)).or_default() += 1;
    }
    counts
}

/// The most `/slow` requests each replica served at once since the last
/// call (the scripted replica's `/peak`).
async fn peaks(system: &System) -> HashMap<String, u64> {
    let mut peaks = HashMap::new();
    for r in system.replicas().await {
        let text = request(&r.address, Method::GET, "/peak", "", &[])
            .await
            .expect("/peak")
            .text();
        peaks.insert(r.name, text.trim().parse().expect("a number"));
    }
    peaks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_key_spills_clockwise_under_bounded_load() {
    let system = start("scripted-replica", &[]).await;
    const CONCURRENT: usize = 64;
    const KEY: u64 = 424_242;
    // Off: the owner serves every request of the hot key.
    let off = hot_key_burst(system.lb(), CONCURRENT, KEY).await;
    assert_eq!(off.len(), 1, "one replica served them all: {off:?}");
    let owner = off.keys().next().expect("an owner").clone();
    let peak_off = peaks(&system).await;
    assert!(peak_off[&owner] > 32, "{peak_off:?}");

    // Factor 150: the owner stays within 1.5 x the average in flight
    // (64 in flight over 3 replicas: at most 32), the rest spill clockwise.
    system.configure(r#"{"hash_balance_factor": 150}"#).await;
    let on = hot_key_burst(system.lb(), CONCURRENT, KEY).await;
    let peak_on = peaks(&system).await;
    assert!(
        peak_on[&owner] <= 32,
        "the owner {owner} had {} in flight at once: {peak_on:?}",
        peak_on[&owner]
    );
    assert!(on.len() >= 2, "requests spilled: {on:?}");
    assert_eq!(on.values().sum::<u64>(), CONCURRENT as u64, "none failed");
    assert!(system.metric("ringlb_bounded_load_spills_total").await > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_replica_is_ejected_and_comes_back_when_healthy() {
    let system = start("scripted-replica", &[]).await;
    system
        .configure(
            r#"{"outlier_consecutive_failures": 3, "outlier_base_ejection_ms": 1500, "outlier_max_ejection_percent": 50}"#,
        )
        .await;
    let pool = Pool::default();
    const KEY: u64 = 777_001;
    let (_, body) = get_with_id(&pool, system.lb(), "/home", KEY).await;
    let owner = answered_by(&body);
    let replicas = system.replicas().await;
    let owner_addr = &replicas
        .iter()
        .find(|r| r.name == owner)
        .expect("owner listed")
        .address;
    request(owner_addr, Method::POST, "/sick", "", &[])
        .await
        .expect("/sick");

    // Three 503s from the owner, then its keys go to the next replica.
    for _ in 0..3 {
        let (status, body) = get_with_id(&pool, system.lb(), "/home", KEY).await;
        assert_eq!(status, 503, "{body}");
    }
    let (status, body) = get_with_id(&pool, system.lb(), "/home", KEY).await;
    assert_eq!(status, 200, "{body}");
    let next = answered_by(&body);
    assert_ne!(next, owner, "ejected");
    assert_eq!(system.metric("ringlb_outlier_ejections_total").await, 1);
    assert_eq!(
        system
            .metric(&format!("ringlb_upstream_ejected{{replica=\"{owner}\"}}"))
            .await,
        1
    );
    // Still on the ring: ejection is this data plane's, not a removal.
    assert_eq!(system.replicas().await.len(), 3);

    // Healthy again: back after the ejection time (1.5 s).
    request(owner_addr, Method::POST, "/well", "", &[])
        .await
        .expect("/well");
    let ejected_at = Instant::now();
    eventually(Duration::from_secs(10), "the owner back", || {
        let (pool, lb, owner) = (pool.clone(), system.lb().to_owned(), owner.clone());
        async move {
            let (status, body) = get_with_id(&pool, &lb, "/home", KEY).await;
            (status == 200 && answered_by(&body) == owner).then_some(())
        }
    })
    .await;
    assert!(
        ejected_at.elapsed() >= Duration::from_millis(1000),
        "not back before its ejection ended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_start_ramps_a_new_replica_up_to_its_ring_share() {
    let system = start("replica", MIXED).await;
    system.configure(r#"{"slow_start_ms": 6000}"#).await;
    let added = request(
        &system.control_plane.http,
        Method::POST,
        "/add",
        r#"{"n": 1, "hostnames": ["NEW"]}"#,
        &[],
    )
    .await
    .expect("/add");
    assert_eq!(added.status, 200, "{}", added.text());
    let added_at = Instant::now();
    // The keys NEW owns on the ring.
    let replicas = system.replicas().await;
    let ids: Vec<u64> = replicas.iter().map(|r| r.id).collect();
    let config = ringlb_ring::RingConfig {
        request_hash: ringlb_ring::HashFn::Xxh3,
        vnode_hash: ringlb_ring::HashFn::Xxh3,
        vnodes: 64,
        slots: 8192,
        ..Default::default()
    };
    let ring = ringlb_ring::Ring::build(&config, &ids).expect("ring");
    let new_member = replicas.iter().position(|r| r.name == "NEW").expect("NEW");
    let owned: Vec<u64> = (0..20_000u64)
        .map(|i| 100_000 + i * 37)
        .filter(|&k| ring.lookup(k) == Some(new_member))
        .take(300)
        .collect();
    assert!(owned.len() == 300, "NEW owns keys");
    let pool = Pool::default();
    let share = |keys: Vec<u64>| {
        let (pool, lb) = (pool.clone(), system.lb().to_owned());
        async move {
            let mut to_new = 0;
            for &k in &keys {
                let (status, body) = get_with_id(&pool, &lb, "/home", k).await;
                assert_eq!(status, 200, "{body}");
                to_new += u64::from(answered_by(&body) == "NEW");
            }
            to_new as f64 / keys.len() as f64
        }
    };
    let early = share(owned.clone()).await;
    let early_at = added_at.elapsed();
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(added_at.elapsed())).await;
    let middle = share(owned.clone()).await;
    tokio::time::sleep(Duration::from_millis(6_500).saturating_sub(added_at.elapsed())).await;
    let done = share(owned.clone()).await;
    eprintln!(
        "NEW's share of its keys: {early:.2} (by {early_at:?}), {middle:.2} (~3 s), {done:.2} (after 6 s)"
    );
    assert!(
        early < 0.5,
        "right after /add NEW took {early:.2} of its keys"
    );
    assert!(
        middle > early,
        "its share grows: {early:.2} then {middle:.2}"
    );
    assert_eq!(done, 1.0, "all its keys after the window");
    assert!(system.metric("ringlb_slow_start_skips_total").await > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rm_waits_for_requests_in_flight_to_the_removed_replica() {
    rm_drains("/slow?ms=1500", "fast").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rm_waits_for_response_bodies_still_streaming_fast_engine() {
    rm_drains("/slow-body?ms=1500", "fast").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rm_waits_for_response_bodies_still_streaming_hyper_engine() {
    rm_drains("/slow-body?ms=1500", "hyper").await;
}

/// Five requests for `path` (slow to answer, or slow to finish its body)
/// in flight to the replica `/rm` removes, through a data plane with
/// `engine`: `/rm` answers only after the last of them was forwarded whole.
async fn rm_drains(path: &'static str, engine: &str) {
    let control_plane = start_control_plane_running(
        "scripted-replica",
        "127.0.0.1:0",
        "127.0.0.1:0",
        &["--drain-timeout", "10s", "--metrics-listen", "127.0.0.1:0"],
    );
    let system = with_data_plane_args(control_plane, &["--engine", engine]).await;
    let pool = Pool::default();
    const KEY: u64 = 313_131;
    let (_, body) = get_with_id(&pool, system.lb(), "/home", KEY).await;
    let victim = answered_by(&body);
    let slow: Vec<_> = (0..5)
        .map(|_| {
            let (pool, lb) = (pool.clone(), system.lb().to_owned());
            tokio::spawn(async move {
                let answer = get_with_id(&pool, &lb, path, KEY).await;
                (answer, Instant::now())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rm_started = Instant::now();
    let removed = request(
        &system.control_plane.http,
        Method::DELETE,
        "/rm",
        &format!(r#"{{"n": 1, "hostnames": ["{victim}"]}}"#),
        &[],
    )
    .await
    .expect("/rm");
    let rm_done = Instant::now();
    assert_eq!(removed.status, 200, "{}", removed.text());
    let mut last_done = rm_started;
    for task in slow {
        let ((status, body), done) = task.await.expect("slow request");
        assert_eq!(status, 200, "{body}");
        assert!(body.starts_with("slow "), "whole body: {body}");
        assert_eq!(
            answered_by(&body),
            victim,
            "completed by the removed replica"
        );
        last_done = last_done.max(done);
    }
    assert!(
        rm_done - rm_started >= Duration::from_millis(900),
        "/rm answered after {:?}, before the slow requests ended",
        rm_done - rm_started
    );
    assert!(
        rm_done + Duration::from_millis(100) >= last_done,
        "/rm answered before the last slow request finished"
    );
    let metrics = system.control_plane.metrics.clone().expect("metrics");
    let text = request(&metrics, Method::GET, "/metrics", "", &[])
        .await
        .expect("control-plane metrics")
        .text();
    assert!(text.contains("\nringlb_rm_drains_total 1\n"), "{text}");
    assert!(
        text.contains("\nringlb_rm_drain_timeouts_total 0\n"),
        "{text}"
    );
}
