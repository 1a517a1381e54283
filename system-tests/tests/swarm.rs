//! The system on a real single-node Docker Swarm, end to end: `make
//! swarm-up` (a swarm on 127.0.0.1, the control plane as a one-task service
//! with the Docker socket, data planes as a global service publishing in
//! host mode, replicas as one service each), SPEC.md through the published
//! port, the ring's exact distribution, `docker kill` of a replica's task and
//! of the control plane's task under load, and `make swarm-down` leaving
//! nothing behind.
//!
//! Runs when `docker info` answers and the engine is in no swarm: the test
//! only ever uses a swarm it created (it says so loudly when it skips).
//! Needs the images of `make build` (`make test` builds them first).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use ringlb_testkit::docker::{
    answers, assert_images, docker, docker_lines, free_ports, make, make_quietly, refuses_to_start,
};
use ringlb_testkit::load::Load;
use ringlb_testkit::{Pool, contract, eventually, get, replica_names, served_by, wait_replaced};

const IMAGES: [&str; 3] = [
    "ringlb-replica:latest",
    "ringlb-control-plane:latest",
    "ringlb-data-plane:latest",
];
/// The stack and overlay network of this test (not the defaults, so a
/// Compose system's `net1` left by another run cannot get in the way).
const STACK: &str = "ringlb-swarm-test";
const NETWORK: &str = "ringlb-swarm-test";

fn swarm_state() -> String {
    docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"])
        .trim()
        .to_owned()
}

fn network_exists(name: &str) -> bool {
    !docker_lines(&[
        "network",
        "ls",
        "--filter",
        &format!("name=^{name}$"),
        "--format",
        "{{.Name}}",
    ])
    .is_empty()
}

/// The replica services (label `ringlb.managed`), by name.
fn replica_services() -> Vec<String> {
    docker_lines(&[
        "service",
        "ls",
        "--filter",
        "label=ringlb.managed=true",
        "--format",
        "{{.Name}}",
    ])
}

/// The id of the running container of service `service`.
fn container_of(service: &str) -> Option<String> {
    docker_lines(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.swarm.service.name={service}"),
    ])
    .into_iter()
    .next()
}

