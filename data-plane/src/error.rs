//! Why one attempt (one request sent to one upstream) failed: which side
//! failed and whether the request may be sent again elsewhere. Modelled on
//! pingora-error's `ErrorSource` and `RetryType`: the engines only say what
//! happened, and the driver ([`crate::driver`]) alone decides what follows.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::time::Duration;

use http::uri::Authority;

/// A cause of any kind, kept as the error's source.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// Where an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client (it went away while the data plane wrote to it).
    Client,
    /// The replica or the control plane the request was sent to.
    Upstream,
    /// The data plane itself (e.g. out of file descriptors).
    DataPlane,
}

/// Whether the request may be sent to another replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The upstream cannot have acted on the request: always.
    Safe,
    /// The upstream may have acted on it: only if the method is idempotent
    /// (RFC 9110 §9.2.2).
    IfIdempotent,
    /// The upstream answered, or the client is gone: never.
    Never,
}

/// Why one attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    /// No TCP connection could be made.
    #[error("cannot connect to {authority}")]
    Connect {
        authority: Authority,
        #[source]
        source: io::Error,
    },
    /// No TCP connection within the connect timeout.
    #[error("no connection to {authority} within {within:?}")]
    ConnectTimeout {
        authority: Authority,
        within: Duration,
    },
    /// The request was not sent whole: the upstream cannot act on it.
    #[error("request to {authority} not sent")]
    NotSent {
        authority: Authority,
        #[source]
        source: BoxError,
    },
    /// The request was sent and the connection ended (or failed) before a
    /// response head came back.
    #[error("{authority} closed the connection without answering")]
    NoResponse {
        authority: Authority,
        #[source]
        source: Option<BoxError>,
    },
    /// No response head within the upstream timeout.
    #[error("{authority} did not answer within {after:?}")]
    Timeout {
        authority: Authority,
        after: Duration,
    },
    /// The upstream answered with something that is not a response the data
    /// plane may forward (RFC 9112 framing, limits).
    #[error("invalid response from {authority}")]
    InvalidResponse {
        authority: Authority,
        #[source]
        source: BoxError,
    },
    /// Writing an interim (1xx) response to the client failed.
    #[error("the client connection failed")]
    Client {
        #[source]
        source: io::Error,
    },
}

impl AttemptError {
    /// Which side failed.
    pub fn side(&self) -> Side {
        match self {
            AttemptError::Client { .. } => Side::Client,
            AttemptError::Connect { source, .. } if local_resource(source) => Side::DataPlane,
            _ => Side::Upstream,
        }
    }

    /// Whether the request may be sent again, elsewhere.
    pub fn retry(&self) -> Retry {
        match self {
            AttemptError::Connect { .. }
            | AttemptError::ConnectTimeout { .. }
            | AttemptError::NotSent { .. } => Retry::Safe,
            AttemptError::NoResponse { .. } | AttemptError::Timeout { .. } => Retry::IfIdempotent,
            AttemptError::InvalidResponse { .. } | AttemptError::Client { .. } => Retry::Never,
        }
    }

    /// Whether a request (idempotent or not) may go to the next replica.
    pub fn retryable(&self, idempotent: bool) -> bool {
        match self.retry() {
            Retry::Safe => true,
            Retry::IfIdempotent => idempotent,
            Retry::Never => false,
        }
    }
}

/// Errors that say the data plane ran out of something, not the upstream.
fn local_resource(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::EADDRNOTAVAIL | libc::ENOBUFS)
    )
}

/// An error and its causes, `: `-separated (for messages and logs, where
/// the chain would otherwise be lost).
pub struct Chain<'e>(pub &'e (dyn StdError + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authority() -> Authority {
        Authority::from_static("127.0.0.1:1")
    }

    #[test]
    fn retry_follows_what_the_upstream_may_have_seen() {
        let refused = AttemptError::Connect {
            authority: authority(),
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        assert_eq!(
            (refused.side(), refused.retry()),
            (Side::Upstream, Retry::Safe)
        );
        assert!(refused.retryable(false));
        let closed = AttemptError::NoResponse {
            authority: authority(),
            source: None,
        };
        assert!(closed.retryable(true) && !closed.retryable(false));
        let invalid = AttemptError::InvalidResponse {
            authority: authority(),
            source: "bad".into(),
        };
        assert!(!invalid.retryable(true));
        let fds = AttemptError::Connect {
            authority: authority(),
            source: io::Error::from_raw_os_error(libc::EMFILE),
        };
        assert_eq!(fds.side(), Side::DataPlane);
        let client = AttemptError::Client {
            source: io::Error::from(io::ErrorKind::BrokenPipe),
        };
        assert_eq!(
            (client.side(), client.retry()),
            (Side::Client, Retry::Never)
        );
    }

    #[test]
    fn chains_keep_every_cause() {
        let e = AttemptError::InvalidResponse {
            authority: authority(),
            source: "invalid Content-Length".into(),
        };
        assert_eq!(
            Chain(&e).to_string(),
            "invalid response from 127.0.0.1:1: invalid Content-Length"
        );
    }
}
