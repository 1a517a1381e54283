//! The HTTP/1.1 rules both engines apply, written once over raw names and
//! values so that the fast engine (httparse slices) and the hyper engine
//! (`HeaderMap`) cannot disagree. Each rule names its source.

use http::StatusCode;

/// Headers that concern one connection only (RFC 9110 §7.6.1, plus the
/// legacy `keep-alive` and `proxy-connection`), lowercase: neither engine
/// forwards them.
pub const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

/// Headers that frame or route a message: a `Connection` header may not
/// name them, since removing them as hop-by-hop would turn a body into the
/// next message (request smuggling) or send a request to a different host.
const FRAMING: [&str; 3] = ["content-length", "transfer-encoding", "host"];

/// Whether a header named `name` (any case) is hop-by-hop in itself.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|hop| name.eq_ignore_ascii_case(hop.as_bytes()))
}

/// The comma-separated tokens of a header value, trimmed, empty ones
/// skipped (RFC 9110 §5.6.1).
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
}

/// Whether a comma-separated `value` has `token` (any case).
pub fn has_token(value: &[u8], token: &str) -> bool {
    tokens(value).any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
}

/// Whether `b` may appear in a token (RFC 9110 §5.6.2: field names,
/// methods, chunk extension names).
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// A message the data plane refuses to forward.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// RFC 9110 §7.6.1: a proxy removes what `Connection` names; framing and
    /// `Host` cannot be removed safely.
    #[error("The Connection header names {0}, which a proxy cannot remove")]
    ConnectionNamesFraming(String),
    /// RFC 9112 §3.2: an HTTP/1.1 request must carry `Host`.
    #[error("The request has no Host header")]
    NoHost,
    /// RFC 9112 §3.2: one `Host` line at most.
    #[error("The request has more than one Host header")]
    ManyHosts,
    /// RFC 9112 §3.2: a `Host` that is not `uri-host [ ":" port ]`.
    #[error("The Host header is not a valid host")]
    InvalidHost,
    /// RFC 9110 §9.3.6: a gateway to replicas does not tunnel `CONNECT`.
    #[error("CONNECT is not supported")]
    Connect,
    /// RFC 9112 §6.1: a transfer coding the data plane cannot pass on (it
    /// decodes `chunked` and sends the body with a length; any other
    /// coding's label would be lost).
    #[error("Transfer-Encoding other than chunked is not supported")]
    TransferCoding,
    /// RFC 9112 §3.2: a request-target that is not origin-form, absolute-form
    /// (http or https, no userinfo, a valid host) or `*` for OPTIONS.
    #[error("The request-target is not valid for this method")]
    Target,
    /// RFC 9112 §7.1.2: a trailer section in a chunked request. The data
    /// plane does not forward request trailers, and refuses them rather
    /// than guess where such a section ends: hyper's decoder reads a bare
    /// LF there as part of a field line while other parsers (RFC 9112
    /// §2.2) end the message at it, so the bytes after it could be a
    /// request to one and a trailer to the other.
    #[error("Trailer fields in a request are not accepted")]
    RequestTrailers,
    /// A field named like a framing header with `_` for `-`
    /// (`Transfer_Encoding`): valid HTTP, but back ends that fold the two
    /// (CGI's `HTTP_TRANSFER_ENCODING`, several frameworks) would frame the
    /// body by it, which the data plane did not (nginx drops such fields by
    /// default for this reason).
    #[error("The header {0} reads as a framing header to some servers")]
    DisguisedFraming(String),
    /// RFC 9110 §7.6.2: `Max-Forwards = 1*DIGIT`.
    #[error("Max-Forwards is not a number")]
    MaxForwards,
    /// RFC 9110 §9.3.8: a `TRACE` whose `Max-Forwards` reached 0 ends at the
    /// data plane, which does not reflect requests.
    #[error("TRACE is not supported")]
    Trace,
}

/// RFC 9110 §7.6.2: the methods whose `Max-Forwards` an intermediary
/// checks and decrements.
pub fn counts_forwards(method: &[u8]) -> bool {
    method == b"OPTIONS" || method == b"TRACE"
}

/// Whether a field name with an underscore reads as `Content-Length` or
/// `Transfer-Encoding` once `_` is taken for `-` ([`Violation::DisguisedFraming`]).
pub fn disguised_framing(name: &[u8]) -> bool {
    name.contains(&b'_')
        && ["content-length", "transfer-encoding"]
            .iter()
            .any(|framing| {
                framing.len() == name.len()
                    && framing
                        .bytes()
                        .zip(name)
                        .all(|(f, &n)| f.eq_ignore_ascii_case(&if n == b'_' { b'-' } else { n }))
            })
}

