//! A request as hyper parsed it: checked against the rules and limits both
//! engines apply ([`crate::rules`]), and turned into the request every
//! upstream gets.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Method, Request, Uri, Version};
use http_body_util::Full;

use crate::config::{Limits, MAX_REQUEST_HEADERS};
use crate::driver::Refusal;
use crate::rules::{self, HostCheck, Violation};

/// Check a request's head (RFC 9110, RFC 9112 §3, the data plane's limits);
/// the refusal to answer with when it may not be forwarded.
pub(crate) fn check<B>(req: &Request<B>, limits: &Limits) -> Result<(), Refusal> {
    if req.method() == Method::CONNECT {
        return Err(Refusal::violation(&Violation::Connect));
    }
    check_target(req).map_err(|v| Refusal::violation(&v))?;
    // Exactly one coding, chunked (hyper refuses a last coding other than
    // chunked itself; the data plane refuses codings before it).
    let codings = req.headers().get_all(header::TRANSFER_ENCODING);
    if codings.iter().next().is_some()
        && !rules::only_chunked(codings.iter().map(HeaderValue::as_bytes))
    {
        return Err(Refusal::violation(&Violation::TransferCoding));
    }
    let http1 = matches!(req.version(), Version::HTTP_10 | Version::HTTP_11);
    if http1 {
        // The request line as it came: method, target, "HTTP/1.x".
        let target = match req.uri().path_and_query() {
            Some(origin) if req.uri().scheme().is_none() => origin.as_str().len(),
            _ => req.uri().to_string().len(),
        };
        if req.method().as_str().len() + 1 + target + 9 > limits.max_request_line_bytes {
            return Err(Refusal::line_too_long(limits.max_request_line_bytes));
        }
    }
    if let Some(name) = req
        .headers()
        .keys()
        .find(|name| rules::disguised_framing(name.as_str().as_bytes()))
    {
        return Err(Refusal::violation(&Violation::DisguisedFraming(
            name.as_str().to_owned(),
        )));
    }
    if req.headers().len() > MAX_REQUEST_HEADERS {
        return Err(Refusal::headers_too_large(limits.max_header_bytes));
    }
    let fields: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    if fields > limits.max_header_bytes {
        return Err(Refusal::headers_too_large(limits.max_header_bytes));
    }
    for value in req.headers().get_all(header::CONNECTION) {
        rules::check_connection(value.as_bytes()).map_err(|v| Refusal::violation(&v))?;
    }
    if http1 {
        let mut host = HostCheck::default();
        for value in req.headers().get_all(header::HOST) {
            host.note(value.as_bytes());
        }
        host.finish(req.version() == Version::HTTP_11)
            .map_err(|v| Refusal::violation(&v))?;
    }
    // A declared length over the limit: 413 from the head, before hyper
    // would send `100 Continue` for it (RFC 9110 §10.1.1).
    if req
        .headers()
        .get_all(header::CONTENT_LENGTH)
        .iter()
        .any(|v| rules::length_over(v.as_bytes(), limits.max_body_bytes))
    {
        return Err(Refusal::body_too_large(limits.max_body_bytes));
    }
    Ok(())
}

/// RFC 9112 §3.2 (and RFC 9113 §8.3.1 for `:authority`): an origin-form
/// target, `*` for OPTIONS only, or an absolute-form http(s) target whose
/// authority is a valid `host[:port]` without userinfo (RFC 9110 §4.2.4:
/// the data plane would send it on as `Host`).
fn check_target<B>(req: &Request<B>) -> Result<(), Violation> {
    let uri = req.uri();
    if uri == "*" {
        return if req.method() == Method::OPTIONS {
            Ok(())
        } else {
            Err(Violation::Target)
        };
    }
    match (uri.scheme_str(), uri.authority()) {
        // Origin form.
        (None, None) if uri.path().starts_with('/') => Ok(()),
        (Some("http" | "https"), Some(authority))
            if rules::valid_host(authority.as_str().as_bytes()) =>
        {
            Ok(())
        }
        _ => Err(Violation::Target),
    }
}

/// The protocol an HTTP/1.1 request asks to switch to (RFC 9110 §7.8), if
/// it asks.
pub(crate) fn upgrade_of<B>(req: &Request<B>) -> Option<HeaderValue> {
    let upgrade = req.headers().get(header::UPGRADE)?;
    let connection = req.headers().get_all(header::CONNECTION);
    rules::wants_upgrade(
        req.version() == Version::HTTP_11,
        connection.iter().map(HeaderValue::as_bytes),
    )
    .then(|| upgrade.clone())
}

