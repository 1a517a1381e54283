//! The data plane's limits: a client that misbehaves costs only its own
//! request or connection.

use std::time::Duration;

use http::Method;
use ringlb_ring::{Ring, RingConfig};
use ringlb_testkit::contract::{assert_json, failure};
use ringlb_testkit::{System, get, replica_pid, request, signal, start_data_plane, wait_routed};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_big_heads_and_big_bodies() {
    let system = System::start(&[]).await;
    let cp = &system.control_plane;
    let dp = start_data_plane(
        &cp.grpc,
        &cp.http,
        &[
            "--header-read-timeout",
            "1s",
            "--max-header-bytes",
            "8192",
            "--max-body-bytes",
            "1024",
        ],
    );
    wait_routed(&dp.addr).await;

    // A client that never finishes its headers is disconnected...
    let mut slow = TcpStream::connect(&dp.addr).await.expect("connect");
    slow.write_all(b"GET /home HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .expect("write");
    // ... while everyone else is served meanwhile.
    assert_eq!(get(&dp.addr, "/home").await.status, 200);
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut buf)).await;
    assert!(
        closed.is_ok(),
        "the slow client still holds its connection after 10 s"
    );

    // So is one that stops in the middle of its body (fast engine).
    let mut stalled = TcpStream::connect(&dp.addr).await.expect("connect");
    stalled
        .write_all(b"POST /home HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), stalled.read_to_end(&mut buf)).await;
    assert!(
        closed.is_ok(),
        "the client stalled mid-body still holds its connection after 10 s"
    );

    // A request head over the limit: 431, nothing forwarded.
    let big = "x".repeat(16 * 1024);
    let reply = request(&dp.addr, Method::GET, "/home", "", &[("x-big", &big)]).await;
    assert!(
        matches!(&reply, Ok(r) if r.status == 431) || reply.is_err(),
        "{reply:?}"
    );

    // A body over the limit: the spec's JSON error, 413.
    let reply = request(&dp.addr, Method::POST, "/home", &"y".repeat(4096), &[])
        .await
        .expect("answer");
    assert_json(
        &reply,
        413,
        &failure("Request body is larger than 1024 bytes"),
    );
    assert_eq!(get(&dp.addr, "/home").await.status, 200, "still serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_wait_until_one_closes() {
    connections_past_the_limit_wait(&[]).await;
}

/// Two workers share the limit: whichever worker the kernel gives the third
/// connection, it is served once a slot frees (and not before), even when
/// the freed slot was another worker's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_the_connection_limit() {
    connections_past_the_limit_wait(&["--workers", "2"]).await;
}

/// `--max-connections 2` (and `extra` flags): a third connection waits
/// while two are held and is served once one closes.
async fn connections_past_the_limit_wait(extra: &[&str]) {
    let system = System::start(&[]).await;
    let cp = &system.control_plane;
    let mut args = vec!["--max-connections", "2"];
    args.extend_from_slice(extra);
    let dp = start_data_plane(&cp.grpc, &cp.http, &args);
    wait_routed(&dp.addr).await;
    let request_bytes = b"GET /home HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(&dp.addr).await.expect("connect");
        c.write_all(request_bytes).await.expect("write");
        let mut buf = [0u8; 512];
        let n = c.read(&mut buf).await.expect("answer");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{extra:?}");
        held.push(c);
    }
    // The third is accepted by the kernel but not served while two are held.
    let mut third = TcpStream::connect(&dp.addr).await.expect("connect");
    third.write_all(request_bytes).await.expect("write");
    let mut buf = [0u8; 512];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf))
            .await
            .is_err(),
        "a third connection was served past --max-connections 2 ({extra:?})"
    );
    drop(held.pop());
    let n = tokio::time::timeout(Duration::from_secs(10), third.read(&mut buf))
        .await
        .expect("served once a slot frees")
        .expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{extra:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_replica_fails_over_gets_but_never_retries_posts() {
    let system = System::start(&[]).await;
    let cp = &system.control_plane;
    let dp = start_data_plane(&cp.grpc, &cp.http, &["--upstream-timeout", "1s"]);
    wait_routed(&dp.addr).await;
    // A request id the ring gives to server-2, and whose next replica is another.
    let ring = Ring::build(&RingConfig::default(), &[1, 2, 3]).expect("ring");
    let id = (100_000u64..)
        .find(|&id| ring.lookup(id) == Some(1))
        .expect("an id for server-2")
        .to_string();
    // Freeze server-2: it accepts connections but never answers. Give the
    // control plane no time to notice: heartbeats take 2 x 500 ms + 1 s.
    let frozen = replica_pid(cp.proc.pid(), "server-2").expect("server-2 runs");
    signal(frozen, 19); // SIGSTOP
    let post = request(
        &dp.addr,
        Method::POST,
        "/home",
        "payload",
        &[("x-request-id", &id)],
    )
    .await
    .expect("answer");
    let get_reply = request(&dp.addr, Method::GET, "/home", "", &[("x-request-id", &id)])
        .await
        .expect("answer");
    signal(frozen, 18); // SIGCONT
    assert_json(
        &post,
        504,
        &failure("Server replica 'server-2' did not answer within 1s"),
    );
    assert_eq!(get_reply.status, 200, "{}", get_reply.text());
    assert!(
        !get_reply.text().contains("server-2"),
        "{}",
        get_reply.text()
    );
}
