//! The JSON contract of ringlb's HTTP side, shared by the replica, the data
//! plane and the control plane so that every byte matches SPEC.md.
//!
//! - [`json`]: serialisation with the spec's separators (`": "`, `", "`),
//!   key order as declared.
//! - [`reply`]: the `{"message": …, "status": "successful" | "failure"}` envelope.
//! - [`admin`]: parsing and validating `/add` and `/rm` bodies.
#![forbid(unsafe_code)]

pub mod admin;
pub mod json;
pub mod reply;

pub use reply::{failure, success};

/// The media type of every JSON response.
pub const APPLICATION_JSON: &str = "application/json";
