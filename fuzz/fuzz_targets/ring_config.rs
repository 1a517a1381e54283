//! Ring configurations as JSON (what `PUT /config` accepts) plus a
//! membership: parsing and building never panic, and a ring that builds
//! routes every key to a member, with candidates starting at the owner.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringlb_ring::{Ring, RingConfig};

fuzz_target!(|data: &[u8]| {
    // First byte: how many replicas; the rest: the configuration as JSON.
    let Some((&count, json)) = data.split_first() else {
        return;
    };
    let Ok(config) = serde_json::from_slice::<RingConfig>(json) else {
        return;
    };
    // Keep one iteration cheap: the ring's table is M entries.
    if config.slots > 1 << 16 {
        return;
    }
    let ids: Vec<u64> = (1..=u64::from(count % 64)).map(|i| i * 7919).collect();
    let Ok(ring) = Ring::build(&config, &ids) else {
        return;
    };
    for key in [0u64, 1, 123_456, 999_999, u64::MAX] {
        match ring.lookup(key) {
            Some(member) => {
                assert!(member < ids.len());
                assert_eq!(ring.candidates(key).next(), Some(member));
            }
            None => assert!(ids.is_empty()),
        }
    }
});
