//! The client's request head: parsed in place (httparse), classified, and
//! rebuilt for the replica only when it carries hop-by-hop headers or lacks
//! `Host`. Anything the fast path does not handle itself is handed over to
//! hyper with the bytes read so far ([`Parsed::HandOver`]).

use std::ops::Range;

use super::{MAX_HEADERS, connection_listed, is_hop_by_hop, offset_in, write_headers};

/// Why a connection goes to hyper instead (every reason is rare in proxy
/// traffic; hyper answers each exactly as the rest of the data plane does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandOver {
    /// A head httparse rejects (hyper answers 400) or with more headers than
    /// the fast path keeps.
    Malformed,
    /// A head larger than the limit so far (hyper answers 431).
    TooLarge,
    /// HTTP/1.0: keep-alive and framing rules of its own.
    Http10,
    /// `Transfer-Encoding`, `Upgrade`, `Expect`, `CONNECT`: request bodies
    /// of unknown length, protocol switches, interim responses.
    Protocol,
    /// A target that is not a plain origin-form path (absolute form, `*`,
    /// characters outside the unreserved/sub-delims set).
    Target,
    /// A `Content-Length` that is invalid, repeated, or over the body limit
    /// (hyper answers 400 or 413).
    Length,
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
}

/// Parse the head at the start of `buf`.
pub fn parse(buf: &[u8], max_head: usize, max_body: usize) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= max_head => len,
        Ok(httparse::Status::Complete(_)) => return Parsed::HandOver(HandOver::TooLarge),
        Ok(httparse::Status::Partial) if buf.len() >= max_head => {
            return Parsed::HandOver(HandOver::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::HandOver(HandOver::Malformed),
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Parsed::HandOver(HandOver::Malformed);
    };
    if version != 1 {
        return Parsed::HandOver(HandOver::Http10);
    }
    if method == "CONNECT" {
        return Parsed::HandOver(HandOver::Protocol);
    }
    if !is_origin_form(target.as_bytes()) {
        return Parsed::HandOver(HandOver::Target);
    }
    let path_len = target.find('?').unwrap_or(target.len());
    let admin = crate::proxy::is_admin(&target[..path_len]);

    let mut body_len = None;
    let mut request_id = None;
    let mut has_host = false;
    let mut close = false;
    let mut rebuild = false;
    for header in req.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            match (body_len, parse_length(header.value)) {
                (None, Some(n)) if n <= max_body => body_len = Some(n),
                _ => return Parsed::HandOver(HandOver::Length),
            }
        } else if name.eq_ignore_ascii_case("host") {
            has_host = true;
        } else if name.eq_ignore_ascii_case(crate::key::REQUEST_ID) {
            if request_id.is_none() {
                request_id = Some(offset_in(buf, header.value));
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("upgrade")
            || name.eq_ignore_ascii_case("expect")
        {
            return Parsed::HandOver(HandOver::Protocol);
        } else if is_hop_by_hop(name) {
            rebuild = true;
            if name.eq_ignore_ascii_case("connection") {
                close |= tokens(header.value).any(|t| t.eq_ignore_ascii_case(b"close"));
            }
        }
    }
    let target_start = offset_in(buf, target.as_bytes()).start;
    Parsed::Complete(RequestHead {
        len,
        body_len: body_len.unwrap_or(0),
        path: target_start..target_start + path_len,
        request_id,
        idempotent: matches!(
            method,
            "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"
        ),
        is_head: method == "HEAD",
        close,
        // A head with bare LF line ends (httparse accepts them) is rebuilt
        // with CRLF, so that the replica never has to parse it leniently.
        rebuild: rebuild || !has_host || has_bare_lf(&buf[..len]),
        admin,
    })
}

/// Write the head at the start of `buf` as the replica gets it: HTTP/1.1,
/// without hop-by-hop headers (nor those `Connection` names), with `Host`
/// (set to `authority` when the client sent none).
pub fn rebuild(buf: &[u8], authority: &str, out: &mut Vec<u8>) {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    // `buf` was parsed by `parse` already: this cannot fail.
    if req.parse(buf).is_err() {
        return;
    }
    let listed = connection_listed(req.headers);
    let dropped = |h: &httparse::Header<'_>| {
        is_hop_by_hop(h.name)
            || listed
                .iter()
                .any(|n| n.eq_ignore_ascii_case(h.name.as_bytes()))
    };
    out.extend_from_slice(req.method.unwrap_or("GET").as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.path.unwrap_or("/").as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_headers(req.headers, dropped, out);
    let has_host = req
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("host") && !dropped(h));
    if !has_host {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(authority.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Whether a line of `head` ends in LF without CR.
fn has_bare_lf(head: &[u8]) -> bool {
    head.iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'))
}

/// The comma-separated tokens of a header value, trimmed.
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
}

/// A decimal `Content-Length` (RFC 9110 §8.6: digits only).
pub fn parse_length(value: &[u8]) -> Option<usize> {
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > 15 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0usize, |n, &d| {
        n.checked_mul(10)?.checked_add((d - b'0') as usize)
    })
}