impl Violation {
    /// The status the client gets: 400, or 501 for `CONNECT` (RFC 9110
    /// §15.6.2).
    pub fn status(&self) -> StatusCode {
        match self {
            Violation::Connect | Violation::TransferCoding | Violation::Trace => {
                StatusCode::NOT_IMPLEMENTED
            }
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// Check one `Connection` header value: none of its options may be a
/// framing header.
///
/// # Errors
/// [`Violation::ConnectionNamesFraming`] naming the first such option.
pub fn check_connection(value: &[u8]) -> Result<(), Violation> {
    match tokens(value).find(|t| FRAMING.iter().any(|f| t.eq_ignore_ascii_case(f.as_bytes()))) {
        Some(named) => Err(Violation::ConnectionNamesFraming(
            String::from_utf8_lossy(named).to_ascii_lowercase(),
        )),
        None => Ok(()),
    }
}

/// Counts and checks the `Host` lines of a request (RFC 9112 §3.2).
#[derive(Debug, Default, Clone, Copy)]
pub struct HostCheck {
    seen: u8,
    invalid: bool,
}

impl HostCheck {
    /// Note one `Host` line.
    pub fn note(&mut self, value: &[u8]) {
        self.seen = self.seen.saturating_add(1);
        self.invalid |= !valid_host(value);
    }

    /// The verdict for a request of HTTP/1.1 (`http11`) or HTTP/1.0, for
    /// which `Host` is optional.
    ///
    /// # Errors
    /// [`Violation::NoHost`], [`Violation::ManyHosts`],
    /// [`Violation::InvalidHost`].
    pub fn finish(self, http11: bool) -> Result<(), Violation> {
        match self.seen {
            0 if http11 => Err(Violation::NoHost),
            0 => Ok(()),
            1 if self.invalid => Err(Violation::InvalidHost),
            1 => Ok(()),
            _ => Err(Violation::ManyHosts),
        }
    }
}

/// Whether `value` is `uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986
/// §3.2.2): an IP literal in brackets or a reg-name (unreserved,
/// percent-encoded, sub-delims), then optionally `:` and digits. The empty
/// value is valid (a target URI without authority). No userinfo; a port
/// at most 65535.
pub fn valid_host(value: &[u8]) -> bool {
    let value = value.trim_ascii();
    let (host, port) = if value.first() == Some(&b'[') {
        let Some(close) = value.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &value[1..close];
        if literal.is_empty()
            || !literal
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.' | b'v' | b'V'))
        {
            return false;
        }
        match &value[close + 1..] {
            [] => (&value[..0], None),
            [b':', port @ ..] => (&value[..0], Some(port)),
            _ => return false,
        }
    } else {
        match value.iter().position(|&b| b == b':') {
            Some(colon) => (&value[..colon], Some(&value[colon + 1..])),
            None => (value, None),
        }
    };
    let reg_name = host
        .iter()
        .all(|&b| unreserved_or_sub_delim(b) || b == b'%');
    // A port is digits (RFC 3986 §3.2.3), empty or a TCP port number.
    reg_name
        && port.is_none_or(|p| {
            p.is_empty()
                || (p.iter().all(u8::is_ascii_digit)
                    && std::str::from_utf8(p).is_ok_and(|p| p.parse::<u16>().is_ok()))
        })
}

/// RFC 3986 §2.2–2.3: unreserved characters and sub-delims, what a
/// reg-name and a path segment are made of (with `%` for percent-encoding).
pub fn unreserved_or_sub_delim(b: u8) -> bool {
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
        )
}

/// Whether the `Transfer-Encoding` field lines `values` (combined, RFC 9110
/// §5.3) are exactly one coding, `chunked`: what the data plane passes on.
pub fn only_chunked<'v>(values: impl Iterator<Item = &'v [u8]>) -> bool {
    let mut codings = values.flat_map(tokens);
    codings
        .next()
        .is_some_and(|first| first.eq_ignore_ascii_case(b"chunked"))
        && codings.next().is_none()
}

/// A decimal `Content-Length` (RFC 9110 §8.6: digits only, at most 15 of
/// them).
pub fn parse_length(value: &[u8]) -> Option<usize> {
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > 15 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0usize, |n, &d| {
        n.checked_mul(10)?.checked_add(usize::from(d - b'0'))
    })
}

/// Whether a `Content-Length` value declares more than `limit` bytes: a
/// number over it, or all digits and too long to be one (a value that is
/// not a number is not "over": it is invalid, for the parser to refuse).
pub fn length_over(value: &[u8], limit: usize) -> bool {
    let digits = value.trim_ascii();
    !digits.is_empty()
        && digits.iter().all(u8::is_ascii_digit)
        && parse_length(digits).is_none_or(|n| n > limit)
}

/// RFC 9110 §9.2.2: methods a client may repeat, so a request that may have
/// reached a replica can be sent to the next one.
pub fn is_idempotent(method: &[u8]) -> bool {
    matches!(
        method,
        b"GET" | b"HEAD" | b"PUT" | b"DELETE" | b"OPTIONS" | b"TRACE"
    )
}

/// Paths served by the control plane's admin API.
pub fn is_admin(path: &str) -> bool {
    matches!(path, "/rep" | "/add" | "/rm")
}

