//! The system in Docker, end to end: `make up` (compose: control plane with
//! the Docker socket, data plane, replicas as containers on net1), SPEC.md
//! through the published port, `docker kill` of a replica, a restart of the
//! control-plane container, and `make down` leaving nothing behind.
//!
//! Runs whenever `docker info` answers (it says so loudly when it does not);
//! needs the images of `make build` (`make test` builds them first).

use std::process::Command;
use std::time::{Duration, Instant};

use ringlb_testkit::docker::{
    answers as docker_answers, assert_images, docker, docker_lines, free_ports, make, make_quietly,
    refuses_to_start, repo_root, run,
};
use ringlb_testkit::load::Load;
use ringlb_testkit::{Pool, contract, eventually, get, replica_names, wait_replaced};

const PROJECT: &str = "ringlb";
const IMAGES: [&str; 3] = [
    "ringlb-replica:latest",
    "ringlb-control-plane:latest",
    "ringlb-data-plane:latest",
];

/// `docker-compose` (1.x, as Debian ships it) or Compose v2 (`docker compose`).
fn compose() -> Command {
    let v1 = Command::new("docker-compose").arg("version").output();
    if v1.is_ok_and(|o| o.status.success()) {
        Command::new("docker-compose")
    } else {
        let mut cmd = Command::new("docker");
        cmd.arg("compose");
        cmd
    }
}

/// Our replica containers (label `ringlb.managed`), by name.
fn replica_containers() -> Vec<String> {
    docker_lines(&[
        "ps",
        "-a",
        "--filter",
        "label=ringlb.managed=true",
        "--format",
        "{{.Names}}",
    ])
}

