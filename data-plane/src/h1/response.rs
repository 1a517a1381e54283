//! The replica's response head: status, how its body is framed, whether the
//! connection can carry another request, and the head as the client gets it.

use super::{
    MAX_HEADERS, connection_listed, request::parse_length, request::tokens, write_headers,
};

/// How the body of a response ends (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: HEAD, 1xx, 204, 304.
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
    /// The head carries headers that are not the client's to see
    /// (`Connection`, `Keep-Alive`, ...): see [`rebuild`].
    pub rebuild: bool,
}

/// A response the proxy cannot forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("invalid response head")]
    Malformed,
    #[error("response head larger than {0} bytes")]
    TooLarge(usize),
    #[error("invalid Content-Length")]
    Length,
}

/// Response headers the proxy drops: the hop-by-hop ones but
/// `Transfer-Encoding` and `Trailer`, which stay because a chunked body is
/// forwarded as it is.
fn is_hop_by_hop(name: &str) -> bool {
    super::is_hop_by_hop(name)
        && !name.eq_ignore_ascii_case("transfer-encoding")
        && !name.eq_ignore_ascii_case("trailer")
}

/// Parse the response head at the start of `buf`; `Ok(None)`: not all here.
pub fn parse(
    buf: &[u8],
    head_request: bool,
    max_head: usize,
) -> Result<Option<ResponseHead>, ResponseError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    let len = match res.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= max_head => {
            return Err(ResponseError::TooLarge(max_head));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(ResponseError::Malformed),
    };
    let (Some(status), Some(version)) = (res.code, res.version) else {
        return Err(ResponseError::Malformed);
    };
    let mut length = None;
    let mut chunked = false;
    let mut transfer_coded = false;
    let mut close = false;
    let mut keep_alive = false;
    let mut rebuild = false;
    for header in res.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            let n = parse_length(header.value).ok_or(ResponseError::Length)?;
            if length.is_some_and(|m| m != n) {
                return Err(ResponseError::Length);
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_coded = true;
            chunked = tokens(header.value)
                .last()
                .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"));
        } else if is_hop_by_hop(name) {
            rebuild = true;
            if name.eq_ignore_ascii_case("connection") {
                for token in tokens(header.value) {
                    close |= token.eq_ignore_ascii_case(b"close");
                    keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
        }
    }
    let framing = if head_request || (100..200).contains(&status) || status == 204 || status == 304
    {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if transfer_coded {
        Framing::UntilClose
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    let persistent = if version == 1 { !close } else { keep_alive };
    Ok(Some(ResponseHead {
        len,
        status,
        framing,
        reusable: persistent && framing != Framing::UntilClose,
        rebuild,
    }))
}

/// Write the head at the start of `buf` as the client gets it: without
/// hop-by-hop headers, plus `connection: close` when `closing`.
pub fn rebuild(buf: &[u8], head: &ResponseHead, closing: bool, out: &mut Vec<u8>) {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    if res.parse(&buf[..head.len]).is_err() {
        return; // parsed by `parse` already
    }
    let listed = connection_listed(res.headers);
    // The status line as the replica sent it.
    let line_end = buf.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
    out.extend_from_slice(&buf[..line_end]);
    // `Transfer-Encoding` stays even when listed: the body is forwarded
    // with the framing it came with.
    let dropped = |h: &httparse::Header<'_>| {
        is_hop_by_hop(h.name)
            || (listed
                .iter()
                .any(|n| n.eq_ignore_ascii_case(h.name.as_bytes()))
                && !h.name.eq_ignore_ascii_case("transfer-encoding"))
    };
    write_headers(res.headers, dropped, out);
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

    #[test]
    fn framing_and_reuse() {
        let h = head(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", false);
        assert_eq!(
            (h.status, h.framing, h.reusable, h.rebuild),
            (200, Framing::Length(5), true, false)
        );
        assert_eq!(h.len, 38);
        let h = head(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", true);
        assert_eq!(h.framing, Framing::Empty);
        let h = head(b"HTTP/1.1 204 No Content\r\n\r\n", false);
        assert_eq!(h.framing, Framing::Empty);
        let h = head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            false,
        );
        assert_eq!((h.framing, h.reusable), (Framing::Chunked, true));
        let h = head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false);
        assert_eq!((h.framing, h.reusable), (Framing::UntilClose, false));
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
        assert!(h.reusable);
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\n", false, 8192), Ok(None));
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
    }

    #[test]
    fn rebuilt_heads() {
        let raw = b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\nX-Hop: 1\r\nContent-Length: 2\r\n\r\nok";
        let h = head(raw, false);
        let mut out = Vec::new();
        rebuild(raw, &h, false, &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
        );
        out.clear();
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        rebuild(raw, &head(raw, false), true, &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nconnection: close\r\n\r\n"
        );
    }
}
