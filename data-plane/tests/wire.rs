//! What crosses the wire through the data plane, byte by byte, against
//! replicas that frame their responses every way HTTP/1.1 allows
//! (`scripted-replica`): chunked bodies with trailers, close-delimited
//! bodies, hop-by-hop headers, interim responses, bodies in pieces, invalid
//! responses. Every check runs against both engines (`fast`, the data
//! plane's own HTTP/1.1 engine, and `hyper`), so they must agree.

mod common;

use std::process::{Command, Stdio};

use common::{Client, assert_spec_failure, seen, start};
use ringlb_testkit::{Proc, bin, start_control_plane_running, wait_routed};

const ENGINES: [&str; 2] = ["fast", "hyper"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_reach_the_client_as_the_replica_framed_them() {
    for engine in ENGINES {
        let wire = start(engine, &[]).await;
        let mut client = Client::connect(&wire.data_plane.addr);

        let chunked = client.get("/chunked");
        assert_eq!(chunked.status, 200, "{engine}");
        assert_eq!(chunked.text(), "hello, world", "{engine}");
        if engine == "fast" {
            // Forwarded as it came, trailers included.
            assert_eq!(
                chunked.trailers,
                [("x-checksum".to_owned(), "42".to_owned())]
            );
        }

        let hop = client.get("/hop-by-hop");
        assert_eq!((hop.status, hop.text().as_str()), (200, "ok"), "{engine}");
        for gone in ["connection", "keep-alive", "x-hop"] {
            assert_eq!(hop.header(gone), None, "{engine}: {gone} in {hop:?}");
        }
        assert_eq!(hop.header("x-end-to-end"), Some("1"), "{engine}");

        let interim = client.get("/interim");
        assert_eq!(
            (interim.status, interim.text().as_str()),
            (200, "final"),
            "{engine}"
        );

        let big = client.get("/in-pieces");
        assert_eq!(big.status, 200, "{engine}");
        assert_eq!(big.body.len(), 1_000_000, "{engine}");
        assert!(big.body.chunks(10).all(|c| c == b"0123456789"), "{engine}");

        client.send("HEAD /home HTTP/1.1\r\nHost: lb\r\n\r\n");
        let head = client.response("HEAD");
        assert_eq!(head.status, 200, "{engine}");
        assert!(head.header("content-length").is_some(), "{engine}");
        let home = client.get("/home");
        assert!(
            home.text().starts_with("Hello from: "),
            "{engine}: {home:?}"
        );

        // The replica's 404 is the spec's 400; the connection goes on.
        let missing = client.get("/nowhere?x=1");
        assert_spec_failure(
            &missing,
            400,
            "'/nowhere' endpoint does not exist in server replicas",
        );
        assert_eq!(client.get("/home").status, 200, "{engine}");

        // A replica that closes after its response costs the client
        // nothing; its connection is not reused.
        for _ in 0..5 {
            assert_eq!(client.get("/closes").text(), "bye.", "{engine}");
        }
        assert_eq!(client.get("/home").status, 200, "{engine}");

        // An admin request goes to the control plane, and the same
        // connection goes on to the replicas.
        let listed = client.get("/rep");
        assert_eq!(listed.status, 200, "{engine}");
        assert!(listed.text().contains("\"N\": 3"), "{engine}: {listed:?}");
        assert!(
            client.get("/home").text().starts_with("Hello from: "),
            "{engine}"
        );

        // A body that ends when the replica closes: the client gets all of
        // it, and then the end of the connection.
        let streamed = client.get("/until-close");
        assert_eq!(streamed.text(), "streamed until the end", "{engine}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_reach_the_replica_without_hop_by_hop_headers() {
    for engine in ENGINES {
        let wire = start(engine, &[]).await;
        let mut client = Client::connect(&wire.data_plane.addr);

        client.send(
            "GET /echo HTTP/1.1\r\nHost: lb\r\nConnection: keep-alive, X-Private\r\nX-Private: 1\r\n\
             Keep-Alive: timeout=5\r\nTE: trailers\r\nX-Request-Id: 123456\r\n\r\n",
        );
        let seen = client.response("GET").text().to_ascii_lowercase();
        assert!(
            seen.starts_with("get /echo http/1.1\r\n"),
            "{engine}: {seen}"
        );
        assert!(
            seen.contains("x-request-id: 123456\r\n"),
            "{engine}: {seen}"
        );
        assert!(seen.contains("host: lb\r\n"), "{engine}: {seen}");
        for gone in ["connection:", "x-private", "keep-alive", "te:"] {
            assert!(
                !seen.contains(gone),
                "{engine}: {gone} reached the replica: {seen}"
            );
        }

        client.send("POST /echo HTTP/1.1\r\nHost: lb\r\nContent-Length: 7\r\n\r\npayload");
        let echoed = client.response("POST").text();
        assert!(echoed.ends_with("\r\n\r\npayload"), "{engine}: {echoed}");

        // A chunked request body (the fast engine hands it to hyper, which
        // sends it on with a length).
        client.send(
            "POST /echo HTTP/1.1\r\nHost: lb\r\nTransfer-Encoding: chunked\r\n\r\n\
             7\r\nchunked\r\n8\r\n payload\r\n0\r\n\r\n",
        );
        let echoed = client.response("POST").text();
        assert!(
            echoed.ends_with("\r\n\r\nchunked payload"),
            "{engine}: {echoed}"
        );
        assert_eq!(client.get("/home").status, 200, "{engine}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelining_closing_and_old_clients() {
    for engine in ENGINES {
        let wire = start(engine, &[]).await;
        let addr = &wire.data_plane.addr;

        // Two requests in one write: two answers, in order, then the close
        // the second asked for.
        let mut client = Client::connect(addr);
        client.send(
            "GET /echo HTTP/1.1\r\nHost: lb\r\nX-Order: first\r\n\r\n\
             GET /echo HTTP/1.1\r\nHost: lb\r\nX-Order: second\r\nConnection: close\r\n\r\n",
        );
        let first = client.response("GET");
        assert!(
            first.text().to_ascii_lowercase().contains("x-order: first"),
            "{engine}: {first:?}"
        );
        let second = client.response("GET");
        assert!(
            second
                .text()
                .to_ascii_lowercase()
                .contains("x-order: second"),
            "{engine}: {second:?}"
        );
        assert_eq!(second.header("connection"), Some("close"), "{engine}");
        assert!(
            client.closed(),
            "{engine}: still open after Connection: close"
        );

        // HTTP/1.0 without keep-alive: one answer, then the close.
        let mut client = Client::connect(addr);
        client.send("GET /home HTTP/1.0\r\n\r\n");
        let old = client.response("GET");
        assert_eq!(old.status, 200, "{engine}");
        assert!(old.text().starts_with("Hello from: "), "{engine}");
        assert!(client.closed(), "{engine}: HTTP/1.0 connection left open");

        // A head that is not HTTP: hyper's 400, and the close.
        let mut client = Client::connect(addr);
        client.send("NOT HTTP AT ALL\r\n\r\n");
        assert_eq!(client.response("GET").status, 400, "{engine}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_response_is_a_502_naming_its_replica() {
    for engine in ENGINES {
        let wire = start(engine, &[]).await;
        let mut client = Client::connect(&wire.data_plane.addr);
        // Every replica answers /garbage with something that is not HTTP.
        // The replica received the request, so it is not sent to another:
        // the 502 names the one replica tried.
        let failed = client.get("/garbage");
        assert_spec_failure(&failed, 502, "");
        let message = String::from_utf8_lossy(&failed.body).into_owned();
        assert_eq!(message.matches("server-").count(), 1, "{engine}: {message}");
        let seen = seen(&wire);
        assert_eq!(seen.count("/garbage"), 1, "{engine}: retried: {seen:?}");
        assert_eq!(client.get("/home").status, 200, "{engine}: then serving");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_client_connection_is_closed_after_the_idle_timeout() {
    for engine in ENGINES {
        let wire = start(engine, &["--idle-timeout", "1s"]).await;
        let mut client = Client::connect(&wire.data_plane.addr);
        assert_eq!(client.get("/home").status, 200, "{engine}");
        // Idle for less than the timeout: still open (a data plane that
        // closed at once would fail here).
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(client.get("/home").status, 200, "{engine}");
        let idle_since = std::time::Instant::now();
        // The read timeout (10 s) bounds the wait; the close comes long
        // before.
        assert!(
            client.closed(),
            "{engine}: the idle connection is still open"
        );
        // A lower bound only (a slow machine makes it longer, never
        // shorter): closed by the idle timeout, not at once.
        let idle = idle_since.elapsed();
        assert!(
            idle >= std::time::Duration::from_millis(500),
            "{engine}: closed after {idle:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_and_silent_connections_at_once() {
    for engine in ENGINES {
        let control_plane =
            start_control_plane_running("scripted-replica", "127.0.0.1:0", "127.0.0.1:0", &[]);
        let mut cmd = Command::new(bin("data-plane"));
        cmd.args(["--listen", "127.0.0.1:0", "--announce", "--engine", engine])
            .args([
                "--control-plane-grpc",
                &format!("http://{}", control_plane.grpc),
            ])
            .args(["--control-plane-http", &control_plane.http])
            .env("RUST_LOG", "warn")
            .stderr(Stdio::piped());
        let (mut data_plane, addr) = Proc::spawn_announcing(cmd, "data-plane", "ready");
        wait_routed(&addr).await;
        let mut idle = Client::connect(&addr);
        assert_eq!(idle.get("/home").status, 200, "{engine}");
        let mut silent = Client::connect(&addr); // connected, sends nothing

        let status = data_plane.stop().expect("stops on SIGTERM");
        assert!(status.success(), "{engine}: {status}");
        assert!(idle.closed(), "{engine}: idle connection left open");
        assert!(silent.closed(), "{engine}: silent connection left open");
        // Both ended with the shutdown, not with the drain timeout.
        let log = data_plane.stderr_text();
        assert!(
            !log.contains("still open after the drain timeout"),
            "{engine}: {log}"
        );
    }
}
