//! The spec's ring, checked against values worked out by hand from its
//! formulas: Φ(i, j) = i² + j² + 2j + 25 mod 512, H(i) = i² + 2i + 17 mod 512,
//! K = 9, linear probing, replicas placed in id order.

use ringlb_ring::{Ring, RingConfig, RingError};

fn slots_of(ring: &Ring, id: u64) -> Vec<u32> {
    let mut slots: Vec<(u32, u32)> = ring
        .virtual_nodes()
        .iter()
        .filter(|v| v.id == id)
        .map(|v| (v.j, v.slot))
        .collect();
    slots.sort_unstable();
    slots.into_iter().map(|(_, slot)| slot).collect()
}

#[test]
fn golden_virtual_node_slots_for_ids_1_2_3() {
    let ring = Ring::build(&RingConfig::default(), &[1, 2, 3]).expect("spec ring builds");
    // id 1: 26 + j² + 2j, no collisions.
    assert_eq!(slots_of(&ring, 1), [26, 29, 34, 41, 50, 61, 74, 89, 106]);
    // id 2: 29 + j² + 2j; j = 0 lands on id 1's 29 and probes to 30.
    assert_eq!(slots_of(&ring, 2), [30, 32, 37, 44, 53, 64, 77, 92, 109]);
    // id 3: 34 + j² + 2j; j = 0 hits id 1's 34 -> 35, j = 1 hits id 2's 37 -> 38.
    assert_eq!(slots_of(&ring, 3), [35, 38, 42, 49, 58, 69, 82, 97, 114]);
}

#[test]
fn exact_counts_for_every_six_digit_request_id() {
    let ids = [1u64, 2, 3];
    let ring = Ring::build(&RingConfig::default(), &ids).expect("spec ring builds");
    let mut counts = [0u32; 3];
    for request in 100_000u64..=999_999 {
        let member = ring.lookup(request).expect("non-empty ring");
        counts[member] += 1;
    }
    // 84.4 % / 4.7 % / 10.9 %: the skew the spec warns about.
    assert_eq!(counts, [759_374, 42_187, 98_439]);
}

#[test]
fn keys_go_to_the_first_virtual_node_at_or_after_their_slot() {
    let ring = Ring::build(&RingConfig::default(), &[1, 2, 3]).expect("spec ring builds");
    // (key, H(key), owner index): 3 -> 9+6+17 = 32, id 2's own slot;
    // 4 -> 41, id 1's; 5 -> 52, next is id 2's 53; 7 -> 80, next is id 3's 82;
    // 10 -> 137, past the last virtual node (114), wraps to id 1's 26.
    for (key, slot, owner) in [
        (3u64, 32u32, 1usize),
        (4, 41, 0),
        (5, 52, 1),
        (7, 80, 2),
        (10, 137, 0),
    ] {
        assert_eq!(ring.slot_of(key), slot, "slot of {key}");
        assert_eq!(ring.lookup(key), Some(owner), "owner of {key}");
    }
    // Failover order from key 7 (slot 80): id 3 (82), then id 1 (89), then id 2 (92).
    assert_eq!(ring.candidates(7).collect::<Vec<_>>(), [2, 0, 1]);
}

#[test]
fn empty_ring_has_no_owner_and_no_candidates() {
    let ring = Ring::build(&RingConfig::default(), &[]).expect("empty ring builds");
    assert_eq!(ring.lookup(123_456), None);
    assert_eq!(ring.candidates(123_456).count(), 0);
}

#[test]
fn duplicate_ids_and_overfull_rings_are_errors() {
    let config = RingConfig::default();
    assert_eq!(
        Ring::build(&config, &[4, 7, 4]).unwrap_err(),
        ringlb_ring::RingError::DuplicateId(4)
    );
    let ids: Vec<u64> = (1..=57).collect(); // 57 x 9 = 513 > 512
    let err = Ring::build(&config, &ids).unwrap_err();
    assert_eq!(
        err.to_string(),
        "57 replicas x 9 virtual nodes do not fit in 512 slots with linear probing"
    );
    assert!(Ring::build(&config, &ids[..56]).is_ok());
}

#[test]
fn weights_multiply_virtual_nodes_and_keep_the_others_in_place() {
    let config = RingConfig {
        slots: 4096,
        vnodes: 64,
        request_hash: ringlb_ring::HashFn::Xxh3,
        vnode_hash: ringlb_ring::HashFn::Xxh3,
        ..RingConfig::default()
    };
    let plain = Ring::build(&config, &[1, 2]).expect("ring");
    let same = Ring::build_weighted(&config, &[1, 2], &[1, 1]).expect("ring");
    assert_eq!(
        plain.virtual_nodes(),
        same.virtual_nodes(),
        "weight 1 is the plain ring"
    );
    let weighted = Ring::build_weighted(&config, &[1, 2], &[1, 3]).expect("ring");
    assert_eq!(slots_of(&weighted, 1).len(), 64);
    assert_eq!(slots_of(&weighted, 2).len(), 192);
    // Owned slots: about 1:3 with a well-mixed hash.
    let owned_by_2 = (0..4096u32)
        .filter(|&s| {
            weighted
                .virtual_nodes()
                .iter()
                .find(|p| p.slot >= s)
                .or(weighted.virtual_nodes().first())
                .is_some_and(|p| p.id == 2)
        })
        .count() as f64
        / 4096.0;
    assert!(
        (owned_by_2 - 0.75).abs() < 0.06,
        "replica 2 owns {owned_by_2}"
    );
    assert_eq!(
        Ring::build_weighted(&config, &[1, 2], &[1]).map(|_| ()),
        Err(RingError::WeightCount { ids: 2, weights: 1 })
    );
    assert_eq!(
        Ring::build_weighted(&config, &[1, 2], &[1, 0]).map(|_| ()),
        Err(RingError::ZeroWeight { id: 2 })
    );
    let full = RingConfig::default();
    assert_eq!(
        Ring::build_weighted(&full, &[1, 2], &[50, 7])
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err("2 replicas (total weight 57) x 9 virtual nodes do not fit in 512 slots with linear probing".to_owned())
    );
}
