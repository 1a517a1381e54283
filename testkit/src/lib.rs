//! Test support: real processes of the workspace's binaries, stopped by PID
//! when the guard drops (also when a test fails), a small HTTP client and
//! polling with generous bounds.

pub mod contract;
pub mod docker;
pub mod load;

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// Path of a binary of this workspace (built by `cargo build --bins`, which
/// `make test` runs before the tests).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary has a path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (make test does)",
        path.display()
    );
    path
}

/// A child process that is killed (SIGTERM, then SIGKILL) by its PID when
/// dropped, so nothing outlives a failing test.
pub struct Proc {
    child: Child,
    name: String,
}

impl Proc {
    /// Start `cmd` with stdout piped; wait for a line starting with
    /// `marker ` and return the rest of it (an address) with the guard.
    pub fn spawn_announcing(cmd: Command, name: &str, marker: &str) -> (Proc, String) {
        let (proc, mut found) = Proc::spawn_announcing_all(cmd, name, &[marker]);
        (proc, found.remove(0))
    }

    /// Start `cmd` with stdout piped; wait for a line starting with each of
    /// `markers` (followed by a space), in that order, and return the rest
    /// of each with the guard.
    pub fn spawn_announcing_all(
        mut cmd: Command,
        name: &str,
        markers: &[&str],
    ) -> (Proc, Vec<String>) {
        cmd.stdout(Stdio::piped()).stdin(Stdio::null());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut proc = Proc {
            child,
            name: name.to_owned(),
        };
        let mut lines = BufReader::new(stdout).lines();
        let mut found = Vec::new();
        for marker in markers {
            let prefix = format!("{marker} ");
            let rest = loop {
                match lines.next() {
                    Some(Ok(line)) => {
                        if let Some(rest) = line.strip_prefix(&prefix) {
                            break Some(rest.trim().to_owned());
                        }
                    }
                    _ => break None,
                }
            };
            let Some(rest) = rest else {
                proc.stop();
                panic!("{name} exited before announcing '{marker}'");
            };
            found.push(rest);
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        (proc, found)
    }

    /// Start `cmd` without waiting for anything.
    pub fn spawn(mut cmd: Command, name: &str) -> Proc {
        cmd.stdin(Stdio::null());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            child,
            name: name.to_owned(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the process has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Everything the process wrote to a piped stderr (after it exited).
    pub fn stderr_text(&mut self) -> String {
        use std::io::Read;
        let mut text = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = stderr.read_to_string(&mut text);
        }
        text
    }

    /// SIGKILL, no grace.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait up to 10 s, then SIGKILL. Returns the exit status if
    /// the process stopped on SIGTERM.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        signal(self.child.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} ignored SIGTERM for 10 s; killing it", self.name);
        self.kill9();
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Send `sig` to `pid`.
pub fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) with a PID this test started; no memory is touched.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Whether a process with this PID exists (and is not a zombie we reaped).
pub fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    let exists = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
    if !exists {
        return false;
    }
    // A zombie still "exists" for kill(2); treat it as dead.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next())
                != Some("Z")
        })
        .unwrap_or(false)
}

/// CPU seconds (user + system) process `pid` has used so far; 0 once gone.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The fields after the command name (in parentheses): utime is the
    // 12th, stime the 13th, in clock ticks.
    let ticks: u64 = stat
        .rsplit(')')
        .next()
        .map(|rest| {
            rest.split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|t| t.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    ticks as f64 / per_second as f64
}

/// A response as the client saw it.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request on a fresh connection.
///
/// # Errors
/// What went wrong (connecting, sending, reading), as text for the test.
pub async fn request(
    addr: &str,
    method: Method,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> Result<Reply, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let req = builder
        .body(Full::new(Bytes::from(body.to_owned())))
        .map_err(|e| e.to_string())?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// `GET path`, panicking on transport errors.
pub async fn get(addr: &str, path: &str) -> Reply {
    request(addr, Method::GET, path, "", &[])
        .await
        .unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"))
}

/// Poll `check` every 25 ms until it returns `Some` or `within` passes.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Parse an announced `host:port`.
pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|e| panic!("bad address {s}: {e}"))
}

/// A pooled keep-alive HTTP/1.1 client for load in tests.
#[derive(Clone)]
pub struct Pool {
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            client: hyper_util::client::legacy::Client::builder(
                hyper_util::rt::TokioExecutor::new(),
            )
            .build_http(),
        }
    }
}

