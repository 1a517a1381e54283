//! The control plane's epoch: what orders its ring versions after those of
//! an earlier control plane (or of another one a data plane followed
//! before).
//!
//! Versions count from 1 in every control-plane lifetime, so a data plane
//! orders snapshots by (epoch, version) ([`ringlb_proto::RingVersion`]). The
//! epoch starts as the wall-clock time of the start, in milliseconds since
//! the Unix epoch: a restart normally gets a higher one without any state
//! kept on disk. Wall clocks can go backwards (an NTP step, a host whose
//! clock is behind, a container moved to another node), so the clock alone
//! is not enough; the data planes carry the order across restarts instead:
//! each reports the epoch of the ring it serves when it subscribes
//! (`WatchRingRequest.epoch`), and a control plane whose epoch is lower
//! raises its own just above it, like a Lamport clock, before its first
//! snapshot goes out. A control plane therefore never offers a data plane
//! that subscribes to it a ring ordered before the one it holds, whatever
//! the clocks say. The epoch only grows while the control plane runs, so
//! (epoch, version) grows along every stream.
//!
//! Left open: two control planes started in the same millisecond share an
//! epoch (their versions then compare as if one lifetime); a data plane
//! that meets an older ring anyway refuses it for a bounded time only (the
//! data plane's subscriber says how).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The furthest ahead of this control plane's clock a reported epoch may
/// be and still raise ours. The report comes from whoever opens a
/// `WatchRing`: without a bound, one call with an epoch near `u64::MAX`
/// would pin every later control plane to an epoch that can no longer grow,
/// and data planes would refuse their rings. A day covers any real clock
/// skew between hosts; a report beyond it is ignored (logged).
pub const MAX_EPOCH_AHEAD: Duration = Duration::from_secs(24 * 60 * 60);

fn clock_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The epoch of this control plane; only grows.
#[derive(Debug)]
pub struct Epoch(AtomicU64);

impl Epoch {
    /// The epoch of a control plane starting now: the wall clock in Unix
    /// milliseconds (at least 1, so that it orders after "no epoch", 0,
    /// even on a clock set before 1970).
    pub fn from_clock() -> Epoch {
        Epoch::starting_at(clock_millis())
    }

    /// An epoch starting at `epoch` (at least 1).
    pub fn starting_at(epoch: u64) -> Epoch {
        Epoch(AtomicU64::new(epoch.max(1)))
    }

    /// The epoch in force.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// A subscriber serves a ring of epoch `seen`: if that is higher than
    /// ours, raise ours to `seen + 1`. An equal epoch is ours (a data plane
    /// reconnecting) and changes nothing; one more than [`MAX_EPOCH_AHEAD`]
    /// ahead of the clock is ignored. Returns the epoch in force after it.
    pub fn raise_above(&self, seen: u64) -> u64 {
        self.raise_above_at(seen, clock_millis())
    }

    /// [`raise_above`](Self::raise_above) with the clock at `now` (Unix
    /// milliseconds).
    pub fn raise_above_at(&self, seen: u64, now: u64) -> u64 {
        let ahead = u64::try_from(MAX_EPOCH_AHEAD.as_millis()).unwrap_or(u64::MAX);
        if seen > now.saturating_add(ahead) {
            let ours = self.get();
            tracing::warn!(
                reported = seen,
                ours,
                "a subscriber reported an epoch more than a day ahead of this clock; ignored"
            );
            return ours;
        }
        let wanted = seen.saturating_add(1);
        let before = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |ours| {
                (seen > ours && wanted > ours).then_some(wanted)
            });
        match before {
            Ok(ours) => {
                tracing::warn!(
                    from = ours,
                    to = wanted,
                    "a data plane serves a ring of a later epoch (a clock went backwards, or \
                     another control plane started later): epoch raised above it"
                );
                wanted
            }
            Err(ours) => ours,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_from_the_clock_and_only_grows_past_later_epochs() {
        let clock = Epoch::from_clock();
        // 2020-01-01 in Unix milliseconds: the clock is read in ms.
        assert!(clock.get() > 1_577_836_800_000, "{}", clock.get());

        let epoch = Epoch::starting_at(1_000);
        assert_eq!(epoch.raise_above(0), 1_000, "no epoch: unchanged");
        assert_eq!(epoch.raise_above(999), 1_000, "older: unchanged");
        assert_eq!(epoch.raise_above(1_000), 1_000, "ours: unchanged");
        assert_eq!(epoch.raise_above(5_000), 5_001, "later: raised above it");
        assert_eq!(epoch.get(), 5_001);
        assert_eq!(epoch.raise_above(2_000), 5_001, "never lowered");
        let now = 10_000;
        assert_eq!(
            epoch.raise_above_at(u64::MAX, now),
            5_001,
            "an epoch far in the future is ignored, not saturated into"
        );
        let day = u64::try_from(MAX_EPOCH_AHEAD.as_millis()).expect("fits");
        assert_eq!(epoch.raise_above_at(now + day, now), now + day + 1);
        assert_eq!(epoch.raise_above_at(now + day + 2, now), now + day + 1);
        assert_eq!(Epoch::starting_at(0).get(), 1, "0 is kept for 'none'");
    }
}
