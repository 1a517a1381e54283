//! The fast engine's `ChunkedScanner` against a reference written here by
//! another method: the body is read line by line, chunk sizes by
//! `httparse::parse_chunk_size`, the trailer section by
//! `httparse::parse_headers`, and each line checked against the grammar of
//! RFC 9112 §7.1 (where httparse is more lenient than the RFC: chunk
//! extensions, bare LF, an empty size).
//!
//! Input: one byte `n`, then `n % 5` bytes that pick where the body is cut
//! into pieces, then the body. The scanner is fed the body whole, in those
//! pieces, and byte by byte: it must find the same end each time, and the
//! reference's. Where the body is still incomplete, the scanner may wait
//! for more bytes that the reference already rejects (it may reject late),
//! but it may not reject a body the reference could still accept.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringlb_data_plane::fuzzing::{ChunkedError, ChunkedScanner};

/// Hex digits in a chunk size: the scanner's limit, which RFC 9112 §7.1
/// allows ("recipients MUST anticipate potentially large hexadecimal
/// numerals and prevent parsing errors due to integer conversion
/// overflows").
const MAX_SIZE_DIGITS: usize = 15;

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let (picks, body) = rest.split_at(usize::from(n % 5).min(rest.len()));
    let input = body.escape_ascii().to_string();

    let mut whole_scanner = ChunkedScanner::default();
    let whole = whole_scanner.feed(body);
    let mut cuts: Vec<usize> = picks
        .iter()
        .map(|&p| usize::from(p) * (body.len() + 1) / 256)
        .collect();
    cuts.push(0);
    cuts.push(body.len());
    cuts.sort_unstable();
    let pieces = scan_in_pieces(body, cuts.windows(2).map(|w| (w[0], w[1])));
    assert_eq!(pieces, whole, "fed whole and cut at {cuts:?}: {input}");
    let bytes = scan_in_pieces(body, (0..body.len()).map(|i| (i, i + 1)));
    assert_eq!(bytes, whole, "fed whole and byte by byte: {input}");

    let scanner = match whole {
        Ok(Some(end)) => Outcome::End(end),
        Ok(None) => Outcome::More,
        Err(_) => Outcome::Reject,
    };
    let mut content = 0;
    let reference = reference(body, &mut content);
    match (scanner, reference) {
        (Outcome::End(_), Outcome::End(_)) if scanner == reference => assert_eq!(
            whole_scanner.data_bytes(),
            content,
            "chunk data bytes counted (the access log's `bytes`): {input}"
        ),
        (a, b) if a == b => {}
        // The scanner rejects late: allowed while the body is incomplete.
        (Outcome::More, Outcome::Reject) => {}
        (a, b) => {
            panic!("chunked body: scanner {a:?} ({whole:?}), RFC 9112 reference {b:?}: {input}")
        }
    }
});

/// The scanner's answer when fed `body` in the pieces `ranges`, with the
/// end as an offset into the whole body.
fn scan_in_pieces(
    body: &[u8],
    ranges: impl Iterator<Item = (usize, usize)>,
) -> Result<Option<usize>, ChunkedError> {
    let mut scanner = ChunkedScanner::default();
    for (from, to) in ranges {
        if let Some(n) = scanner.feed(&body[from..to])? {
            assert!(n <= to - from, "end past the bytes fed");
            return Ok(Some(from + n));
        }
    }
    Ok(None)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The body ends after this many bytes.
    End(usize),
    /// Incomplete, and could still be a valid body.
    More,
    /// Not a valid chunked body, whatever follows.
    Reject,
}

/// RFC 9112 §7.1:
/// ```text
/// chunked-body   = *chunk last-chunk trailer-section CRLF
/// chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
/// last-chunk     = 1*("0") [ chunk-ext ] CRLF
/// trailer-section = *( field-line CRLF )
/// ```
/// `content` adds up the chunk data of the chunks read.
fn reference(body: &[u8], content: &mut u64) -> Outcome {
    let mut at = 0;
    loop {
        let rest = &body[at..];
        let (line_len, size) = match httparse::parse_chunk_size(rest) {
            Ok(httparse::Status::Complete(parsed)) => parsed,
            Ok(httparse::Status::Partial) => {
                // A size line still under way: is it the start of one?
                return if size_line(rest, true) {
                    Outcome::More
                } else {
                    Outcome::Reject
                };
            }
            // httparse rejects: a non-hex size, CR without LF, > 16 digits.
            Err(_) => return Outcome::Reject,
        };
        // httparse ends a size line at CRLF only; the line must also be the
        // RFC's (httparse takes anything for extensions, and no digits).
        if !rest[..line_len].ends_with(b"\r\n") || !size_line(&rest[..line_len - 2], false) {
            return Outcome::Reject;
        }
        at += line_len;
        if size == 0 {
            break;
        }
        let Ok(size) = usize::try_from(size) else {
            return Outcome::More;
        };
        if body.len() - at < size {
            return Outcome::More;
        }
        at += size;
        *content += size as u64;
        match &body[at..] {
            [] | [b'\r'] => return Outcome::More,
            [b'\r', b'\n', ..] => at += 2,
            _ => return Outcome::Reject,
        }
    }
    match trailer_section(&body[at..]) {
        Outcome::End(n) => Outcome::End(at + n),
        other => other,
    }
}

