//! Properties of every ring configuration, over random memberships.

use std::collections::HashSet;

use proptest::prelude::*;
use ringlb_ring::{HashFn, KeySource, Probing, Ring, RingConfig};

fn any_hash() -> impl Strategy<Value = HashFn> {
    prop::sample::select(HashFn::ALL.to_vec())
}

fn any_probing() -> impl Strategy<Value = Probing> {
    prop::sample::select(Probing::ALL.to_vec())
}

prop_compose! {
    fn any_config()(
        slots in prop::sample::select(vec![64u32, 97, 512, 1000, 4096]),
        vnodes in 1u32..=12,
        request_hash in any_hash(),
        vnode_hash in any_hash(),
        probing in any_probing(),
    ) -> RingConfig {
        RingConfig { slots, vnodes, request_hash, vnode_hash, probing, key_source: KeySource::RequestId, ..RingConfig::default() }
    }
}

prop_compose! {
    /// A config and a membership (distinct ids, possibly sparse) that fits it.
    fn config_and_ids()(config in any_config())(
        ids in prop::collection::hash_set(1u64..10_000, 1..=(config.slots / config.vnodes).min(40) as usize),
        config in Just(config),
    ) -> (RingConfig, Vec<u64>) {
        (config, ids.into_iter().collect())
    }
}

/// The owner id of every slot, by brute force over the virtual nodes.
fn owners_by_id(ring: &Ring) -> Vec<u64> {
    let nodes = ring.virtual_nodes();
    (0..ring.config().slots)
        .map(|slot| {
            let node = nodes.iter().find(|v| v.slot >= slot).unwrap_or(&nodes[0]);
            node.id
        })
        .collect()
}

/// The owner id of every slot, through `lookup` (keys chosen to hit each slot).
fn owners_by_lookup(ring: &Ring, keys: &[u64]) -> Vec<Option<u64>> {
    keys.iter()
        .map(|&k| ring.lookup(k).map(|m| ring.ids()[m]))
        .collect()
}

