//! Pooled hyper client connections (HTTP/1.1) to one upstream, for the
//! requests the hyper engine serves.
//!
//! Written for the request path instead of hyper-util's general client: one
//! pool per upstream held by the routing table (no pool-key hashing, no
//! global map), idle connections in an [`IdleStack`] (most recently used
//! first, so hot connections stay hot), and a connection goes back to the
//! pool the moment its response body ends ([`PooledBody`]). A request that
//! a stale pooled connection could not even send comes back from hyper
//! (`try_send_request`) and is sent again on a fresh connection, so a
//! replica restart or an idle close never fails a request that never left.
//! A request that asks for a protocol switch gets a connection of its own
//! ([`UpstreamPool::send_upgrade`]), never pooled.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Authority;
use http::{Request, Response, Version, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

use super::upgrade::{self, Switch};
use crate::completion::Completion;
use crate::config::{MAX_RESPONSE_HEAD_BYTES, MAX_RESPONSE_HEADERS};
use crate::error::AttemptError;
use crate::pool::{IdleStack, connect_within};
use crate::rules;

type Sender = SendRequest<Full<Bytes>>;

/// The hyper connections to one upstream.
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

    fn checkout(&self) -> Option<Sender> {
        self.idle.pop_usable(|sender| !sender.is_closed())
    }

    fn checkin(&self, sender: Sender) {
        if !sender.is_closed() {
            self.idle.push(sender);
        }
    }

    /// The client side of a connection: the same response limits as the
    /// fast engine's.
    fn builder() -> http1::Builder {
        let mut builder = http1::Builder::new();
        builder
            .max_headers(MAX_RESPONSE_HEADERS)
            .max_buf_size(MAX_RESPONSE_HEAD_BYTES);
        builder
    }

    async fn connect(&self, upgrades: bool) -> Result<Sender, AttemptError> {
        let stream = connect_within(&self.authority, self.connect_timeout).await?;
        let (sender, connection) = Self::builder()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| AttemptError::NotSent {
                authority: self.authority.clone(),
                source: e.into(),
            })?;
        let authority = self.authority.clone();
        tokio::spawn(async move {
            let ended = if upgrades {
                connection.with_upgrades().await
            } else {
                connection.await
            };
            if let Err(e) = ended {
                tracing::debug!(%authority, error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// Send `request` (origin-form URI, `Host` set) on a pooled or new
    /// connection, and wait for the final response head.
    ///
    /// # Errors
    /// An [`AttemptError`] that says whether the request may have arrived.
    pub async fn send(
        self: &Arc<Self>,
        mut request: Request<Full<Bytes>>,
    ) -> Result<Response<PooledBody>, AttemptError> {
        let head_request = request.method() == http::Method::HEAD;
        loop {
            let (mut sender, fresh) = match self.checkout() {
                Some(sender) => (sender, false),
                None => (self.connect(false).await?, true),
            };
            if let Err(e) = sender.ready().await {
                if fresh {
                    return Err(AttemptError::NotSent {
                        authority: self.authority.clone(),
                        source: e.into(),
                    });
                }
                continue; // a stale pooled connection; try the next one
            }
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(self.pooled(response, sender, head_request)),
                Err(mut e) => match e.take_message() {
                    // Never sent on a pooled connection that went stale:
                    // send it again, on another or a new connection.
                    Some(unsent) if !fresh => request = unsent,
                    Some(_) => {
                        return Err(AttemptError::NotSent {
                            authority: self.authority.clone(),
                            source: e.into_error().into(),
                        });
                    }
                    None => return Err(self.failed(e.into_error())),
                },
            }
        }
    }

    /// Send a request that asks for a protocol switch on a connection of its
    /// own, which hyper gives up to the switched protocol on a 101.
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub async fn send_upgrade(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, AttemptError> {
        let mut sender = self.connect(true).await?;
        sender
            .send_request(request)
            .await
            .map_err(|e| self.failed(e))
    }

    /// A request that went out and got no usable answer: an answer hyper
    /// could not parse is the replica's (never retried), anything else may
    /// be retried if the method allows.
    fn failed(&self, e: hyper::Error) -> AttemptError {
        let authority = self.authority.clone();
        if e.is_parse() || e.is_parse_too_large() || e.is_parse_status() {
            AttemptError::InvalidResponse {
                authority,
                source: e.into(),
            }
        } else {
            AttemptError::NoResponse {
                authority,
                source: Some(e.into()),
            }
        }
    }

    /// The response with a body that returns the connection to the pool at
    /// its end, unless the response has no body by definition (to HEAD,
    /// 204, 304): bytes a replica sends after one of those (a body it
    /// should not have sent) may come at any time later, and would be read
    /// as the answer to the next request, another client's. Such a
    /// connection is not reused (RFC 9112 §6.3), nor one whose response had
    /// both `Transfer-Encoding` and `Content-Length`, was HTTP/1.0, or ended
    /// with trailers.
    fn pooled(
        self: &Arc<Self>,
        response: Response<Incoming>,
        sender: Sender,
        head_request: bool,
    ) -> Response<PooledBody> {
        let bodiless = head_request || rules::bodiless_status(response.status().as_u16());
        // Both Transfer-Encoding and Content-Length (RFC 9112 §6.3: "ought
        // to be handled as an error"): the rest of what the length framed
        // may come later. HTTP/1.0: hyper would speak 1.0 on it from then.
        let suspect = response.headers().contains_key(header::TRANSFER_ENCODING)
            && response.headers().contains_key(header::CONTENT_LENGTH);
        let reusable = !bodiless && !suspect && response.version() == Version::HTTP_11;
        let (parts, body) = response.into_parts();
        let mut body = PooledBody {
            inner: Some(body),
            home: reusable.then(|| (self.clone(), sender)),
            completion: Completion::default(),
            tunnel: None,
        };
        if body.is_end_stream() {
            body.release();
        }
        Response::from_parts(parts, body)
    }
}

/// A response body that returns its connection to the pool when it ends.
/// Dropped before its end, it takes the connection with it (an HTTP/1.1
/// connection with an unread body cannot carry another request). A body
/// without a connection (after a protocol switch) is empty.
///
/// It also carries the request's [`Completion`] until its end (counting the
/// content that went through), or hands it to the tunnel of a protocol
/// switch.
#[derive(Debug)]
pub struct PooledBody {
    inner: Option<Incoming>,
    home: Option<(Arc<UpstreamPool>, Sender)>,
    completion: Completion,
    /// A 101's two sides, joined once the request's count is known.
    tunnel: Option<Switch>,
}

impl PooledBody {
    /// A body with nothing in it.
    #[cfg(test)]
    pub fn empty() -> PooledBody {
        PooledBody {
            inner: None,
            home: None,
            completion: Completion::default(),
            tunnel: None,
        }
    }

    /// A body read from a connection that is not pooled (it asked for a
    /// protocol switch): `tunnel` when the switch happened.
    pub fn unpooled(inner: Incoming, tunnel: Option<Switch>) -> PooledBody {
        PooledBody {
            inner: Some(inner),
            home: None,
            completion: Completion::default(),
            tunnel,
        }
    }

    /// The request's completion, dropped when the body ends.
    pub(crate) fn completion(&mut self) -> &mut Completion {
        &mut self.completion
    }

    /// Join the two sides of the protocol switch this body's response
    /// made, if it made one; the tunnel takes the completion.
    pub(crate) fn start_tunnel(&mut self) {
        if let Some(switch) = self.tunnel.take() {
            upgrade::tunnel(switch, std::mem::take(&mut self.completion));
        }
    }

    /// The body ended: its connection goes back to the pool and the
    /// request is complete.
    fn release(&mut self) {
        drop(std::mem::take(&mut self.completion));
        if let Some((pool, sender)) = self.home.take() {
            pool.checkin(sender);
        }
    }
}

impl Drop for PooledBody {
    /// Dropped before its end (hyper gave up on the client): the request
    /// was abandoned.
    fn drop(&mut self) {
        if self
            .inner
            .as_ref()
            .is_some_and(|inner| !inner.is_end_stream())
        {
            self.completion.abandoned();
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
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(&mut *inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            match frame.data_ref() {
                Some(data) => this.completion.sent(data.len() as u64),
                // Trailers: where they end, hyper's decoder and others can
                // disagree (a bare LF); the connection is not trusted again.
                None => this.home = None,
            }
        }
        match &polled {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(_))) if inner.is_end_stream() => this.release(),
            Poll::Ready(Some(Err(_))) => {
                this.home = None;
                drop(std::mem::take(&mut this.completion));
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
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
        let request = Request::get("/")
            .header("host", "x")
            .body(Full::new(Bytes::new()))
            .expect("request");
        let started = Instant::now();
        let error = pool.send(request).await.expect_err("cannot connect");
        assert!(
            matches!(error, AttemptError::ConnectTimeout { .. }),
            "{error:?}"
        );
        assert_eq!(error.retry(), crate::error::Retry::Safe);
        // Bounded generously: the point is that it does not hang.
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
