//! The ring itself: virtual nodes placed on slots, compiled into a flat
//! `slot -> replica` table.

use crate::{Probing, RingConfig, RingError};

/// One virtual node as placed on the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtualNode {
    /// The slot it occupies (after probing).
    pub slot: u32,
    /// The replica's numeric id.
    pub id: u64,
    /// Its index among the replica's virtual nodes (`0..K`).
    pub j: u32,
    /// The replica's position in the slice the ring was built from.
    member: u32,
}

/// A built ring. Cheap to share (`Arc<Ring>`); immutable once built.
#[derive(Clone, Debug)]
pub struct Ring {
    config: RingConfig,
    ids: Box<[u64]>,
    /// Virtual nodes sorted by (slot, id, j).
    points: Box<[VirtualNode]>,
    /// slot -> index into `ids` of the replica that owns the slot.
    owner: Box<[u32]>,
    /// slot -> index into `points` of the first virtual node at or after it.
    first_point: Box<[u32]>,
}

impl Ring {
    /// Build the ring of `config` over the replicas with the given numeric
    /// ids. Lookups answer with indices into `ids`.
    ///
    /// Deterministic: the table depends only on the set of ids, not on their
    /// order in the slice. Virtual nodes are placed replica by replica in
    /// ascending id order, `j = 0..K` within each, which is the order the
    /// golden vectors of the spec assume; since new replicas always get a
    /// higher id, adding one never displaces an existing virtual node.
    ///
    /// # Errors
    /// A [`RingError`] for an invalid configuration, or replicas × K
    /// virtual nodes that do not fit in M slots.
    pub fn build(config: &RingConfig, ids: &[u64]) -> Result<Ring, RingError> {
        Ring::build_weighted(config, ids, &[])
    }

    /// [`build`](Self::build) with a weight per replica: replica `i` gets
    /// `K × weights[i]` virtual nodes (`j = 0..K×w`), so its share of the
    /// ring is proportional to its weight. An empty `weights` means every
    /// weight is 1 (the same ring as `build`). Raising a weight adds virtual
    /// nodes and moves no other one.
    ///
    /// # Errors
    /// As [`build`](Self::build), and [`RingError::WeightCount`] when
    /// `weights` is neither empty nor as long as `ids`,
    /// [`RingError::ZeroWeight`] for a weight of 0.
    pub fn build_weighted(
        config: &RingConfig,
        ids: &[u64],
        weights: &[u32],
    ) -> Result<Ring, RingError> {
        config.validate()?;
        if !weights.is_empty() && weights.len() != ids.len() {
            return Err(RingError::WeightCount {
                ids: ids.len(),
                weights: weights.len(),
            });
        }
        if let Some(at) = weights.iter().position(|&w| w == 0) {
            return Err(RingError::ZeroWeight { id: ids[at] });
        }
        let weight_of = |member: usize| u64::from(weights.get(member).copied().unwrap_or(1));
        let units: u64 = (0..ids.len()).map(weight_of).sum();
        let slots = config.slots;
        let mut order: Vec<u32> = (0..ids.len() as u32).collect();
        order.sort_unstable_by_key(|&m| ids[m as usize]);
        if let Some(pair) = order
            .windows(2)
            .find(|w| ids[w[0] as usize] == ids[w[1] as usize])
        {
            return Err(RingError::DuplicateId(ids[pair[0] as usize]));
        }
        if let Some(max) = config.max_replicas()
            && units > max as u64
        {
            return Err(RingError::RingFull {
                replicas: ids.len(),
                weight: units,
                vnodes: config.vnodes,
                slots,
                probing: config.probing,
            });
        }

        let mut placer = Placer::new(config.probing, slots);
        let mut points = Vec::with_capacity(units as usize * config.vnodes as usize);
        for &member in &order {
            let id = ids[member as usize];
            // At most MAX_VNODES × u32::MAX, which the fit check above keeps
            // within M for every probing rule but `shared`.
            let count = u64::from(config.vnodes) * weight_of(member as usize);
            let count = u32::try_from(count).unwrap_or(u32::MAX);
            for j in 0..count {
                let home = config.vnode_hash.vnode_slot(id, j, slots);
                let slot = placer.place(home);
                points.push(VirtualNode {
                    slot,
                    id,
                    j,
                    member,
                });
            }
        }
        points.sort_unstable_by_key(|p| (p.slot, p.id, p.j));

        let mut owner = Vec::new();
        let mut first_point = Vec::new();
        if !points.is_empty() {
            owner.reserve_exact(slots as usize);
            first_point.reserve_exact(slots as usize);
            let mut next = 0usize;
            for slot in 0..slots {
                while next < points.len() && points[next].slot < slot {
                    next += 1;
                }
                let at = if next < points.len() { next } else { 0 };
                first_point.push(at as u32);
                owner.push(points[at].member);
            }
        }

        Ok(Ring {
            config: *config,
            ids: ids.into(),
            points: points.into(),
            owner: owner.into(),
            first_point: first_point.into(),
        })
    }

