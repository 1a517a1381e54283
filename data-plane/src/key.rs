//! The request key: where a request lands on the ring.

use std::net::IpAddr;

use ringlb_ring::{KeySource, key_of_bytes};

/// The spec's request ids are 6-digit numbers.
const RANDOM_IDS: std::ops::RangeInclusive<u64> = 100_000..=999_999;

/// The header a client uses to pick its own request id.
pub const REQUEST_ID: &str = "x-request-id";

/// The key of a request for `path` with the `X-Request-ID` value
/// `request_id`, from `client`, under `source`.
#[inline]
pub fn key_of(source: KeySource, path: &str, request_id: Option<&[u8]>, client: IpAddr) -> u64 {
    match source {
        KeySource::RequestId => match request_id {
            Some(value) => id_of(value),
            None => fastrand::u64(RANDOM_IDS),
        },
        KeySource::Random => fastrand::u64(RANDOM_IDS),
        KeySource::ClientIp => match client {
            IpAddr::V4(v4) => key_of_bytes(&v4.octets()),
            IpAddr::V6(v6) => key_of_bytes(&v6.octets()),
        },
        KeySource::Path => key_of_bytes(path.as_bytes()),
    }
}

/// An `X-Request-ID` value: its integer value when it is one, else a stable
/// hash of its bytes (so a non-numeric id is still sticky).
fn id_of(value: &[u8]) -> u64 {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or_else(|| key_of_bytes(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_by_source() {
        let ip: IpAddr = [10, 0, 0, 1].into();
        let key = |source, path, id: Option<&str>| key_of(source, path, id.map(str::as_bytes), ip);
        assert_eq!(key(KeySource::RequestId, "/home", Some("123456")), 123_456);
        assert_eq!(key(KeySource::RequestId, "/home", Some(" 42 ")), 42);
        assert_eq!(
            key(KeySource::RequestId, "/home", Some("abc")),
            key_of_bytes(b"abc")
        );
        for _ in 0..1000 {
            assert!(RANDOM_IDS.contains(&key(KeySource::RequestId, "/home", None)));
            assert!(RANDOM_IDS.contains(&key(KeySource::Random, "/home", Some("7"))));
        }
        assert_eq!(
            key(KeySource::ClientIp, "/a", None),
            key_of_bytes(&[10, 0, 0, 1])
        );
        assert_eq!(key(KeySource::Path, "/a", None), key_of_bytes(b"/a"));
    }
}