impl Pool {
    /// `method path` with headers and body on a pooled connection.
    ///
    /// # Errors
    /// What went wrong, as text for the test.
    pub async fn send(
        &self,
        addr: &str,
        method: Method,
        path: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> Result<Reply, String> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"));
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let req = builder
            .body(Full::new(Bytes::from(body.to_owned())))
            .map_err(|e| e.to_string())?;
        let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// `GET path` on a pooled connection.
    ///
    /// # Errors
    /// What went wrong, as text for the test.
    pub async fn get(&self, addr: &str, path: &str) -> Result<Reply, String> {
        self.send(addr, Method::GET, path, "", &[]).await
    }
}

/// A control plane process on free ports.
pub struct ControlPlane {
    pub proc: Proc,
    /// HTTP admin address.
    pub http: String,
    /// gRPC address (`host:port`).
    pub grpc: String,
    /// The /metrics address, when started with `--metrics-listen`.
    pub metrics: Option<String>,
}

/// Start `control-plane` on free loopback ports; `args` are extra flags.
pub fn start_control_plane(args: &[&str]) -> ControlPlane {
    start_control_plane_on("127.0.0.1:0", "127.0.0.1:0", args)
}

/// Start `control-plane` with its HTTP admin API on `http` and gRPC on `grpc`.
pub fn start_control_plane_on(http: &str, grpc: &str, args: &[&str]) -> ControlPlane {
    start_control_plane_running("replica", http, grpc, args)
}

/// Start `control-plane` on free ports with `replica_bin` (a binary of this
/// workspace, e.g. `scripted-replica`) as its replica program.
pub fn start_control_plane_running(
    replica_bin: &str,
    http: &str,
    grpc: &str,
    args: &[&str],
) -> ControlPlane {
    let mut cmd = Command::new(bin("control-plane"));
    cmd.args(["--http-listen", http, "--grpc-listen", grpc, "--announce"])
        .args(["--replica-bin", &bin(replica_bin).to_string_lossy()])
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        );
    let (proc, line) = Proc::spawn_announcing(cmd, "control-plane", "ready");
    // line: "http=<addr> grpc=<addr>"
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in '{line}'"))
            .to_owned()
    };
    let metrics = line
        .split_whitespace()
        .find_map(|f| f.strip_prefix("metrics="))
        .map(str::to_owned);
    ControlPlane {
        http: field("http="),
        grpc: field("grpc="),
        metrics,
        proc,
    }
}

/// A data plane process on a free port.
pub struct DataPlane {
    pub proc: Proc,
    pub addr: String,
}

/// Start `data-plane` against a control plane's gRPC and HTTP addresses.
pub fn start_data_plane(grpc: &str, http: &str, args: &[&str]) -> DataPlane {
    let mut cmd = Command::new(bin("data-plane"));
    cmd.args(["--listen", "127.0.0.1:0", "--announce"])
        .args(["--control-plane-grpc", &format!("http://{grpc}")])
        .args(["--control-plane-http", http])
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        );
    let (proc, addr) = Proc::spawn_announcing(cmd, "data-plane", "ready");
    DataPlane { proc, addr }
}

/// A loopback address that refuses connections for as long as it lives:
/// its port (from 0) stays bound without listening, so no other process or
/// test can take it meanwhile (a port merely freed again can be handed out
/// to the next one that binds port 0).
pub struct ClosedPort {
    _socket: socket2::Socket,
    /// `127.0.0.1:<port>`.
    pub addr: String,
}

/// A [`ClosedPort`].
pub fn closed_port() -> ClosedPort {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a TCP socket");
    let any: SocketAddr = "127.0.0.1:0".parse().expect("an address");
    socket.bind(&any.into()).expect("bind a port from 0");
    let addr = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("a bound address")
        .to_string();
    ClosedPort {
        _socket: socket,
        addr,
    }
}

/// Start `data-plane` with `args` (its listen and control-plane flags
/// among them) and `/metrics` on a free port: the process, its client
/// address and its metrics address.
pub fn start_data_plane_metered(args: &[&str]) -> (Proc, String, String) {
    let mut cmd = Command::new(bin("data-plane"));
    cmd.args(["--announce", "--metrics-listen", "127.0.0.1:0"])
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        );
    let (proc, mut found) = Proc::spawn_announcing_all(cmd, "data-plane", &["metrics", "ready"]);
    let addr = found.pop().expect("ready");
    let metrics = found.pop().expect("metrics");
    (proc, addr, metrics)
}