/// The Swarm system; `make swarm-down` on drop, also when the test fails.
struct Swarm {
    env: Vec<(&'static str, String)>,
}

impl Drop for Swarm {
    fn drop(&mut self) {
        make_quietly("swarm-down", &self.env);
    }
}

/// `GET /home` with `X-Request-ID` for every id, 16 at a time: the replica
/// that answered each.
async fn owners(lb: &str, ids: Vec<u64>) -> HashMap<u64, String> {
    let pool = Pool::default();
    let queue = Arc::new(Mutex::new(ids));
    let found: Arc<Mutex<HashMap<u64, String>>> = Arc::default();
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (pool, lb, queue, found) =
                (pool.clone(), lb.to_owned(), queue.clone(), found.clone());
            tokio::spawn(async move {
                loop {
                    let Some(id) = queue.lock().expect("queue").pop() else {
                        return;
                    };
                    let reply = pool
                        .send(
                            &lb,
                            Method::GET,
                            "/home",
                            "",
                            &[("X-Request-ID", &id.to_string())],
                        )
                        .await
                        .expect("GET /home");
                    assert_eq!(reply.status, 200, "{}", reply.text());
                    found
                        .lock()
                        .expect("found")
                        .insert(id, served_by(&reply.text()));
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker");
    }
    found.lock().expect("found").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swarm_mode_end_to_end() {
    if !answers() {
        eprintln!("SKIPPED swarm_mode_end_to_end: no Docker engine answers `docker info`");
        return;
    }
    let state = swarm_state();
    if state != "inactive" {
        eprintln!(
            "SKIPPED swarm_mode_end_to_end: this engine is already in a swarm (state '{state}'); \
             the test only runs on a swarm it creates"
        );
        return;
    }
    assert_images(&IMAGES);
    // Before any swarm exists, the Swarm backend refuses to start, saying why.
    refuses_to_start(
        "swarm",
        &[],
        &[],
        "the Docker engine is not in swarm mode (state 'inactive')",
    );
    let gwbridge_before = network_exists("docker_gwbridge");
    let [port, http_port, grpc_port] = free_ports();
    let system = Swarm {
        env: vec![
            ("RINGLB_STACK", STACK.into()),
            ("RINGLB_SWARM_NETWORK", NETWORK.into()),
            ("RINGLB_PORT", port.to_string()),
            ("RINGLB_HTTP_PORT", http_port.to_string()),
            ("RINGLB_GRPC_PORT", grpc_port.to_string()),
            ("RINGLB_MAX_REPLICAS", "20".into()),
            ("RINGLB_REPLICAS", "3".into()),
        ],
    };
    let up = make("swarm-up", &system.env);
    assert!(up.contains("Initialised a single-node swarm"), "{up}");
    assert_eq!(swarm_state(), "active");

    // Start-up refusals that need a swarm: no such network, a network that
    // is not an attachable overlay, no such image.
    refuses_to_start(
        "swarm",
        &["--docker-network", "ringlb-no-such-network"],
        &[],
        "Docker network 'ringlb-no-such-network' is missing (create it with `docker network create --driver overlay --attachable ringlb-no-such-network`)",
    );
    let bridge = format!("ringlb-test-bridge-{}", std::process::id());
    docker(&["network", "create", &bridge]);
    refuses_to_start(
        "swarm",
        &["--docker-network", &bridge],
        &[],
        &format!(
            "Docker network '{bridge}' is not an attachable overlay network (driver 'bridge')"
        ),
    );
    docker(&["network", "rm", &bridge]);
    refuses_to_start(
        "swarm",
        &[
            "--docker-network",
            NETWORK,
            "--replica-image",
            "ringlb-no-such-image:latest",
        ],
        &[],
        "replica image 'ringlb-no-such-image:latest' is missing",
    );

    let lb = format!("127.0.0.1:{port}");
    let admin = format!("127.0.0.1:{http_port}");
    assert_eq!(
        get(&lb, "/home").await.status,
        200,
        "swarm-up waited for it"
    );
    assert_eq!(replica_services(), ["server-1", "server-2", "server-3"]);
    let spec = docker(&["service", "inspect", "server-2"]);
    for expected in [
        r#""Condition": "none""#,
        r#""Mode": "dnsrr""#,
        r#""ringlb.managed": "true""#,
        r#""ringlb.id": "2""#,
        r#""SERVER_ID=server-2""#,
        r#""StopGracePeriod": 2000000000"#,
    ] {
        assert!(
            spec.contains(expected),
            "server-2's spec lacks {expected}:\n{spec}"
        );
    }

    // SPEC.md through the published port, every endpoint and error.
    contract::add_errors(&[&lb, &admin], &admin).await;
    contract::rm_errors(&[&lb, &admin], &admin, 20).await;
    contract::method_and_size_errors(&lb, &admin).await;
    contract::replica_set_scenario(&lb, &admin).await;
    assert_eq!(
        replica_services(),
        ["server-1"],
        "removed replicas' services are gone"
    );

    // A name Swarm already has (a service that is not ours) is a clear 500
    // JSON error, changes nothing, and the request's other service is removed.
    docker(&[
        "service",
        "create",
        "--detach",
        "--name",
        "S9",
        "--replicas",
        "0",
        IMAGES[0],
    ]);
    let before_taken = get(&lb, "/rep").await.text();
    let taken = contract::call(
        &lb,
        Method::POST,
        "/add",
        r#"{"n": 2, "hostnames": ["S8", "S9"]}"#,
    )
    .await;
    docker(&["service", "rm", "S9"]);
    contract::assert_json(
        &taken,
        500,
        &contract::failure("replica 'S9' failed to start: a service named 'S9' already exists"),
    );
    assert_eq!(get(&lb, "/rep").await.text(), before_taken);
    assert_eq!(replica_services(), ["server-1"], "S8 was removed again");

    // Three replicas; 10,000 request ids land exactly where the ring says.
    let added = contract::call(
        &lb,
        Method::POST,
        "/add",
        r#"{"n": 2, "hostnames": ["S2", "S3"], "weights": [3, 2]}"#,
    )
    .await;
    assert_eq!(added.status, 200, "{}", added.text());
    let mut grpc = ringlb_proto::v1::control_plane_client::ControlPlaneClient::connect(format!(
        "http://127.0.0.1:{grpc_port}"
    ))
    .await
    .expect("gRPC published in host mode");
    let set = grpc
        .list_replicas(ringlb_proto::v1::ListReplicasRequest {})
        .await
        .expect("list")
        .into_inner();
    let ids: Vec<u64> = set.replicas.iter().map(|r| r.id).collect();
    let weights: Vec<u32> = set.replicas.iter().map(|r| r.weight).collect();
    let names: Vec<String> = set.replicas.iter().map(|r| r.name.clone()).collect();
    assert_eq!(names, ["server-1", "S2", "S3"]);
    assert_eq!(weights, [1, 3, 2]);
    assert!(
        docker(&["service", "inspect", "S2"]).contains(r#""ringlb.weight": "3""#),
        "the weight is kept in the service's labels"
    );
    let ring =
        ringlb_ring::Ring::build_weighted(&ringlb_ring::RingConfig::default(), &ids, &weights)
            .expect("ring");
    let sample: Vec<u64> = (0..10_000u64).map(|i| 100_000 + i * 89).collect();
    let served = owners(&lb, sample.clone()).await;
    let mut expected_counts: HashMap<&str, u64> = HashMap::new();
    let mut got_counts: HashMap<&str, u64> = HashMap::new();
    for id in &sample {
        let expected = names[ring.lookup(*id).expect("owner")].as_str();
        assert_eq!(served[id], expected, "X-Request-ID {id}");
        *expected_counts.entry(expected).or_default() += 1;
        *got_counts.entry(served[id].as_str()).or_default() += 1;
    }
    assert_eq!(got_counts, expected_counts);
    eprintln!("10,000 ids: {got_counts:?}, exactly the ring's");

    // `docker kill` of a replica's task container under load: off the ring
    // and replaced under a new name within 5 s, no GET fails.
    let load = Load::start(&lb, 4, Duration::from_millis(2), Duration::from_secs(120));
    let victim = container_of("S2").expect("S2's task container");
    docker(&["kill", &victim]);
    let healed = wait_replaced(&lb, "S2", 3, Duration::from_secs(5)).await;
    assert_eq!(&healed[..2], ["server-1", "S3"]);
    eventually(Duration::from_secs(10), "S2's service removed", || async {
        (!replica_services().contains(&"S2".to_string())).then_some(())
    })
    .await;

    // The control plane's task killed under load: Swarm starts a new one,
    // which adopts every replica service and adds none.
    let services_before = replica_services();
    let control = format!("{STACK}_control-plane");
    let first = container_of(&control).expect("the control plane's container");
    docker(&["kill", &first]);
    let adopted = eventually(
        Duration::from_secs(60),
        "Swarm to restart the control plane and it to answer /rep",
        || {
            let (admin, control, first) = (admin.clone(), control.clone(), first.clone());
            async move {
                let now = container_of(&control)?;
                if now == first {
                    return None;
                }
                let reply = ringlb_testkit::request(&admin, Method::GET, "/rep", "", &[])
                    .await
                    .ok()?;
                (reply.status == 200).then(|| replica_names(&reply))
            }
        },
    )
    .await;
    assert_eq!(
        adopted, healed,
        "same replicas, same order, after the restart"
    );
    let weights: Vec<u32> = ringlb_proto::v1::control_plane_client::ControlPlaneClient::connect(
        format!("http://127.0.0.1:{grpc_port}"),
    )
    .await
    .expect("gRPC after the restart")
    .list_replicas(ringlb_proto::v1::ListReplicasRequest {})
    .await
    .expect("list")
    .into_inner()
    .replicas
    .iter()
    .map(|r| r.weight)
    .collect();
    assert_eq!(
        weights,
        [1, 2, 3],
        "weights adopted from the labels; S2's replacement took its weight 3"
    );
    assert_eq!(
        replica_services(),
        services_before,
        "no service added or lost"
    );
    // The data plane follows the new control plane: an /add through it works.
    let more = eventually(
        Duration::from_secs(30),
        "an /add through the data plane",
        || {
            let lb = lb.clone();
            async move {
                let reply = contract::call(
                    &lb,
                    Method::POST,
                    "/add",
                    r#"{"n": 1, "hostnames": ["S4"]}"#,
                )
                .await;
                (reply.status == 200).then(|| replica_names(&reply))
            }
        },
    )
    .await;
    assert_eq!(more.last().map(String::as_str), Some("S4"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok, failed) = load.finish().await;
    assert!(ok > 100, "the load ran ({ok})");
    assert_eq!(failed, 0, "{failed} GETs failed around the kills");

    // `make swarm-down` leaves nothing: no service, no network, no swarm.
    drop(system);
    assert_eq!(
        swarm_state(),
        "inactive",
        "the swarm swarm-up made was left"
    );
    assert!(!network_exists(NETWORK), "network {NETWORK} left behind");
    if !gwbridge_before {
        assert!(
            !network_exists("docker_gwbridge"),
            "docker_gwbridge left behind"
        );
    }
    let ours = docker_lines(&[
        "ps",
        "-a",
        "--filter",
        "label=ringlb.managed=true",
        "--format",
        "{{.Names}}",
    ]);
    assert!(ours.is_empty(), "replica containers left behind: {ours:?}");
    let stack = docker_lines(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=com.docker.stack.namespace={STACK}"),
        "--format",
        "{{.Names}}",
    ]);
    assert!(stack.is_empty(), "stack containers left behind: {stack:?}");
}
