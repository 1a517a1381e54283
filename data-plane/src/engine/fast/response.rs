//! The replica's response head: status, how its body is framed (RFC 9112
//! §6.3), whether the connection can carry another request, and the head
//! as the client gets it.

use std::mem::MaybeUninit;

use super::head::{connection_listed, has_bare_lf, leading_empty_lines, write_headers};
use crate::config::MAX_RESPONSE_HEADERS;
use crate::rules;

/// How the body of a response ends (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: a response to HEAD, 1xx, 204, 304.
    Empty,
    Length(usize),
    /// Forwarded as is; its end found by [`super::chunked::ChunkedScanner`].
    Chunked,
    /// Until the replica closes the connection.
    UntilClose,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// Bytes of the head, final CRLF included.
    pub len: usize,
    pub status: u16,
    pub framing: Framing,
    /// The replica's connection can carry another request afterwards.
    pub reusable: bool,
    /// The head carries headers the client may not get as they are
    /// (hop-by-hop ones, a `Content-Length` that does not frame the
    /// message): see [`rebuild`].
    pub rebuild: bool,
}

/// A response the proxy cannot forward.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("invalid response head")]
    Malformed,
    #[error("response head larger than {0} bytes")]
    TooLarge(usize),
    #[error("response head with more than {MAX_RESPONSE_HEADERS} header fields")]
    TooManyHeaders,
    #[error("invalid Content-Length")]
    Length,
    #[error("{0}")]
    Connection(rules::Violation),
    #[error("101 Switching Protocols to a request that asked for no upgrade")]
    UnaskedUpgrade,
    #[error("Transfer-Encoding in an HTTP/1.0 response")]
    FaultyFraming,
    #[error("a transfer coding other than chunked")]
    UnsupportedCoding,
}

/// Response headers the proxy drops: the hop-by-hop ones but
/// `Transfer-Encoding` and `Trailer`, which stay because a chunked body is
/// forwarded as it is.
fn is_hop_by_hop(name: &[u8]) -> bool {
    rules::is_hop_by_hop(name)
        && !name.eq_ignore_ascii_case(b"transfer-encoding")
        && !name.eq_ignore_ascii_case(b"trailer")
}

