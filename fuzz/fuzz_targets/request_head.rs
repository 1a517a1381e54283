//! The fast engine's request heads: any bytes, under the default limits and
//! under small ones. The parser never panics; a head it forwards
//! (`Complete`) is checked against an independent reading of the same
//! bytes (httparse, driven here): its ranges lie inside it, nothing it
//! should have handed over or refused is in it, its prefixes were not
//! complete (nor refused) already, and the head rebuilt for the replica is
//! itself a forwarded head with the same framing, classification and
//! end-to-end headers, and no hop-by-hop ones.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringlb_data_plane::Limits;
use ringlb_data_plane::fuzzing::{Parsed, RequestHead, parse_request, rebuild_request};

/// Hop-by-hop headers: RFC 9110 §7.6.1 (Connection, Proxy-Connection,
/// Keep-Alive, TE, Transfer-Encoding, Upgrade) and those the data plane
/// also treats as such.
const HOP_BY_HOP: [&str; 9] = [
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

/// Header fields are limited to httparse's (and hyper's) default: 100.
const MAX_HEADERS: usize = 100;

fuzz_target!(|data: &[u8]| {
    let small = Limits {
        max_body_bytes: 16,
        max_request_line_bytes: 48,
        max_header_bytes: 96,
        ..Limits::default()
    };
    for limits in [Limits::default(), small] {
        match parse_request(data, &limits) {
            Parsed::Complete(head) => check_complete(data, &head, &limits),
            // A connection buffers a partial head: that must stay bounded.
            Parsed::Partial => assert!(
                data.len() <= limits.max_head_bytes(),
                "{} bytes still partial: {}",
                data.len(),
                show(data)
            ),
            Parsed::HandOver(_) | Parsed::Refuse(_) => {}
        }
    }
});

/// An independent reading of a head httparse finds complete.
struct Reading<'b> {
    len: usize,
    method: &'b str,
    target: &'b str,
    version: u8,
    headers: Vec<(&'b str, &'b [u8])>,
}

fn read(buf: &[u8]) -> Option<Reading<'_>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        _ => return None,
    };
    Some(Reading {
        len,
        method: req.method?,
        target: req.path?,
        version: req.version?,
        headers: req.headers.iter().map(|h| (h.name, h.value)).collect(),
    })
}

fn values<'r>(reading: &'r Reading<'_>, name: &str) -> Vec<&'r [u8]> {
    reading
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
        .collect()
}

/// Comma-separated tokens, trimmed, empty ones skipped, lowercase.
fn tokens(value: &[u8]) -> Vec<Vec<u8>> {
    value
        .split(|&b| b == b',')
        .map(|t| t.trim_ascii().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

fn check_complete(buf: &[u8], head: &RequestHead, limits: &Limits) {
    let input = show(buf);
    let Some(reading) = read(buf) else {
        panic!("Complete, but httparse finds no complete head: {input}");
    };
    assert_eq!(head.len, reading.len, "head length: {input}");
    assert!(head.len <= buf.len(), "{input}");
    let head_bytes = &buf[..head.len];

    // Ranges: inside the head; the path is the target without its query.
    assert!(
        head.path.start < head.path.end && head.path.end <= head.len,
        "{input}"
    );
    let path = &head_bytes[head.path.clone()];
    let target = reading.target.as_bytes();
    let path_len = target
        .iter()
        .position(|&b| b == b'?')
        .unwrap_or(target.len());
    assert_eq!(path, &target[..path_len], "path range: {input}");
    assert_eq!(path.first(), Some(&b'/'), "origin form: {input}");
    if let Some(id) = &head.request_id {
        assert!(
            id.start <= id.end && id.end <= head.len,
            "request id range: {input}"
        );
        let first = values(&reading, "x-request-id").first().copied();
        assert_eq!(Some(&head_bytes[id.clone()]), first, "request id: {input}");
    }

    // What only an HTTP/1.1 request with a body of known length may be.
    assert_eq!(reading.version, 1, "forwarded a non-HTTP/1.1 head: {input}");
    assert_ne!(reading.method, "CONNECT", "{input}");
    for name in ["transfer-encoding", "upgrade", "expect"] {
        assert!(
            values(&reading, name).is_empty(),
            "forwarded with {name}: {input}"
        );
    }
    let lengths = values(&reading, "content-length");
    assert!(
        lengths.len() <= 1,
        "forwarded with several Content-Length: {input}"
    );
    let declared = lengths.first().map(|v| {
        let v = v.trim_ascii();
        assert!(
            !v.is_empty() && v.iter().all(u8::is_ascii_digit),
            "forwarded with an invalid Content-Length: {input}"
        );
        std::str::from_utf8(v)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .expect("a length the parser accepted fits")
    });
    assert_eq!(head.body_len, declared.unwrap_or(0), "body length: {input}");
    assert!(
        head.body_len <= limits.max_body_bytes,
        "body over the limit: {input}"
    );
    assert_eq!(values(&reading, "host").len(), 1, "one Host: {input}");
    let connection: Vec<Vec<u8>> = values(&reading, "connection")
        .into_iter()
        .flat_map(tokens)
        .collect();
    for framing in [&b"content-length"[..], b"transfer-encoding", b"host"] {
        assert!(
            !connection.iter().any(|t| t == framing),
            "Connection names {}: {input}",
            show(framing)
        );
    }
    assert_eq!(
        head.close,
        connection.iter().any(|t| t == b"close"),
        "close: {input}"
    );
    assert_eq!(head.is_head, reading.method == "HEAD", "{input}");
    assert_eq!(
        head.idempotent,
        matches!(
            reading.method,
            "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"
        ),
        "idempotent: {input}"
    );
    assert_eq!(
        head.admin,
        matches!(path, b"/rep" | b"/add" | b"/rm"),
        "admin: {input}"
    );
    let bare_lf = head_bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || head_bytes[i - 1] != b'\r'));
    let hop = reading
        .headers
        .iter()
        .any(|(n, _)| HOP_BY_HOP.iter().any(|h| n.eq_ignore_ascii_case(h)));
    if bare_lf || hop {
        assert!(
            head.rebuild,
            "forwarded as is with bare LF or hop-by-hop headers: {input}"
        );
    }

    // Limits: the request line (httparse skips empty lines before it) and
    // the header section. The parser counts the section as if every line
    // ended in CRLF: with bare LF it may come out up to 2 bytes short.
    let mut start = 0;
    while head_bytes[start..].starts_with(b"\r\n") || head_bytes[start..].starts_with(b"\n") {
        start += if head_bytes[start] == b'\r' { 2 } else { 1 };
    }
    let lf = start
        + head_bytes[start..]
            .iter()
            .position(|&b| b == b'\n')
            .expect("a complete head has line ends");
    let line = &head_bytes[start..lf];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    assert!(
        line.len() <= limits.max_request_line_bytes,
        "request line of {} bytes over the limit of {}: {input}",
        line.len(),
        limits.max_request_line_bytes
    );
    let end = if head_bytes.ends_with(b"\r\n\r\n") || head_bytes.ends_with(b"\n\r\n") {
        2
    } else {
        1
    };
    let fields = head.len - (lf + 1) - end;
    assert!(
        fields <= limits.max_header_bytes + 2,
        "header section of {fields} bytes over the limit of {}: {input}",
        limits.max_header_bytes
    );

    // No prefix of the head was complete, handed over or refused already:
    // what the client's reads look like must not change the answer.
    // Checked where splits matter, around line ends, and just short.
    let mut cuts: Vec<usize> = head_bytes
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'\n')
        .flat_map(|(i, _)| [i, i + 1])
        .chain([head.len - 1])
        .filter(|&k| k > 0 && k < head.len)
        .collect();
    cuts.dedup();
    for k in cuts {
        let prefix = parse_request(&buf[..k], limits);
        assert!(
            prefix == Parsed::Partial,
            "the first {k} bytes give {prefix:?}, the whole head is forwarded: {input}"
        );
    }

    // The head as the replica gets it.
    if head.rebuild {
        check_rebuilt(buf, head, &reading, &input);
    }
}

