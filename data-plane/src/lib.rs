//! The data plane of ringlb: a consistent-hashing HTTP proxy.
//!
//! It subscribes to the control plane's ring stream over gRPC
//! (`subscriber`; one of several control planes at a time), compiles every
//! snapshot into a routing table swapped in atomically (`table`), and serves
//! clients with one of two engines:
//!
//! - **fast** (the default): the data plane's own HTTP/1.1 engine, which
//!   forwards a request straight from its read buffer to a pooled replica
//!   connection and the response back the same way, and hands the rare
//!   connections it does not handle itself (HTTP/1.0, HTTP/2, chunked
//!   uploads, upgrades, `Expect`) to hyper;
//! - **hyper**: hyper for every connection.
//!
//! Both run one request path, the driver: it derives the request's key
//! ([`key`]), looks its owner up in the current table (one atomic load, one
//! hash, one array index), and walks the ring on failure, with one policy
//! for retries, timeouts and answers whichever engine performs the
//! attempts. Both apply the same HTTP/1.1 rules (RFC 9110, RFC 9112), kept
//! in one module.
//!
//! Source layout: `config` (every limit and default), `server` (accept,
//! connection limit, drain; one runtime, or a worker per `SO_REUSEPORT`
//! listener), `subscriber` (the ring stream: several control planes, order
//! by epoch and version), `driver` (the policy), `error` (why an attempt
//! failed), `rules` (the RFC rules), `pool` (connections to upstreams),
//! `engine::fast` (heads, framing, relay, connection loop) and
//! `engine::hyper`.
//!
//! # Embedding
//!
//! ```no_run
//! # async fn embed() -> Result<(), Box<dyn std::error::Error>> {
//! let data_plane = ringlb_data_plane::DataPlane::builder()
//!     .control_plane_grpc("http://127.0.0.1:50051")
//!     .control_plane_http("127.0.0.1:5100")
//!     .build()?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:5000").await?;
//! data_plane.run(listener, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod access_log;
pub mod auth;
mod balance;
pub mod busy_poll;
mod completion;
pub mod config;
mod drain;
mod driver;
mod engine;
mod error;
pub mod key;
mod pool;
mod report;
mod rules;
pub mod server;
pub mod stats;
mod subscriber;
mod table;

pub use config::{Engine, Limits};
pub use error::{AttemptError, Retry, Side};
pub use server::{BuildError, DataPlane, DataPlaneBuilder};

/// The fast engine's parsers, for the fuzz targets (`fuzz/`) and the
/// differential checks only: not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::driver::Refusal;
    pub use crate::engine::fast::chunked::{ChunkedError, ChunkedScanner};
    pub use crate::engine::fast::request::{
        HandOver, Parsed, RequestHead, parse as parse_request, rebuild as rebuild_request,
    };
    pub use crate::engine::fast::response::{
        Framing, ResponseError, ResponseHead, parse as parse_response, rebuild as rebuild_response,
    };
}