    /// The configuration this ring was built with.
    pub fn config(&self) -> &RingConfig {
        &self.config
    }

    /// How many replicas are on the ring.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the ring has no replica.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The ids the ring was built from, in the caller's order.
    pub fn ids(&self) -> &[u64] {
        &self.ids
    }

    /// Every virtual node, sorted by slot.
    pub fn virtual_nodes(&self) -> &[VirtualNode] {
        &self.points
    }

    /// The slot a request key hashes to.
    #[inline]
    pub fn slot_of(&self, key: u64) -> u32 {
        self.config
            .request_hash
            .request_slot(key, self.config.slots)
    }

    /// The replica (index into the ids the ring was built from) that owns
    /// `key`: the first virtual node at or after the key's slot, clockwise.
    /// `None` only when the ring is empty.
    #[inline]
    pub fn lookup(&self, key: u64) -> Option<usize> {
        if self.owner.is_empty() {
            return None;
        }
        let slot = self.slot_of(key) as usize;
        self.owner.get(slot).map(|&m| m as usize)
    }

    /// The distinct replicas in ring order starting at the key's slot: the
    /// owner first, then each next replica clockwise, for failover.
    pub fn candidates(&self, key: u64) -> Candidates<'_> {
        let start = if self.points.is_empty() {
            0
        } else {
            self.first_point[self.slot_of(key) as usize] as usize
        };
        Candidates {
            ring: self,
            start,
            step: 0,
            seen: Seen::new(self.ids.len()),
        }
    }
}

/// Iterator over distinct replicas clockwise from a key; see
/// [`Ring::candidates`]. Allocates only for rings of more than 128 replicas.
pub struct Candidates<'a> {
    ring: &'a Ring,
    start: usize,
    step: usize,
    seen: Seen,
}

impl Iterator for Candidates<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let points = &self.ring.points;
        while self.step < points.len() {
            let point = &points[(self.start + self.step) % points.len()];
            self.step += 1;
            if self.seen.insert(point.member as usize) {
                return Some(point.member as usize);
            }
        }
        None
    }
}

enum Seen {
    Small(u128),
    Large(Vec<bool>),
}

impl Seen {
    fn new(members: usize) -> Seen {
        if members <= 128 {
            Seen::Small(0)
        } else {
            Seen::Large(vec![false; members])
        }
    }

    /// Mark `member`; true when it was not marked before.
    fn insert(&mut self, member: usize) -> bool {
        match self {
            Seen::Small(bits) => {
                let bit = 1u128 << member;
                let fresh = *bits & bit == 0;
                *bits |= bit;
                fresh
            }
            Seen::Large(marks) => !std::mem::replace(&mut marks[member], true),
        }
    }
}

/// Resolves slot collisions according to the probing rule.
struct Placer {
    probing: Probing,
    taken: Vec<bool>,
}

impl Placer {
    fn new(probing: Probing, slots: u32) -> Placer {
        let taken = match probing {
            Probing::Shared => Vec::new(),
            _ => vec![false; slots as usize],
        };
        Placer { probing, taken }
    }

    /// The slot for a virtual node whose home slot is `home`. The caller has
    /// checked that a free slot exists.
    fn place(&mut self, home: u32) -> u32 {
        let m = self.taken.len() as u64;
        let slot = match self.probing {
            Probing::Shared => return home,
            Probing::Linear => self.linear_from(home),
            Probing::Quadratic => (0..m)
                .map(|t| ((u64::from(home) + t * t) % m) as u32)
                .find(|&s| !self.taken[s as usize])
                .unwrap_or_else(|| self.linear_from(home)),
        };
        self.taken[slot as usize] = true;
        slot
    }

    fn linear_from(&self, home: u32) -> u32 {
        let m = self.taken.len() as u32;
        (0..m)
            .map(|t| ((u64::from(home) + u64::from(t)) % u64::from(m)) as u32)
            .find(|&s| !self.taken[s as usize])
            .unwrap_or(home)
    }
}