fn check_rebuilt(buf: &[u8], head: &RequestHead, reading: &Reading<'_>, input: &str) {
    let mut out = Vec::new();
    rebuild_request(&buf[..head.len], &mut out);
    let shown = show(&out);
    // The rebuilt head may be a little longer (": " and CRLF): parse it
    // without the client's limits.
    let roomy = Limits {
        max_body_bytes: usize::MAX,
        max_request_line_bytes: 1 << 20,
        max_header_bytes: 1 << 20,
        ..Limits::default()
    };
    let again = match parse_request(&out, &roomy) {
        Parsed::Complete(again) => again,
        other => panic!("rebuilt head gives {other:?}: {shown} (from {input})"),
    };
    assert_eq!(again.len, out.len(), "rebuilt head: {shown} (from {input})");
    assert_eq!(
        (again.body_len, again.idempotent, again.is_head, again.admin),
        (head.body_len, head.idempotent, head.is_head, head.admin),
        "rebuilt head classified differently: {shown} (from {input})"
    );
    assert!(
        !again.rebuild,
        "a rebuilt head needs rebuilding again: {shown} (from {input})"
    );
    assert!(!again.close, "{shown} (from {input})");
    assert_eq!(
        &out[again.path.clone()],
        &buf[head.path.clone()],
        "{shown} (from {input})"
    );
    assert_eq!(
        again.request_id.map(|r| out[r].to_vec()),
        head.request_id.clone().map(|r| buf[r].to_vec()),
        "{shown} (from {input})"
    );
    // Exactly the end-to-end headers, in order, values unchanged.
    let listed: Vec<Vec<u8>> = values(reading, "connection")
        .into_iter()
        .flat_map(tokens)
        .collect();
    let expected: Vec<(String, &[u8])> = reading
        .headers
        .iter()
        .filter(|(n, _)| {
            let lower = n.to_ascii_lowercase();
            !HOP_BY_HOP.contains(&lower.as_str()) && !listed.contains(&lower.into_bytes())
        })
        .map(|(n, v)| (n.to_string(), *v))
        .collect();
    let rebuilt = read(&out).expect("rebuilt head parses");
    let got: Vec<(String, &[u8])> = rebuilt
        .headers
        .iter()
        .map(|(n, v)| (n.to_string(), *v))
        .collect();
    assert_eq!(got, expected, "rebuilt headers: {shown} (from {input})");
    assert_eq!(
        (rebuilt.method, rebuilt.target, rebuilt.version),
        (reading.method, reading.target, 1),
        "rebuilt request line: {shown} (from {input})"
    );
}
