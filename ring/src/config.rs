//! Ring configuration: everything the spec calls "configuration, not code
//! edits" — M, K, both hash functions, the probing rule and the request key.

use serde::{Deserialize, Serialize};

use crate::named::named_enum;
use crate::{HashFn, RingError};

/// Slots on the ring by default (the assignment's M).
pub const DEFAULT_SLOTS: u32 = 512;
/// Virtual nodes per replica by default (the assignment's K = log2 M).
pub const DEFAULT_VNODES: u32 = 9;
/// The largest M accepted: the lookup table costs 8 bytes a slot, so this caps
/// one ring at 32 MiB.
pub const MAX_SLOTS: u32 = 1 << 22;
/// The largest K accepted.
pub const MAX_VNODES: u32 = 4096;
/// The smallest non-zero `hash_balance_factor` (a bound below the average
/// load could never be met by every replica).
pub const MIN_HASH_BALANCE_FACTOR: u32 = 100;
/// Outlier detection's base ejection time by default, in milliseconds
/// (Envoy's `base_ejection_time` default, 30 s).
pub const DEFAULT_OUTLIER_BASE_EJECTION_MS: u32 = 30_000;
/// Outlier detection's cap on the share of replicas ejected at once by
/// default, in percent (Envoy's `max_ejection_percent` default).
pub const DEFAULT_OUTLIER_MAX_EJECTION_PERCENT: u32 = 10;

named_enum! {
    /// How a virtual node whose home slot is taken finds a slot.
    ///
    /// - `linear`: the next free slot clockwise (the spec's rule).
    /// - `quadratic`: `home + t²` for t = 1, 2, …; if that sequence finds no
    ///   free slot in M steps (it need not visit every slot), linear probing
    ///   from the home slot takes over, so a ring that fits always builds.
    /// - `shared`: no probing; virtual nodes may share a slot and are ordered
    ///   within it by (replica id, index). The only rule under which removing
    ///   a replica moves no key between two other replicas.
    pub enum Probing as "probing rule" {
        Linear => "linear",
        Quadratic => "quadratic",
        Shared => "shared",
    }
}

named_enum! {
    /// Where the data plane takes a request's key from.
    ///
    /// - `request-id`: the integer in `X-Request-ID` when the client sends
    ///   one (a non-integer value is hashed, so it is still sticky), else a
    ///   random 6-digit id (the spec's rule).
    /// - `random`: always a random 6-digit id.
    /// - `client-ip`: the client's IP address (session affinity).
    /// - `path`: the request path without the query (cache affinity).
    pub enum KeySource as "key source" {
        RequestId => "request-id",
        Random => "random",
        ClientIp => "client-ip",
        Path => "path",
    }
}

/// A complete ring configuration. The default is the spec's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingConfig {
    /// Slots on the ring (M).
    pub slots: u32,
    /// Virtual nodes per replica (K).
    pub vnodes: u32,
    /// Hash of a request key to its slot.
    pub request_hash: HashFn,
    /// Hash of a (replica id, virtual node index) pair to its home slot.
    pub vnode_hash: HashFn,
    /// Collision rule for virtual nodes.
    pub probing: Probing,
    /// Where the request key comes from.
    pub key_source: KeySource,
    /// Bounded-load consistent hashing, in percent of the average number of
    /// in-flight requests per replica (0 = off, else at least 100). A
    /// request whose owner would go over the bound goes to the next distinct
    /// replica clockwise that stays under it. HAProxy's `hash-balance-factor`,
    /// Envoy's `hash_balance_factor`.
    #[serde(default)]
    pub hash_balance_factor: u32,
    /// Outlier detection: consecutive failures (connect errors, timeouts or
    /// 5xx answers) that eject a replica from selection on one data plane
    /// (0 = off). Envoy's `consecutive_5xx`.
    #[serde(default)]
    pub outlier_consecutive_failures: u32,
    /// Outlier detection: how long the first ejection lasts, in
    /// milliseconds; the n-th ejection of a replica lasts n times as long
    /// (at most 10 times). Envoy's `base_ejection_time`.
    #[serde(default = "default_base_ejection_ms")]
    pub outlier_base_ejection_ms: u32,
    /// Outlier detection: the most replicas ejected at once, in percent of
    /// the ring's replicas (at least one may always be ejected). Envoy's
    /// `max_ejection_percent`.
    #[serde(default = "default_max_ejection_percent")]
    pub outlier_max_ejection_percent: u32,
    /// Slow start: a replica that joins the ring takes its share of keys
    /// over this window, in milliseconds (0 = off). Envoy's
    /// `slow_start_window`.
    #[serde(default)]
    pub slow_start_ms: u32,
}