/// The request every upstream gets: origin-form target, end-to-end headers
/// only.
#[derive(Debug)]
pub(crate) struct Outbound {
    method: Method,
    target: Uri,
    headers: HeaderMap,
    /// The protocols the request asks to switch to, if it does.
    pub(crate) upgrade: Option<HeaderValue>,
    /// The client sent no usable `Host`: the upstream's authority goes in.
    needs_host: bool,
    /// The client framed a body (`Content-Length` or `Transfer-Encoding`),
    /// even an empty one: the upstream gets its length.
    framed: bool,
}

impl Outbound {
    /// From the client's head; `upgrade` keeps the protocol switch it asks
    /// for.
    pub(crate) fn new(parts: &http::request::Parts, upgrade: Option<HeaderValue>) -> Outbound {
        let mut headers = parts.headers.clone();
        let framed = headers.contains_key(header::CONTENT_LENGTH)
            || headers.contains_key(header::TRANSFER_ENCODING);
        strip_hop_by_hop(&mut headers);
        // The data plane has read the body: the expectation is met (hyper
        // sent 100 Continue), the upstream must not be asked again.
        headers.remove(header::EXPECT);
        // RFC 9112 §3.2.2: an absolute-form target's authority replaces
        // Host. HTTP/2 carries it in `:authority`.
        let mut needs_host = !headers.contains_key(header::HOST);
        if let Some(authority) = parts.uri.authority()
            && let Ok(host) = HeaderValue::from_str(authority.as_str())
        {
            headers.insert(header::HOST, host);
            needs_host = false;
        }
        if let Some(protocol) = &upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, protocol.clone());
        }
        let target = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        Outbound {
            method: parts.method.clone(),
            target: Uri::from(target),
            headers,
            upgrade,
            needs_host,
            framed,
        }
    }

    /// The request for the upstream at `authority`, with `body`.
    pub(crate) fn request(&self, body: Bytes, authority: &Authority) -> Request<Full<Bytes>> {
        let length = (self.framed || !body.is_empty()).then(|| HeaderValue::from(body.len()));
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.target.clone();
        *request.headers_mut() = self.headers.clone();
        if self.needs_host
            && let Ok(host) = HeaderValue::from_str(authority.as_str())
        {
            request.headers_mut().insert(header::HOST, host);
        }
        if let Some(length) = length {
            request.headers_mut().insert(header::CONTENT_LENGTH, length);
        }
        request
    }
}

/// `Max-Forwards` of an `OPTIONS` or `TRACE` request (RFC 9110 §7.6.2):
/// at 0 the data plane answers as the final recipient (`OPTIONS`: 200,
/// empty; `TRACE`: 501, as the data plane does not reflect requests); else
/// it goes on decremented. `Ok(None)`: forward the request.
///
/// # Errors
/// A value that is not a number ([`Violation::MaxForwards`], 400).
pub(crate) fn max_forwards<B>(
    req: &mut Request<B>,
) -> Result<Option<http::Response<super::ProxyBody>>, Refusal> {
    if !rules::counts_forwards(req.method().as_str().as_bytes()) {
        return Ok(None);
    }
    let mut values = req.headers().get_all(header::MAX_FORWARDS).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        // One number, one line: `5` and `0` on two lines are not a value.
        return Err(Refusal::violation(&Violation::MaxForwards));
    }
    let digits = value.as_bytes().trim_ascii();
    let remaining = std::str::from_utf8(digits)
        .ok()
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .map(|d| d.parse::<u64>().unwrap_or(u64::MAX))
        .ok_or_else(|| Refusal::violation(&Violation::MaxForwards))?;
    if remaining > 0 {
        req.headers_mut()
            .insert(header::MAX_FORWARDS, HeaderValue::from(remaining - 1));
        return Ok(None);
    }
    if req.method() == Method::TRACE {
        return Err(Refusal::violation(&Violation::Trace));
    }
    let mut answer = http::Response::new(http_body_util::Either::Right(Full::new(Bytes::new())));
    answer
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    Ok(Some(answer))
}