/// The compose system; `make down` on drop, also when the test fails.
struct Compose {
    env: Vec<(&'static str, String)>,
}

impl Compose {
    fn make(&self, target: &str) -> String {
        make(target, &self.env)
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        make_quietly("down", &self.env);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_mode_end_to_end() {
    if !docker_answers() {
        eprintln!("SKIPPED docker_mode_end_to_end: no Docker engine answers `docker info`");
        return;
    }
    assert_images(&IMAGES);
    let [port, http_port, grpc_port] = free_ports();
    let system = Compose {
        env: vec![
            ("RINGLB_PORT", port.to_string()),
            ("RINGLB_HTTP_PORT", http_port.to_string()),
            ("RINGLB_GRPC_PORT", grpc_port.to_string()),
            ("RINGLB_MAX_REPLICAS", "20".into()),
            ("RINGLB_REPLICAS", "3".into()),
        ],
    };
    system.make("down"); // a clean slate: nothing of ours from an earlier run
    system.make("up");
    let lb = format!("127.0.0.1:{port}");
    let admin = format!("127.0.0.1:{http_port}");
    let pool = Pool::default();
    eventually(
        Duration::from_secs(60),
        "the Docker system to serve /home",
        || {
            let (pool, lb) = (pool.clone(), lb.clone());
            async move {
                pool.get(&lb, "/home")
                    .await
                    .ok()
                    .filter(|r| r.status == 200)
                    .map(|_| ())
            }
        },
    )
    .await;
    assert_eq!(replica_containers(), ["server-1", "server-2", "server-3"]);
    // The compose healthchecks (each binary's --probe on its /readyz) pass.
    eventually(
        Duration::from_secs(90),
        "the control plane and data plane containers to be healthy",
        || async {
            let healthy = docker(&[
                "ps",
                "-q",
                "--filter",
                &format!("label=com.docker.compose.project={PROJECT}"),
                "--filter",
                "health=healthy",
            ]);
            (healthy.lines().count() == 2).then_some(())
        },
    )
    .await;

    // SPEC.md through localhost, every endpoint and error, as in process mode.
    contract::add_errors(&[&lb, &admin], &admin).await;
    contract::rm_errors(&[&lb, &admin], &admin, 20).await;
    contract::method_and_size_errors(&lb, &admin).await;
    contract::replica_set_scenario(&lb, &admin).await;
    assert_eq!(
        replica_containers(),
        ["server-1"],
        "removed replicas' containers are gone"
    );

    // A name Docker already has (a container that is not ours) is a clear
    // 500 JSON error and changes nothing.
    docker(&[
        "create",
        "--name",
        "S9",
        "--label",
        "ringlb.test=name-taken",
        IMAGES[0],
    ]);
    let before_taken = get(&lb, "/rep").await.text();
    let taken = contract::call(
        &lb,
        http::Method::POST,
        "/add",
        r#"{"n": 2, "hostnames": ["S8", "S9"]}"#,
    )
    .await;
    docker(&["rm", "-f", "S9"]);
    contract::assert_json(
        &taken,
        500,
        &contract::failure("replica 'S9' failed to start: a container named 'S9' already exists"),
    );
    assert_eq!(get(&lb, "/rep").await.text(), before_taken);
    assert_eq!(
        replica_containers(),
        ["server-1"],
        "S8, started by the refused request, was removed again"
    );

    // Grow back to three, then `docker kill` one under steady load.
    let grown = replica_names(&get(&lb, "/rep").await);
    assert_eq!(grown, ["server-1"]);
    let added = contract::call(
        &lb,
        http::Method::POST,
        "/add",
        r#"{"n": 2, "hostnames": ["S2", "S3"]}"#,
    )
    .await;
    assert_eq!(added.status, 200, "{}", added.text());
    let load = Load::start(&lb, 4, Duration::from_millis(2), Duration::from_secs(120));
    docker(&["kill", "S2"]);
    // Docker's `die` event starts the replacement at once (it usually
    // completes within a second); the bound leaves room for a loaded
    // 2-core machine starting a container.
    let healed = wait_replaced(&lb, "S2", 3, Duration::from_secs(15)).await;
    assert_eq!(&healed[..2], ["server-1", "S3"]);

    // Restart the control-plane container: the data plane keeps serving,
    // the new control plane adopts the same containers, creates none.
    let before = replica_containers();
    run(compose()
        .args(["-p", PROJECT, "restart", "control-plane"])
        .current_dir(repo_root()));
    let adopted = eventually(
        Duration::from_secs(30),
        "the restarted control plane to answer /rep",
        || {
            let lb = lb.clone();
            async move {
                let reply = ringlb_testkit::request(&lb, http::Method::GET, "/rep", "", &[])
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
    assert_eq!(replica_containers(), before, "no container added or lost");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok, failed) = load.finish().await;
    assert!(ok > 100, "the load ran ({ok})");
    assert_eq!(
        failed, 0,
        "{failed} /home requests failed around the kill and the restart"
    );

    // Chaos in Docker mode: about 20 s of GET load while containers are
    // killed, replicas added and removed, and the control plane restarted
    // once. No GET may fail.
    let chaos = Load::start(&lb, 4, Duration::from_millis(2), Duration::from_secs(120));
    let started = Instant::now();
    let mut step = 0u32;
    while started.elapsed() < Duration::from_secs(20) {
        match step % 5 {
            0 => {
                let names = replica_names(&get(&lb, "/rep").await);
                if let Some(oldest) = names.first() {
                    docker(&["kill", oldest]);
                }
            }
            1 | 3 if step != 3 => {
                let reply = contract::call(&lb, http::Method::POST, "/add", r#"{"n": 1}"#).await;
                assert_eq!(reply.status, 200, "{}", reply.text());
            }
            3 => {
                run(compose()
                    .args(["-p", PROJECT, "restart", "control-plane"])
                    .current_dir(repo_root()));
                eventually(
                    Duration::from_secs(30),
                    "the control plane back after its restart",
                    || {
                        let admin = admin.clone();
                        async move {
                            let reply =
                                ringlb_testkit::request(&admin, http::Method::GET, "/rep", "", &[])
                                    .await
                                    .ok()?;
                            (reply.status == 200).then_some(())
                        }
                    },
                )
                .await;
            }
            _ => {
                let reply =
                    contract::call(&admin, http::Method::DELETE, "/rm", r#"{"n": 1}"#).await;
                assert_eq!(reply.status, 200, "{}", reply.text());
            }
        }
        step += 1;
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (ok, failed) = chaos.finish().await;
    assert!(ok > 500, "the chaos load ran ({ok})");
    assert_eq!(failed, 0, "{failed} GETs failed during the Docker chaos");
    // No orphans: the containers are exactly the replicas on the ring.
    let final_names = eventually(Duration::from_secs(10), "containers = replicas", || {
        let lb = lb.clone();
        async move {
            let mut names = replica_names(&get(&lb, "/rep").await);
            names.sort();
            (names == replica_containers()).then_some(names)
        }
    })
    .await;
    // The data plane routes by the ring of the listed ids.
    let mut grpc = ringlb_proto::v1::control_plane_client::ControlPlaneClient::connect(format!(
        "http://127.0.0.1:{grpc_port}"
    ))
    .await
    .expect("gRPC published on loopback");
    let set = grpc
        .list_replicas(ringlb_proto::v1::ListReplicasRequest {})
        .await
        .expect("list")
        .into_inner();
    let ids: Vec<u64> = set.replicas.iter().map(|r| r.id).collect();
    let names: Vec<&str> = set.replicas.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names.len(), final_names.len());
    let ring = ringlb_ring::Ring::build(&ringlb_ring::RingConfig::default(), &ids).expect("ring");
    ringlb_testkit::assert_routes_like(&lb, &ring, &names, (400_000u64..400_060).step_by(7)).await;

    // The analysis drives the Docker system too (`--target`), killing a
    // container for A-3.
    let report =
        std::env::temp_dir().join(format!("ringlb-docker-analysis-{}", std::process::id()));
    let analysis = Command::new(ringlb_testkit::bin("analysis"))
        .args([
            "--target",
            &format!("http://{lb}"),
            "--admin",
            &admin,
            "--kill",
            "docker",
        ])
        .args([
            "--requests",
            "300",
            "--concurrency",
            "20",
            "--n-max",
            "3",
            "--quiet",
            "--out",
        ])
        .arg(&report)
        .status()
        .expect("analysis runs");
    assert!(
        analysis.success(),
        "analysis --target against Docker failed: {analysis}"
    );
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.join("results.json")).expect("results"))
            .expect("json");
    assert_eq!(results["recovery"]["how"], "docker kill");
    assert_eq!(results["recovery"]["failed"], 0, "{}", results["recovery"]);
    // A-5 ran both ways and put bounded load back off (no --metrics: the
    // spills are not measured).
    let a5 = &results["a5"];
    assert_eq!(a5["off"]["factor"], 0, "{a5}");
    assert_eq!(a5["on"]["factor"], 150, "{a5}");
    assert_eq!(a5["off"]["failed"], 0, "{a5}");
    assert_eq!(a5["on"]["failed"], 0, "{a5}");
    assert!(a5["on"]["spills"].is_null(), "{a5}");
    assert_eq!(a5["factor_before"], 0, "{a5}");
    let _ = std::fs::remove_dir_all(&report);

    // `make down` leaves no container and no network of ours.
    drop(system);
    assert!(
        replica_containers().is_empty(),
        "replica containers left behind"
    );
    let ours = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=com.docker.compose.project={PROJECT}"),
        "--format",
        "{{.Names}}",
    ]);
    assert!(
        ours.trim().is_empty(),
        "compose containers left behind: {ours}"
    );
    let networks = docker(&[
        "network",
        "ls",
        "--filter",
        "name=^net1$",
        "--format",
        "{{.Name}}",
    ]);
    assert!(networks.trim().is_empty(), "network net1 left behind");
}

#[test]
fn a_missing_image_or_network_is_a_clear_error_at_start_up() {
    if !docker_answers() {
        eprintln!(
            "SKIPPED a_missing_image_or_network_is_a_clear_error_at_start_up: no Docker engine answers"
        );
        return;
    }
    refuses_to_start(
        "docker",
        &["--replica-image", "ringlb-no-such-image:latest"],
        &[],
        "replica image 'ringlb-no-such-image:latest' is missing (build it with `make build`)",
    );
    refuses_to_start(
        "docker",
        &["--docker-network", "ringlb-no-such-network"],
        &[],
        "Docker network 'ringlb-no-such-network' is missing",
    );
}

#[test]
fn an_unreachable_engine_is_a_clear_error_at_start_up() {
    refuses_to_start(
        "docker",
        &[],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
        "the replica backend is unavailable: cannot reach the Docker engine",
    );
}
