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
