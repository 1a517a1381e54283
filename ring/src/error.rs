use crate::{MAX_SLOTS, MAX_VNODES, MIN_HASH_BALANCE_FACTOR};

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
    #[error("{}", ring_full(*replicas, *weight, *vnodes, *slots, *probing))]
    RingFull {
        replicas: usize,
        weight: u64,
        vnodes: u32,
        slots: u32,
        probing: crate::Probing,
    },
    #[error("replica id {0} appears more than once")]
    DuplicateId(u64),
    #[error("hash_balance_factor = {0} must be 0 (off) or at least {MIN_HASH_BALANCE_FACTOR}")]
    HashBalanceFactor(u32),
    #[error("outlier_base_ejection_ms must be at least 1")]
    ZeroEjectionTime,
    #[error("outlier_max_ejection_percent = {0} is more than 100")]
    EjectionPercent(u32),
    #[error("replica {id} has weight 0; weights are at least 1")]
    ZeroWeight { id: u64 },
    #[error("{ids} replica ids but {weights} weights")]
    WeightCount { ids: usize, weights: usize },
}

fn ring_full(
    replicas: usize,
    weight: u64,
    vnodes: u32,
    slots: u32,
    probing: crate::Probing,
) -> String {
    let weighted = if weight == replicas as u64 {
        String::new()
    } else {
        format!(" (total weight {weight})")
    };
    format!(
        "{replicas} replicas{weighted} x {vnodes} virtual nodes do not fit in {slots} slots with {probing} probing"
    )
}
