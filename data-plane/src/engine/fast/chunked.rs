//! Finds where a chunked message body ends (RFC 9112 §7.1) without decoding
//! it: the proxy forwards chunked bytes as they are and only needs to know
//! when the message is over, so that the connection can carry the next one.

use crate::rules;

/// A chunked body that cannot be framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkedError {
    #[error("invalid chunk size line")]
    Size,
    #[error("invalid chunk extension")]
    Extension,
    #[error("chunk size too large")]
    Overflow,
    #[error("chunk data not followed by CRLF")]
    DataEnd,
    #[error("invalid trailer section")]
    Trailer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Hex digits of a chunk size.
    Size,
    /// Whitespace after the size, before a `;`.
    SizeBws,
    /// Before a chunk extension's name (after `;`, whitespace allowed).
    ExtNameStart,
    ExtName,
    /// Whitespace after an extension's name, before `=` or `;`.
    ExtNameBws,
    /// Before an extension's value (after `=`, whitespace allowed).
    ExtValueStart,
    ExtToken,
    ExtQuoted,
    ExtQuotedEscape,
    /// After a quoted value: `;`, CR, or whitespace before a `;`.
    ExtValueEnd,
    /// Whitespace after a value, before a `;`.
    ExtValueBws,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer field line (or of the final CRLF).
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    FinalLf,
    Done,
}

/// Scans a chunked body fed in pieces, checking it against RFC 9112 §7.1
/// (chunk sizes, the chunk-extension grammar, trailer field lines as §5
/// has them: no whitespace before the colon, no obs-fold, no NUL).
#[derive(Debug, Clone)]
pub struct ChunkedScanner {
    state: State,
    size: u64,
    digits: u8,
    /// Chunk data bytes scanned so far (the body's content).
    data: u64,
}

impl Default for ChunkedScanner {
    fn default() -> Self {
        ChunkedScanner {
            state: State::Size,
            size: 0,
            digits: 0,
            data: 0,
        }
    }
}

/// Optional whitespace (RFC 9110 §5.6.3).
fn ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// What a quoted string may hold unescaped (RFC 9110 §5.6.4: qdtext).
fn qdtext(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21 | 0x23..=0x5B | 0x5D..=0x7E | 0x80..=0xFF)
}

impl ChunkedScanner {
    /// How many bytes of chunk data (content, without sizes, extensions,
    /// line ends or trailers) the bytes fed so far held.
    pub fn data_bytes(&self) -> u64 {
        self.data
    }