/// Remove the hop-by-hop headers, including any the `Connection` header
/// names (RFC 9110 §7.6.1). Most messages carry none: one pass over the
/// names finds that, without a hash lookup per candidate.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let hop = |name: &HeaderName| rules::is_hop_by_hop(name.as_str().as_bytes());
    if !headers.keys().any(hop) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| rules::tokens(v.as_bytes()))
        .filter_map(|name| HeaderName::from_bytes(name).ok())
        .collect();
    let hop: Vec<HeaderName> = headers.keys().filter(|n| hop(n)).cloned().collect();
    for name in named.iter().chain(hop.iter()) {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(head: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::get("/home?x=1");
        for (name, value) in head {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("request")
    }

    #[test]
    fn hop_by_hop_headers_go_end_to_end_ones_stay() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        headers.insert("x-request-id", HeaderValue::from_static("123456"));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut headers);
        let left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-request-id", "content-type"]);
    }

    #[test]
    fn checks() {
        let limits = Limits::default();
        assert!(check(&request(&[("host", "lb")]), &limits).is_ok());
        let status = |head: &[(&str, &str)]| check(&request(head), &limits).err().map(|r| r.status);
        assert_eq!(status(&[]), Some(http::StatusCode::BAD_REQUEST));
        assert_eq!(
            status(&[("host", "a"), ("host", "b")]),
            Some(http::StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            status(&[("host", "lb"), ("connection", "content-length")]),
            Some(http::StatusCode::BAD_REQUEST)
        );
        let long = "a".repeat(limits.max_header_bytes);
        assert_eq!(
            status(&[("host", "lb"), ("x-long", &long)]),
            Some(http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        // Found by the black-box attack: targets and codings.
        for (target, method) in [
            ("http://u:p@evil.com/echo", Method::GET),
            ("http://good:99999/echo", Method::GET),
            ("ftp://good/echo", Method::GET),
            ("*", Method::GET),
        ] {
            let req = Request::builder()
                .method(method)
                .uri(target)
                .header("host", "lb")
                .body(())
                .expect("request");
            assert_eq!(
                check(&req, &limits).err().map(|r| r.status),
                Some(http::StatusCode::BAD_REQUEST),
                "{target}"
            );
        }
        let options = Request::options("*")
            .header("host", "lb")
            .body(())
            .expect("request");
        assert!(check(&options, &limits).is_ok());
        let absolute = Request::get("http://good:8080/a")
            .header("host", "lb")
            .body(())
            .expect("request");
        assert!(check(&absolute, &limits).is_ok());
        for coding in ["gzip, chunked", "identity, chunked", "chunked, chunked"] {
            assert_eq!(
                status(&[("host", "lb"), ("transfer-encoding", coding)]),
                Some(http::StatusCode::NOT_IMPLEMENTED),
                "{coding}"
            );
        }
        assert!(
            check(
                &request(&[("host", "lb"), ("transfer-encoding", "chunked")]),
                &limits
            )
            .is_ok()
        );
        let target = format!("/?q={}", "a".repeat(limits.max_request_line_bytes));
        let long_line = Request::get(target)
            .header("host", "lb")
            .body(())
            .expect("request");
        assert_eq!(
            check(&long_line, &limits).err().map(|r| r.status),
            Some(http::StatusCode::URI_TOO_LONG)
        );
    }

    #[test]
    fn outbound_requests() {
        let req = request(&[
            ("host", "lb"),
            ("connection", "upgrade, x-private"),
            ("upgrade", "websocket"),
            ("x-private", "1"),
            ("expect", "100-continue"),
            ("x-request-id", "7"),
        ]);
        let upgrade = upgrade_of(&req);
        assert_eq!(
            upgrade.as_ref().map(HeaderValue::as_bytes),
            Some(&b"websocket"[..])
        );
        let (parts, ()) = req.into_parts();
        let out =
            Outbound::new(&parts, upgrade).request(Bytes::new(), &Authority::from_static("r:1"));
        assert_eq!(out.uri(), "/home?x=1");
        let names: Vec<&str> = out.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["host", "x-request-id", "connection", "upgrade"]);
        assert_eq!(out.headers()["host"], "lb");

        let absolute = Request::get("http://example.com:8080/a")
            .header("host", "other")
            .body(())
            .expect("request");
        let (parts, ()) = absolute.into_parts();
        let out = Outbound::new(&parts, None).request(Bytes::new(), &Authority::from_static("r:1"));
        assert_eq!(out.uri(), "/a");
        assert_eq!(out.headers()["host"], "example.com:8080");
    }
}
