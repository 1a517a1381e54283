//! `--admin-token`: changes need `Authorization: Bearer <token>` on every
//! entry point (HTTP through the data plane and on the admin port, gRPC);
//! reads stay open; a refused call changes nothing. And the admin API's
//! Content-Type check.

use http::Method;
use ringlb_proto::v1;
use ringlb_proto::v1::control_plane_client::ControlPlaneClient;
use ringlb_testkit::contract::{assert_json, failure};
use ringlb_testkit::{System, get, replica_names, request};
use tonic::Code;

const TOKEN: &str = "s3cret-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_need_the_token_reads_do_not() {
    let system = System::start(&["--admin-token", TOKEN]).await;
    let bearer = format!("Bearer {TOKEN}");
    let before = get(system.lb(), "/rep").await;
    assert_eq!(before.status, 200, "reads stay open");

    for addr in [system.lb(), system.control_plane.http.as_str()] {
        for (method, path, body) in [
            (Method::POST, "/add", r#"{"n": 1}"#),
            (Method::DELETE, "/rm", r#"{"n": 1}"#),
            (Method::PUT, "/config", r#"{"vnodes": 16}"#),
        ] {
            if path == "/config" && addr == system.lb() {
                continue; // /config is served on the admin port only
            }
            for auth in [None, Some("Bearer wrong"), Some(TOKEN)] {
                let headers: Vec<(&str, &str)> =
                    auth.map(|a| ("authorization", a)).into_iter().collect();
                let reply = request(addr, method.clone(), path, body, &headers)
                    .await
                    .expect("answer");
                assert_json(&reply, 401, &failure("Missing or invalid admin token"));
                assert_eq!(reply.headers["www-authenticate"], "Bearer");
            }
        }
    }
    assert_eq!(
        get(system.lb(), "/rep").await.text(),
        before.text(),
        "refused calls changed nothing"
    );
    let config = get(&system.control_plane.http, "/config").await;
    assert!(
        config.text().contains(r#""vnodes": 9"#),
        "{}",
        config.text()
    );

    // With the token, through the data plane (which forwards the header).
    let added = request(
        system.lb(),
        Method::POST,
        "/add",
        r#"{"n": 1, "hostnames": ["S5"]}"#,
        &[("authorization", &bearer)],
    )
    .await
    .expect("answer");
    assert_eq!(
        replica_names(&added),
        ["server-1", "server-2", "server-3", "S5"]
    );
    let removed = request(
        &system.control_plane.http,
        Method::DELETE,
        "/rm",
        r#"{"n": 1, "hostnames": ["S5"]}"#,
        &[("authorization", &bearer)],
    )
    .await
    .expect("answer");
    assert_eq!(removed.status, 200);

    // gRPC: mutating calls need the token in the metadata; reads do not.
    let mut grpc = ControlPlaneClient::connect(format!("http://{}", system.control_plane.grpc))
        .await
        .expect("connect");
    grpc.list_replicas(v1::ListReplicasRequest {})
        .await
        .expect("list is open");
    let refused = grpc
        .add_replicas(v1::AddReplicasRequest {
            n: 1,
            hostnames: vec![],
            weights: vec![],
        })
        .await
        .expect_err("no token");
    assert_eq!(refused.code(), Code::Unauthenticated);
    let refused = grpc
        .set_ring_config(v1::SetRingConfigRequest {
            vnodes: Some(16),
            ..Default::default()
        })
        .await
        .expect_err("no token");
    assert_eq!(refused.code(), Code::Unauthenticated);
    let mut authorized = tonic::Request::new(v1::AddReplicasRequest {
        n: 1,
        hostnames: vec!["G1".into()],
        weights: vec![],
    });
    authorized
        .metadata_mut()
        .insert("authorization", bearer.parse().expect("metadata"));
    let set = grpc
        .add_replicas(authorized)
        .await
        .expect("with the token")
        .into_inner();
    assert_eq!(set.n, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_declared_as_something_else_than_json_is_refused() {
    let system = System::start(&[]).await;
    let before = get(system.lb(), "/rep").await.text();
    for content_type in ["text/xml", "multipart/form-data; boundary=x", "text/plain"] {
        let reply = request(
            system.lb(),
            Method::POST,
            "/add",
            r#"{"n": 1}"#,
            &[("content-type", content_type)],
        )
        .await
        .expect("answer");
        assert_json(
            &reply,
            415,
            &failure(&format!(
                "Content-Type must be application/json, got '{content_type}'"
            )),
        );
    }
    assert_eq!(get(system.lb(), "/rep").await.text(), before);
    // JSON, +json and the form type `curl -d` sends are read as JSON.
    for content_type in [
        "application/json; charset=utf-8",
        "application/merge-patch+json",
        "application/x-www-form-urlencoded",
    ] {
        let reply = request(
            system.lb(),
            Method::POST,
            "/add",
            r#"{"n": 1}"#,
            &[("content-type", content_type)],
        )
        .await
        .expect("answer");
        assert_eq!(reply.status, 200, "{content_type}: {}", reply.text());
    }
}

/// With a token, the data plane's own calls need it too: a subscription
/// (a non-empty subscriber id), an acknowledgement or a load report without
/// it is refused, so nobody can pose as a data plane or acknowledge for one
/// (which would cut a graceful drain short). Passive watching stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_plane_calls_need_the_token() {
    let system = System::start(&["--admin-token", TOKEN]).await;
    assert_eq!(
        get(system.lb(), "/home").await.status,
        200,
        "the data plane has the token"
    );
    let mut grpc = ControlPlaneClient::connect(format!("http://{}", system.control_plane.grpc))
        .await
        .expect("gRPC");
    let watch = |subscriber: &str| v1::WatchRingRequest {
        subscriber: subscriber.into(),
        epoch: 0,
    };
    let passive = grpc.watch_ring(watch("")).await;
    assert!(passive.is_ok(), "passive watching is a read: {passive:?}");
    let posing = grpc.watch_ring(watch("evil")).await.expect_err("refused");
    assert_eq!(posing.code(), Code::Unauthenticated);
    let ack = grpc
        .ack_ring(v1::AckRingRequest {
            subscriber: "evil".into(),
            version: 1,
            draining: vec![],
        })
        .await
        .expect_err("refused");
    assert_eq!(ack.code(), Code::Unauthenticated);
    let report = grpc
        .report_load(v1::ReportLoadRequest {
            subscriber: "evil".into(),
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert_eq!(report.code(), Code::Unauthenticated);

    // A data plane without the token gets no ring.
    let lone = ringlb_testkit::start_data_plane(
        &system.control_plane.grpc,
        &system.control_plane.http,
        &[],
    );
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let refused = get(&lone.addr, "/home").await;
    assert_eq!(refused.status, 503, "{}", refused.text());
}
