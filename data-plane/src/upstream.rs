//! Pooled HTTP/1.1 connections to one upstream (a replica or the control
//! plane's admin API).
//!
//! Written for the request path instead of hyper-util's general client: one
//! pool per upstream held by the routing table (no pool-key hashing, no
//! global map), idle connections in an [`IdleStack`](crate::conn::IdleStack) (most recently
//! used first, so hot connections stay hot), and a connection goes back to
//! the pool the moment its response body ends ([`PooledBody`]). A request
//! that a stale pooled connection could not even send comes back from hyper
//! (`try_send_request`) and is sent again on a fresh connection, so a replica
//! restart or an idle close never fails a request that never left.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Authority;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

use crate::conn::{IdleStack, connect_within};
use crate::h1::pool::RawPool;

/// How long establishing a connection may take, by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

type Sender = SendRequest<Full<Bytes>>;

/// Why a request to an upstream failed, and whether it may have arrived.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Nothing reached the upstream: safe to retry anywhere.
    #[error("cannot connect to {authority}: {reason}")]
    Connect {
        authority: Authority,
        reason: String,
    },
    /// The request was not sent.
    #[error("request to {authority} not sent: {source}")]
    NotSent {
        authority: Authority,
        source: hyper::Error,
    },
    /// The request may have reached the upstream.
    #[error("request to {authority} failed: {source}")]
    Failed {
        authority: Authority,
        source: hyper::Error,
    },
}

impl UpstreamError {
    /// Whether the upstream cannot have seen the request.
    pub fn nothing_sent(&self) -> bool {
        !matches!(self, UpstreamError::Failed { .. })
    }
}

/// The connections to one upstream.
#[derive(Debug)]
pub struct UpstreamPool {
    authority: Authority,
    connect_timeout: Duration,
    idle: IdleStack<Sender>,
}

impl UpstreamPool {
    /// A pool for `authority`; a new connection that takes longer than
    /// `connect_timeout` to establish fails (and is safe to retry elsewhere).
    pub fn new(authority: Authority, connect_timeout: Duration) -> Arc<UpstreamPool> {
        Arc::new(UpstreamPool {
            authority,
            connect_timeout,
            idle: IdleStack::default(),
        })
    }

    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    fn checkout(&self) -> Option<Sender> {
        self.idle.pop_usable(|sender| !sender.is_closed())
    }

    fn checkin(&self, sender: Sender) {
        if !sender.is_closed() {
            self.idle.push(sender);
        }
    }

    async fn connect(&self) -> Result<Sender, UpstreamError> {
        let fail = |reason: String| UpstreamError::Connect {
            authority: self.authority.clone(),
            reason,
        };
        let stream = connect_within(&self.authority, self.connect_timeout)
            .await
            .map_err(fail)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| fail(e.to_string()))?;
        let authority = self.authority.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%authority, error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// Send `request` (origin-form URI, `Host` set) on a pooled or new
    /// connection.
    pub async fn send(
        self: &Arc<Self>,
        mut request: Request<Full<Bytes>>,
    ) -> Result<Response<PooledBody>, UpstreamError> {
        loop {
            let (mut sender, fresh) = match self.checkout() {
                Some(sender) => (sender, false),
                None => (self.connect().await?, true),
            };
            if sender.ready().await.is_err() {
                if fresh {
                    return Err(UpstreamError::Connect {
                        authority: self.authority.clone(),
                        reason: "connection closed before the first request".into(),
                    });
                }
                continue; // a stale pooled connection; try the next one
            }
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(self.pooled(response, sender)),
                Err(mut e) => match e.take_message() {
                    // Never sent on a pooled connection that went stale:
                    // send it again, on another or a new connection.
                    Some(unsent) if !fresh => request = unsent,
                    Some(_) => {
                        return Err(UpstreamError::NotSent {
                            authority: self.authority.clone(),
                            source: e.into_error(),
                        });
                    }
                    None => {
                        return Err(UpstreamError::Failed {
                            authority: self.authority.clone(),
                            source: e.into_error(),
                        });
                    }
                },
            }
        }
    }

    fn pooled(
        self: &Arc<Self>,
        response: Response<Incoming>,
        sender: Sender,
    ) -> Response<PooledBody> {
        let (parts, body) = response.into_parts();
        let mut body = PooledBody {
            inner: body,
            home: Some((self.clone(), sender)),
        };
        if body.inner.is_end_stream() {
            body.release();
        }
        Response::from_parts(parts, body)
    }
}

/// A response body that returns its connection to the pool when it ends.
/// Dropped before its end, it takes the connection with it (an HTTP/1.1
/// connection with an unread body cannot carry another request).
#[derive(Debug)]
pub struct PooledBody {
    inner: Incoming,
    home: Option<(Arc<UpstreamPool>, Sender)>,
}

impl PooledBody {
    fn release(&mut self) {
        if let Some((pool, sender)) = self.home.take() {
            pool.checkin(sender);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.release(),
            Poll::Ready(Some(Err(_))) => this.home = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The connection pools of one upstream (a replica or the control plane):
/// hyper's, for the requests hyper serves, and the fast path's
/// ([`RawPool`]).
#[derive(Debug, Clone)]
pub struct ReplicaPools {
    pub hyper: Arc<UpstreamPool>,
    pub raw: Arc<RawPool>,
}

impl ReplicaPools {
    pub fn new(authority: Authority, connect_timeout: Duration) -> ReplicaPools {
        ReplicaPools {
            hyper: UpstreamPool::new(authority.clone(), connect_timeout),
            raw: Arc::new(RawPool::new(authority, connect_timeout)),
        }
    }
}

/// The pools of every upstream the routing table knows, kept across ring
/// versions so that connections survive a membership change.
#[derive(Debug)]
pub struct Pools {
    by_authority: dashmap::DashMap<Authority, ReplicaPools>,
    connect_timeout: Duration,
}

impl Pools {
    pub fn new(connect_timeout: Duration) -> Pools {
        Pools {
            by_authority: dashmap::DashMap::new(),
            connect_timeout,
        }
    }

    /// The pools of `authority`, created on first use.
    pub fn get(&self, authority: &Authority) -> ReplicaPools {
        self.by_authority
            .entry(authority.clone())
            .or_insert_with(|| ReplicaPools::new(authority.clone(), self.connect_timeout))
            .clone()
    }

    /// Drop the pools (and their idle connections) of upstreams for which
    /// `keep` is false.
    pub fn retain(&self, keep: impl Fn(&Authority) -> bool) {
        self.by_authority.retain(|authority, _| keep(authority));
    }
}
