//! Which replicas a request tries, in order, and what each attempt teaches:
//! the ring's candidates clockwise from the key's owner, less those that the
//! balancing features pass over for now. All are off by default; with all
//! off, the order is exactly the ring's.
//!
//! - **Bounded load** (`hash_balance_factor`, HAProxy's
//!   `hash-balance-factor`, Envoy's `hash_balance_factor`): a replica takes
//!   a request only if its in-flight requests, this one included, stay
//!   within `ceil(factor/100 × (in flight on this data plane + 1) /
//!   replicas)`; otherwise the next distinct replica clockwise is asked.
//! - **Outlier detection** (Envoy's `outlier_detection`: `consecutive_5xx`,
//!   `base_ejection_time`, `max_ejection_percent`): consecutive failures
//!   (connect errors, timeouts, 5xx answers) eject a replica from selection
//!   on this data plane for `base × n` (n = its ejections, at most
//!   [`MAX_EJECTION_MULTIPLIER`]), at most `max_ejection_percent` of the
//!   replicas at once (at least one); no ring rebuild, like pingora's
//!   `select_with`.
//! - **Slow start** (Envoy's `slow_start_window`): a replica that joined
//!   less than `slow_start_ms` ago takes a key it owns only if the key's
//!   position in `[0, 1)` is below the elapsed part of the window, so its
//!   share grows linearly and each key moves over once and stays (keys are
//!   not bounced between replicas as a random draw would).
//!
//! Passed-over replicas stay at the end of the order: balancing never turns
//! a servable request into an error (Envoy's panic threshold in spirit).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use ringlb_ring::RingConfig;

use crate::config::MAX_ATTEMPTS;
use crate::stats::{Stats, UpstreamStats};
use crate::table::RouteTable;

/// The longest ejection, in multiples of the base ejection time (Envoy's
/// `max_ejection_time` is 10 × its default base).
pub const MAX_EJECTION_MULTIPLIER: u32 = 10;

/// The balancing settings of one ring version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Balancing {
    pub hash_balance_factor: u32,
    pub outlier_consecutive_failures: u32,
    pub outlier_base_ejection_ms: u32,
    pub outlier_max_ejection_percent: u32,
    pub slow_start_ms: u32,
}

impl From<&RingConfig> for Balancing {
    fn from(c: &RingConfig) -> Self {
        Balancing {
            hash_balance_factor: c.hash_balance_factor,
            outlier_consecutive_failures: c.outlier_consecutive_failures,
            outlier_base_ejection_ms: c.outlier_base_ejection_ms,
            outlier_max_ejection_percent: c.outlier_max_ejection_percent,
            slow_start_ms: c.slow_start_ms,
        }
    }
}

impl Balancing {
    /// Whether any feature is on (else the ring's order is used as is).
    pub fn active(&self) -> bool {
        self.hash_balance_factor != 0
            || self.outlier_consecutive_failures != 0
            || self.slow_start_ms != 0
    }
}

/// The replicas to try, in order: indices into the table's upstreams.
#[derive(Debug, Default)]
pub(crate) struct Attempts {
    members: [usize; MAX_ATTEMPTS],
    len: usize,
}

impl Attempts {
    fn push(&mut self, member: usize) {
        if self.len < MAX_ATTEMPTS {
            self.members[self.len] = member;
            self.len += 1;
        }
    }

    fn is_full(&self) -> bool {
        self.len == MAX_ATTEMPTS
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.members[..self.len].iter().copied()
    }
}

/// Why a candidate was passed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Skip {
    Ejected,
    SlowStart,
    Bound,
}

fn ejected(u: &UpstreamStats, now: u64) -> bool {
    u.ejected_until_ms.load(Ordering::Relaxed) > now
}

/// A key's position in `[0, 1024)`, well mixed (splitmix64's finalizer), so
/// that slow start admits keys evenly whatever the key source.
fn key_position(key: u64) -> u64 {
    let mut z = key.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) % 1024
}

/// Whether slow start keeps `key` away from a replica that joined at
/// `joined` (ms) with a window of `window` ms, at `now`.
fn ramping_past(joined: u64, window: u32, key: u64, now: u64) -> bool {
    if window == 0 || joined == 0 || joined > now {
        return false;
    }
    let elapsed = now - joined;
    let window = u64::from(window);
    elapsed < window && key_position(key) * window >= elapsed * 1024
}

