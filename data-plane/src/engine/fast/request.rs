//! The client's request head: parsed in place (httparse), checked against
//! the data plane's rules ([`crate::rules`]) and limits, classified, and
//! rebuilt for the replica only when it carries hop-by-hop headers or bare
//! LF line ends. What the fast engine does not handle itself is handed
//! over to hyper with the bytes read so far ([`Parsed::HandOver`]); what no
//! engine forwards is refused ([`Parsed::Refuse`]).

use std::mem::MaybeUninit;
use std::ops::Range;

use super::head::{connection_listed, has_bare_lf, leading_empty_lines, offset_in, write_headers};
use crate::config::{Limits, MAX_REQUEST_HEADERS};
use crate::driver::Refusal;
use crate::rules::{self, HostCheck, Violation};

/// Why a connection goes to hyper instead (every reason is rare in proxy
/// traffic; hyper serves each through the same driver and rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandOver {
    /// A head httparse rejects (hyper answers 400, or speaks HTTP/2 to a
    /// prior-knowledge preface).
    Malformed,
    /// HTTP/1.0: keep-alive and framing rules of its own.
    Http10,
    /// `Transfer-Encoding`, `Upgrade`, `Expect`: request bodies of unknown
    /// length, protocol switches, interim responses.
    Protocol,
    /// A target that is not a plain origin-form path (absolute form, `*`,
    /// characters outside the unreserved/sub-delims set).
    Target,
    /// A `Content-Length` that is invalid or repeated (hyper answers 400).
    Length,
    /// `OPTIONS` or `TRACE` with `Max-Forwards` (RFC 9110 §7.6.2: answered
    /// at 0, decremented otherwise).
    MaxForwards,
}

/// A request head the fast path forwards. Ranges index the client buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// Bytes of the head, final CRLF included.
    pub len: usize,
    pub body_len: usize,
    /// The path, without the query.
    pub path: Range<usize>,
    pub request_id: Option<Range<usize>>,
    /// GET, HEAD, PUT, DELETE, OPTIONS, TRACE (RFC 9110 §9.2.2).
    pub idempotent: bool,
    /// A HEAD request: the response has no body whatever it says.
    pub is_head: bool,
    /// The client sent `Connection: close`.
    pub close: bool,
    /// The head must be rebuilt for the replica ([`rebuild`]).
    pub rebuild: bool,
    /// `/rep`, `/add`, `/rm`: for the control plane's admin API.
    pub admin: bool,
}

/// What a buffer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Not a whole head yet.
    Partial,
    Complete(RequestHead),
    HandOver(HandOver),
    /// A request no engine forwards: answer this and close.
    Refuse(Refusal),
}

/// Parse the head at the start of `buf` under `limits`.
pub fn parse(buf: &[u8], limits: &Limits) -> Parsed {
    // Uninitialised: nothing to zero per request (httparse writes only
    // the headers it finds).
    let mut headers =
        [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_REQUEST_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            return match over_limits(buf, buf.len(), limits) {
                Some(refusal) => Parsed::Refuse(refusal),
                None => Parsed::Partial,
            };
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Refuse(Refusal::headers_too_large(limits.max_header_bytes));
        }
        Err(_) => return Parsed::HandOver(HandOver::Malformed),
    };
    if let Some(refusal) = over_limits(buf, len, limits) {
        return Parsed::Refuse(refusal);
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Parsed::HandOver(HandOver::Malformed);
    };
    if version != 1 {
        return Parsed::HandOver(HandOver::Http10);
    }
    if method == "CONNECT" {
        return Parsed::Refuse(Refusal::violation(&Violation::Connect));
    }
    if !is_origin_form(target.as_bytes()) {
        return Parsed::HandOver(HandOver::Target);
    }
    let path_len = target.find('?').unwrap_or(target.len());

    let mut body_len = None;
    let mut request_id = None;
    let mut host = HostCheck::default();
    let mut close = false;
    let mut rebuild = false;
    for header in req.headers.iter() {
        let name = header.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            // Over the limit: 413 from the head (RFC 9110 §15.5.14).
            if rules::length_over(header.value, limits.max_body_bytes) {
                return Parsed::Refuse(Refusal::body_too_large(limits.max_body_bytes));
            }
            match (body_len, rules::parse_length(header.value)) {
                (None, Some(n)) if n <= limits.max_body_bytes => body_len = Some(n),
                _ => return Parsed::HandOver(HandOver::Length),
            }
        } else if name.eq_ignore_ascii_case(b"host") {
            host.note(header.value);
        } else if name.eq_ignore_ascii_case(crate::key::REQUEST_ID.as_bytes()) {
            if request_id.is_none() {
                request_id = Some(offset_in(buf, header.value));
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"upgrade")
            || name.eq_ignore_ascii_case(b"expect")
        {
            return Parsed::HandOver(HandOver::Protocol);
        } else if name.eq_ignore_ascii_case(b"max-forwards")
            && rules::counts_forwards(method.as_bytes())
        {
            return Parsed::HandOver(HandOver::MaxForwards);
        } else if rules::disguised_framing(name) {
            let name = String::from_utf8_lossy(name).into_owned();
            return Parsed::Refuse(Refusal::violation(&Violation::DisguisedFraming(name)));
        } else if rules::is_hop_by_hop(name) {
            rebuild = true;
            if name.eq_ignore_ascii_case(b"connection") {
                if let Err(violation) = rules::check_connection(header.value) {
                    return Parsed::Refuse(Refusal::violation(&violation));
                }
                close |= rules::has_token(header.value, "close");
            }
        }
    }
    if let Err(violation) = host.finish(true) {
        return Parsed::Refuse(Refusal::violation(&violation));
    }
    let target_start = offset_in(buf, target.as_bytes()).start;
    Parsed::Complete(RequestHead {
        len,
        body_len: body_len.unwrap_or(0),
        path: target_start..target_start + path_len,
        request_id,
        idempotent: rules::is_idempotent(method.as_bytes()),
        is_head: method == "HEAD",
        close,
        // A head with bare LF line ends (httparse accepts them) is rebuilt
        // with CRLF, so that the replica never has to parse it leniently.
        // So is one with empty lines before its request line.
        rebuild: rebuild || has_bare_lf(&buf[..len]) || leading_empty_lines(buf) > 0,
        admin: rules::is_admin(&target[..path_len]),
    })
}

