//! The upstream pool against real sockets.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use ringlb_data_plane::upstream::UpstreamPool;
use tokio::net::{TcpSocket, TcpStream};

#[tokio::test]
async fn a_connection_that_cannot_be_established_fails_within_the_connect_timeout() {
    // A listener that never accepts, with the smallest backlog: once its
    // queue is full the kernel drops new SYNs, so connect() hangs.
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let listener = socket.listen(0).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let mut fillers = Vec::new();
    for _ in 0..16 {
        match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => fillers.push(stream),
            _ => break,
        }
    }
    assert!(!fillers.is_empty(), "the backlog never filled");

    let pool = UpstreamPool::new(
        addr.to_string().parse().expect("authority"),
        Duration::from_millis(300),
    );
    let request = Request::get("/home")
        .header("host", "x")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let started = Instant::now();
    let error = pool.send(request).await.expect_err("nothing can connect");
    assert!(
        error.nothing_sent(),
        "a connect failure is safe to retry: {error}"
    );
    assert!(
        error.to_string().contains("no connection within 300ms"),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    drop(listener);
}

#[tokio::test]
async fn a_refused_connection_is_safe_to_retry() {
    // Bind, learn the port, close: nothing listens there any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let pool = UpstreamPool::new(
        format!("127.0.0.1:{port}").parse().expect("authority"),
        Duration::from_secs(1),
    );
    let request = Request::get("/")
        .header("host", "x")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let error = pool.send(request).await.expect_err("refused");
    assert!(error.nothing_sent(), "{error}");
}
