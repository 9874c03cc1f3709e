//! Keyed routing: a consistent-hash ring with virtual nodes.
//!
//! Each member slot owns `VNODES` points on a 64-bit ring; a key belongs to the slot of the
//! first point at or after the key's hash. Adding an (n+1)th slot takes over about 1/(n+1) of
//! the keys, from every other slot alike, and moves no other key. Slots, not process ids, are
//! placed, so a member replaced by a fresh one (restart, reload, recycling) keeps its keys.

use std::hash::{Hash, Hasher};

/// Points per slot: enough that each slot's share stays within a few percent of 1/n.
const VNODES: u64 = 160;

/// FNV-1a over what `Hash` writes, finished with a 64-bit mixer: stable across runs and
/// builds (unlike `DefaultHasher`'s promise), and well spread.
#[derive(Debug)]
pub(crate) struct StableHasher(u64);

impl Default for StableHasher {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for StableHasher {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        mix(self.0)
    }
}

/// The splitmix64 finaliser: every input bit affects every output bit.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The stable hash of a key.
pub(crate) fn hash_key<K: Hash + ?Sized>(key: &K) -> u64 {
    let mut hasher = StableHasher::default();
    key.hash(&mut hasher);
    hasher.finish()
}

/// The ring over a set of slots.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ring {
    /// (point, slot), sorted by point.
    points: Vec<(u64, u64)>,
}

impl Ring {
    /// A ring over these slots.
    pub(crate) fn new(slots: impl IntoIterator<Item = u64>) -> Self {
        let mut points: Vec<(u64, u64)> = slots
            .into_iter()
            .flat_map(|slot| (0..VNODES).map(move |v| (mix(mix(slot) ^ v), slot)))
            .collect();
        points.sort_unstable();
        Self { points }
    }

    /// The slots in ring order from `hash` on, each once: the owner first, then the slots a
    /// key falls over to when its owner cannot take it.
    pub(crate) fn successors(&self, hash: u64) -> impl Iterator<Item = u64> + '_ {
        let start = self.points.partition_point(|(point, _)| *point < hash);
        let n = self.points.len();
        let mut seen: Vec<u64> = Vec::new();
        (0..n).filter_map(move |i| {
            let slot = self.points[(start + i) % n].1;
            if seen.contains(&slot) {
                None
            } else {
                seen.push(slot);
                Some(slot)
            }
        })
    }

    /// The slot owning `hash`, if the ring has any.
    #[cfg(test)]
    pub(crate) fn owner(&self, hash: u64) -> Option<u64> {
        let start = self.points.partition_point(|(point, _)| *point < hash);
        self.points
            .get(start)
            .or_else(|| self.points.first())
            .map(|(_, slot)| *slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_key_always_has_the_same_owner() {
        let ring = Ring::new(0..4);
        let owner = ring.owner(hash_key("user-42"));
        for _ in 0..10 {
            assert_eq!(ring.owner(hash_key("user-42")), owner);
        }
        assert_eq!(Ring::new(0..4).owner(hash_key("user-42")), owner);
    }

    #[test]
    fn adding_a_fifth_slot_moves_about_a_fifth_of_the_keys_and_only_to_it() {
        let four = Ring::new(0..4);
        let five = Ring::new(0..5);
        let mut moved = 0;
        for key in 0..10_000u32 {
            let hash = hash_key(&key);
            let (before, after) = (four.owner(hash), five.owner(hash));
            if before != after {
                assert_eq!(after, Some(4), "a key moved between old slots");
                moved += 1;
            }
        }
        assert!((1_000..=3_500).contains(&moved), "moved {moved} of 10000");
    }

    #[test]
    fn keys_spread_over_every_slot() {
        let ring = Ring::new(0..4);
        let mut counts = [0u32; 4];
        for key in 0..10_000u32 {
            let slot = ring.owner(hash_key(&key)).unwrap_or(0);
            counts[slot as usize] += 1;
        }
        for count in counts {
            assert!((1_500..=3_500).contains(&count), "{counts:?}");
        }
    }

    #[test]
    fn successors_list_every_slot_once_owner_first() {
        let ring = Ring::new([7, 3, 9]);
        let hash = hash_key("k");
        let order: Vec<u64> = ring.successors(hash).collect();
        assert_eq!(order.len(), 3);
        assert_eq!(Some(order[0]), ring.owner(hash));
        assert_eq!(Ring::default().owner(hash), None);
    }
}