    /// Feed the next bytes of the body. Returns `Some(n)` when the body
    /// ends after the first `n` of them, `None` when it goes on.
    ///
    /// # Errors
    /// A [`ChunkedError`] for bytes that break the chunked framing.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Option<usize>, ChunkedError> {
        use State::*;
        let mut i = 0;
        while i < bytes.len() {
            if self.state == Data {
                let take = usize::try_from(self.size)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len() - i);
                i += take;
                self.size -= take as u64;
                self.data += take as u64;
                if self.size == 0 {
                    self.state = DataCr;
                }
                continue;
            }
            let byte = bytes[i];
            i += 1;
            let tchar = rules::is_tchar(byte);
            self.state = match (self.state, byte) {
                (Size, b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => {
                    let digit = (byte as char).to_digit(16).unwrap_or(0) as u64;
                    self.digits += 1;
                    if self.digits > 15 {
                        return Err(ChunkedError::Overflow);
                    }
                    self.size = self.size * 16 + digit;
                    Size
                }
                (Size, b';') if self.digits > 0 => ExtNameStart,
                (Size, b' ' | b'\t') if self.digits > 0 => SizeBws,
                (Size, b'\r') if self.digits > 0 => SizeLf,
                (Size, _) => return Err(ChunkedError::Size),
                (SizeBws, b';') => ExtNameStart,
                (SizeBws, b) if ws(b) => SizeBws,
                (ExtNameStart, b) if ws(b) => ExtNameStart,
                (ExtNameStart, _) if tchar => ExtName,
                (ExtName, _) if tchar => ExtName,
                (ExtName, b) if ws(b) => ExtNameBws,
                (ExtName | ExtNameBws, b'=') => ExtValueStart,
                (ExtName | ExtNameBws, b';') => ExtNameStart,
                (ExtName, b'\r') => SizeLf,
                (ExtNameBws, b) if ws(b) => ExtNameBws,
                (ExtValueStart, b) if ws(b) => ExtValueStart,
                (ExtValueStart, b'"') => ExtQuoted,
                (ExtValueStart, _) if tchar => ExtToken,
                (ExtToken, _) if tchar => ExtToken,
                (ExtToken | ExtValueEnd, b';') => ExtNameStart,
                (ExtToken | ExtValueEnd, b'\r') => SizeLf,
                (ExtToken | ExtValueEnd, b) if ws(b) => ExtValueBws,
                (ExtQuoted, b'"') => ExtValueEnd,
                (ExtQuoted, b'\\') => ExtQuotedEscape,
                (ExtQuoted, b) if qdtext(b) => ExtQuoted,
                (ExtQuotedEscape, b'\t' | b' ' | 0x21..=0x7E | 0x80..=0xFF) => ExtQuoted,
                (ExtValueBws, b';') => ExtNameStart,
                (ExtValueBws, b) if ws(b) => ExtValueBws,
                (
                    SizeBws | ExtNameStart | ExtName | ExtNameBws | ExtValueStart | ExtToken
                    | ExtQuoted | ExtQuotedEscape | ExtValueEnd | ExtValueBws,
                    _,
                ) => return Err(ChunkedError::Extension),
                (SizeLf, b'\n') if self.size == 0 => TrailerStart,
                (SizeLf, b'\n') => Data,
                (SizeLf, _) => return Err(ChunkedError::Size),
                (DataCr, b'\r') => DataLf,
                (DataLf, b'\n') => {
                    self.digits = 0;
                    Size
                }
                (DataCr | DataLf, _) => return Err(ChunkedError::DataEnd),
                (TrailerStart, b'\r') => FinalLf,
                (TrailerStart | TrailerName, _) if tchar => TrailerName,
                (TrailerName, b':') => TrailerValue,
                (TrailerValue, b'\r') => TrailerLf,
                (TrailerValue, b'\n' | 0) => return Err(ChunkedError::Trailer),
                (TrailerValue, _) => TrailerValue,
                (TrailerLf, b'\n') => TrailerStart,
                (TrailerStart | TrailerName | TrailerLf, _) => {
                    return Err(ChunkedError::Trailer);
                }
                (FinalLf, b'\n') => {
                    self.state = Done;
                    return Ok(Some(i));
                }
                (FinalLf, _) => return Err(ChunkedError::Trailer),
                (Data, _) | (Done, _) => unreachable_state(self.state),
            };
        }
        Ok(None)
    }
}