/// The refusal for a head whose first `len` bytes of `buf` break a limit:
/// a request line longer than allowed (414), else a header section larger
/// than allowed (431). `None` while both hold so far.
fn over_limits(buf: &[u8], len: usize, limits: &Limits) -> Option<Refusal> {
    // Empty lines before the request line are skipped (RFC 9112 §2.2), as
    // httparse does; they count toward the header section below.
    let start = leading_empty_lines(&buf[..len]);
    let head = &buf[start..len];
    let line = match head.iter().position(|&b| b == b'\n') {
        Some(lf) => lf.saturating_sub(usize::from(lf > 0 && head[lf - 1] == b'\r')),
        // No line end yet: the line is at least this long (a CR at the end
        // may be the start of its CRLF).
        None => head.len() - usize::from(head.last() == Some(&b'\r')),
    };
    if line > limits.max_request_line_bytes {
        return Some(Refusal::line_too_long(limits.max_request_line_bytes));
    }
    // The header section: everything after the request line's LF, less the
    // empty line that ends it.
    let fields = len.saturating_sub(line + 2).saturating_sub(2);
    (fields > limits.max_header_bytes).then(|| Refusal::headers_too_large(limits.max_header_bytes))
}

/// Write the head at the start of `buf` as the replica gets it: HTTP/1.1,
/// CRLF line ends, without hop-by-hop headers (nor those `Connection`
/// names).
pub fn rebuild(buf: &[u8], out: &mut Vec<u8>) {
    let mut headers = [httparse::EMPTY_HEADER; MAX_REQUEST_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    // `buf` was parsed by `parse` already: this cannot fail.
    if req.parse(buf).is_err() {
        return;
    }
    let listed = connection_listed(req.headers);
    let dropped = |h: &httparse::Header<'_>| {
        rules::is_hop_by_hop(h.name.as_bytes())
            || listed
                .iter()
                .any(|n| n.eq_ignore_ascii_case(h.name.as_bytes()))
    };
    out.extend_from_slice(req.method.unwrap_or("GET").as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.path.unwrap_or("/").as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_headers(req.headers, dropped, out);
    out.extend_from_slice(b"\r\n");
}

/// An origin-form target (`/path?query`) of characters any URI parser
/// accepts unchanged: unreserved, sub-delims, `:`, `@`, `/`, `?`, `%`.
fn is_origin_form(target: &[u8]) -> bool {
    target.first() == Some(&b'/')
        && target.iter().all(|&b| {
            rules::unreserved_or_sub_delim(b) || matches!(b, b':' | b'@' | b'/' | b'?' | b'%')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    fn limits() -> Limits {
        Limits {
            max_body_bytes: 1024,
            max_request_line_bytes: 1024,
            max_header_bytes: 2048,
            ..Limits::default()
        }
    }

    fn complete(raw: &[u8]) -> RequestHead {
        match parse(raw, &limits()) {
            Parsed::Complete(head) => head,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(raw)),
        }
    }

    fn handed_over(raw: &[u8]) -> HandOver {
        match parse(raw, &limits()) {
            Parsed::HandOver(why) => why,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(raw)),
        }
    }

    fn refused(raw: &[u8]) -> StatusCode {
        match parse(raw, &limits()) {
            Parsed::Refuse(refusal) => {
                assert!(refusal.close, "a refused request closes its connection");
                refusal.status
            }
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(raw)),
        }
    }

    #[test]
    fn a_length_over_the_limit_is_413_from_the_head() {
        for raw in [
            &b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1025\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        ] {
            assert_eq!(refused(raw), StatusCode::PAYLOAD_TOO_LARGE, "{raw:?}");
        }
    }

    #[test]
    fn a_plain_get_is_forwarded_verbatim() {
        let raw = b"GET /home?x=1 HTTP/1.1\r\nHost: lb\r\nX-Request-Id: 123456\r\n\r\n";
        let head = complete(raw);
        assert_eq!(head.len, raw.len());
        assert_eq!(&raw[head.path.clone()], b"/home");
        assert_eq!(&raw[head.request_id.clone().expect("id")], b"123456");
        assert!(head.idempotent && !head.is_head && !head.close && !head.rebuild && !head.admin);
        assert_eq!(head.body_len, 0);
    }

    #[test]
    fn bodies_methods_and_connection_options() {
        let head = complete(b"POST /home HTTP/1.1\r\nHost: lb\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!((head.body_len, head.idempotent), (5, false));
        let head = complete(b"HEAD /home HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n");
        assert!(head.is_head && head.close && head.rebuild);
        let head = complete(b"GET / HTTP/1.1\r\nHost: lb\r\nConnection: keep-alive\r\n\r\n");
        assert!(!head.close && head.rebuild);
        for admin in ["GET /rep", "POST /add", "DELETE /rm?x=1"] {
            let raw = format!("{admin} HTTP/1.1\r\nHost: lb\r\n\r\n");
            assert!(complete(raw.as_bytes()).admin, "{admin}");
        }
        assert!(!complete(b"GET /report HTTP/1.1\r\nHost: lb\r\n\r\n").admin);
        let bare = b"GET /home HTTP/1.1\nHost: lb\nX-A: 1\n\n";
        assert!(complete(bare).rebuild, "bare LF");
        let mut out = Vec::new();
        rebuild(bare, &mut out);
        assert_eq!(out, b"GET /home HTTP/1.1\r\nHost: lb\r\nX-A: 1\r\n\r\n");
        assert_eq!(
            parse(b"GET /home HTTP/1.1\r\nHost", &limits()),
            Parsed::Partial
        );
    }

    #[test]
    fn what_goes_to_hyper() {
        use HandOver::*;
        let cases: [(&[u8], HandOver); 11] = [
            (b"GET /home HTTP/1.0\r\n\r\n", Http10),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Malformed),
            (b"GET /home HTTP/1.1\r\nbad header\r\n\r\n", Malformed),
            (
                b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                Protocol,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n",
                Protocol,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
                Protocol,
            ),
            (b"GET http://a/home HTTP/1.1\r\nHost: a\r\n\r\n", Target),
            (b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", Target),
            (b"GET /a{b} HTTP/1.1\r\nHost: a\r\n\r\n", Target),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
                Length,
            ),
            (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", Length),
        ];
        for (raw, why) in cases {
            assert_eq!(handed_over(raw), why, "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn what_is_refused() {
        let smuggle = b"POST /echo HTTP/1.1\r\nHost: a\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(refused(smuggle), StatusCode::BAD_REQUEST);
        assert_eq!(
            refused(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, HOST\r\n\r\n"),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(refused(b"GET / HTTP/1.1\r\n\r\n"), StatusCode::BAD_REQUEST);
        assert_eq!(
            refused(b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            refused(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            refused(b"CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\n\r\n"),
            StatusCode::NOT_IMPLEMENTED
        );
        let long_line = format!("GET /?q={} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(1100));
        assert_eq!(refused(long_line.as_bytes()), StatusCode::URI_TOO_LONG);
        // Still without a line end, already too long.
        let unfinished = format!("GET /?q={}", "a".repeat(1100));
        assert_eq!(refused(unfinished.as_bytes()), StatusCode::URI_TOO_LONG);
        let big = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "a".repeat(2100)
        );
        assert_eq!(
            refused(big.as_bytes()),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
        let unfinished = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}", "a".repeat(2100));
        assert_eq!(
            refused(unfinished.as_bytes()),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
        let many: String = (0..MAX_REQUEST_HEADERS + 1)
            .map(|i| format!("X-{i}: 1\r\n"))
            .collect();
        let many = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
        assert_eq!(
            refused(many.as_bytes()),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
        // Exactly at the limits: served.
        let line = format!("GET /{} HTTP/1.1", "a".repeat(1024 - 14));
        assert_eq!(line.len(), 1024);
        complete(format!("{line}\r\nHost: a\r\n\r\n").as_bytes());
    }

    /// Found by the request_head fuzz target.
    #[test]
    fn fuzz_findings() {
        // A read that ends between the CR and the LF of a request line of
        // exactly the limit: not over it yet.
        let line = format!("GET /{} HTTP/1.1", "a".repeat(1024 - 14));
        assert_eq!(
            parse(format!("{line}\r").as_bytes(), &limits()),
            Parsed::Partial
        );
        complete(format!("{line}\r\nHost: a\r\n\r\n").as_bytes());
        // Empty lines before the request line do not hide a long one.
        let long = format!("\r\nGET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(1100));
        assert_eq!(refused(long.as_bytes()), StatusCode::URI_TOO_LONG);
        // ...and are not forwarded.
        let raw = b"\r\n\r\nGET /home HTTP/1.1\r\nHost: a\r\n\r\n";
        assert!(complete(raw).rebuild);
        let mut out = Vec::new();
        rebuild(raw, &mut out);
        assert_eq!(out, b"GET /home HTTP/1.1\r\nHost: a\r\n\r\n");
    }

    #[test]
    fn rebuilt_heads_lose_hop_by_hop_headers() {
        let raw = b"GET /k?q HTTP/1.1\r\nHost: lb\r\nConnection: close, X-Private\r\nX-Private: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nX-Request-Id: 7\r\n\r\n";
        let mut out = Vec::new();
        rebuild(raw, &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "GET /k?q HTTP/1.1\r\nHost: lb\r\nX-Request-Id: 7\r\n\r\n"
        );
        out.clear();
        rebuild(
            b"PUT /a HTTP/1.1\r\nHost: lb\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi",
            &mut out,
        );
        assert_eq!(
            String::from_utf8_lossy(&out),
            "PUT /a HTTP/1.1\r\nHost: lb\r\nContent-Length: 2\r\n\r\n"
        );
    }

    proptest::proptest! {
        /// Any bytes: no panic; a complete head's ranges lie inside it, and
        /// a rebuilt head is itself a complete head with the same framing.
        #[test]
        fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            if let Parsed::Complete(head) = parse(&raw, &limits()) {
                proptest::prop_assert!(head.len <= raw.len());
                proptest::prop_assert!(head.path.end <= head.len);
                if let Some(id) = head.request_id.clone() {
                    proptest::prop_assert!(id.end <= head.len);
                }
                let mut out = Vec::new();
                rebuild(&raw, &mut out);
                match parse(&out, &limits()) {
                    Parsed::Complete(again) => proptest::prop_assert_eq!(again.body_len, head.body_len),
                    other => proptest::prop_assert!(false, "rebuilt head: {:?}", other),
                }
            }
        }

        /// Heads made of real parts with any header names and values.
        #[test]
        fn rebuilt_heads_keep_end_to_end_headers(
            names in proptest::collection::vec("[a-zA-Z][a-zA-Z0-9-]{0,12}", 0..8),
            value in "[ -~]{0,20}",
        ) {
            let mut raw = String::from("GET /p?q=1 HTTP/1.1\r\nHost: lb\r\n");
            for name in &names {
                raw.push_str(&format!("{name}: {}\r\n", value.trim()));
            }
            raw.push_str("\r\n");
            if let Parsed::Complete(_) = parse(raw.as_bytes(), &limits()) {
                let mut out = Vec::new();
                rebuild(raw.as_bytes(), &mut out);
                let rebuilt = String::from_utf8_lossy(&out).to_ascii_lowercase();
                let connection_named: Vec<String> = names
                    .iter()
                    .filter(|n| n.eq_ignore_ascii_case("connection"))
                    .flat_map(|_| value.split(',').map(|t| t.trim().to_ascii_lowercase()))
                    .collect();
                for name in &names {
                    let kept = rebuilt.contains(&format!("\r\n{}: ", name.to_ascii_lowercase()));
                    let hop = rules::is_hop_by_hop(name.as_bytes())
                        || connection_named.contains(&name.to_ascii_lowercase());
                    proptest::prop_assert_eq!(kept, !hop, "{} in {}", name, rebuilt);
                }
            }
        }
    }
}
