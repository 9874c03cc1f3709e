//! Large frame buffers, kept for reuse.
//!
//! A call that carries a megabyte encodes it into a fresh buffer, copies it into a frame,
//! writes the frame and drops both; the reply is read into another fresh buffer. Memory of
//! that size is handed back to the OS when freed (glibc maps allocations past its threshold
//! on their own, and trims the top of its heap), so every such buffer paid a page fault per
//! 4 KiB the first time it was touched: a quarter of all CPU time of a 1 MiB echo went to
//! faults and `brk` in the calling process.
//!
//! Buffers of at least [`POOLED_MIN`] bytes are therefore taken from, and given back to, one
//! process-wide pool holding at most [`POOL_MAX_BUFFERS`] buffers and [`POOL_MAX_BYTES`] bytes.
//! A buffer the pool has no room for is freed as usual.
//!
//! Small frames have a cost of their own: a buffer whose length is not its capacity becomes
//! [`Bytes`] only with a second allocation for its reference count. So a frame of unknown
//! size is encoded into this thread's scratch buffer ([`scratch`]), and a small result is
//! copied out into an allocation of exactly its length (which [`Bytes`] takes as it is), the
//! scratch buffer staying for the next frame: one allocation per frame instead of two.

use std::cell::Cell;
use std::sync::Mutex;

use bytes::Bytes;

/// Buffers of at least this capacity go through the pool.
pub const POOLED_MIN: usize = 64 * 1024;
/// The most buffers the pool keeps.
pub const POOL_MAX_BUFFERS: usize = 8;
/// The most bytes (of capacity) the pool keeps; a buffer larger than half of it is never kept.
pub const POOL_MAX_BYTES: usize = 16 * 1024 * 1024;
/// The capacity of a new scratch buffer.
const SCRATCH_CAPACITY: usize = 256;
/// The largest buffer kept as a thread's scratch buffer.
const SCRATCH_MAX: usize = 4096;
/// The longest frame [`freeze`] copies out of a buffer with room to spare.
const COPY_MAX: usize = 1024;

