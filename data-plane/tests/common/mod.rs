//! What the wire tests share: a system whose replicas are the
//! `scripted-replica` test binary, a raw-socket client that reads exactly
//! what the data plane wrote, the check of the spec's JSON refusals, and
//! `/seen`, the list of requests every replica received.

// Each test file uses its own part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use ringlb_testkit::{
    ControlPlane, DataPlane, start_control_plane_running, start_data_plane, wait_routed,
};

/// How long any read from the data plane may wait.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A control plane running three `scripted-replica`s, and a data plane
/// routing to them. Both processes (the replicas with the control plane)
/// stop when this drops, also when a test fails.
pub struct Wire {
    // Dropped first: the data plane stops before its control plane.
    pub data_plane: DataPlane,
    pub control_plane: ControlPlane,
}

impl Wire {
    pub fn addr(&self) -> &str {
        &self.data_plane.addr
    }
}

/// Start the system with `--engine engine` and the data plane's `extra`
/// flags; return once the data plane routes.
pub async fn start(engine: &str, extra: &[&str]) -> Wire {
    let control_plane =
        start_control_plane_running("scripted-replica", "127.0.0.1:0", "127.0.0.1:0", &[]);
    let mut args = vec!["--engine", engine];
    args.extend_from_slice(extra);
    let data_plane = start_data_plane(&control_plane.grpc, &control_plane.http, &args);
    wait_routed(&data_plane.addr).await;
    Wire {
        data_plane,
        control_plane,
    }
}

/// A response head with status 1xx that came before the final response.
#[derive(Debug)]
pub struct Interim {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

/// A response as a client reads it off the wire.
pub struct Response {
    pub status: u16,
    /// Header names lowercased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, String)>,
    /// The 1xx responses (but 101) read before this one, in order.
    pub interim: Vec<Interim>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &self.text())
            .field("trailers", &self.trailers)
            .field("interim", &self.interim)
            .finish()
    }
}

impl Response {
    /// The first header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every header `name` (lowercase), in order.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The client's side of a connection: every byte read from it is kept, so
/// that a test can check what the data plane wrote, parsed or not.
struct Recorded {
    stream: TcpStream,
    bytes: Vec<u8>,
}

impl Read for Recorded {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.stream.read(buf)?;
        self.bytes.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

/// One client connection, read with plain blocking I/O (bounded by a read
/// timeout) so that exactly what the data plane wrote is seen.
pub struct Client {
    reader: BufReader<Recorded>,
    writer: TcpStream,
}

impl Client {
    pub fn connect(addr: &str) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("read timeout");
        stream
            .set_write_timeout(Some(READ_TIMEOUT))
            .expect("write timeout");
        Client {
            reader: BufReader::new(Recorded {
                stream: stream.try_clone().expect("clone"),
                bytes: Vec::new(),
            }),
            writer: stream,
        }
    }

    /// Every byte read from the data plane so far (some may not be parsed
    /// yet).
    pub fn received(&self) -> &[u8] {
        &self.reader.get_ref().bytes
    }

    pub fn send(&mut self, raw: &str) {
        self.send_bytes(raw.as_bytes());
    }

    pub fn send_bytes(&mut self, raw: &[u8]) {
        self.writer.write_all(raw).expect("write");
    }

    /// Write `raw`, whatever happens: the data plane may refuse a request
    /// and close before reading all of it.
    pub fn send_lossy(&mut self, raw: &[u8]) {
        let _ = self.writer.write_all(raw);
    }

    /// One line, without its line end; an error at the end of the stream.
    pub fn try_line(&mut self) -> Result<String, String> {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(0) => Err("the connection was closed".into()),
            Ok(_) if !line.ends_with(b"\n") => Err(format!(
                "the connection was closed in the middle of a line: {:?}",
                String::from_utf8_lossy(&line)
            )),
            Ok(_) => Ok(String::from_utf8_lossy(&line)
                .trim_end_matches(['\r', '\n'])
                .to_owned()),
            Err(e) => Err(format!("read: {e}")),
        }
    }

