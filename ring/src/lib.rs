//! The consistent hash ring of ringlb.
//!
//! Pure code: no async, no I/O, no global state. Both planes build the same
//! [`Ring`] from the same [`RingConfig`] and the same replica ids, so the data
//! plane never has to ask the control plane where a key goes.
//!
//! A ring is compiled into a flat table `slot -> replica`, so routing a
//! request is one hash and one array index ([`Ring::lookup`]): no lock, no
//! allocation. [`Ring::candidates`] walks the ring clockwise from a key's slot
//! and yields distinct replicas, for failover.
//!
//! Every tunable is picked by name from a small registry ([`HashFn`],
//! [`Probing`], [`KeySource`]) so a flag, a config file or the control plane's
//! API can choose it; unknown names and impossible configurations are
//! [`RingError`]s, never panics.
#![forbid(unsafe_code)]

mod config;
mod error;
mod hash;
mod named;
mod ring;

pub use config::{
    DEFAULT_OUTLIER_BASE_EJECTION_MS, DEFAULT_OUTLIER_MAX_EJECTION_PERCENT, DEFAULT_SLOTS,
    DEFAULT_VNODES, KeySource, MAX_SLOTS, MAX_VNODES, MIN_HASH_BALANCE_FACTOR, Probing, RingConfig,
    RingConfigPatch, parse_name,
};
pub use error::RingError;
pub use hash::{HashFn, key_of_bytes};
pub use ring::{Candidates, Ring, VirtualNode};
