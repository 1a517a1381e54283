//! The two ways to serve a client connection ([`crate::Engine`]); both
//! hand each request to the driver ([`crate::driver`]).

pub(crate) mod fast;
pub(crate) mod hyper;