    pub fn line(&mut self) -> String {
        self.try_line().unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_fields(&mut self) -> Result<Vec<(String, String)>, String> {
        let mut fields = Vec::new();
        loop {
            let line = self.try_line()?;
            if line.is_empty() {
                return Ok(fields);
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("not a header line: {line:?}"))?;
            fields.push((name.to_ascii_lowercase(), value.trim().to_owned()));
        }
    }

    /// One response head, whatever its status: the status and the fields.
    pub fn try_head(&mut self) -> Result<(u16, Vec<(String, String)>), String> {
        let status_line = self.try_line()?;
        let status = status_line
            .strip_prefix("HTTP/1.")
            .and_then(|rest| rest.split(' ').nth(1))
            .filter(|s| s.len() == 3)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| format!("not a status line: {status_line:?}"))?;
        Ok((status, self.try_fields()?))
    }

    pub fn head(&mut self) -> (u16, Vec<(String, String)>) {
        self.try_head().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Read one response to a request with `method`; 1xx responses (but
    /// 101) before it are kept in its `interim`.
    pub fn try_response(&mut self, method: &str) -> Result<Response, String> {
        let mut interim = Vec::new();
        let (status, headers) = loop {
            let (status, headers) = self.try_head()?;
            if (100..200).contains(&status) && status != 101 {
                interim.push(Interim { status, headers });
            } else {
                break (status, headers);
            }
        };
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
            trailers: Vec::new(),
            interim,
        };
        if method == "HEAD" || status == 101 || status == 204 || status == 304 {
            return Ok(response);
        }
        // A body that cannot be read says which head it belongs to.
        self.read_body(&mut response)
            .map_err(|e| format!("{e}, after the head {status} {:?}", response.headers))?;
        Ok(response)
    }

    fn read_body(&mut self, response: &mut Response) -> Result<(), String> {
        if response
            .header("transfer-encoding")
            .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let size_line = self.try_line()?;
                let size = usize::from_str_radix(size_line.split(';').next().unwrap_or(""), 16)
                    .map_err(|_| format!("not a chunk size: {size_line:?}"))?;
                if size == 0 {
                    response.trailers = self.try_fields()?;
                    return Ok(());
                }
                let mut chunk = vec![0; size + 2];
                self.reader
                    .read_exact(&mut chunk)
                    .map_err(|e| format!("chunk: {e}"))?;
                if !chunk.ends_with(b"\r\n") {
                    return Err(format!("a chunk of {size} bytes without its CRLF"));
                }
                response.body.extend_from_slice(&chunk[..size]);
            }
        }
        if let Some(length) = response.header("content-length") {
            let length: usize = length
                .parse()
                .map_err(|_| format!("content-length {length:?}"))?;
            let mut body = vec![0; length];
            self.reader
                .read_exact(&mut body)
                .map_err(|e| format!("body of {length} bytes: {e}"))?;
            response.body = body;
        } else {
            self.reader
                .read_to_end(&mut response.body)
                .map_err(|e| format!("body until close: {e}"))?;
        }
        Ok(())
    }

    pub fn response(&mut self, method: &str) -> Response {
        self.try_response(method)
            .unwrap_or_else(|e| panic!("reading the response to a {method}: {e}"))
    }

    pub fn get(&mut self, path: &str) -> Response {
        self.send(&format!("GET {path} HTTP/1.1\r\nHost: lb\r\n\r\n"));
        self.response("GET")
    }

    /// `GET path` with `X-Request-ID: id`: the same id reaches the same
    /// replica.
    pub fn get_with_id(&mut self, path: &str, id: u64) -> Response {
        self.send(&format!(
            "GET {path} HTTP/1.1\r\nHost: lb\r\nX-Request-ID: {id}\r\n\r\n"
        ));
        self.response("GET")
    }

    /// Whether the data plane closed the connection within the read
    /// timeout: an end of stream, or a reset (a connection still in the
    /// accept queue when the listener closes is reset by the kernel).
    pub fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(n) => n == 0,
            Err(e) => e.kind() == ErrorKind::ConnectionReset,
        }
    }

    /// Everything the data plane still writes until it closes the
    /// connection (a reset ends it too); panics if it stays open past the
    /// read timeout.
    pub fn rest_until_closed(&mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => rest,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => rest,
            Err(e) => panic!(
                "the connection was still open after {READ_TIMEOUT:?} ({e}); read so far: {:?}",
                String::from_utf8_lossy(&rest)
            ),
        }
    }
}