/// `Data` is handled before the match and `Done` returns: neither reaches
/// it. Kept as a function so the match stays exhaustive without a panic.
fn unreachable_state(state: State) -> State {
    debug_assert!(false, "chunked scanner matched {state:?}");
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scan_whole(body: &[u8]) -> Result<Option<usize>, ChunkedError> {
        ChunkedScanner::default().feed(body)
    }

    #[test]
    fn finds_the_end_of_bodies() {
        assert_eq!(scan_whole(b"0\r\n\r\n"), Ok(Some(5)));
        assert_eq!(scan_whole(b"5\r\nhello\r\n0\r\n\r\nNEXT"), Ok(Some(15)));
        let with_extension = b"5;name=value\r\nhello\r\nA\r\n0123456789\r\n0\r\n\r\n";
        assert_eq!(scan_whole(with_extension), Ok(Some(with_extension.len())));
        let with_trailers = b"3\r\nabc\r\n0\r\nExpires: never\r\nX-A: b\r\n\r\n";
        assert_eq!(scan_whole(with_trailers), Ok(Some(with_trailers.len())));
        assert_eq!(scan_whole(b"5\r\nhel"), Ok(None));
        assert_eq!(scan_whole(b"0\r\n\r"), Ok(None));
    }

    /// Found by the chunked fuzz target (RFC 9112 §7.1, §5).
    #[test]
    fn counts_the_chunk_data() {
        let mut scanner = ChunkedScanner::default();
        let body = b"5;x=1\r\nhello\r\n7\r\n, world\r\n0\r\nt: 1\r\n\r\n";
        for byte in body.chunks(3) {
            let _ = scanner.feed(byte);
        }
        assert_eq!(scanner.data_bytes(), 12);
    }

    #[test]
    fn extensions_and_trailers_follow_the_grammar() {
        for good in [
            &b"5;a\r\nhello\r\n0\r\n\r\n"[..],
            b"5 ;a=b\r\nhello\r\n0\r\n\r\n",
            b"5;a = \"x\\\"y\";b\r\nhello\r\n0\r\n\r\n",
            b"5;a=b ;c\r\nhello\r\n0\r\n\r\n",
            b"0\r\nX-A: 1\r\nX-B:\r\n\r\n",
        ] {
            assert_eq!(
                scan_whole(good),
                Ok(Some(good.len())),
                "{}",
                String::from_utf8_lossy(good)
            );
        }
        for bad in [
            &b"5 \r\nhello\r\n0\r\n\r\n"[..],
            b"5 x\r\nhello\r\n0\r\n\r\n",
            b"5;\r\nhello\r\n0\r\n\r\n",
            b"5;a=\r\nhello\r\n0\r\n\r\n",
            b"5;\x00\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"x\r\nhello\r\n0\r\n\r\n",
        ] {
            assert_eq!(
                scan_whole(bad),
                Err(ChunkedError::Extension),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        for bad in [
            &b"0\r\nX : a\r\n\r\n"[..],
            b"0\r\nX: a\r\n b\r\n\r\n",
            b"0\r\nX: \x00\r\n\r\n",
            b"0\r\nnocolon\r\n\r\n",
            b"0\r\n:\r\n\r\n",
        ] {
            assert_eq!(
                scan_whole(bad),
                Err(ChunkedError::Trailer),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn rejects_broken_framing() {
        assert_eq!(scan_whole(b"x\r\n"), Err(ChunkedError::Size));
        assert_eq!(scan_whole(b"\r\n"), Err(ChunkedError::Size));
        assert_eq!(scan_whole(b"5\nhello"), Err(ChunkedError::Size));
        assert_eq!(scan_whole(b"2\r\nabc"), Err(ChunkedError::DataEnd));
        assert_eq!(
            scan_whole(b"ffffffffffffffff\r\n"),
            Err(ChunkedError::Overflow)
        );
        assert_eq!(scan_whole(b"0\r\nbad\nx"), Err(ChunkedError::Trailer));
    }

    fn encode(chunks: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in chunks.iter().filter(|c| !c.is_empty()) {
            out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            out.extend_from_slice(chunk);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    proptest! {
        /// However a body is split into reads, the end is found exactly.
        #[test]
        fn end_found_across_any_split(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..8),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let mut body = encode(&chunks);
            let len = body.len();
            body.extend_from_slice(b"GET /next HTTP/1.1\r\n");
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(len)).collect();
            points.push(0);
            points.push(body.len());
            points.sort_unstable();
            let mut scanner = ChunkedScanner::default();
            let mut end = None;
            for pair in points.windows(2) {
                if let Some(n) = scanner.feed(&body[pair[0]..pair[1]]).expect("valid body") {
                    end = Some(pair[0] + n);
                    break;
                }
            }
            prop_assert_eq!(end, Some(len));
        }
    }
}