/// Parse the response head at the start of `buf` (to a HEAD request when
/// `head_request`); `Ok(None)`: not all here yet.
///
/// # Errors
/// A [`ResponseError`] for a head that cannot be forwarded.
pub fn parse(
    buf: &[u8],
    head_request: bool,
    max_head: usize,
) -> Result<Option<ResponseHead>, ResponseError> {
    // Uninitialised: nothing to zero per response (httparse writes only
    // the headers it finds).
    let mut headers =
        [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_RESPONSE_HEADERS];
    let mut res = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut res,
        buf,
        &mut headers,
    ) {
        Ok(httparse::Status::Complete(len)) if len <= max_head => len,
        Ok(httparse::Status::Complete(_)) => return Err(ResponseError::TooLarge(max_head)),
        Ok(httparse::Status::Partial) if buf.len() >= max_head => {
            return Err(ResponseError::TooLarge(max_head));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ResponseError::TooManyHeaders),
        Err(_) => return Err(ResponseError::Malformed),
    };
    let (Some(status), Some(version)) = (res.code, res.version) else {
        return Err(ResponseError::Malformed);
    };
    if status == 101 {
        return Err(ResponseError::UnaskedUpgrade);
    }
    if !(100..=599).contains(&status) {
        // RFC 9110 §15: three digits from 100 to 599.
        return Err(ResponseError::Malformed);
    }
    let mut length = None;
    let mut transfer_coded = false;
    // The codings of all Transfer-Encoding lines together (RFC 9110 §5.3:
    // an empty line changes nothing), and whether each is chunked.
    let mut codings = 0usize;
    let mut all_chunked = true;
    let mut close = false;
    let mut rebuild = false;
    let mut dated = false;
    for header in res.headers.iter() {
        let name = header.name.as_bytes();
        if name.eq_ignore_ascii_case(b"date") {
            dated = true;
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let n = rules::parse_length(header.value).ok_or(ResponseError::Length)?;
            if length.is_some_and(|m| m != n) {
                return Err(ResponseError::Length);
            }
            // Equal values on several lines (RFC 9110 §8.6): one goes on.
            rebuild |= length.is_some();
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            transfer_coded = true;
            for coding in rules::tokens(header.value) {
                codings += 1;
                all_chunked &= coding.eq_ignore_ascii_case(b"chunked");
            }
        } else if is_hop_by_hop(name) {
            rebuild = true;
            if name.eq_ignore_ascii_case(b"connection") {
                rules::check_connection(header.value).map_err(ResponseError::Connection)?;
                close |= rules::has_token(header.value, "close");
            }
        }
    }
    if transfer_coded && version == 0 {
        // RFC 9112 §6.1: the framing of such a message cannot be trusted.
        return Err(ResponseError::FaultyFraming);
    }
    if transfer_coded && !(codings == 1 && all_chunked) {
        // A coding other than chunked would have to be forwarded with its
        // label, which hyper's client cannot do: refused alike by both
        // engines. So from here on Transfer-Encoding means chunked.
        return Err(ResponseError::UnsupportedCoding);
    }
    let bodiless = rules::bodiless_status(status);
    let framing = if head_request || bodiless {
        Framing::Empty
    } else if transfer_coded {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    // A response without a body by definition (to HEAD, 204, 304): bytes a
    // replica sends after it (a body it should not have sent) may come at
    // any time later and would be read as the answer to the next request,
    // another client's. Such a connection is not reused (RFC 9112 §6.3).
    let announces_body = head_request || bodiless;
    // HTTP/1.0 keep-alive (RFC 9112 §9.3, Appendix C.2.2) is not trusted:
    // the replica's idea of where the response ends may not be ours, and
    // late bytes would be the next request's answer. As with hyper.
    let persistent = version == 1 && !close;
    // Both Transfer-Encoding and Content-Length (RFC 9112 §6.3: "ought to
    // be handled as an error"): the rest of what the length framed may come
    // later, as the next request's answer. Not reused either.
    let suspect = transfer_coded && length.is_some();
    let start = leading_empty_lines(buf);
    // RFC 9110 §6.2: the client gets the proxy's own version; RFC 9112 §4:
    // `HTTP-version SP status-code SP [ reason-phrase ]`, the second SP
    // included. Anything else is written anew.
    let canonical_line = version == 1 && buf.get(start + 12) == Some(&b' ');
    Ok(Some(ResponseHead {
        len,
        status,
        framing,
        reusable: persistent && framing != Framing::UntilClose && !announces_body && !suspect,
        // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length, which
        // goes, and goes itself where there is no body; RFC 9110 §8.6: no
        // Content-Length on 1xx and 204.
        // Empty lines before the status line (httparse skips them) are not
        // forwarded.
        // RFC 9110 §6.6.1: a final response forwarded without `Date` gets
        // one.
        rebuild: rebuild
            || start > 0
            || !canonical_line
            || (status >= 200 && !dated)
            || has_bare_lf(&buf[..len])
            || (transfer_coded && (length.is_some() || bodiless))
            || (rules::forbids_content_length(status) && length.is_some()),
    }))
}

