//! What the request and response heads of the fast engine share: the
//! header names a `Connection` header lists, writing header lines, where a
//! parsed slice lies in its buffer, and the line-end checks.

use std::ops::Range;

use crate::rules;

/// The header names the `Connection` headers list: hop-by-hop too
/// (RFC 9110 §7.6.1).
pub(crate) fn connection_listed<'h>(headers: &[httparse::Header<'h>]) -> Vec<&'h [u8]> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| rules::tokens(h.value))
        .collect()
}

/// Append `name: value` lines for the headers `dropped` does not reject.
pub(crate) fn write_headers(
    headers: &[httparse::Header<'_>],
    dropped: impl Fn(&httparse::Header<'_>) -> bool,
    out: &mut Vec<u8>,
) {
    for header in headers.iter().filter(|h| !dropped(h)) {
        out.extend_from_slice(header.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(header.value);
        out.extend_from_slice(b"\r\n");
    }
}

/// Where `part` (a slice of `buf`) lies in `buf`.
pub(crate) fn offset_in(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(buf.as_ptr() as usize);
    start..start + part.len()
}

/// Whether a line of `head` ends in LF without CR (such a head is rebuilt
/// with CRLF: a sender must use CRLF, RFC 9112 §2.2).
pub(crate) fn has_bare_lf(head: &[u8]) -> bool {
    head.iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'))
}

/// How many bytes of empty lines (CRLF or LF) `buf` starts with (httparse
/// skips them before a request or status line; RFC 9112 §2.2).
pub(crate) fn leading_empty_lines(buf: &[u8]) -> usize {
    buf.iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count()
}
