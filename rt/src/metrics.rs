//! A minimal Prometheus endpoint: `GET /metrics` answers whatever `render`
//! returns (text exposition format), anything else 404.

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

/// Serve `render` at `/metrics` on `listener` until `shutdown` resolves.
pub async fn serve_metrics(
    listener: TcpListener,
    render: Render,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = crate::accept(&listener) => accepted,
            () = &mut shutdown => return,
        };
        let render = render.clone();
        let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let render = render.clone();
            async move {
                let mut response = if req.uri().path() == "/metrics" {
                    http::Response::new(Full::new(Bytes::from(render())))
                } else {
                    let mut r = http::Response::new(Full::new(Bytes::new()));
                    *r.status_mut() = http::StatusCode::NOT_FOUND;
                    r
                };
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain; version=0.0.4"),
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
}