/// Statuses whose responses never have a body (RFC 9110 §6.4.1): 1xx, 204,
/// 304.
pub fn bodiless_status(status: u16) -> bool {
    (100..200).contains(&status) || status == 204 || status == 304
}

/// Statuses that may not carry `Content-Length` (RFC 9110 §8.6): 1xx, 204.
pub fn forbids_content_length(status: u16) -> bool {
    (100..200).contains(&status) || status == 204
}

/// Whether a request that has an `Upgrade` header asks to switch protocols
/// (RFC 9110 §7.8): it is HTTP/1.1 and one of its `Connection` values
/// names `upgrade`.
pub fn wants_upgrade<'h>(http11: bool, mut connection: impl Iterator<Item = &'h [u8]>) -> bool {
    http11 && connection.any(|v| has_token(v, "upgrade"))
}

#[cfg(test)]
mod tests {

    #[test]
    fn framing_names_with_underscores() {
        for disguised in [
            &b"Transfer_Encoding"[..],
            b"content_length",
            b"CONTENT_LENGTH",
        ] {
            assert!(disguised_framing(disguised), "{disguised:?}");
        }
        for plain in [
            &b"Transfer-Encoding"[..],
            b"content-length",
            b"x_content_length",
            b"Host_",
            b"content_lengthy",
            b"x_custom",
        ] {
            assert!(!disguised_framing(plain), "{plain:?}");
        }
    }
    use super::*;

    #[test]
    fn connection_may_not_name_framing_headers() {
        assert!(check_connection(b"keep-alive, x-private").is_ok());
        assert!(check_connection(b"close").is_ok());
        for bad in [
            &b"Content-Length"[..],
            b"keep-alive, transfer-encoding",
            b"HOST",
            b" ,content-LENGTH , ",
        ] {
            assert!(
                matches!(
                    check_connection(bad),
                    Err(Violation::ConnectionNamesFraming(_))
                ),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn host_rules() {
        let verdict = |http11: bool, hosts: &[&[u8]]| {
            let mut check = HostCheck::default();
            for host in hosts {
                check.note(host);
            }
            check.finish(http11)
        };
        assert_eq!(verdict(true, &[]), Err(Violation::NoHost));
        assert_eq!(verdict(false, &[]), Ok(()));
        assert_eq!(verdict(true, &[b"a", b"a"]), Err(Violation::ManyHosts));
        for good in [
            &b"lb"[..],
            b"lb:5000",
            b"127.0.0.1:80",
            b"[::1]:5000",
            b"[::1]",
            b"a-b.example.com",
            b"",
            b"xn--e1afmkfd.xn--p1ai",
        ] {
            assert_eq!(verdict(true, &[good]), Ok(()), "{:?}", good);
        }
        for bad in [
            &b"a b"[..],
            b"a/b",
            b"user@a",
            b"a:port",
            b"a:1:2",
            b"[::1",
            b"[]",
            b"a:123456",
            b"a:99999",
            b"a\\b",
            b"a?b",
        ] {
            assert_eq!(
                verdict(true, &[bad]),
                Err(Violation::InvalidHost),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn lengths_and_codings() {
        let only = |lines: &[&str]| only_chunked(lines.iter().map(|l| l.as_bytes()));
        assert!(only(&["chunked"]) && only(&["Chunked"]) && only(&["chunked", ""]));
        assert!(!only(&["gzip, chunked"]) && !only(&["chunked", "chunked"]) && !only(&[""]));
        assert_eq!(parse_length(b"0"), Some(0));
        assert_eq!(parse_length(b" 42 "), Some(42));
        for bad in [&b""[..], b"+1", b"1,1", b"-1", b"0x10", b"9999999999999999"] {
            assert_eq!(parse_length(bad), None, "{bad:?}");
        }
        assert!(is_tchar(b'a') && is_tchar(b'~') && is_tchar(b'!'));
        assert!(!is_tchar(b' ') && !is_tchar(b':') && !is_tchar(b'"') && !is_tchar(0));
    }

    #[test]
    fn methods_statuses_upgrades() {
        assert!(is_idempotent(b"GET") && is_idempotent(b"PUT"));
        assert!(!is_idempotent(b"POST") && !is_idempotent(b"PATCH"));
        assert!(!is_idempotent(b"get"), "methods are case-sensitive");
        assert!(bodiless_status(103) && bodiless_status(204) && bodiless_status(304));
        assert!(!bodiless_status(200) && !bodiless_status(404));
        assert!(forbids_content_length(204) && !forbids_content_length(304));
        let upgrade = |values: &[&[u8]]| wants_upgrade(true, values.iter().copied());
        assert!(upgrade(&[b"Upgrade"]));
        assert!(upgrade(&[b"keep-alive", b"keep-alive, upgrade"]));
        assert!(!upgrade(&[b"keep-alive"]));
        assert!(!wants_upgrade(false, [&b"upgrade"[..]].into_iter()));
    }
}
