//! One request served by the hyper engine: checked, its body read (so that
//! it can be sent again on failover), driven, and the upstream's answer
//! turned into the client's.

use std::net::IpAddr;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Either};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

use super::interim::{Interim, Window};
use super::pool::PooledBody;
use super::request::{self, Outbound};
use super::upgrade::Switch;
use super::{ProxyBody, aborted, refused};
use crate::access_log::Line;
use crate::completion::Completion;
use crate::config::MAX_INTERIM_RESPONSES;
use crate::driver::{self, Exchange, Outcome, Refusal, RequestInfo};
use crate::error::AttemptError;
use crate::pool::ReplicaPools;
use crate::rules::{self, Violation};
use crate::server::Shared;

/// Serve one request from a client at `client`.
pub(crate) async fn handle(
    shared: &Shared,
    client: IpAddr,
    interim: Interim,
    abandon: &tokio::sync::Notify,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    if let Err(refusal) = request::check(&req, &shared.limits) {
        return refused(&refusal);
    }
    // RFC 9110 §7.6.2: at 0 the data plane is the final recipient.
    match request::max_forwards(&mut req) {
        Ok(None) => {}
        Ok(Some(answer)) => return answer,
        Err(refusal) => return refused(&refusal),
    }
    let upgrade = request::upgrade_of(&req);
    let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
    // RFC 9110 §15.2: no 1xx to an HTTP/1.0 client; HTTP/2 has no way here.
    let interim = (req.version() == Version::HTTP_11).then(|| {
        let window = interim.open();
        (interim, window)
    });
    let (parts, body) = req.into_parts();
    let limits = &shared.limits;
    let body = match read_body(body, limits.max_body_bytes, limits.header_read_timeout).await {
        Ok(body) => body,
        Err(refusal) => {
            abandon.notify_one();
            return refused(&refusal);
        }
    };
    let outbound = Outbound::new(&parts, upgrade);
    let path = parts.uri.path();
    let info = RequestInfo {
        path,
        request_id: parts
            .headers
            .get(crate::key::REQUEST_ID)
            .map(HeaderValue::as_bytes),
        idempotent: rules::is_idempotent(parts.method.as_str().as_bytes()),
        admin: rules::is_admin(path),
        line: Line::Parsed {
            method: parts.method.as_str(),
            target: parts.uri.path_and_query().map_or(path, |p| p.as_str()),
            version: version_name(parts.version),
        },
    };
    let mut exchange = HyperExchange {
        outbound: &outbound,
        body,
        interim,
        client_upgrade,
    };
    let outcome = driver::drive(shared, client, info, &mut exchange).await;
    // No interim response may come after the final one: none is taken
    // from now on, and those taken are written before it.
    if let Some((interim, window)) = &exchange.interim {
        interim.close(*window);
        interim.written().await;
    }
    match outcome {
        Outcome::Forward(mut response) => {
            response.body_mut().start_tunnel();
            to_client(response)
        }
        Outcome::Refuse(refusal, _) => refused(&refusal),
        Outcome::Abort(_) => aborted(),
    }
}

/// How the request line spells `version`.
fn version_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// Buffer a request body (so it can be sent again on failover), refusing
/// more than `limit` bytes with 413, and a body that pauses longer than
/// `stall` between two pieces with 408 (the fast engine closes such a
/// connection too).
async fn read_body(mut body: Incoming, limit: usize, stall: Duration) -> Result<Bytes, Refusal> {
    use http_body::Body as _;
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    let mut collected = BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(stall, body.frame()).await {
            Err(_) => return Err(Refusal::body_stalled(stall)),
            Ok(None) => return Ok(collected.freeze()),
            Ok(Some(Err(e))) => return Err(Refusal::unreadable_body(&e)),
            Ok(Some(Ok(frame))) => frame,
        };
        match frame.into_data() {
            Ok(data) => {
                if collected.len() + data.len() > limit {
                    return Err(Refusal::body_too_large(limit));
                }
                collected.extend_from_slice(&data);
            }
            Err(_) => return Err(Refusal::violation(&Violation::RequestTrailers)),
        }
    }
}

