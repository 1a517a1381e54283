//! Conversions between the wire types and the ring crate's types. Names on
//! the wire are the ring registry's names; an unknown one is an error.

use ringlb_ring::{HashFn, KeySource, Probing, RingConfig, RingConfigPatch, RingError, parse_name};

use crate::v1;

/// Where a ring snapshot stands among every snapshot a data plane may be
/// offered, by any control plane: ordered by `epoch` first (a control
/// plane's lifetime: its start time in Unix milliseconds, raised above what
/// its subscribers report), then by `version` within the epoch. Derived
/// `Ord` compares the fields in this order. `RingVersion::default()` (0.0)
/// is older than every snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RingVersion {
    /// [`v1::RingSnapshot::epoch`].
    pub epoch: u64,
    /// [`v1::RingSnapshot::version`].
    pub version: u64,
}

impl std::fmt::Display for RingVersion {
    /// `version <version> (epoch <epoch>)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "version {} (epoch {})", self.version, self.epoch)
    }
}

impl v1::RingSnapshot {
    /// The snapshot's place in the order of rings ([`RingVersion`]).
    pub fn ring_version(&self) -> RingVersion {
        RingVersion {
            epoch: self.epoch,
            version: self.version,
        }
    }
}

/// A ring configuration on the wire that does not describe a valid ring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(transparent)]
pub struct ConfigError(#[from] pub RingError);

impl From<&RingConfig> for v1::RingConfig {
    fn from(c: &RingConfig) -> Self {
        v1::RingConfig {
            slots: c.slots,
            vnodes: c.vnodes,
            request_hash: c.request_hash.name().to_owned(),
            vnode_hash: c.vnode_hash.name().to_owned(),
            probing: c.probing.name().to_owned(),
            key_source: c.key_source.name().to_owned(),
            hash_balance_factor: c.hash_balance_factor,
            outlier_consecutive_failures: c.outlier_consecutive_failures,
            outlier_base_ejection_ms: c.outlier_base_ejection_ms,
            outlier_max_ejection_percent: c.outlier_max_ejection_percent,
            slow_start_ms: c.slow_start_ms,
        }
    }
}

impl TryFrom<&v1::RingConfig> for RingConfig {
    type Error = ConfigError;

    fn try_from(c: &v1::RingConfig) -> Result<Self, ConfigError> {
        let config = RingConfig {
            slots: c.slots,
            vnodes: c.vnodes,
            request_hash: c.request_hash.parse::<HashFn>()?,
            vnode_hash: c.vnode_hash.parse::<HashFn>()?,
            probing: c.probing.parse::<Probing>()?,
            key_source: c.key_source.parse::<KeySource>()?,
            hash_balance_factor: c.hash_balance_factor,
            outlier_consecutive_failures: c.outlier_consecutive_failures,
            // 0: sent by a control plane from before outlier detection.
            outlier_base_ejection_ms: match c.outlier_base_ejection_ms {
                0 => RingConfig::default().outlier_base_ejection_ms,
                ms => ms,
            },
            outlier_max_ejection_percent: c.outlier_max_ejection_percent,
            slow_start_ms: c.slow_start_ms,
        };
        config.validate()?;
        Ok(config)
    }
}

impl TryFrom<&v1::SetRingConfigRequest> for RingConfigPatch {
    type Error = ConfigError;

    /// The change a request asks for (names parsed; the result is validated
    /// when the patch is applied).
    fn try_from(r: &v1::SetRingConfigRequest) -> Result<Self, ConfigError> {
        Ok(RingConfigPatch {
            slots: r.slots,
            vnodes: r.vnodes,
            request_hash: parse_name(r.request_hash.as_deref())?,
            vnode_hash: parse_name(r.vnode_hash.as_deref())?,
            probing: parse_name(r.probing.as_deref())?,
            key_source: parse_name(r.key_source.as_deref())?,
            hash_balance_factor: r.hash_balance_factor,
            outlier_consecutive_failures: r.outlier_consecutive_failures,
            outlier_base_ejection_ms: r.outlier_base_ejection_ms,
            outlier_max_ejection_percent: r.outlier_max_ejection_percent,
            slow_start_ms: r.slow_start_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(epoch: u64, version: u64) -> RingVersion {
        RingVersion { epoch, version }
    }

    /// The epoch decides first, the version within an epoch: a restarted
    /// control plane's version 1 under a higher epoch is newer than
    /// version 10 before it; a lower version or an older epoch is older.
    #[test]
    fn ring_versions_order_by_epoch_then_version() {
        let seen = at(1_000, 10);
        assert!(at(1_000, 3) < seen);
        assert!(at(999, 50) < seen, "an older epoch, whatever its version");
        assert!(at(0, 10) < seen, "no epoch is the oldest");
        assert!(at(1_001, 1) > seen, "a newer epoch from version 1");
        assert!(at(1_000, 11) > seen);
        assert_eq!(at(1_000, 10), seen);
        assert!(RingVersion::default() < at(0, 1));
        let snapshot = v1::RingSnapshot {
            epoch: 7,
            version: 2,
            ..Default::default()
        };
        assert_eq!(snapshot.ring_version(), at(7, 2));
        assert_eq!(seen.to_string(), "version 10 (epoch 1000)");
    }

    #[test]
    fn round_trip_and_partial_updates() {
        let spec = RingConfig::default();
        let wire = v1::RingConfig::from(&spec);
        assert_eq!(wire.request_hash, "spec");
        assert_eq!(RingConfig::try_from(&wire), Ok(spec));

        let change = v1::SetRingConfigRequest {
            vnodes: Some(64),
            request_hash: Some("xxh3".into()),
            ..Default::default()
        };
        let patch = RingConfigPatch::try_from(&change).expect("known names");
        let changed = patch.apply_to(&spec).expect("valid change");
        assert_eq!(changed.vnodes, 64);
        assert_eq!(changed.request_hash, HashFn::Xxh3);
        assert_eq!(changed.vnode_hash, HashFn::Spec);

        let bad = v1::SetRingConfigRequest {
            probing: Some("cubic".into()),
            ..Default::default()
        };
        assert_eq!(
            RingConfigPatch::try_from(&bad).unwrap_err().to_string(),
            "unknown probing rule 'cubic' (known: linear, quadratic, shared)"
        );
        let zero = v1::SetRingConfigRequest {
            slots: Some(0),
            ..Default::default()
        };
        let zero = RingConfigPatch::try_from(&zero).expect("no names");
        assert!(zero.apply_to(&spec).is_err());
    }
}
