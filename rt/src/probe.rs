//! `--probe URL`: the binaries' own health check for `FROM scratch` images
//! (no curl or wget there), as Docker's `HEALTHCHECK` and Compose's
//! `healthcheck` run it: GET the URL, succeed on a 2xx within the timeout.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// How long a probe may take by default.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("'{url}' is not an http:// URL")]
    Url {
        url: String,
        #[source]
        source: Option<http::uri::InvalidUri>,
    },
    #[error("cannot start the probe's runtime")]
    Runtime(#[source] std::io::Error),
    #[error("no answer from {url}")]
    Request {
        url: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("no answer from {url} within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("{url} answered {status}")]
    Status {
        url: String,
        status: http::StatusCode,
    },
}

/// GET `url` (plain `http://`) and succeed on a 2xx within `timeout`. Runs
/// its own current-thread runtime: call it before starting any other.
///
/// # Errors
/// A [`ProbeError`] saying why the probe failed.
pub fn probe(url: &str, timeout: Duration) -> Result<(), ProbeError> {
    let uri: http::Uri = url.parse().map_err(|e| ProbeError::Url {
        url: url.to_owned(),
        source: Some(e),
    })?;
    if uri.scheme_str() != Some("http") {
        return Err(ProbeError::Url {
            url: url.to_owned(),
            source: None,
        });
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ProbeError::Runtime)?;
    runtime.block_on(async {
        let client: Client<HttpConnector, Empty<Bytes>> =
            Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        match tokio::time::timeout(timeout, client.get(uri)).await {
            Err(_) => Err(ProbeError::Timeout {
                url: url.to_owned(),
                timeout,
            }),
            Ok(Err(source)) => Err(ProbeError::Request {
                url: url.to_owned(),
                source,
            }),
            Ok(Ok(response)) if response.status().is_success() => Ok(()),
            Ok(Ok(response)) => Err(ProbeError::Status {
                url: url.to_owned(),
                status: response.status(),
            }),
        }
    })
}

/// Run [`probe`] for a binary's `--probe URL` and turn it into the exit
/// status Docker expects (0 healthy, 1 not), saying why on stderr.
pub fn probe_exit(url: &str) -> i32 {
    match probe(url, PROBE_TIMEOUT) {
        Ok(()) => 0,
        Err(e) => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            eprintln!("probe failed: {text}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_it_cannot_probe() {
        assert!(matches!(
            probe("https://example.invalid/", PROBE_TIMEOUT),
            Err(ProbeError::Url { .. })
        ));
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        assert!(matches!(
            probe(&format!("http://{closed}/healthz"), PROBE_TIMEOUT),
            Err(ProbeError::Request { .. })
        ));
    }
}
