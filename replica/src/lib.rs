//! The replica server: the smallest HTTP server that can stand behind the
//! load balancer.
//!
//! | request          | response                                                          |
//! |------------------|-------------------------------------------------------------------|
//! | `GET /home`      | `200 {"message": "Hello from Server: <id>", "status": "successful"}` |
//! | `GET /heartbeat` | `200`, empty body                                                 |
//! | other method     | `405` with `Allow: GET, HEAD`                                     |
//! | anything else    | `404`, empty body                                                 |
//!
//! [`run`] takes a bound listener and a shutdown future (mini-redis style), so
//! tests and embedders bind port 0 and run the real server.
#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

/// The port a replica listens on by default (the spec's 5000; the process
/// backend passes 0).
pub const DEFAULT_PORT: u16 = 5000;
/// The address a replica binds by default (all interfaces, as a container
/// needs).
pub const DEFAULT_HOST: &str = "0.0.0.0";
/// The name a replica reports when it was given none.
pub const DEFAULT_SERVER_ID: &str = "unnamed";

/// How long connections get to finish after shutdown starts.
pub const DRAIN_TIMEOUT: Duration = ringlb_rt::DRAIN_TIMEOUT;

/// Which paths the replica serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routes {
    /// `/home` and `/heartbeat`, 404 elsewhere (SPEC.md).
    Spec,
    /// Every path but `/heartbeat` answers like `/home` (benchmarks).
    AnyPath,
}

/// The pre-rendered responses of one replica.
struct Replies {
    home: Bytes,
    routes: Routes,
}

/// Serve `/home` and `/heartbeat` as `server_id` on `listener` until
/// `shutdown` resolves, then drain open connections (bounded by
/// [`DRAIN_TIMEOUT`]).
pub async fn run(
    listener: TcpListener,
    server_id: &str,
    routes: Routes,
    shutdown: impl Future<Output = ()>,
) {
    let replies = Arc::new(Replies {
        home: Bytes::from(ringlb_api::reply::hello(server_id)),
        routes,
    });
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = ringlb_rt::accept(&listener) => accepted,
            () = &mut shutdown => break,
        };
        let replies = replies.clone();
        let service = service_fn(move |req| {
            let replies = replies.clone();
            async move { Ok::<_, Infallible>(respond(&replies, &req)) }
        });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain timeout; closing them");
    }
}

fn respond(replies: &Replies, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let known =
        replies.routes == Routes::AnyPath || matches!(req.uri().path(), "/home" | "/heartbeat");
    if !known {
        return empty(StatusCode::NOT_FOUND);
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let mut resp = empty(StatusCode::METHOD_NOT_ALLOWED);
        resp.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    if req.uri().path() == "/heartbeat" {
        return empty(StatusCode::OK);
    }
    let mut resp = Response::new(Full::new(replies.home.clone()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(ringlb_api::APPLICATION_JSON),
    );
    resp
}

fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}
