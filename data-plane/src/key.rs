//! The request key: where a request lands on the ring.

use std::net::IpAddr;

use http::request::Parts;
use ringlb_ring::{KeySource, key_of_bytes};

/// The spec's request ids are 6-digit numbers.
const RANDOM_IDS: std::ops::RangeInclusive<u64> = 100_000..=999_999;

/// The header a client uses to pick its own request id.
pub const REQUEST_ID: &str = "x-request-id";

/// The key of a request under `source`.
#[inline]
pub fn request_key(source: KeySource, parts: &Parts, client: IpAddr) -> u64 {
    let request_id = match source {
        KeySource::RequestId => parts.headers.get(REQUEST_ID).map(|v| v.as_bytes()),
        _ => None,
    };
    key_of(source, parts.uri.path(), request_id, client)
}

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

    fn parts(path: &str, id: Option<&str>) -> Parts {
        let mut builder = http::Request::get(path);
        if let Some(id) = id {
            builder = builder.header(REQUEST_ID, id);
        }
        builder.body(()).expect("request").into_parts().0
    }

    #[test]
    fn keys_by_source() {
        let ip: IpAddr = [10, 0, 0, 1].into();
        assert_eq!(
            request_key(KeySource::RequestId, &parts("/home", Some("123456")), ip),
            123_456
        );
        assert_eq!(
            request_key(KeySource::RequestId, &parts("/home", Some(" 42 ")), ip),
            42
        );
        let named = request_key(KeySource::RequestId, &parts("/home", Some("abc")), ip);
        assert_eq!(named, key_of_bytes(b"abc"));
        for _ in 0..1000 {
            let k = request_key(KeySource::RequestId, &parts("/home", None), ip);
            assert!(RANDOM_IDS.contains(&k));
            let k = request_key(KeySource::Random, &parts("/home", Some("7")), ip);
            assert!(RANDOM_IDS.contains(&k));
        }
        assert_eq!(
            request_key(KeySource::ClientIp, &parts("/a", None), ip),
            key_of_bytes(&[10, 0, 0, 1])
        );
        assert_eq!(
            request_key(KeySource::Path, &parts("/a?x=1", None), ip),
            key_of_bytes(b"/a")
        );
    }
}