/// Wait until `/rep` at `lb` lists `n` replicas without `gone` (a killed
/// replica replaced under a new name), at most `within`; print how long it
/// took and answer the names.
pub async fn wait_replaced(lb: &str, gone: &str, n: usize, within: Duration) -> Vec<String> {
    let started = Instant::now();
    let names = eventually(
        within,
        &format!("{gone} replaced (N = {n}) within {within:?}"),
        || async move {
            let names = replica_names(&get(lb, "/rep").await);
            (names.len() == n && !names.iter().any(|name| name == gone)).then_some(names)
        },
    )
    .await;
    eprintln!("{gone} replaced in {:?}: {names:?}", started.elapsed());
    names
}

/// A whole system: control plane, its replicas, one data plane that has
/// applied the first ring.
pub struct System {
    pub data_plane: DataPlane,
    pub control_plane: ControlPlane,
}

impl System {
    /// With `--admin-token T` among the control plane's arguments, the data
    /// plane is given the token too (it needs it to subscribe).
    pub async fn start(control_plane_args: &[&str]) -> System {
        let control_plane = start_control_plane(control_plane_args);
        let token: Vec<&str> = control_plane_args
            .windows(2)
            .find(|pair| pair[0] == "--admin-token")
            .map(|pair| vec!["--admin-token", pair[1]])
            .unwrap_or_default();
        let data_plane = start_data_plane(&control_plane.grpc, &control_plane.http, &token);
        let system = System {
            data_plane,
            control_plane,
        };
        system.wait_routed().await;
        system
    }

    /// Wait until the data plane routes `/heartbeat` (it has a ring).
    pub async fn wait_routed(&self) {
        let addr = self.data_plane.addr.clone();
        eventually(Duration::from_secs(20), "data plane to route", || {
            let addr = addr.clone();
            async move {
                let reply = request(&addr, Method::GET, "/heartbeat", "", &[])
                    .await
                    .ok()?;
                (reply.status == StatusCode::OK).then_some(())
            }
        })
        .await;
    }

    pub fn lb(&self) -> &str {
        &self.data_plane.addr
    }
}

/// Wait (up to 20 s) until the data plane at `addr` routes `/heartbeat`,
/// i.e. it has applied a ring with a live replica.
pub async fn wait_routed(addr: &str) {
    eventually(
        Duration::from_secs(20),
        "data plane to route",
        || async move {
            let reply = request(addr, Method::GET, "/heartbeat", "", &[])
                .await
                .ok()?;
            (reply.status == StatusCode::OK).then_some(())
        },
    )
    .await;
}

/// PIDs of the direct children of `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// An environment variable of a running process.
pub fn env_of(pid: u32, key: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{key}=");
    environ
        .split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix(&prefix).map(str::to_owned))
}

/// The PID of the replica named `name` among the children of `parent`.
pub fn replica_pid(parent: u32, name: &str) -> Option<u32> {
    children_of(parent)
        .into_iter()
        .find(|&pid| env_of(pid, "SERVER_ID").as_deref() == Some(name))
}

/// The `replicas` of a `/rep`, `/add` or `/rm` reply.
pub fn replica_names(reply: &Reply) -> Vec<String> {
    let value: serde_json::Value = serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", reply.text()));
    value["message"]["replicas"]
        .as_array()
        .unwrap_or_else(|| panic!("no replicas in {}", reply.text()))
        .iter()
        .map(|v| v.as_str().expect("names are strings").to_owned())
        .collect()
}

/// The replica name in a `/home` body.
pub fn served_by(body: &str) -> String {
    let value: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    value["message"]
        .as_str()
        .and_then(|m| m.strip_prefix("Hello from Server: "))
        .unwrap_or_else(|| panic!("not a /home body: {body}"))
        .to_owned()
}

/// `GET /home` with `X-Request-ID: id`; the replica that answered.
pub async fn home_with_id(lb: &str, id: u64) -> String {
    let id = id.to_string();
    let reply = request(lb, Method::GET, "/home", "", &[("X-Request-ID", &id)])
        .await
        .expect("GET /home");
    assert_eq!(reply.status, 200, "{}", reply.text());
    served_by(&reply.text())
}

/// Every request id in `ids` goes where `ring` says, `names[i]` being the
/// replica of the ring's member `i`: proof that the data plane at `lb` and
/// the ring crate agree.
pub async fn assert_routes_like(
    lb: &str,
    ring: &ringlb_ring::Ring,
    names: &[&str],
    ids: impl Iterator<Item = u64>,
) {
    for id in ids {
        let expected = names[ring.lookup(id).expect("non-empty ring")];
        assert_eq!(
            home_with_id(lb, id).await,
            expected,
            "{lb}, X-Request-ID {id}"
        );
    }
}
