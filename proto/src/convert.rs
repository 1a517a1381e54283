//! Conversions between the wire types and the ring crate's types. Names on
//! the wire are the ring registry's names; an unknown one is an error.

use ringlb_ring::{HashFn, KeySource, Probing, RingConfig, RingError};

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
        };
        config.validate()?;
        Ok(config)
    }
}

impl v1::SetRingConfigRequest {
    /// `base` with the fields this request sets replaced, validated.
    pub fn apply_to(&self, base: &RingConfig) -> Result<RingConfig, ConfigError> {
        let mut config = *base;
        if let Some(slots) = self.slots {
            config.slots = slots;
        }
        if let Some(vnodes) = self.vnodes {
            config.vnodes = vnodes;
        }
        if let Some(name) = &self.request_hash {
            config.request_hash = name.parse()?;
        }
        if let Some(name) = &self.vnode_hash {
            config.vnode_hash = name.parse()?;
        }
        if let Some(name) = &self.probing {
            config.probing = name.parse()?;
        }
        if let Some(name) = &self.key_source {
            config.key_source = name.parse()?;
        }
        config.validate()?;
        Ok(config)
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
        let changed = change.apply_to(&spec).expect("valid change");
        assert_eq!(changed.vnodes, 64);
        assert_eq!(changed.request_hash, HashFn::Xxh3);
        assert_eq!(changed.vnode_hash, HashFn::Spec);

        let bad = v1::SetRingConfigRequest {
            probing: Some("cubic".into()),
            ..Default::default()
        };
        assert_eq!(
            bad.apply_to(&spec).unwrap_err().to_string(),
            "unknown probing rule 'cubic' (known: linear, quadratic, shared)"
        );
        let zero = v1::SetRingConfigRequest {
            slots: Some(0),
            ..Default::default()
        };
        assert!(zero.apply_to(&spec).is_err());
    }
}