fn default_base_ejection_ms() -> u32 {
    DEFAULT_OUTLIER_BASE_EJECTION_MS
}

fn default_max_ejection_percent() -> u32 {
    DEFAULT_OUTLIER_MAX_EJECTION_PERCENT
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig {
            slots: DEFAULT_SLOTS,
            vnodes: DEFAULT_VNODES,
            request_hash: HashFn::Spec,
            vnode_hash: HashFn::Spec,
            probing: Probing::Linear,
            key_source: KeySource::RequestId,
            hash_balance_factor: 0,
            outlier_consecutive_failures: 0,
            outlier_base_ejection_ms: DEFAULT_OUTLIER_BASE_EJECTION_MS,
            outlier_max_ejection_percent: DEFAULT_OUTLIER_MAX_EJECTION_PERCENT,
            slow_start_ms: 0,
        }
    }
}

/// A change to some fields of a [`RingConfig`]; the others keep their
/// value. What `PUT /config` and the gRPC `SetRingConfig` both apply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingConfigPatch {
    pub slots: Option<u32>,
    pub vnodes: Option<u32>,
    pub request_hash: Option<HashFn>,
    pub vnode_hash: Option<HashFn>,
    pub probing: Option<Probing>,
    pub key_source: Option<KeySource>,
    pub hash_balance_factor: Option<u32>,
    pub outlier_consecutive_failures: Option<u32>,
    pub outlier_base_ejection_ms: Option<u32>,
    pub outlier_max_ejection_percent: Option<u32>,
    pub slow_start_ms: Option<u32>,
}

/// Parse an optional registry name (`None` stays `None`).
///
/// # Errors
/// [`RingError::UnknownName`] for a name the registry does not have.
pub fn parse_name<T>(name: Option<&str>) -> Result<Option<T>, RingError>
where
    T: std::str::FromStr<Err = RingError>,
{
    name.map(str::parse).transpose()
}

impl RingConfigPatch {
    /// `base` with the fields this patch sets replaced, validated.
    ///
    /// # Errors
    /// A [`RingError`] when the result is not a valid configuration.
    pub fn apply_to(&self, base: &RingConfig) -> Result<RingConfig, RingError> {
        let config = RingConfig {
            slots: self.slots.unwrap_or(base.slots),
            vnodes: self.vnodes.unwrap_or(base.vnodes),
            request_hash: self.request_hash.unwrap_or(base.request_hash),
            vnode_hash: self.vnode_hash.unwrap_or(base.vnode_hash),
            probing: self.probing.unwrap_or(base.probing),
            key_source: self.key_source.unwrap_or(base.key_source),
            hash_balance_factor: self.hash_balance_factor.unwrap_or(base.hash_balance_factor),
            outlier_consecutive_failures: self
                .outlier_consecutive_failures
                .unwrap_or(base.outlier_consecutive_failures),
            outlier_base_ejection_ms: self
                .outlier_base_ejection_ms
                .unwrap_or(base.outlier_base_ejection_ms),
            outlier_max_ejection_percent: self
                .outlier_max_ejection_percent
                .unwrap_or(base.outlier_max_ejection_percent),
            slow_start_ms: self.slow_start_ms.unwrap_or(base.slow_start_ms),
        };
        config.validate()?;
        Ok(config)
    }
}

impl RingConfig {
    /// Check the configuration on its own (membership is checked at build).
    ///
    /// # Errors
    /// A [`RingError`] for M or K out of range, K larger than M, or a
    /// balancing setting out of range.
    pub fn validate(&self) -> Result<(), RingError> {
        if self.hash_balance_factor != 0 && self.hash_balance_factor < MIN_HASH_BALANCE_FACTOR {
            return Err(RingError::HashBalanceFactor(self.hash_balance_factor));
        }
        if self.outlier_base_ejection_ms == 0 {
            return Err(RingError::ZeroEjectionTime);
        }
        if self.outlier_max_ejection_percent > 100 {
            return Err(RingError::EjectionPercent(
                self.outlier_max_ejection_percent,
            ));
        }
        if self.slots == 0 {
            return Err(RingError::ZeroSlots);
        }
        if self.slots > MAX_SLOTS {
            return Err(RingError::TooManySlots(self.slots.into()));
        }
        if self.vnodes == 0 {
            return Err(RingError::ZeroVnodes);
        }
        if self.vnodes > MAX_VNODES {
            return Err(RingError::TooManyVnodes(self.vnodes.into()));
        }
        if self.probing != Probing::Shared && self.vnodes > self.slots {
            return Err(RingError::VnodesExceedSlots {
                vnodes: self.vnodes,
                slots: self.slots,
            });
        }
        Ok(())
    }