/// The replicas to try for `key`, in order.
pub(crate) fn attempts(table: &RouteTable, key: u64, stats: &Stats) -> Attempts {
    let mut order = Attempts::default();
    let balancing = &table.balancing;
    if !balancing.active() {
        for member in table.ring.candidates(key).take(MAX_ATTEMPTS) {
            order.push(member);
        }
        return order;
    }
    let now = stats.now_ms();
    let bound = load_bound(table);
    let mut passed_over = Attempts::default();
    let mut owner_skip = None;
    for (i, member) in table.ring.candidates(key).enumerate() {
        let u = &table.upstreams[member].stats;
        let skip = if ejected(u, now) {
            Some(Skip::Ejected)
        } else if ramping_past(
            u.joined_ms.load(Ordering::Relaxed),
            balancing.slow_start_ms,
            key,
            now,
        ) {
            Some(Skip::SlowStart)
        } else if u.in_flight.load(Ordering::Relaxed) + 1 > bound {
            Some(Skip::Bound)
        } else {
            None
        };
        if i == 0 {
            owner_skip = skip;
        }
        match skip {
            None => order.push(member),
            Some(_) => passed_over.push(member),
        }
        if order.is_full() {
            break;
        }
    }
    if order.len > 0 {
        match owner_skip {
            Some(Skip::Bound) => {
                stats.bounded_load_spills.fetch_add(1, Ordering::Relaxed);
            }
            Some(Skip::SlowStart) => {
                stats.slow_start_skips.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
    for member in passed_over.iter() {
        order.push(member);
    }
    order
}

/// The most in-flight requests one replica may have once it takes this
/// request (`u64::MAX` when bounded load is off).
fn load_bound(table: &RouteTable) -> u64 {
    let factor = u64::from(table.balancing.hash_balance_factor);
    let replicas = table.upstreams.len() as u64;
    if factor == 0 || replicas == 0 {
        return u64::MAX;
    }
    let total: u64 = table
        .upstreams
        .iter()
        .map(|u| u.stats.in_flight.load(Ordering::Relaxed))
        .sum();
    ((total + 1) * factor).div_ceil(100 * replicas)
}

/// Outlier detection: learn from one attempt on `member` (`failed`: a
/// connect error, a timeout or a 5xx answer).
pub(crate) fn record(table: &RouteTable, member: usize, failed: bool, stats: &Stats) {
    let balancing = &table.balancing;
    let threshold = balancing.outlier_consecutive_failures;
    if threshold == 0 {
        return;
    }
    let upstream = &table.upstreams[member];
    let u = &upstream.stats;
    let now = stats.now_ms();
    let base = u64::from(balancing.outlier_base_ejection_ms);
    if !failed {
        u.consecutive_failures.store(0, Ordering::Relaxed);
        // Healthy for a base time since its last ejection ended: the next
        // ejection is one step shorter (Envoy lowers the multiplier alike).
        let until = u.ejected_until_ms.load(Ordering::Relaxed);
        if until != 0 && now > until + base {
            let _ = u
                .ejections
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            u.ejected_until_ms.store(0, Ordering::Relaxed);
        }
        return;
    }
    let failures = u.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
    if failures < threshold || ejected(u, now) {
        return;
    }
    let replicas = table.upstreams.len();
    let cap = (replicas * balancing.outlier_max_ejection_percent as usize / 100).max(1);
    let ejected_now = table
        .upstreams
        .iter()
        .filter(|other| ejected(&other.stats, now))
        .count();
    if ejected_now >= cap {
        return;
    }
    let n = (u.ejections.fetch_add(1, Ordering::Relaxed) + 1).min(MAX_EJECTION_MULTIPLIER);
    let duration = base * u64::from(n);
    u.ejected_until_ms.store(now + duration, Ordering::Relaxed);
    u.consecutive_failures.store(0, Ordering::Relaxed);
    stats.ejections.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(
        replica = %upstream.name,
        failures,
        ejection_ms = duration,
        "outlier detection: replica ejected"
    );
}

/// Counts a request in flight on a replica while it lives: from the moment
/// the attempt starts until the response has been forwarded whole (its
/// body relayed to its end, or a protocol-switch tunnel closed), or the
/// attempt failed. Bounded load and the graceful drain read the count
/// (Envoy's "active requests" of a host, which also end with the stream).
#[derive(Debug)]
pub(crate) struct InFlight(Arc<UpstreamStats>);

impl InFlight {
    pub(crate) fn start(u: &Arc<UpstreamStats>) -> InFlight {
        u.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(u.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_start_admits_a_growing_share_of_keys_each_once() {
        let window = 10_000;
        let joined = 1;
        let admitted_at = |now: u64| {
            (0..10_000u64)
                .filter(|&k| !ramping_past(joined, window, k, now))
                .count() as f64
                / 10_000.0
        };
        for (now, share) in [(1, 0.0), (2_501, 0.25), (5_001, 0.5), (7_501, 0.75)] {
            let got = admitted_at(now);
            assert!(
                (got - share).abs() < 0.03,
                "at {now} ms: {got}, expected {share}"
            );
        }
        assert_eq!(admitted_at(joined + u64::from(window)), 1.0, "window over");
        // Monotone: a key admitted once stays admitted.
        for k in 0..2_000u64 {
            let first = (1..=10_001)
                .step_by(100)
                .find(|&now| !ramping_past(joined, window, k, now));
            if let Some(first) = first {
                assert!(
                    (first..=10_001)
                        .step_by(100)
                        .all(|now| !ramping_past(joined, window, k, now)),
                    "key {k} bounced"
                );
            }
        }
        assert!(
            !ramping_past(0, window, 7, 5),
            "in the first ring: never slow"
        );
        assert!(!ramping_past(joined, 0, 7, 5), "off");
    }
}
