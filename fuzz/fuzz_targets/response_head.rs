//! The fast engine's response heads: any bytes, as the answer to a HEAD
//! request or not, under the largest head the data plane accepts and under
//! a small one. The parser never panics, and its verdict is checked against
//! an independent reading of RFC 9112 §6.3 and RFC 9110 §6.4.1/§8.6 over
//! the same bytes (httparse, driven here): every error has a cause, a head
//! without one is accepted, its framing and reuse are the RFC's, and the
//! head rebuilt for the client frames the body the same way without the
//! headers the client may not get.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringlb_data_plane::config::{MAX_RESPONSE_HEAD_BYTES, MAX_RESPONSE_HEADERS};
use ringlb_data_plane::fuzzing::{
    Framing, ResponseError, ResponseHead, parse_response, rebuild_response,
};

/// Hop-by-hop headers the proxy drops from responses: RFC 9110 §7.6.1 and
/// the data plane's extra ones, less Transfer-Encoding and Trailer (a
/// chunked body is forwarded as it is).
const DROPPED: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

fuzz_target!(|data: &[u8]| {
    for head_request in [false, true] {
        for max_head in [MAX_RESPONSE_HEAD_BYTES, 64] {
            let verdict = parse_response(data, head_request, max_head);
            check(data, head_request, max_head, &verdict);
        }
    }
});

/// The same bytes as httparse reads them.
struct Reading<'b> {
    len: usize,
    version: u8,
    status: u16,
    headers: Vec<(&'b str, &'b [u8])>,
}

enum Read<'b> {
    Complete(Reading<'b>),
    Partial,
    TooManyHeaders,
    Invalid,
}

/// Read with the data plane's limit on header fields.
fn read(buf: &[u8]) -> Read<'_> {
    read_with(buf, MAX_RESPONSE_HEADERS)
}

fn read_with(buf: &[u8], max_headers: usize) -> Read<'_> {
    let mut headers = vec![httparse::EMPTY_HEADER; max_headers];
    let mut res = httparse::Response::new(&mut headers);
    match res.parse(buf) {
        Ok(httparse::Status::Complete(len)) => match (res.version, res.code) {
            (Some(version), Some(status)) => Read::Complete(Reading {
                len,
                version,
                status,
                headers: res.headers.iter().map(|h| (h.name, h.value)).collect(),
            }),
            _ => Read::Invalid,
        },
        Ok(httparse::Status::Partial) => Read::Partial,
        Err(httparse::Error::TooManyHeaders) => Read::TooManyHeaders,
        Err(_) => Read::Invalid,
    }
}

fn values<'r>(reading: &'r Reading<'_>, name: &str) -> Vec<&'r [u8]> {
    reading
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
        .collect()
}