/// Check a refusal by the data plane: `status`, and the spec's JSON
/// `{"message": "<Error> ...", "status": "failure"}` whose message contains
/// `message_part`.
pub fn assert_spec_failure(response: &Response, status: u16, message_part: &str) {
    assert_eq!(
        response.status,
        status,
        "{response:?} ({})",
        response.text()
    );
    assert_eq!(
        response.header("content-type"),
        Some("application/json"),
        "{response:?}"
    );
    let json: serde_json::Value = serde_json::from_slice(&response.body)
        .unwrap_or_else(|e| panic!("not a JSON body ({e}): {:?}", response.text()));
    assert_eq!(json["status"], "failure", "{json}");
    let message = json["message"].as_str().expect("message");
    assert!(message.starts_with("<Error> "), "{message}");
    assert!(message.contains(message_part), "{message}");
}

/// The requests each replica received: replica name, then its
/// `method target` lines in order (`/seen` requests left out).
#[derive(Debug)]
pub struct Seen(pub BTreeMap<String, Vec<String>>);

impl Seen {
    /// How many requests for `path` (the target without its query) the
    /// replicas received, all together.
    pub fn count(&self, path: &str) -> usize {
        self.0
            .values()
            .flatten()
            .filter(|line| target_path(line) == Some(path))
            .count()
    }

    /// The replicas that received a request for `path`.
    pub fn replicas_with(&self, path: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(_, lines)| lines.iter().any(|l| target_path(l) == Some(path)))
            .map(|(name, _)| name.as_str())
            .collect()
    }
}

fn target_path(line: &str) -> Option<&str> {
    line.split(' ').nth(1)?.split('?').next()
}

/// Ask every replica of `wire` what it received, through the data plane:
/// `GET /seen` with one `X-Request-ID` after another until each replica the
/// control plane lists has answered. Every answer comes after the data
/// plane finished what it was doing for earlier requests.
pub fn seen(wire: &Wire) -> Seen {
    let names = replica_names(&wire.control_plane.http);
    let mut by_replica = BTreeMap::new();
    for id in 1..=1000u64 {
        if by_replica.len() == names.len() {
            break;
        }
        let mut client = Client::connect(wire.addr());
        let reply = client.get_with_id("/seen", id);
        assert_eq!(reply.status, 200, "GET /seen: {reply:?}");
        let text = reply.text();
        let mut lines = text.lines();
        let name = lines
            .next()
            .and_then(|l| l.strip_prefix("replica "))
            .unwrap_or_else(|| panic!("not a /seen body: {text:?}"))
            .to_owned();
        let requests = lines
            .filter(|l| target_path(l) != Some("/seen"))
            .map(str::to_owned)
            .collect();
        by_replica.insert(name, requests);
    }
    assert_eq!(
        by_replica.keys().collect::<Vec<_>>(),
        names.iter().collect::<Vec<_>>(),
        "not every replica answered /seen"
    );
    Seen(by_replica)
}

/// The replicas the control plane at `http` lists (`GET /rep`).
pub fn replica_names(http: &str) -> Vec<String> {
    let mut client = Client::connect(http);
    let listed = client.get("/rep");
    assert_eq!(listed.status, 200, "GET /rep: {listed:?}");
    let json: serde_json::Value = serde_json::from_slice(&listed.body).expect("JSON /rep");
    let mut names: Vec<String> = json["message"]["replicas"]
        .as_array()
        .unwrap_or_else(|| panic!("no replicas in {json}"))
        .iter()
        .map(|v| v.as_str().expect("names are strings").to_owned())
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no replicas: {json}");
    names
}

/// Check a refusal by the data plane: `status` and the spec's JSON shape;
/// `context` says which request it answers.
pub fn assert_refusal(response: &Response, status: u16, context: &str) {
    assert_eq!(
        response.status,
        status,
        "{context}: got {} {:?} with body {:?}",
        response.status,
        response.headers,
        response.text()
    );
    assert_eq!(
        response.header("content-type"),
        Some("application/json"),
        "{context}: {response:?}"
    );
    let json: serde_json::Value = serde_json::from_slice(&response.body)
        .unwrap_or_else(|e| panic!("{context}: not a JSON body ({e}): {:?}", response.text()));
    assert_eq!(json["status"], "failure", "{context}: {json}");
    let message = json["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{context}: no message in {json}"));
    assert!(
        message.starts_with("<Error> "),
        "{context}: message {message:?}"
    );
}