thread_local! {
    /// An idle small buffer of this thread, for the next frame of unknown size.
    static SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// An empty buffer for a value of unknown size: this thread's scratch buffer when it is idle,
/// a new small one otherwise. Hand it back with [`give`] (or [`freeze`]) when done.
pub fn scratch() -> Vec<u8> {
    // During the thread's teardown the slot is gone: allocate.
    let buffer = SCRATCH.try_with(Cell::take).unwrap_or_default();
    if buffer.capacity() == 0 {
        Vec::with_capacity(SCRATCH_CAPACITY)
    } else {
        buffer
    }
}

/// Idle buffers, each at least [`POOLED_MIN`] bytes of capacity.
struct Pool {
    buffers: Vec<Vec<u8>>,
    bytes: usize,
}

impl Pool {
    const fn new() -> Self {
        Self {
            buffers: Vec::new(),
            bytes: 0,
        }
    }

    /// The smallest idle buffer of at least `capacity` and at most twice that, emptied. A
    /// much larger one is left for a larger frame: lent to a small one, it would stay held
    /// for as long as any slice of that frame lives (a call's arguments, say).
    fn take(&mut self, capacity: usize) -> Option<Vec<u8>> {
        let fits = capacity..=capacity.saturating_mul(2);
        let (index, _) = self
            .buffers
            .iter()
            .enumerate()
            .filter(|(_, buffer)| fits.contains(&buffer.capacity()))
            .min_by_key(|(_, buffer)| buffer.capacity())?;
        let buffer = self.buffers.swap_remove(index);
        self.bytes -= buffer.capacity();
        Some(buffer)
    }

    /// Keeps `buffer` if there is room; frees it otherwise.
    fn give(&mut self, mut buffer: Vec<u8>) {
        let capacity = buffer.capacity();
        if !(POOLED_MIN..=POOL_MAX_BYTES / 2).contains(&capacity)
            || self.buffers.len() >= POOL_MAX_BUFFERS
            || self.bytes + capacity > POOL_MAX_BYTES
        {
            return;
        }
        buffer.clear();
        self.bytes += capacity;
        self.buffers.push(buffer);
    }
}

static POOL: Mutex<Pool> = Mutex::new(Pool::new());

fn with_pool<T>(f: impl FnOnce(&mut Pool) -> T) -> T {
    // The pool holds only idle buffers: one left by a panic elsewhere is still consistent.
    let mut pool = POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    f(&mut pool)
}

/// An empty buffer of at least `capacity` bytes: an idle one from the pool when `capacity` is
/// at least [`POOLED_MIN`] and one fits, a new allocation otherwise.
pub fn take(capacity: usize) -> Vec<u8> {
    if capacity >= POOLED_MIN {
        if let Some(buffer) = with_pool(|pool| pool.take(capacity)) {
            return buffer;
        }
    }
    Vec::with_capacity(capacity)
}

/// Makes room for `additional` more bytes in `buffer`, moving its contents into a pooled
/// buffer once it grows to [`POOLED_MIN`] or more (its old storage goes back to the pool
/// when that is large enough). Grows twofold, as `Vec` does, but not past `limit` bytes of
/// capacity unless more than that is needed.
pub fn reserve(buffer: &mut Vec<u8>, additional: usize, limit: usize) {
    let needed = buffer.len().saturating_add(additional);
    if needed <= buffer.capacity() {
        return;
    }
    let grown = buffer.capacity().saturating_mul(2).min(limit).max(needed);
    if grown < POOLED_MIN {
        buffer.reserve_exact(grown - buffer.len());
        return;
    }
    let mut bigger = take(grown);
    bigger.extend_from_slice(buffer);
    give(std::mem::replace(buffer, bigger));
}

/// Gives `buffer` back: to the pool if it is large enough (and there is room), as this
/// thread's scratch buffer if it is small, or to the allocator.
pub fn give(mut buffer: Vec<u8>) {
    let capacity = buffer.capacity();
    if capacity >= POOLED_MIN {
        with_pool(|pool| pool.give(buffer));
    } else if capacity > 0 && capacity <= SCRATCH_MAX {
        buffer.clear();
        // Replaces (frees) an idle scratch buffer if there is one; fails only in teardown.
        let _ = SCRATCH.try_with(|slot| slot.set(buffer));
    }
}

/// Turns `buffer` into [`Bytes`]. A buffer of [`POOLED_MIN`] or more is lent without copying,
/// and goes back to the pool when the last clone of the returned bytes is dropped. A small
/// one with room to spare is copied out, and kept as this thread's scratch buffer.
pub fn freeze(buffer: Vec<u8>) -> Bytes {
    if buffer.capacity() >= POOLED_MIN {
        Bytes::from_owner(Pooled(buffer))
    } else if buffer.len() == buffer.capacity() || buffer.len() > COPY_MAX {
        Bytes::from(buffer)
    } else {
        let bytes = Bytes::copy_from_slice(&buffer);
        give(buffer);
        bytes
    }
}

/// A pooled buffer lent to [`Bytes`]; returns to the pool on drop.
struct Pooled(Vec<u8>);

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_hands_out_the_smallest_buffer_that_fits() {
        let mut pool = Pool::new();
        pool.give(Vec::with_capacity(4 * POOLED_MIN));
        pool.give(Vec::with_capacity(POOLED_MIN));
        pool.give(Vec::with_capacity(2 * POOLED_MIN));
        let buffer = pool.take(POOLED_MIN + 1).expect("one fits");
        assert!(buffer.capacity() >= 2 * POOLED_MIN && buffer.capacity() < 4 * POOLED_MIN);
        assert!(pool.take(8 * POOLED_MIN).is_none());
        assert_eq!(pool.buffers.len(), 2);
        assert!(
            pool.take(POOLED_MIN / 2 + POOLED_MIN / 4).is_some(),
            "the smallest, at most twice as large"
        );
        assert!(
            pool.take(POOLED_MIN).is_none(),
            "left: one of four times the size asked for"
        );
        assert_eq!(
            pool.bytes,
            pool.buffers.iter().map(Vec::capacity).sum::<usize>()
        );
    }

    #[test]
    fn the_pool_keeps_neither_small_nor_oversized_buffers_nor_more_than_its_bounds() {
        let mut pool = Pool::new();
        pool.give(Vec::with_capacity(POOLED_MIN - 1));
        pool.give(Vec::with_capacity(POOL_MAX_BYTES / 2 + 1));
        assert!(pool.buffers.is_empty());
        for _ in 0..POOL_MAX_BUFFERS + 3 {
            pool.give(Vec::with_capacity(POOLED_MIN));
        }
        assert_eq!(pool.buffers.len(), POOL_MAX_BUFFERS);
        let mut pool = Pool::new();
        for _ in 0..3 {
            pool.give(Vec::with_capacity(POOL_MAX_BYTES / 2));
        }
        assert_eq!(pool.buffers.len(), 2);
        assert!(pool.bytes <= POOL_MAX_BYTES);
    }

    #[test]
    fn a_buffer_taken_back_from_the_pool_is_empty() {
        let mut pool = Pool::new();
        let mut used = Vec::with_capacity(POOLED_MIN);
        used.extend_from_slice(&[1, 2, 3]);
        pool.give(used);
        assert!(pool.take(POOLED_MIN).expect("kept").is_empty());
    }

    #[test]
    fn reserve_keeps_the_contents_while_growing_into_a_pooled_buffer() {
        let mut buffer = vec![7u8; 1000];
        reserve(&mut buffer, 2 * POOLED_MIN, usize::MAX);
        assert!(buffer.capacity() >= 1000 + 2 * POOLED_MIN);
        assert_eq!(buffer, vec![7u8; 1000]);
        let mut small = vec![1u8; 10];
        reserve(&mut small, 10, usize::MAX);
        assert!(small.capacity() >= 20);
        assert_eq!(small, vec![1u8; 10]);
    }

    #[test]
    fn reserve_does_not_double_past_the_limit() {
        let mut buffer = Vec::with_capacity(100);
        buffer.extend_from_slice(&[0u8; 100]);
        reserve(&mut buffer, 10, 150);
        assert!(
            buffer.capacity() >= 110 && buffer.capacity() < 200,
            "{}",
            buffer.capacity()
        );
    }

    #[test]
    fn a_small_buffer_frozen_is_copied_out_and_its_storage_becomes_the_scratch_buffer() {
        let mut buffer = Vec::with_capacity(SCRATCH_CAPACITY * 2);
        buffer.extend_from_slice(b"frame");
        let storage = buffer.as_ptr();
        let bytes = freeze(buffer);
        assert_eq!(&bytes[..], b"frame");
        let next = scratch();
        assert_eq!(next.as_ptr(), storage, "the same storage, reused");
        assert!(next.is_empty());
        assert_eq!(scratch().capacity(), SCRATCH_CAPACITY, "taken: a new one");
    }

    #[test]
    fn frozen_bytes_read_back_what_the_buffer_held_and_slice_like_any_bytes() {
        let mut buffer = take(POOLED_MIN);
        buffer.extend((0..POOLED_MIN).map(|i| (i % 251) as u8));
        let bytes = freeze(buffer);
        assert_eq!(bytes.len(), POOLED_MIN);
        assert_eq!(bytes[300], (300 % 251) as u8);
        let tail = bytes.slice(POOLED_MIN - 2..);
        drop(bytes);
        assert_eq!(
            &tail[..],
            &[
                ((POOLED_MIN - 2) % 251) as u8,
                ((POOLED_MIN - 1) % 251) as u8
            ]
        );
    }
}
