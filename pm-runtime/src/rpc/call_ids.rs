//! Maps keyed by call id, with a hash fit for them.
//!
//! Both sides of a connection look a call up by its id several times per call (register,
//! find, remove). The standard library's SipHash, built to resist chosen keys, cost about 5%
//! of a small call's instructions on the process side. Ids are `u64`s, mostly consecutive,
//! so one multiplication mixes them enough. A peer that picks colliding ids on purpose gains
//! little: a map holds at most the connection's calls in flight (1024 by default), so the
//! worst case is a linear scan of that many entries per lookup.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map from call id to `V`.
pub(crate) type CallIdMap<V> = HashMap<u64, V, BuildHasherDefault<CallIdHasher>>;

/// Hashes one `u64` by a multiplication with an odd constant (Fibonacci hashing): distinct ids
/// get distinct hashes, the low bits (the bucket) follow the id's low bits one to one, and the
/// high bits (the map's tag) are well mixed.
#[derive(Default)]
pub(crate) struct CallIdHasher(u64);

impl Hasher for CallIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed here; anything else still hashes, byte by byte.
        for byte in bytes {
            self.write_u64(u64::from(*byte) ^ self.0.rotate_left(8));
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = (id ^ (id >> 32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_ids_hash_apart_and_the_map_finds_each() {
        let mut map = CallIdMap::default();
        for id in 0..10_000u64 {
            map.insert(id, id * 2);
        }
        assert!((0..10_000u64).all(|id| map.get(&id) == Some(&(id * 2))));
        let hash = |id: u64| {
            let mut hasher = CallIdHasher::default();
            hasher.write_u64(id);
            hasher.finish()
        };
        let tags: std::collections::HashSet<u64> = (0..128u64).map(|id| hash(id) >> 57).collect();
        assert!(
            tags.len() > 64,
            "the top bits vary with the id: {} tags",
            tags.len()
        );
    }
}