/// Comma-separated tokens, trimmed, empty ones skipped, lowercase
/// (RFC 9110 §5.6.1; several field lines combine into one list, §5.3).
fn tokens<'v>(values: impl IntoIterator<Item = &'v [u8]>) -> Vec<Vec<u8>> {
    values
        .into_iter()
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|t| t.trim_ascii().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// A Content-Length value: digits only (RFC 9110 §8.6), at most 15 of them
/// (the data plane's limit).
fn length(value: &[u8]) -> Option<usize> {
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > 15 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// What the RFC makes of a complete head.
struct Expected {
    /// The reasons the head cannot be forwarded, if any.
    errors: Vec<&'static str>,
    framing: Framing,
    reusable: bool,
    /// Headers the client may not get are present.
    rebuild: bool,
}

fn expect(reading: &Reading<'_>, head_request: bool) -> Expected {
    let status = reading.status;
    let mut errors = Vec::new();
    if status == 101 {
        errors.push("upgrade");
    }
    let lengths: Vec<Option<usize>> = values(reading, "content-length")
        .into_iter()
        .map(length)
        .collect();
    if lengths.iter().any(Option::is_none) || lengths.windows(2).any(|w| w[0] != w[1]) {
        errors.push("length");
    }
    let length = lengths.first().copied().flatten();
    let connection = tokens(values(reading, "connection"));
    if connection
        .iter()
        .any(|t| matches!(&t[..], b"content-length" | b"transfer-encoding" | b"host"))
    {
        errors.push("connection");
    }
    let coded = !values(reading, "transfer-encoding").is_empty();
    let codings = tokens(values(reading, "transfer-encoding"));
    let chunked = codings.last().is_some_and(|c| c == b"chunked");
    // RFC 9110 §15: statuses are 100..=599 (status < 100 parses as a head).
    if !(100..=599).contains(&status) {
        errors.push("status");
    }
    // RFC 9112 §6.1: Transfer-Encoding on HTTP/1.0 is faulty framing; and
    // ringlb passes on exactly one coding, chunked, or refuses (a label
    // hyper's client would lose), alike on both engines.
    if coded && reading.version == 0 {
        errors.push("faulty");
    }
    if coded && codings.len() != 1 || coded && !chunked {
        errors.push("coding");
    }
    // RFC 9110 §6.4.1: no body for 1xx, 204, 304, or a response to HEAD.
    let bodiless = (100..200).contains(&status) || status == 204 || status == 304;
    // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length; chunked
    // last frames the body, any other coding last means until close.
    let framing = if head_request || bodiless {
        Framing::Empty
    } else if coded && chunked {
        Framing::Chunked
    } else if coded {
        Framing::UntilClose
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    // HTTP/1.0 keep-alive is not trusted: never reused.
    let persistent = reading.version == 1 && !connection.iter().any(|t| t == b"close");
    // RFC 9112 §6.3: after a response without a body by definition, bytes
    // that follow (late) would be read as the next answer: no reuse.
    let announces_body = head_request || bodiless;
    // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty
    // framing; the connection closes after it.
    let faulty = reading.version == 0 && coded;
    let forbids_length = (100..200).contains(&status) || status == 204;
    // RFC 9112 §6.3: both framing headers "ought to be handled as an
    // error": the rest of what the length framed may still come.
    let both = coded && length.is_some();
    // RFC 9110 §6.6.1: a final response without Date gets one.
    let undated = status >= 200 && values(reading, "date").is_empty();
    Expected {
        errors,
        framing,
        reusable: persistent
            && framing != Framing::UntilClose
            && !announces_body
            && !faulty
            && !both,
        rebuild: undated
            || reading.version == 0
            || reading
            .headers
            .iter()
            .any(|(n, _)| DROPPED.iter().any(|d| n.eq_ignore_ascii_case(d)))
            || (coded && length.is_some())
            || (forbids_length && (coded || !lengths.is_empty()))
            || lengths.len() > 1
            || (bodiless && coded),
    }
}

fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

fn check(
    buf: &[u8],
    head_request: bool,
    max_head: usize,
    verdict: &Result<Option<ResponseHead>, ResponseError>,
) {
    let input = show(buf);
    let case = format!("head_request={head_request} max_head={max_head}: {input}");
    let reading = match (read(buf), verdict) {
        (Read::Complete(reading), _) if reading.len > max_head => {
            assert_eq!(verdict, &Err(ResponseError::TooLarge(max_head)), "{case}");
            return;
        }
        (Read::Complete(reading), _) => reading,
        (Read::Partial, _) if buf.len() >= max_head => {
            assert_eq!(verdict, &Err(ResponseError::TooLarge(max_head)), "{case}");
            return;
        }
        (Read::Partial, _) => {
            assert_eq!(verdict, &Ok(None), "{case}");
            return;
        }
        (Read::TooManyHeaders, _) => {
            assert_eq!(verdict, &Err(ResponseError::TooManyHeaders), "{case}");
            return;
        }
        (Read::Invalid, _) => {
            assert_eq!(verdict, &Err(ResponseError::Malformed), "{case}");
            return;
        }
    };
    let expected = expect(&reading, head_request);
    let head = match verdict {
        Ok(Some(head)) => head,
        Ok(None) => panic!("a complete head read as partial: {case}"),
        Err(e) => {
            let cause = match e {
                ResponseError::UnaskedUpgrade => "upgrade",
                ResponseError::Length => "length",
                ResponseError::Connection(_) => "connection",
                ResponseError::FaultyFraming => "faulty",
                ResponseError::UnsupportedCoding => "coding",
                ResponseError::Malformed if !(100..=599).contains(&reading.status) => "status",
                other => panic!("{other:?} for a complete head within the limits: {case}"),
            };
            assert!(
                expected.errors.contains(&cause),
                "refused for {cause} without cause ({:?}): {case}",
                expected.errors
            );
            return;
        }
    };
    assert!(
        expected.errors.is_empty(),
        "forwarded although {:?}: {case}",
        expected.errors
    );
    assert_eq!(head.len, reading.len, "head length: {case}");
    assert!(head.len <= buf.len() && head.len <= max_head, "{case}");
    assert_eq!(head.status, reading.status, "{case}");
    assert_eq!(head.framing, expected.framing, "framing: {case}");
    assert_eq!(head.reusable, expected.reusable, "reusable: {case}");
    if expected.rebuild {
        assert!(
            head.rebuild,
            "forwarded as is with headers the client may not get: {case}"
        );
    }

    // No prefix of the head was complete or refused already.
    let mut cuts: Vec<usize> = buf[..head.len]
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'\n')
        .flat_map(|(i, _)| [i, i + 1])
        .chain([head.len - 1])
        .filter(|&k| k > 0 && k < head.len)
        .collect();
    cuts.dedup();
    for k in cuts {
        let prefix = parse_response(&buf[..k], head_request, max_head);
        assert_eq!(prefix, Ok(None), "the first {k} bytes: {case}");
    }

    // The head as the client gets it, with or without `connection: close`.
    for closing in [false, true] {
        let mut out = Vec::new();
        rebuild_response(buf, head, closing, &mut out);
        let shown = show(&out);
        // `connection: close` and `date` may make it two headers more than
        // the data plane takes from a replica: read it without that limit.
        let Read::Complete(rebuilt) = read_with(&out, MAX_RESPONSE_HEADERS + 2) else {
            panic!("rebuilt head (closing={closing}) unreadable: {shown} ({case})");
        };
        assert_eq!(rebuilt.len, out.len(), "rebuilt: {shown} ({case})");
        if rebuilt.headers.len() <= MAX_RESPONSE_HEADERS {
            let again = match parse_response(&out, head_request, usize::MAX) {
                Ok(Some(again)) => again,
                other => {
                    panic!("rebuilt head (closing={closing}) gives {other:?}: {shown} ({case})")
                }
            };
            assert_eq!(
                (again.status, again.framing),
                (head.status, head.framing),
                "rebuilt head frames differently: {shown} ({case})"
            );
            assert_eq!(again.rebuild, closing, "rebuilt: {shown} ({case})");
            if closing {
                assert!(!again.reusable, "{shown} ({case})");
            }
        }
        let listed = tokens(values(&reading, "connection"));
        let coded = !values(&reading, "transfer-encoding").is_empty();
        let forbids_length = (100..200).contains(&head.status) || head.status == 204;
        let bodiless_status = forbids_length || head.status == 304;
        // Equal Content-Length lines: the first one goes on.
        let mut lengths_seen = 0;
        let expected: Vec<(String, &[u8])> = reading
            .headers
            .iter()
            .filter(|(n, _)| {
                let lower = n.to_ascii_lowercase();
                let length = lower == "content-length";
                let coding = lower == "transfer-encoding";
                lengths_seen += usize::from(length);
                let dropped = DROPPED.contains(&lower.as_str())
                    || (length && lengths_seen > 1)
                    || listed.contains(&lower.as_bytes().to_vec())
                    || (length && coded)
                    || (length && forbids_length)
                    || (coding && bodiless_status);
                !dropped
            })
            .map(|(n, v)| (n.to_string(), *v))
            .chain(
                (head.status >= 200 && values(&reading, "date").is_empty())
                    .then(|| ("date".to_string(), &b"<now>"[..])),
            )
            .chain(closing.then(|| ("connection".to_string(), &b"close"[..])))
            .collect();
        // The date the data plane added is the time of day: not compared.
        let got: Vec<(String, &[u8])> = rebuilt
            .headers
            .iter()
            .map(|(n, v)| {
                let added = *n == "date" && values(&reading, "date").is_empty();
                (n.to_string(), if added { &b"<now>"[..] } else { *v })
            })
            .collect();
        // RFC 9110 §6.2, RFC 9112 §4: the client gets `HTTP/1.1 <code> `.
        let line = format!("HTTP/1.1 {} ", head.status);
        assert!(out.starts_with(line.as_bytes()), "status line: {shown} ({case})");
        assert_eq!(got, expected, "rebuilt headers: {shown} ({case})");
    }
}