fn sample_keys() -> Vec<u64> {
    (0..4000u64)
        .map(|k| k * 2_654_435_761 % 1_000_000)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn lookup_is_the_first_virtual_node_clockwise((config, ids) in config_and_ids()) {
        let ring = Ring::build(&config, &ids).expect("fits");
        prop_assert_eq!(ring.virtual_nodes().len(), ids.len() * config.vnodes as usize);
        let brute = owners_by_id(&ring);
        for key in sample_keys() {
            let owner = ring.lookup(key).map(|m| ids[m]);
            prop_assert_eq!(owner, Some(brute[ring.slot_of(key) as usize]));
        }
    }

    #[test]
    fn virtual_nodes_never_share_a_slot_when_probing((config, ids) in config_and_ids()) {
        prop_assume!(config.probing != Probing::Shared);
        let ring = Ring::build(&config, &ids).expect("fits");
        let slots: HashSet<u32> = ring.virtual_nodes().iter().map(|v| v.slot).collect();
        prop_assert_eq!(slots.len(), ring.virtual_nodes().len());
    }

    #[test]
    fn insertion_order_does_not_matter((config, ids) in config_and_ids(), seed in any::<u64>()) {
        let mut shuffled = ids.clone();
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            shuffled.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let a = Ring::build(&config, &ids).expect("fits");
        let b = Ring::build(&config, &shuffled).expect("fits");
        prop_assert_eq!(owners_by_lookup(&a, &sample_keys()), owners_by_lookup(&b, &sample_keys()));
    }

    #[test]
    fn candidates_are_distinct_start_with_the_owner_and_cover_everyone(
        (config, ids) in config_and_ids(), key in any::<u64>()
    ) {
        let ring = Ring::build(&config, &ids).expect("fits");
        let candidates: Vec<usize> = ring.candidates(key).collect();
        prop_assert_eq!(candidates.first().copied(), ring.lookup(key));
        let distinct: HashSet<usize> = candidates.iter().copied().collect();
        prop_assert_eq!(distinct.len(), candidates.len());
        prop_assert_eq!(distinct.len(), ids.len());
    }

    #[test]
    fn adding_a_replica_only_moves_keys_to_it((config, ids) in config_and_ids()) {
        prop_assume!(config.max_replicas().is_none_or(|max| ids.len() < max));
        // New replicas always get an id above every live one.
        let new_id = ids.iter().max().copied().unwrap_or(0) + 1;
        let before = Ring::build(&config, &ids).expect("fits");
        let mut grown = ids.clone();
        grown.push(new_id);
        let after = Ring::build(&config, &grown).expect("fits");
        let keys = sample_keys();
        for (old, new) in owners_by_lookup(&before, &keys).into_iter().zip(owners_by_lookup(&after, &keys)) {
            prop_assert!(old == new || new == Some(new_id), "{old:?} -> {new:?}");
        }
    }

    #[test]
    fn removing_a_replica_only_moves_its_keys_with_shared_slots(
        (config, ids) in config_and_ids(), pick in any::<prop::sample::Index>()
    ) {
        let config = RingConfig { probing: Probing::Shared, ..config };
        removal_moves_only_the_removed_keys(&config, &ids, pick.index(ids.len()))?;
    }

    #[test]
    fn removing_a_replica_only_moves_its_keys_when_no_survivor_was_displaced(
        (config, ids) in config_and_ids(), pick in any::<prop::sample::Index>()
    ) {
        // With probing, a survivor's virtual node that had been pushed along
        // by one of the removed replica's may slide back to its home slot; the
        // guarantee holds exactly when no survivor's virtual node moved.
        let removed = ids[pick.index(ids.len())];
        let before = Ring::build(&config, &ids).expect("fits");
        let survivors: Vec<u64> = ids.iter().copied().filter(|&id| id != removed).collect();
        let after = Ring::build(&config, &survivors).expect("fits");
        let placed = |ring: &Ring| -> HashSet<(u64, u32, u32)> {
            ring.virtual_nodes().iter().filter(|v| v.id != removed).map(|v| (v.id, v.j, v.slot)).collect()
        };
        prop_assume!(placed(&before) == placed(&after));
        removal_moves_only_the_removed_keys(&config, &ids, pick.index(ids.len()))?;
    }
}

fn removal_moves_only_the_removed_keys(
    config: &RingConfig,
    ids: &[u64],
    index: usize,
) -> Result<(), TestCaseError> {
    let removed = ids[index];
    let before = Ring::build(config, ids).expect("fits");
    let survivors: Vec<u64> = ids.iter().copied().filter(|&id| id != removed).collect();
    let after = Ring::build(config, &survivors).expect("fits");
    let keys = sample_keys();
    for (old, new) in owners_by_lookup(&before, &keys)
        .into_iter()
        .zip(owners_by_lookup(&after, &keys))
    {
        prop_assert!(old == new || old == Some(removed), "{old:?} -> {new:?}");
        prop_assert_ne!(new, Some(removed));
    }
    Ok(())
}

#[test]
fn well_mixed_functions_spread_load_far_better_than_spec() {
    // Not a timing test: the coefficient of variation of three replicas'
    // shares over every 6-digit id, for each request/vnode hash pair.
    let ids = [1u64, 2, 3];
    let cv = |config: &RingConfig| {
        let ring = Ring::build(config, &ids).expect("fits");
        let mut counts = [0f64; 3];
        for k in 100_000u64..=999_999 {
            counts[ring.lookup(k).expect("non-empty")] += 1.0;
        }
        let mean = counts.iter().sum::<f64>() / 3.0;
        let var = counts.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / 3.0;
        var.sqrt() / mean
    };
    let spec = cv(&RingConfig::default());
    assert!(spec > 0.8, "spec cv {spec}");
    for hash in [HashFn::SplitMix64, HashFn::Murmur3, HashFn::Xxh3] {
        let config = RingConfig {
            request_hash: hash,
            vnode_hash: hash,
            vnodes: 64,
            slots: 4096,
            ..RingConfig::default()
        };
        let mixed = cv(&config);
        assert!(mixed < 0.25, "{hash}: cv {mixed}");
    }
}
