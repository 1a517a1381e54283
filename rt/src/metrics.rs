//! A minimal admin endpoint: `GET /metrics` answers whatever `render`
//! returns (Prometheus text exposition format), `GET /healthz` 200 while
//! the process serves, `GET /readyz` 200 or 503 as `ready` says (the
//! Kubernetes probe convention); anything else 404.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Renders the current metrics as Prometheus text.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Whether the process is ready to serve (`/readyz`).
pub type Ready = Arc<dyn Fn() -> bool + Send + Sync>;

/// Serve `render` at `/metrics` on `listener` until `shutdown` resolves,
/// with `/healthz` and a `/readyz` that is always ready.
pub async fn serve_metrics(
    listener: TcpListener,
    render: Render,
    shutdown: impl Future<Output = ()>,
) {
    serve_admin(listener, render, Arc::new(|| true), shutdown).await;
}

/// Serve `render` at `/metrics`, `/healthz`, and `/readyz` as `ready`
/// says, on `listener` until `shutdown` resolves.
pub async fn serve_admin(
    listener: TcpListener,
    render: Render,
    ready: Ready,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = crate::accept(&listener) => accepted,
            () = &mut shutdown => return,
        };
        let render = render.clone();
        let ready = ready.clone();
        let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let render = render.clone();
            let ready = ready.clone();
            async move {
                let (status, body, content_type) = match req.uri().path() {
                    "/metrics" => (http::StatusCode::OK, render(), "text/plain; version=0.0.4"),
                    "/healthz" => (http::StatusCode::OK, "alive\n".to_owned(), "text/plain"),
                    "/readyz" if ready() => {
                        (http::StatusCode::OK, "ready\n".to_owned(), "text/plain")
                    }
                    "/readyz" => (
                        http::StatusCode::SERVICE_UNAVAILABLE,
                        "not ready\n".to_owned(),
                        "text/plain",
                    ),
                    _ => (http::StatusCode::NOT_FOUND, String::new(), "text/plain"),
                };
                let mut response = http::Response::new(Full::new(Bytes::from(body)));
                *response.status_mut() = status;
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static(content_type),
                );
                Ok::<_, Infallible>(response)
            }
        });
        tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn serves_metrics_and_stops_when_told() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let render: Render = Arc::new(|| "up 1\n".to_owned());
        let server = tokio::spawn(serve_metrics(listener, render, async {
            let _ = stopped.await;
        }));
        let mut client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        client
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.expect("read");
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nup 1\n"), "{answer}");
        let _ = stop.send(());
        tokio::time::timeout(std::time::Duration::from_secs(10), server)
            .await
            .expect("the server stopped when told")
            .expect("join");
    }

    #[tokio::test]
    async fn health_and_readiness() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ready.clone();
        let server = tokio::spawn(serve_admin(
            listener,
            Arc::new(String::new),
            Arc::new(move || flag.load(std::sync::atomic::Ordering::SeqCst)),
            std::future::pending(),
        ));
        let ask = |path: &'static str| async move {
            let mut client = tokio::net::TcpStream::connect(addr).await.expect("connect");
            client
                .write_all(
                    format!("GET {path} HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await
                .expect("write");
            let mut answer = String::new();
            client.read_to_string(&mut answer).await.expect("read");
            answer
        };
        assert!(ask("/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(ask("/readyz").await.starts_with("HTTP/1.1 503"));
        ready.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(ask("/readyz").await.starts_with("HTTP/1.1 200"));
        assert!(ask("/other").await.starts_with("HTTP/1.1 404"));
        server.abort();
    }
}
