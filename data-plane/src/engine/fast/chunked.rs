//! Finds where a chunked message body ends (RFC 9112 §7.1) without decoding
//! it: the proxy forwards chunked bytes as they are and only needs to know
//! when the message is over, so that the connection can carry the next one.

/// A chunked body that cannot be framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkedError {
    #[error("invalid chunk size line")]
    Size,
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
    /// Chunk extensions or whitespace after the size, up to CR.
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final CRLF).
    TrailerStart,
    TrailerLine,
    TrailerLf,
    FinalLf,
    Done,
}

/// Scans a chunked body fed in pieces.
#[derive(Debug, Clone)]
pub struct ChunkedScanner {
    state: State,
    size: u64,
    digits: u8,
}

impl Default for ChunkedScanner {
    fn default() -> Self {
        ChunkedScanner {
            state: State::Size,
            size: 0,
            digits: 0,
        }
    }
}

impl ChunkedScanner {
    /// Feed the next bytes of the body. Returns `Some(n)` when the body
    /// ends after the first `n` of them, `None` when it goes on.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Option<usize>, ChunkedError> {
        let mut i = 0;
        while i < bytes.len() {
            if self.state == State::Data {
                let take = usize::try_from(self.size)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len() - i);
                i += take;
                self.size -= take as u64;
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            let byte = bytes[i];
            i += 1;
            self.state = match (self.state, byte) {
                (State::Size, b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => {
                    let digit = (byte as char).to_digit(16).unwrap_or(0) as u64;
                    self.digits += 1;
                    if self.digits > 15 {
                        return Err(ChunkedError::Overflow);
                    }
                    self.size = self.size * 16 + digit;
                    State::Size
                }
                (State::Size, b';' | b' ' | b'\t') if self.digits > 0 => State::Extension,
                (State::Size, b'\r') if self.digits > 0 => State::SizeLf,
                (State::Size, _) => return Err(ChunkedError::Size),
                (State::Extension, b'\r') => State::SizeLf,
                (State::Extension, b'\n') => return Err(ChunkedError::Size),
                (State::Extension, _) => State::Extension,
                (State::SizeLf, b'\n') if self.size == 0 => State::TrailerStart,
                (State::SizeLf, b'\n') => State::Data,
                (State::SizeLf, _) => return Err(ChunkedError::Size),
                (State::DataCr, b'\r') => State::DataLf,
                (State::DataLf, b'\n') => {
                    self.digits = 0;
                    State::Size
                }
                (State::DataCr | State::DataLf, _) => return Err(ChunkedError::DataEnd),
                (State::TrailerStart, b'\r') => State::FinalLf,
                (State::TrailerLine, b'\r') => State::TrailerLf,
                (State::TrailerStart | State::TrailerLine, b'\n') => {
                    return Err(ChunkedError::Trailer);
                }
                (State::TrailerStart | State::TrailerLine, _) => State::TrailerLine,
                (State::TrailerLf, b'\n') => State::TrailerStart,
                (State::TrailerLf, _) => return Err(ChunkedError::Trailer),
                (State::FinalLf, b'\n') => {
                    self.state = State::Done;
                    return Ok(Some(i));
                }
                (State::FinalLf, _) => return Err(ChunkedError::Trailer),
                (State::Data, _) | (State::Done, _) => unreachable_state(self.state),
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