struct HyperExchange<'r> {
    outbound: &'r Outbound,
    body: Bytes,
    /// Where 1xx responses go (HTTP/1.1 clients only), and for which
    /// request.
    interim: Option<(Interim, Window)>,
    /// The client's side of a protocol switch it asked for.
    client_upgrade: Option<OnUpgrade>,
}

impl Exchange for HyperExchange<'_> {
    type Answer = Response<PooledBody>;

    fn status(answer: &Response<PooledBody>) -> u16 {
        answer.status().as_u16()
    }

    fn completion(answer: &mut Response<PooledBody>) -> &mut Completion {
        answer.body_mut().completion()
    }

    async fn attempt(
        &mut self,
        pools: &ReplicaPools,
    ) -> Result<Response<PooledBody>, AttemptError> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let mut request = self.outbound.request(self.body.clone(), pools.authority());
        // Interim responses seen: more than the fast engine takes is a 502
        // here too (the 1xx beyond the limit are not forwarded).
        let interims = std::sync::Arc::new(AtomicUsize::new(0));
        let seen = interims.clone();
        let interim = self.interim.as_ref().map(|(i, w)| (i.clone(), *w));
        hyper::ext::on_informational(&mut request, move |response| {
            if seen.fetch_add(1, Ordering::Relaxed) < MAX_INTERIM_RESPONSES
                && let Some((interim, window)) = &interim
            {
                interim.send(
                    *window,
                    &interim_head(response.status(), response.headers()),
                );
            }
        });
        let invalid = |why: &str| AttemptError::InvalidResponse {
            authority: pools.authority().clone(),
            source: why.to_owned().into(),
        };
        let response = match &self.outbound.upgrade {
            Some(asked) => {
                let mut response = pools.hyper.send_upgrade(request).await?;
                let mut switch = None;
                if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                    // RFC 9110 §7.8: only to a protocol the client asked for.
                    let to = response.headers().get(header::UPGRADE);
                    if to.is_none_or(|to| !same_protocols(asked, to)) {
                        return Err(invalid("101 to a protocol the request did not ask for"));
                    }
                    // Joined once the driver has filled the request's
                    // completion (`handle`).
                    switch = self.client_upgrade.take().map(|client| Switch {
                        client,
                        replica: hyper::upgrade::on(&mut response),
                    });
                }
                response.map(|body| PooledBody::unpooled(body, switch))
            }
            None => pools.hyper.send(request).await?,
        };
        check_response(&response, self.outbound.upgrade.is_some()).map_err(|why| invalid(&why))?;
        if interims.load(Ordering::Relaxed) > MAX_INTERIM_RESPONSES {
            return Err(invalid(&format!(
                "more than {MAX_INTERIM_RESPONSES} interim responses"
            )));
        }
        Ok(response)
    }
}

/// What the data plane refuses to forward in a response hyper parsed (the
/// same rules as the fast engine's response parser).
fn check_response(response: &Response<PooledBody>, asked_upgrade: bool) -> Result<(), String> {
    let status = response.status().as_u16();
    if status > 599 {
        return Err(format!("status {status} outside 100..=599"));
    }
    if status == 101 && !asked_upgrade {
        return Err("101 Switching Protocols to a request that asked for no upgrade".into());
    }
    for value in response.headers().get_all(header::CONNECTION) {
        rules::check_connection(value.as_bytes()).map_err(|v| v.to_string())?;
    }
    // One number, as the fast engine requires (hyper takes a list of equal
    // values, RFC 9110 §8.6, which would reach the client as a list).
    let lengths = response.headers().get_all(header::CONTENT_LENGTH);
    let mut numbers = lengths.iter().map(|v| rules::parse_length(v.as_bytes()));
    if let Some(first) = numbers.next()
        && (first.is_none() || numbers.any(|n| n != first))
    {
        return Err("invalid Content-Length".into());
    }
    let codings = response.headers().get_all(header::TRANSFER_ENCODING);
    if codings.iter().next().is_some()
        && !rules::only_chunked(codings.iter().map(HeaderValue::as_bytes))
    {
        return Err("a transfer coding other than chunked".into());
    }
    Ok(())
}

