//! What crosses the wire through the data plane, byte by byte, against
//! replicas that frame their responses every way HTTP/1.1 allows
//! (`scripted-replica`): chunked bodies with trailers, close-delimited
//! bodies, hop-by-hop headers, interim responses, bodies in pieces, invalid
//! responses. Every check runs against both engines (`fast`, the data
//! plane's own HTTP/1.1 engine, and `hyper`), so they must agree.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use std::process::{Command, Stdio};

use ringlb_testkit::{
    ControlPlane, DataPlane, Proc, bin, start_control_plane_running, start_data_plane, wait_routed,
};

const ENGINES: [&str; 2] = ["fast", "hyper"];

struct Wire {
    data_plane: DataPlane,
    _control_plane: ControlPlane,
}

async fn start(engine: &str, extra: &[&str]) -> Wire {
    let control_plane =
        start_control_plane_running("scripted-replica", "127.0.0.1:0", "127.0.0.1:0", &[]);
    let mut args = vec!["--engine", engine];
    args.extend_from_slice(extra);
    let data_plane = start_data_plane(&control_plane.grpc, &control_plane.http, &args);
    wait_routed(&data_plane.addr).await;
    Wire {
        data_plane,
        _control_plane: control_plane,
    }
}

/// A response as a client reads it off the wire.
#[derive(Debug)]
struct Response {
    status: u16,
    /// Header names lowercased, in order.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    trailers: Vec<(String, String)>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One client connection, read with plain blocking I/O (bounded by a read
/// timeout) so that exactly what the data plane wrote is seen.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(addr: &str) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Client {
            reader: BufReader::new(stream.try_clone().expect("clone")),
            writer: stream,
        }
    }

    fn send(&mut self, raw: &str) {
        self.writer.write_all(raw.as_bytes()).expect("write");
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read line");
        line.trim_end_matches(['\r', '\n']).to_owned()
    }

    fn fields(&mut self) -> Vec<(String, String)> {
        let mut fields = Vec::new();
        loop {
            let line = self.line();
            if line.is_empty() {
                return fields;
            }
            let (name, value) = line.split_once(':').expect("header line");
            fields.push((name.to_ascii_lowercase(), value.trim().to_owned()));
        }
    }

    /// Read one response to a request with `method`.
    fn response(&mut self, method: &str) -> Response {
        let status_line = self.line();
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("status line {status_line:?}"));
        let headers = self.fields();
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
            trailers: Vec::new(),
        };
        if method == "HEAD" || status == 204 || status == 304 {
            return response;
        }
        if response.header("transfer-encoding") == Some("chunked") {
            loop {
                let size_line = self.line();
                let size = usize::from_str_radix(size_line.split(';').next().unwrap_or(""), 16)
                    .unwrap_or_else(|_| panic!("chunk size {size_line:?}"));
                if size == 0 {
                    response.trailers = self.fields();
                    return response;
                }
                let mut chunk = vec![0; size + 2];
                self.reader.read_exact(&mut chunk).expect("chunk");
                response.body.extend_from_slice(&chunk[..size]);
            }
        }
        if let Some(length) = response.header("content-length") {
            let mut body = vec![0; length.parse().expect("length")];
            self.reader.read_exact(&mut body).expect("body");
            response.body = body;
        } else {
            self.reader
                .read_to_end(&mut response.body)
                .expect("body until close");
        }
        response
    }

    fn get(&mut self, path: &str) -> Response {
        self.send(&format!("GET {path} HTTP/1.1\r\nHost: lb\r\n\r\n"));
        self.response("GET")
    }

    /// Whether the data plane closed the connection within the read
    /// timeout: an end of stream, or a reset (a connection still in the
    /// accept queue when the listener closes is reset by the kernel).
    fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(n) => n == 0,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

fn assert_spec_failure(response: &Response, status: u16, message_part: &str) {
    assert_eq!(response.status, status, "{response:?}");
    assert_eq!(response.header("content-type"), Some("application/json"));
    let json: serde_json::Value = serde_json::from_slice(&response.body).expect("JSON body");
    assert_eq!(json["status"], "failure", "{json}");
    let message = json["message"].as_str().expect("message");
    assert!(message.starts_with("<Error> "), "{message}");
    assert!(message.contains(message_part), "{message}");
}

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
async fn invalid_responses_from_every_replica_are_a_502() {
    for engine in ENGINES {
        let wire = start(engine, &[]).await;
        let mut client = Client::connect(&wire.data_plane.addr);
        // Every replica answers /garbage with something that is not HTTP:
        // an idempotent request tries three of them, then gives up.
        let failed = client.get("/garbage");
        assert_spec_failure(&failed, 502, "No server replica could be reached (tried ");
        let message = String::from_utf8_lossy(&failed.body).into_owned();
        assert_eq!(message.matches("server-").count(), 3, "{engine}: {message}");
        assert_eq!(client.get("/home").status, 200, "{engine}: then serving");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_client_connection_is_closed_after_the_idle_timeout() {
    let wire = start("fast", &["--idle-timeout", "300ms"]).await;
    let mut client = Client::connect(&wire.data_plane.addr);
    assert_eq!(client.get("/home").status, 200);
    // The read timeout (10 s) bounds the wait; the close comes long before.
    assert!(client.closed(), "the idle connection is still open");
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
