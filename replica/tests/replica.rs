//! The replica binary as a real process on a free port.

use std::process::Command;

use http::Method;
use ringlb_testkit::{Proc, bin, get, request};

fn start(server_id: &str) -> (Proc, String) {
    let mut cmd = Command::new(bin("replica"));
    cmd.args(["--port", "0", "--host", "127.0.0.1", "--announce"])
        .env("SERVER_ID", server_id);
    Proc::spawn_announcing(cmd, "replica", "listening")
}

#[tokio::test]
async fn home_and_heartbeat_answer_exact_bytes() {
    let (_replica, addr) = start("server-7");

    let home = get(&addr, "/home").await;
    assert_eq!(home.status, 200);
    assert_eq!(
        home.text(),
        r#"{"message": "Hello from Server: server-7", "status": "successful"}"#
    );
    assert_eq!(home.headers["content-type"], "application/json");

    let beat = get(&addr, "/heartbeat").await;
    assert_eq!(beat.status, 200);
    assert!(beat.body.is_empty());

    for path in ["/", "/other", "/home/x", "/heartbeats"] {
        let reply = get(&addr, path).await;
        assert_eq!(reply.status, 404, "{path}");
        assert!(reply.body.is_empty(), "{path}");
    }

    let post = request(&addr, Method::POST, "/home", "x", &[])
        .await
        .expect("POST");
    assert_eq!(post.status, 405);
    assert_eq!(post.headers["allow"], "GET, HEAD");
}

#[tokio::test]
async fn port_and_id_come_from_flags_too() {
    let mut cmd = Command::new(bin("replica"));
    cmd.args([
        "--port",
        "0",
        "--host",
        "127.0.0.1",
        "--announce",
        "--server-id",
        "S5",
    ])
    .env_remove("SERVER_ID");
    let (_replica, addr) = Proc::spawn_announcing(cmd, "replica", "listening");
    assert_eq!(
        get(&addr, "/home").await.text(),
        r#"{"message": "Hello from Server: S5", "status": "successful"}"#
    );
}

#[tokio::test]
async fn sigterm_stops_it_cleanly() {
    let (mut replica, addr) = start("server-1");
    assert_eq!(get(&addr, "/heartbeat").await.status, 200);
    let status = replica.stop().expect("stopped on SIGTERM");
    assert!(status.success(), "exit status {status}");
    assert!(tokio::net::TcpStream::connect(&addr).await.is_err());
}

#[tokio::test]
async fn exits_when_its_supervisor_is_gone() {
    // A shell stands in for the supervisor: it starts the replica with its
    // own PID as --parent-pid, prints the replica's PID, then is killed.
    let replica = bin("replica");
    let script = format!(
        "{} --port 0 --host 127.0.0.1 --parent-pid $$ >/dev/null 2>&1 & echo \"pid $!\"; sleep 60",
        replica.display()
    );
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &script]);
    let (mut shell, child_pid) = Proc::spawn_announcing(cmd, "sh", "pid");
    let child_pid: u32 = child_pid.parse().expect("pid");
    // Guard the replica too, in case the watchdog is broken.
    struct Kill(u32);
    impl Drop for Kill {
        fn drop(&mut self) {
            ringlb_testkit::signal(self.0, libc_sigkill());
        }
    }
    let _guard = Kill(child_pid);
    assert!(ringlb_testkit::alive(child_pid));
    shell.kill9();
    ringlb_testkit::eventually(
        std::time::Duration::from_secs(10),
        "replica to exit",
        || async { (!ringlb_testkit::alive(child_pid)).then_some(()) },
    )
    .await;
}

fn libc_sigkill() -> i32 {
    9
}

#[tokio::test]
async fn serve_any_path_answers_every_path_like_home() {
    let mut cmd = Command::new(bin("replica"));
    cmd.args([
        "--port",
        "0",
        "--host",
        "127.0.0.1",
        "--announce",
        "--serve-any-path",
    ])
    .env("SERVER_ID", "bench-1");
    let (_replica, addr) = Proc::spawn_announcing(cmd, "replica", "listening");
    for path in ["/home", "/k/12345", "/"] {
        let reply = get(&addr, path).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(
            reply.text(),
            r#"{"message": "Hello from Server: bench-1", "status": "successful"}"#
        );
    }
    assert!(get(&addr, "/heartbeat").await.body.is_empty());
}