/// An origin-form target (`/path?query`) of characters any URI parser
/// accepts unchanged: unreserved, sub-delims, `:`, `@`, `/`, `?`, `%`.
fn is_origin_form(target: &[u8]) -> bool {
    target.first() == Some(&b'/')
        && target.iter().all(|&b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'.'
                        | b'_'
                        | b'~'
                        | b'!'
                        | b'$'
                        | b'&'
                        | b'\''
                        | b'('
                        | b')'
                        | b'*'
                        | b'+'
                        | b','
                        | b';'
                        | b'='
                        | b':'
                        | b'@'
                        | b'/'
                        | b'?'
                        | b'%'
                )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_HEAD: usize = 8192;
    const MAX_BODY: usize = 1024;

    fn complete(raw: &[u8]) -> RequestHead {
        match parse(raw, MAX_HEAD, MAX_BODY) {
            Parsed::Complete(head) => head,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(raw)),
        }
    }

    fn handed_over(raw: &[u8]) -> HandOver {
        match parse(raw, MAX_HEAD, MAX_BODY) {
            Parsed::HandOver(why) => why,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(raw)),
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
        assert!(complete(b"GET / HTTP/1.1\r\n\r\n").rebuild, "no Host");
        for admin in ["GET /rep", "POST /add", "DELETE /rm?x=1"] {
            let raw = format!("{admin} HTTP/1.1\r\nHost: lb\r\n\r\n");
            assert!(complete(raw.as_bytes()).admin, "{admin}");
        }
        assert!(!complete(b"GET /report HTTP/1.1\r\nHost: lb\r\n\r\n").admin);
        let bare = b"GET /home HTTP/1.1\nHost: lb\nX-A: 1\n\n";
        assert!(complete(bare).rebuild, "bare LF");
        let mut out = Vec::new();
        rebuild(bare, "r:1", &mut out);
        assert_eq!(out, b"GET /home HTTP/1.1\r\nHost: lb\r\nX-A: 1\r\n\r\n");
        assert_eq!(
            parse(b"GET /home HTTP/1.1\r\nHost", MAX_HEAD, MAX_BODY),
            Parsed::Partial
        );
    }

    #[test]
    fn what_goes_to_hyper() {
        use HandOver::*;
        let big = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD));
        let cases: [(&[u8], HandOver); 14] = [
            (b"GET /home HTTP/1.0\r\n\r\n", Http10),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Malformed),
            (b"GET /home HTTP/1.1\r\nbad header\r\n\r\n", Malformed),
            (
                b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                Protocol,
            ),
            (b"GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n", Protocol),
            (b"POST / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n", Protocol),
            (b"CONNECT a:1 HTTP/1.1\r\n\r\n", Protocol),
            (b"GET http://a/home HTTP/1.1\r\n\r\n", Target),
            (b"OPTIONS * HTTP/1.1\r\n\r\n", Target),
            (b"GET /a{b} HTTP/1.1\r\n\r\n", Target),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
                Length,
            ),
            (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", Length),
            (b"POST / HTTP/1.1\r\nContent-Length: 1025\r\n\r\n", Length),
            (big.as_bytes(), TooLarge),
        ];
        for (raw, why) in cases {
            assert_eq!(handed_over(raw), why, "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn rebuilt_heads_lose_hop_by_hop_headers_and_gain_host() {
        let raw = b"GET /k?q HTTP/1.1\r\nConnection: close, X-Private\r\nX-Private: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nX-Request-Id: 7\r\n\r\n";
        let mut out = Vec::new();
        rebuild(raw, "10.0.0.1:8080", &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "GET /k?q HTTP/1.1\r\nX-Request-Id: 7\r\nhost: 10.0.0.1:8080\r\n\r\n"
        );
        out.clear();
        rebuild(
            b"PUT /a HTTP/1.1\r\nHost: lb\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi",
            "r:1",
            &mut out,
        );
        assert_eq!(
            String::from_utf8_lossy(&out),
            "PUT /a HTTP/1.1\r\nHost: lb\r\nContent-Length: 2\r\n\r\n"
        );
    }

    proptest::proptest! {
        /// Any bytes: no panic; a complete head's ranges lie inside it, and
        /// a rebuilt head is itself a complete, forwardable head.
        #[test]
        fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            if let Parsed::Complete(head) = parse(&raw, MAX_HEAD, MAX_BODY) {
                proptest::prop_assert!(head.len <= raw.len());
                proptest::prop_assert!(head.path.end <= head.len);
                if let Some(id) = head.request_id {
                    proptest::prop_assert!(id.end <= head.len);
                }
                let mut out = Vec::new();
                rebuild(&raw, "r:1", &mut out);
                proptest::prop_assert!(matches!(parse(&out, MAX_HEAD, MAX_BODY), Parsed::Complete(_)));
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
            if let Parsed::Complete(_) = parse(raw.as_bytes(), MAX_HEAD, MAX_BODY) {
                let mut out = Vec::new();
                rebuild(raw.as_bytes(), "r:1", &mut out);
                let rebuilt = String::from_utf8_lossy(&out).to_ascii_lowercase();
                let connection_named: Vec<String> = names
                    .iter()
                    .filter(|n| n.eq_ignore_ascii_case("connection"))
                    .flat_map(|_| value.split(',').map(|t| t.trim().to_ascii_lowercase()))
                    .collect();
                for name in &names {
                    let kept = rebuilt.contains(&format!("\r\n{}: ", name.to_ascii_lowercase()));
                    let hop = crate::h1::is_hop_by_hop(name)
                        || connection_named.contains(&name.to_ascii_lowercase());
                    proptest::prop_assert_eq!(kept, !hop, "{} in {}", name, rebuilt);
                }
            }
        }
    }

    #[test]
    fn lengths() {
        assert_eq!(parse_length(b"0"), Some(0));
        assert_eq!(parse_length(b" 42 "), Some(42));
        assert_eq!(parse_length(b""), None);
        assert_eq!(parse_length(b"+1"), None);
        assert_eq!(parse_length(b"1,1"), None);
        assert_eq!(parse_length(b"9999999999999999"), None);
    }
}
