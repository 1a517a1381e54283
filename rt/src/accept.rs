//! The one accept loop of every ringlb server: a failed `accept` (out of
//! file descriptors, a connection reset before it was accepted) is logged
//! and retried after a pause that doubles up to [`MAX_ACCEPT_BACKOFF`], so
//! that a server never spins on an error it cannot fix at once, and never
//! stops serving because of one.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// First pause after a failed `accept`.
pub const MIN_ACCEPT_BACKOFF: Duration = Duration::from_millis(5);
/// Longest pause after failed `accept`s in a row.
pub const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// The next connection on `listener` (with `TCP_NODELAY` set), retrying
/// failed accepts with backoff. Cancel-safe: dropping the future loses no
/// connection.
pub async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    let mut backoff = MIN_ACCEPT_BACKOFF;
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
                }
                return (stream, peer);
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepts_with_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::spawn(TcpStream::connect(addr));
        let (stream, peer) = accept(&listener).await;
        let client = client.await.expect("join").expect("connect");
        assert_eq!(peer, client.local_addr().expect("local"));
        assert!(stream.nodelay().expect("nodelay"));
    }

    /// Out of file descriptors: `accept` fails until one is freed; the loop
    /// backs off (paused clock: no spinning) instead of giving up, then
    /// serves. Runs in a child process of this test binary with a small
    /// descriptor limit, so that the other tests keep theirs.
    #[test]
    fn failed_accepts_back_off_then_serve() {
        const CHILD: &str = "RINGLB_RT_ACCEPT_CHILD";
        if std::env::var_os(CHILD).is_some() {
            return out_of_descriptors();
        }
        let exe = std::env::current_exe().expect("test binary");
        let status = std::process::Command::new("sh")
            .arg("-c")
            // A loop that spins on the error never lets the paused clock
            // advance: the watchdog turns that hang into a failure.
            .arg("ulimit -n 64 && exec timeout 60 \"$0\" --exact accept::tests::failed_accepts_back_off_then_serve --test-threads 1")
            .arg(exe)
            .env(CHILD, "1")
            .status()
            .expect("run the child");
        assert!(status.success(), "child: {status}");
    }

    fn out_of_descriptors() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            let _client = std::net::TcpStream::connect(addr).expect("connect");
            let mut held = Vec::new();
            while let Ok(file) = std::fs::File::open("/dev/null") {
                held.push(file);
                assert!(held.len() < 4096, "the descriptor limit did not apply");
            }
            let accepting = tokio::spawn(async move { accept(&listener).await });
            // Several backoff rounds on the paused clock: still failing.
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(!accepting.is_finished(), "accepted without a descriptor");
            held.clear();
            tokio::time::timeout(Duration::from_secs(5), accepting)
                .await
                .expect("accepted once a descriptor is free")
                .expect("join");
        });
    }
}