    /// How many replicas fit on a ring of this configuration (`None`: no limit).
    pub fn max_replicas(&self) -> Option<usize> {
        match self.probing {
            Probing::Shared => None,
            _ => Some((self.slots / self.vnodes.max(1)) as usize),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_the_spec() {
        let c = RingConfig::default();
        assert_eq!((c.slots, c.vnodes), (512, 9));
        assert_eq!(c.request_hash, HashFn::Spec);
        assert_eq!(c.probing, Probing::Linear);
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.max_replicas(), Some(56));
    }

    #[test]
    fn impossible_configs_are_errors() {
        let base = RingConfig::default();
        let zero_m = RingConfig { slots: 0, ..base };
        assert_eq!(zero_m.validate(), Err(RingError::ZeroSlots));
        let zero_k = RingConfig { vnodes: 0, ..base };
        assert_eq!(zero_k.validate(), Err(RingError::ZeroVnodes));
        let k_over_m = RingConfig {
            slots: 8,
            vnodes: 9,
            ..base
        };
        assert_eq!(
            k_over_m.validate(),
            Err(RingError::VnodesExceedSlots {
                vnodes: 9,
                slots: 8
            })
        );
        let huge_m = RingConfig {
            slots: MAX_SLOTS + 1,
            ..base
        };
        assert!(matches!(huge_m.validate(), Err(RingError::TooManySlots(_))));
    }

    #[test]
    fn balancing_settings_are_checked() {
        let base = RingConfig::default();
        for (config, error) in [
            (
                RingConfig {
                    hash_balance_factor: 99,
                    ..base
                },
                "hash_balance_factor = 99 must be 0 (off) or at least 100",
            ),
            (
                RingConfig {
                    outlier_base_ejection_ms: 0,
                    ..base
                },
                "outlier_base_ejection_ms must be at least 1",
            ),
            (
                RingConfig {
                    outlier_max_ejection_percent: 101,
                    ..base
                },
                "outlier_max_ejection_percent = 101 is more than 100",
            ),
        ] {
            assert_eq!(
                config.validate().map_err(|e| e.to_string()),
                Err(error.to_owned())
            );
        }
        for factor in [0, 100, 150, 1000] {
            let ok = RingConfig {
                hash_balance_factor: factor,
                ..base
            };
            assert_eq!(ok.validate(), Ok(()));
        }
    }

    #[test]
    fn serde_uses_the_registry_names() {
        let json = serde_json::to_string(&RingConfig::default()).expect("serializes");
        assert_eq!(
            json,
            r#"{"slots":512,"vnodes":9,"request_hash":"spec","vnode_hash":"spec","probing":"linear","key_source":"request-id","hash_balance_factor":0,"outlier_consecutive_failures":0,"outlier_base_ejection_ms":30000,"outlier_max_ejection_percent":10,"slow_start_ms":0}"#
        );
        let back: RingConfig = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, RingConfig::default());
        // A configuration written before the balancing fields still reads.
        let old = r#"{"slots":512,"vnodes":9,"request_hash":"spec","vnode_hash":"spec","probing":"linear","key_source":"request-id"}"#;
        let old: RingConfig = serde_json::from_str(old).expect("parses");
        assert_eq!(old, RingConfig::default());
        let bad = json.replace("\"linear\"", "\"cubic\"");
        let err = serde_json::from_str::<RingConfig>(&bad).unwrap_err();
        assert!(
            err.to_string().contains("unknown probing rule 'cubic'"),
            "{err}"
        );
    }
}

#[cfg(test)]
mod patch_tests {
    use super::*;

    #[test]
    fn a_patch_changes_what_it_sets_and_is_validated() {
        let base = RingConfig::default();
        let patch = RingConfigPatch {
            vnodes: Some(16),
            probing: parse_name(Some("shared")).expect("known"),
            ..RingConfigPatch::default()
        };
        let changed = patch.apply_to(&base).expect("valid");
        assert_eq!(
            (changed.vnodes, changed.probing, changed.slots),
            (16, Probing::Shared, base.slots)
        );
        assert_eq!(RingConfigPatch::default().apply_to(&base), Ok(base));
        let zero = RingConfigPatch {
            slots: Some(0),
            ..RingConfigPatch::default()
        };
        assert_eq!(zero.apply_to(&base), Err(RingError::ZeroSlots));
        assert!(matches!(
            parse_name::<Probing>(Some("cubic")),
            Err(RingError::UnknownName { .. })
        ));
    }
}
