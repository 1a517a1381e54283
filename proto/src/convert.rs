//! Conversions between the wire types and the ring crate's types. Names on
//! the wire are the ring registry's names; an unknown one is an error.

use ringlb_ring::{HashFn, KeySource, Probing, RingConfig, RingConfigPatch, RingError, parse_name};

use crate::v1;

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