/// Whether a 101's `Upgrade` names only protocols the request's did.
fn same_protocols(asked: &HeaderValue, answered: &HeaderValue) -> bool {
    let asked: Vec<&[u8]> = rules::tokens(asked.as_bytes()).collect();
    rules::tokens(answered.as_bytes()).all(|p| asked.iter().any(|a| a.eq_ignore_ascii_case(p)))
}

/// The head of an interim response as the client gets it.
fn interim_head(status: StatusCode, headers: &http::HeaderMap) -> Vec<u8> {
    let mut headers = headers.clone();
    request::strip_hop_by_hop(&mut headers);
    headers.remove(header::CONTENT_LENGTH); // none on 1xx (RFC 9110 §8.6)
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
    .into_bytes();
    for (name, value) in &headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// An upstream's answer as the client gets it: end-to-end headers only
/// (the protocol switch of a 101 kept), and no `Content-Length` where it
/// does not frame the body: beside `Transfer-Encoding` (RFC 9112 §6.3,
/// hyper decoded the body and frames it anew) or on 1xx and 204 (RFC 9110
/// §8.6).
fn to_client(response: Response<PooledBody>) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    // RFC 9110 §6.2: an intermediary sends its own HTTP version.
    parts.version = Version::HTTP_11;
    let status = parts.status.as_u16();
    let transfer_coded = parts.headers.contains_key(header::TRANSFER_ENCODING);
    let switched = parts.status == StatusCode::SWITCHING_PROTOCOLS;
    let protocol = parts.headers.get(header::UPGRADE).cloned();
    // `Trailer` announces the trailer fields; hyper's server sends only
    // those it announces (to a client that sent `TE: trailers`).
    let announced: Vec<HeaderValue> = parts
        .headers
        .get_all(header::TRAILER)
        .iter()
        .cloned()
        .collect();
    request::strip_hop_by_hop(&mut parts.headers);
    if transfer_coded {
        for value in announced {
            parts.headers.append(header::TRAILER, value);
        }
    }
    if transfer_coded || rules::forbids_content_length(status) {
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    if switched && let Some(protocol) = protocol {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, protocol);
    }
    Response::from_parts(parts, Either::Left(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interim_heads_keep_end_to_end_fields() {
        let mut headers = http::HeaderMap::new();
        headers.insert("link", HeaderValue::from_static("</a.css>; rel=preload"));
        headers.insert("connection", HeaderValue::from_static("x-hop"));
        headers.insert("x-hop", HeaderValue::from_static("1"));
        assert_eq!(
            String::from_utf8_lossy(&interim_head(
                StatusCode::from_u16(103).expect("103"),
                &headers
            )),
            "HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n"
        );
    }

    #[test]
    fn client_responses_lose_framing_they_do_not_use() {
        let response = Response::builder()
            .status(200)
            .header("content-length", "3")
            .header("transfer-encoding", "chunked")
            .header("x-a", "1")
            .body(PooledBody::empty())
            .expect("response");
        let out = to_client(response);
        let names: Vec<&str> = out.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-a"]);
        let response = Response::builder()
            .status(204)
            .header("content-length", "68")
            .body(PooledBody::empty())
            .expect("response");
        assert!(to_client(response).headers().is_empty());
        let response = Response::builder()
            .status(101)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-accept", "x")
            .body(PooledBody::empty())
            .expect("response");
        let out = to_client(response);
        assert_eq!(out.headers()["connection"], "upgrade");
        assert_eq!(out.headers()["upgrade"], "websocket");
    }
}
