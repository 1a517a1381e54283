use crate::{MAX_SLOTS, MAX_VNODES};

/// Everything that can be wrong with a ring configuration or membership.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    #[error("unknown {kind} '{name}' (known: {known})")]
    UnknownName {
        kind: &'static str,
        name: String,
        known: String,
    },
    #[error("slots (M) must be at least 1")]
    ZeroSlots,
    #[error("slots (M) = {0} is more than the maximum of {MAX_SLOTS}")]
    TooManySlots(u64),
    #[error("virtual nodes per replica (K) must be at least 1")]
    ZeroVnodes,
    #[error("virtual nodes per replica (K) = {0} is more than the maximum of {MAX_VNODES}")]
    TooManyVnodes(u64),
    #[error("virtual nodes per replica (K) = {vnodes} is more than the {slots} slots (M)")]
    VnodesExceedSlots { vnodes: u32, slots: u32 },
    #[error(
        "{replicas} replicas x {vnodes} virtual nodes do not fit in {slots} slots with {probing} probing"
    )]
    RingFull {
        replicas: usize,
        vnodes: u32,
        slots: u32,
        probing: crate::Probing,
    },
    #[error("replica id {0} appears more than once")]
    DuplicateId(u64),
}
