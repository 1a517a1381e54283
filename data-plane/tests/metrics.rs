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

/// A data plane embedded in this process with `engine`, routing for
/// `control_plane`'s replicas.
struct Served {
    addr: String,
    stats: std::sync::Arc<ringlb_data_plane::stats::Stats>,
    stop: tokio::sync::oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Served {
    async fn start(control_plane: &ringlb_testkit::ControlPlane, engine: Engine) -> Served {
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
        Served {
            addr,
            stats,
            stop,
            serving,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.serving.await.expect("join").expect("data plane ran");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_is_counted_and_timed_for_the_replica_that_answered() {
    for engine in [Engine::Fast, Engine::Hyper] {
        let control_plane = start_control_plane(&[]);
        let served = Served::start(&control_plane, engine).await;
        let (addr, stats) = (served.addr.clone(), served.stats.clone());

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

        served.stop().await;
    }
}

/// A request counts in flight on its replica (what bounded load and the
/// graceful drain read) until its response has been forwarded whole: while
/// its body is still coming after the head, and while the tunnel of a
/// WebSocket it opened stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_in_flight_until_its_body_or_its_tunnel_ends() {
    use ringlb_testkit::{eventually, start_control_plane_running};
    use std::io::{Read, Write};
    use std::time::Duration;

    for engine in [Engine::Fast, Engine::Hyper] {
        let control_plane =
            start_control_plane_running("scripted-replica", "127.0.0.1:0", "127.0.0.1:0", &[]);
        let served = Served::start(&control_plane, engine).await;
        let (addr, stats) = (served.addr.clone(), served.stats.clone());
        let in_flight = || {
            by_replica(&stats.render(), "ringlb_upstream_in_flight")
                .values()
                .sum::<f64>()
        };
        let settles_at = |n: f64, what: &'static str| {
            let in_flight = &in_flight;
            eventually(Duration::from_secs(5), what, move || async move {
                (in_flight() == n).then_some(())
            })
        };

        // The head and half the body now, the rest after 1.5 s.
        let client_addr = addr.clone();
        let (head_seen, head_seen_rx) = std::sync::mpsc::channel();
        let body = tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(&client_addr).expect("connect");
            stream
                .write_all(
                    b"GET /slow-body?ms=1500 HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n",
                )
                .expect("send");
            let mut received = Vec::new();
            let mut piece = [0u8; 1024];
            while !received.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut piece).expect("head");
                assert!(n > 0, "closed before the head");
                received.extend_from_slice(&piece[..n]);
            }
            head_seen.send(()).expect("tell");
            stream.read_to_end(&mut received).expect("body");
            String::from_utf8_lossy(&received).into_owned()
        });
        tokio::task::spawn_blocking(move || head_seen_rx.recv())
            .await
            .expect("join")
            .expect("head");
        assert_eq!(in_flight(), 1.0, "{engine:?}: head forwarded, body coming");
        let body = body.await.expect("client");
        let payload = body.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        assert!(
            payload.starts_with("slow body from: server-"),
            "{engine:?}: the whole body: {body}"
        );
        settles_at(0.0, "no request in flight after the body").await;

        // A WebSocket: in flight until the tunnel closes.
        let ws_addr = addr.clone();
        let (opened, opened_rx) = std::sync::mpsc::channel();
        let (close, close_rx) = std::sync::mpsc::channel::<()>();
        let client = tokio::task::spawn_blocking(move || {
            let stream = std::net::TcpStream::connect(&ws_addr).expect("connect");
            let (mut socket, _) = tungstenite::client::client(format!("ws://{ws_addr}/ws"), stream)
                .expect("handshake");
            socket.send(tungstenite::Message::text("hi")).expect("send");
            socket.read().expect("echo");
            opened.send(()).expect("tell");
            close_rx.recv().expect("told to close");
            socket.close(None).expect("close");
            while socket.read().is_ok() {}
        });
        tokio::task::spawn_blocking(move || opened_rx.recv())
            .await
            .expect("join")
            .expect("opened");
        assert_eq!(in_flight(), 1.0, "{engine:?}: tunnel open");
        close.send(()).expect("close");
        client.await.expect("client");
        settles_at(0.0, "no request in flight once the tunnel closed").await;

        served.stop().await;
    }
}