/// Write the head at the start of `buf` as the client gets it: the status
/// line as `HTTP/1.1 <code> <reason>`, without hop-by-hop headers, without
/// a `Content-Length` that does not frame the body, with a `Date` when a
/// final response has none, plus `connection: close` when `closing`.
pub fn rebuild(buf: &[u8], head: &ResponseHead, closing: bool, out: &mut Vec<u8>) {
    let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    if res.parse(&buf[..head.len]).is_err() {
        return; // parsed by `parse` already
    }
    let listed = connection_listed(res.headers);
    let transfer_coded = res
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
    let no_length = rules::forbids_content_length(head.status);
    let no_coding = rules::bodiless_status(head.status);
    {
        use std::io::Write;
        let reason = res.reason.unwrap_or("");
        let _ = write!(out, "HTTP/1.1 {} {reason}\r\n", head.status);
    }
    let lengths_seen = std::cell::Cell::new(0);
    let dropped = |h: &httparse::Header<'_>| {
        let name = h.name.as_bytes();
        let length = name.eq_ignore_ascii_case(b"content-length");
        let coding = name.eq_ignore_ascii_case(b"transfer-encoding");
        if length {
            lengths_seen.set(lengths_seen.get() + 1);
        }
        is_hop_by_hop(name)
            || (length && lengths_seen.get() > 1)
            || listed.iter().any(|n| n.eq_ignore_ascii_case(name))
            || (length && transfer_coded)
            || (length && no_length)
            || (coding && no_coding)
    };
    write_headers(res.headers, dropped, out);
    if head.status >= 200
        && !res
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("date"))
    {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if closing {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &[u8], head_request: bool) -> ResponseHead {
        parse(raw, head_request, 8192)
            .expect("valid")
            .expect("complete")
    }

    /// The rebuilt head, a `date` the rebuild added shown as `<now>`.
    fn rebuilt(raw: &[u8], closing: bool) -> String {
        let mut out = Vec::new();
        rebuild(raw, &head(raw, false), closing, &mut out);
        let text = String::from_utf8_lossy(&out).into_owned();
        match text.split_once("\r\ndate: ") {
            Some((before, after)) => {
                let rest = after.split_once("\r\n").map_or("", |(_, r)| r);
                format!("{before}\r\ndate: <now>\r\n{rest}")
            }
            None => text,
        }
    }

    #[test]
    fn the_client_gets_our_version_a_valid_status_line_and_a_date() {
        // RFC 9110 §6.2: HTTP/1.0 from the replica, HTTP/1.1 to the client.
        let raw =
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nDate: x\r\nContent-Length: 2\r\n\r\nok";
        assert!(head(raw, false).rebuild);
        assert_eq!(
            rebuilt(raw, false),
            "HTTP/1.1 200 OK\r\nDate: x\r\nContent-Length: 2\r\n\r\n"
        );
        // RFC 9112 §4: the SP after the status code is not optional.
        let raw = b"HTTP/1.1 200\r\nDate: x\r\nContent-Length: 2\r\n\r\nok";
        assert!(head(raw, false).rebuild);
        assert_eq!(
            rebuilt(raw, false),
            "HTTP/1.1 200 \r\nDate: x\r\nContent-Length: 2\r\n\r\n"
        );
        // RFC 9110 §6.6.1: a final response without Date gets one; an
        // interim one does not.
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        assert!(head(raw, false).rebuild);
        assert_eq!(
            rebuilt(raw, false),
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\ndate: <now>\r\n\r\n"
        );
        let raw = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n";
        assert!(!head(raw, false).rebuild);
    }

    #[test]
    fn equal_lengths_on_several_lines_go_on_as_one() {
        let raw =
            b"HTTP/1.1 200 OK\r\nDate: x\r\nContent-Length: 2\r\nContent-Length: 02\r\n\r\nok";
        let h = head(raw, false);
        assert_eq!((h.framing, h.rebuild), (Framing::Length(2), true));
        assert_eq!(
            rebuilt(raw, false),
            "HTTP/1.1 200 OK\r\nDate: x\r\nContent-Length: 2\r\n\r\n"
        );
    }

    #[test]
    fn http10_responses_are_not_reused() {
        let h = head(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nDate: x\r\nContent-Length: 2\r\n\r\nok",
            false,
        );
        assert_eq!((h.framing, h.reusable), (Framing::Length(2), false));
    }

    #[test]
    fn a_response_with_both_lengths_is_not_reused() {
        // RFC 9112 §6.3: chunked wins, but the rest of what the length
        // framed may still come: the connection is not trusted again.
        let h = head(
            b"HTTP/1.1 200 OK\r\nDate: x\r\nContent-Length: 56\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        );
        assert_eq!((h.framing, h.reusable), (Framing::Chunked, false));
    }

    #[test]
    fn framing_and_reuse() {
        let h = head(
            b"HTTP/1.1 200 OK\r\nDate: Mon, 30 Nov 2026 00:00:00 GMT\r\ncontent-length: 5\r\n\r\nhello",
            false,
        );
        assert_eq!(
            (h.status, h.framing, h.reusable, h.rebuild),
            (200, Framing::Length(5), true, false)
        );
        assert_eq!(h.len, 75);
        // No body by definition: never reused (late bytes would be the next
        // request's answer).
        let h = head(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", true);
        assert_eq!((h.framing, h.reusable), (Framing::Empty, false));
        let h = head(b"HTTP/1.1 204 No Content\r\n\r\n", false);
        assert_eq!((h.framing, h.reusable), (Framing::Empty, false));
        let h = head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        );
        assert_eq!((h.framing, h.reusable), (Framing::Chunked, true));
        for other in [
            &b"gzip, chunked"[..],
            b"gzip",
            b"chunked, chunked",
            b",",
            b"",
        ] {
            let raw = [
                &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: "[..],
                other,
                b"\r\n\r\n",
            ]
            .concat();
            assert_eq!(
                parse(&raw, false, 8192),
                Err(ResponseError::UnsupportedCoding)
            );
        }
        let h = head(b"HTTP/1.1 200 OK\r\n\r\n", false);
        assert_eq!((h.framing, h.reusable), (Framing::UntilClose, false));
        let h = head(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            false,
        );
        assert_eq!((h.reusable, h.rebuild), (false, true));
        let h = head(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false);
        assert!(!h.reusable);
        let h = head(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
            false,
        );
        assert!(!h.reusable, "HTTP/1.0 keep-alive is not trusted");
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\n", false, 8192), Ok(None));
    }

    #[test]
    fn transfer_encoding_overrides_content_length() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        let h = head(raw, false);
        assert_eq!((h.framing, h.rebuild), (Framing::Chunked, true));
        assert_eq!(
            rebuilt(raw, false),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\ndate: <now>\r\n\r\n"
        );
    }

    #[test]
    fn bodiless_statuses_announcing_a_body() {
        let raw = b"HTTP/1.1 204 No Content\r\nContent-Length: 68\r\nX-A: 1\r\n\r\n";
        let h = head(raw, false);
        assert_eq!(
            (h.framing, h.reusable, h.rebuild),
            (Framing::Empty, false, true)
        );
        assert_eq!(
            rebuilt(raw, false),
            "HTTP/1.1 204 No Content\r\nX-A: 1\r\ndate: <now>\r\n\r\n"
        );
        let h = head(
            b"HTTP/1.1 304 Not Modified\r\nDate: Mon, 30 Nov 2026 00:00:00 GMT\r\nContent-Length: 68\r\n\r\n",
            false,
        );
        assert_eq!(
            (h.framing, h.reusable, h.rebuild),
            (Framing::Empty, false, false)
        );
        let raw = b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n";
        let h = head(raw, false);
        assert!(!h.reusable && h.rebuild);
        assert_eq!(
            rebuilt(raw, false),
            "HTTP/1.1 304 Not Modified\r\ndate: <now>\r\n\r\n"
        );
        let raw = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            rebuilt(raw, false),
            "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
        );
    }

    /// Found by the response_head fuzz target.
    #[test]
    fn fuzz_findings() {
        // Empty lines before the status line: the rebuilt head starts with
        // the status line.
        let raw = b"\r\nHTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok";
        assert!(head(raw, false).rebuild);
        assert_eq!(
            rebuilt(raw, false),
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\ndate: <now>\r\n\r\n"
        );
        let raw = b"\r\nHTTP/1.1 200 OK\r\n\r\n";
        assert_eq!(
            rebuilt(raw, true),
            "HTTP/1.1 200 OK\r\ndate: <now>\r\nconnection: close\r\n\r\n"
        );
        // HTTP/1.0 with Transfer-Encoding: faulty framing (RFC 9112 §6.1).
        assert_eq!(
            parse(
                b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n",
                false,
                8192
            ),
            Err(ResponseError::FaultyFraming)
        );
        // Found by the black-box attack: statuses outside 100..=599, bare LF.
        for status in ["050", "099", "000", "600"] {
            let raw = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
            assert_eq!(
                parse(raw.as_bytes(), false, 8192),
                Err(ResponseError::Malformed),
                "{status}"
            );
        }
        let raw = b"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello";
        assert!(head(raw, false).rebuild);
        assert_eq!(
            rebuilt(raw, false),
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\ndate: <now>\r\n\r\n"
        );
        // Transfer-Encoding over several lines, the last one empty: chunked.
        for raw in [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: \r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: ,\r\n\r\n",
        ] {
            assert_eq!(head(raw, false).framing, Framing::Chunked);
        }
        assert_eq!(
            parse(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
                false,
                8192
            ),
            Err(ResponseError::UnsupportedCoding)
        );
    }

    #[test]
    fn bad_heads() {
        assert_eq!(
            parse(b"HTTP/1.1 2000 OK\r\n\r\n", false, 8192),
            Err(ResponseError::Malformed)
        );
        assert_eq!(
            parse(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                false,
                8192
            ),
            Err(ResponseError::Length)
        );
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false, 8192),
            Err(ResponseError::Length)
        );
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\nX: aaaa", false, 16),
            Err(ResponseError::TooLarge(16))
        );
        assert!(matches!(
            parse(
                b"HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello",
                false,
                8192
            ),
            Err(ResponseError::Connection(_))
        ));
        assert_eq!(
            parse(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", false, 8192),
            Err(ResponseError::UnaskedUpgrade)
        );
        let many: String = (0..=MAX_RESPONSE_HEADERS)
            .map(|i| format!("Set-Cookie: c{i}=1\r\n"))
            .collect();
        let raw = format!("HTTP/1.1 200 OK\r\n{many}\r\n");
        assert_eq!(
            parse(raw.as_bytes(), false, 1 << 20),
            Err(ResponseError::TooManyHeaders)
        );
        let cookies: String = (0..70)
            .map(|i| format!("Set-Cookie: c{i}=aaaaaaaaaaaaaaaaaaaa\r\n"))
            .collect();
        let raw = format!("HTTP/1.1 200 OK\r\n{cookies}Content-Length: 0\r\n\r\n");
        assert_eq!(head(raw.as_bytes(), false).framing, Framing::Length(0));
    }

    #[test]
    fn rebuilt_heads() {
        let raw = b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\nX-Hop: 1\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(
            rebuilt(raw, false),
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\ndate: <now>\r\n\r\n"
        );
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(
            rebuilt(raw, true),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\ndate: <now>\r\nconnection: close\r\n\r\n"
        );
    }
}
