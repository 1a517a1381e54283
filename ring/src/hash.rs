//! The registry of hash functions. Each one maps a request key to a slot and
//! a (replica id, virtual node index) pair to a slot, both in `0..M`.

use crate::named::named_enum;

named_enum! {
    /// A hash function, picked by name.
    ///
    /// - `spec`: the assignment's functions, exactly: `H(i) = i² + 2i + 17 mod M`
    ///   for requests and `Φ(i, j) = i² + j² + 2j + 25 mod M` for virtual nodes.
    ///   Known to skew load badly; kept because clients rely on it.
    /// - `splitmix64`: Steele, Lea and Flood's SplitMix64 finalizer.
    /// - `murmur3`: the 64-bit finalizer (`fmix64`) of MurmurHash3.
    /// - `xxh3`: XXH3-64 over the little-endian bytes of the inputs.
    ///
    /// The three mixers map their 64-bit output onto `0..M` with Lemire's
    /// multiply-shift range reduction, which uses the high bits and needs no
    /// division.
    pub enum HashFn as "hash function" {
        Spec => "spec",
        SplitMix64 => "splitmix64",
        Murmur3 => "murmur3",
        Xxh3 => "xxh3",
    }
}

impl HashFn {
    /// The slot of a request key.
    #[inline]
    pub fn request_slot(self, key: u64, slots: u32) -> u32 {
        let m = u64::from(slots);
        match self {
            // (i mod M)² + 2(i mod M) + 17 ≡ i² + 2i + 17 (mod M), and with
            // i mod M < 2³² the square cannot overflow.
            HashFn::Spec => {
                let i = key % m;
                ((i * i % m + 2 * i + 17) % m) as u32
            }
            HashFn::SplitMix64 => reduce(splitmix64(key), slots),
            HashFn::Murmur3 => reduce(fmix64(key), slots),
            HashFn::Xxh3 => reduce(xxhash_rust::xxh3::xxh3_64(&key.to_le_bytes()), slots),
        }
    }

    /// The home slot of virtual node `j` of the replica with numeric id `id`
    /// (before collisions are resolved by the probing rule).
    #[inline]
    pub fn vnode_slot(self, id: u64, j: u32, slots: u32) -> u32 {
        let m = u64::from(slots);
        let j = u64::from(j);
        match self {
            HashFn::Spec => {
                let i = id % m;
                let jm = j % m;
                ((i * i % m + jm * jm % m + 2 * jm + 25) % m) as u32
            }
            HashFn::SplitMix64 => reduce(splitmix64(splitmix64(id) ^ j), slots),
            HashFn::Murmur3 => reduce(fmix64(fmix64(id) ^ j), slots),
            HashFn::Xxh3 => {
                let mut bytes = [0u8; 16];
                bytes[..8].copy_from_slice(&id.to_le_bytes());
                bytes[8..].copy_from_slice(&j.to_le_bytes());
                reduce(xxhash_rust::xxh3::xxh3_64(&bytes), slots)
            }
        }
    }
}

/// Hash arbitrary bytes (a path, a non-numeric request id, an address) to a
/// 64-bit request key. Stable across processes and versions.
#[inline]
pub fn key_of_bytes(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// Map a well-mixed 64-bit value onto `0..slots` (Lemire, 2019).
#[inline]
fn reduce(hash: u64, slots: u32) -> u32 {
    ((u128::from(hash) * u128::from(slots)) >> 64) as u32
}

#[inline]
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[inline]
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_request_slot_matches_the_formula() {
        for i in [0u64, 1, 2, 100_000, 123_456, 999_999] {
            assert_eq!(
                u64::from(HashFn::Spec.request_slot(i, 512)),
                (i * i + 2 * i + 17) % 512
            );
        }
    }

    #[test]
    fn spec_request_slot_does_not_overflow_on_huge_keys() {
        // u64::MAX ≡ 511 (mod 512), and (511² + 2·511 + 17) mod 512 = 16.
        assert_eq!(HashFn::Spec.request_slot(u64::MAX, 512), 16);
        assert_eq!(
            HashFn::Spec.vnode_slot(u64::MAX, 0, 512),
            (511 * 511 + 25) % 512
        );
    }

    #[test]
    fn every_function_stays_in_range() {
        for f in HashFn::ALL {
            for m in [1u32, 2, 7, 512, 65_536] {
                for k in [0u64, 1, 99, u64::MAX] {
                    assert!(f.request_slot(k, m) < m, "{f} request {k} M={m}");
                    assert!(f.vnode_slot(k, 3, m) < m, "{f} vnode {k} M={m}");
                }
            }
        }
    }

    #[test]
    fn known_reference_values() {
        // SplitMix64 seeded at 0 yields 0xe220a8397b1dcdaf first (Vigna's reference).
        assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf);
        // fmix64 maps 0 to 0 and is a bijection elsewhere.
        assert_eq!(fmix64(0), 0);
        assert_ne!(fmix64(1), fmix64(2));
    }

    #[test]
    fn names_round_trip_and_unknown_names_are_errors() {
        for f in HashFn::ALL {
            assert_eq!(f.name().parse::<HashFn>(), Ok(*f));
        }
        let err = "md5".parse::<HashFn>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown hash function 'md5' (known: spec, splitmix64, murmur3, xxh3)"
        );
    }
}