/// Whether `line` (without its CRLF) is `chunk-size [ chunk-ext ]`, or when
/// `partial` the start of one:
/// ```text
/// chunk-size     = 1*HEXDIG
/// chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
/// chunk-ext-name = token
/// chunk-ext-val  = token / quoted-string
/// ```
fn size_line(line: &[u8], partial: bool) -> bool {
    // Cut short between CR and LF: the line itself is complete.
    if partial && let Some(line) = line.strip_suffix(b"\r") {
        return size_line(line, false);
    }
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits > MAX_SIZE_DIGITS {
        return false;
    }
    let mut i = digits;
    if i == line.len() {
        return partial || digits > 0;
    }
    if digits == 0 {
        return false;
    }
    // Each extension: BWS ";" BWS name [ BWS "=" BWS value ].
    loop {
        let j = skip_ws(line, i);
        if j == line.len() {
            // Whitespace may only come before ";" (or "=").
            return partial || j == i;
        }
        if line[j] != b';' {
            return false;
        }
        let k = skip_ws(line, j + 1);
        let name = token_len(&line[k..]);
        if k + name == line.len() {
            return partial || name > 0;
        }
        if name == 0 {
            return false;
        }
        i = k + name;
        let eq = skip_ws(line, i);
        if eq == line.len() {
            return partial || eq == i;
        }
        if line[eq] != b'=' {
            continue;
        }
        let v = skip_ws(line, eq + 1);
        if v == line.len() {
            return partial;
        }
        if line[v] == b'"' {
            match quoted_string_len(&line[v..]) {
                Some(n) => i = v + n,
                None => return partial && quoted_string_open(&line[v..]),
            }
        } else {
            let value = token_len(&line[v..]);
            if value == 0 {
                return false;
            }
            i = v + value;
        }
    }
}

fn skip_ws(line: &[u8], mut i: usize) -> usize {
    while i < line.len() && matches!(line[i], b' ' | b'\t') {
        i += 1;
    }
    i
}

/// tchar (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn token_len(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|&&b| is_tchar(b)).count()
}

/// qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
fn is_qdtext(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff)
}

/// quoted-pair's second byte: HTAB / SP / VCHAR / obs-text
fn is_quotable(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff)
}

/// The length of the quoted-string at the start of `bytes` (RFC 9110
/// §5.6.4), if one is complete there.
fn quoted_string_len(bytes: &[u8]) -> Option<usize> {
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return Some(i + 1),
            b'\\' if i + 1 < bytes.len() && is_quotable(bytes[i + 1]) => i += 2,
            b if is_qdtext(b) => i += 1,
            _ => return None,
        }
    }
    None
}

/// Whether `bytes` is the start of a quoted-string cut short.
fn quoted_string_open(bytes: &[u8]) -> bool {
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return false,
            b'\\' if i + 1 == bytes.len() => return true,
            b'\\' if is_quotable(bytes[i + 1]) => i += 2,
            b if is_qdtext(b) => i += 1,
            _ => return false,
        }
    }
    true
}

/// `trailer-section CRLF` at the start of `bytes`: field lines (RFC 9112
/// §5: `field-name ":" OWS field-value OWS`, no obs-fold), each ending in
/// CRLF, then CRLF.
fn trailer_section(bytes: &[u8]) -> Outcome {
    // RFC 9110 §5.5: a field value may keep control characters other than
    // NUL, CR and LF ("recipients MAY retain such characters for the sake
    // of robustness"); httparse rejects them. Read a copy in which they
    // are a `"`: valid in a value, not in a name.
    let copy: Vec<u8> = bytes
        .iter()
        .map(|&b| match b {
            0x01..=0x08 | 0x0b | 0x0c | 0x0e..=0x1f | 0x7f => b'"',
            b => b,
        })
        .collect();
    let mut headers = vec![httparse::EMPTY_HEADER; bytes.len() / 3 + 1];
    let (outcome, read) = match httparse::parse_headers(&copy, &mut headers) {
        Ok(httparse::Status::Complete((n, _))) => (Outcome::End(n), n),
        // httparse checks each byte as it comes: what it has read is the
        // start of a trailer section.
        Ok(httparse::Status::Partial) => (Outcome::More, bytes.len()),
        Err(_) => return Outcome::Reject,
    };
    // httparse takes a bare LF as a line end; RFC 9112 §2.2 allows that in
    // the start line and header section only, not in a chunked body.
    let section = &bytes[..read];
    let bare_lf = section
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || section[i - 1] != b'\r'));
    if bare_lf { Outcome::Reject } else { outcome }
}
