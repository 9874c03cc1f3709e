//! Where the calls in flight on one client connection wait for their replies.
//!
//! Each call takes a slot of its own in a table, and its id names the slot: the low 32 bits
//! are the slot's index, the high 32 bits the slot's generation, raised each time the slot is
//! freed. The reader task finds a reply's slot by indexing, not hashing, and hands the reply
//! over under the table's lock, where it wakes the waiting call: no map entry and no oneshot
//! channel (an allocation and its atomics) per call. A reply whose generation does not match
//! its slot's belongs to a call that has already ended (cancelled, timed out) and is dropped.
//!
//! The table also holds the connection's closing error: once it is set no slot is taken, and
//! every call still waiting gets the error.

use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use pm_core::wire::Frame;
use pm_core::Error;

/// What a call gets back: the reply frame, or why there is none.
pub(crate) type Reply = Result<Frame, Error>;

/// Names one taken slot: its index and the generation it was taken in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlotKey {
    index: u32,
    generation: u32,
}

impl SlotKey {
    /// The call id the key stands for on the wire. Generations start at 1, so no id is below
    /// 2^32: ids 0 and 1 (the handshake's) never name a slot.
    pub(crate) fn id(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.index)
    }

    fn from_id(id: u64) -> Self {
        Self {
            index: id as u32,
            generation: (id >> 32) as u32,
        }
    }
}

/// The reply table of one connection. Every method takes the one lock for a few steps and
/// never wakes a task while holding it.
#[derive(Default)]
pub(crate) struct ReplySlots {
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    slots: Vec<Slot>,
    /// Indexes of free slots, the most recently freed last (its memory is the warmest).
    free: Vec<u32>,
    /// Set once the connection is gone: no slot is taken after it.
    closed: Option<Error>,
}

struct Slot {
    generation: u32,
    state: State,
}

enum State {
    Free,
    /// Taken; the waker is that of the task polling for the reply, once it has polled.
    Waiting(Option<Waker>),
    /// The reply (or the connection's error) has arrived and is not yet taken.
    Done(Reply),
}

impl ReplySlots {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes a slot for a new call. Fails with the connection's closing error once it is set.
    pub(crate) fn take(&self) -> Result<SlotKey, Error> {
        let mut table = self.lock();
        if let Some(error) = &table.closed {
            return Err(error.clone());
        }
        let index = match table.free.pop() {
            Some(index) => index,
            None => {
                // More slots than calls can be in flight at once (the connection's permits)
                // never exist; `u32` indexes are far beyond any `max_in_flight`.
                let index = u32::try_from(table.slots.len())
                    .map_err(|_| Error::Transport("too many calls in flight".into()))?;
                table.slots.push(Slot {
                    generation: 1,
                    state: State::Free,
                });
                index
            }
        };
        let slot = &mut table.slots[index as usize];
        slot.state = State::Waiting(None);
        Ok(SlotKey {
            index,
            generation: slot.generation,
        })
    }

    /// Hands `reply` to the call with `id`, and wakes it. `false` when no call waits for that
    /// id (it ended before its reply came, or the id was never ours): the reply is dropped.
    pub(crate) fn complete(&self, id: u64, reply: Reply) -> bool {
        let key = SlotKey::from_id(id);
        let waker = {
            let mut table = self.lock();
            let Some(slot) = table.slots.get_mut(key.index as usize) else {
                return false;
            };
            if slot.generation != key.generation || !matches!(slot.state, State::Waiting(_)) {
                return false;
            }
            match std::mem::replace(&mut slot.state, State::Done(reply)) {
                State::Waiting(waker) => waker,
                State::Free | State::Done(_) => None,
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }

    /// The reply of the call `key`, if it has arrived; the slot is freed when it is taken.
    /// Otherwise the task of `cx` is woken when it arrives.
    pub(crate) fn poll_reply(&self, key: SlotKey, cx: &mut Context<'_>) -> Poll<Reply> {
        let mut table = self.lock();
        let Some(slot) = table
            .slots
            .get_mut(key.index as usize)
            .filter(|slot| slot.generation == key.generation)
        else {
            // Only a key this table gave out and not yet taken back is ever polled.
            return Poll::Ready(Err(Error::Transport(
                "the call's reply slot is gone".into(),
            )));
        };
        if let State::Waiting(waker) = &mut slot.state {
            match waker {
                Some(known) if known.will_wake(cx.waker()) => {}
                _ => *waker = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        let state = std::mem::replace(&mut slot.state, State::Free);
        table.release(key.index);
        match state {
            State::Done(reply) => Poll::Ready(reply),
            State::Waiting(_) | State::Free => Poll::Ready(Err(Error::Transport(
                "the call's reply slot is gone".into(),
            ))),
        }
    }

    /// Gives back the slot of a call that will not take its reply (its future was dropped).
    /// `true` when the reply had not arrived yet, so the process may still be running the call.
    pub(crate) fn abandon(&self, key: SlotKey) -> bool {
        let reply = {
            let mut table = self.lock();
            let Some(slot) = table
                .slots
                .get_mut(key.index as usize)
                .filter(|slot| slot.generation == key.generation)
            else {
                return false;
            };
            let state = std::mem::replace(&mut slot.state, State::Free);
            table.release(key.index);
            state
        };
        // A reply frame that arrived unread is dropped here, outside the lock.
        matches!(reply, State::Waiting(_))
    }

    /// Sets the closing error (an earlier one is kept), and ends every waiting call with
    /// `error`. From now on no slot is taken.
    pub(crate) fn close(&self, error: &Error) {
        let wakers: Vec<Waker> = {
            let mut table = self.lock();
            table.closed.get_or_insert_with(|| error.clone());
            table
                .slots
                .iter_mut()
                .filter(|slot| matches!(slot.state, State::Waiting(_)))
                .filter_map(|slot| {
                    match std::mem::replace(&mut slot.state, State::Done(Err(error.clone()))) {
                        State::Waiting(waker) => waker,
                        State::Free | State::Done(_) => None,
                    }
                })
                .collect()
        };
        for waker in wakers {
            waker.wake();
        }
    }

    /// The closing error, once the connection is gone.
    pub(crate) fn closed(&self) -> Option<Error> {
        self.lock().closed.clone()
    }
}

impl Table {
    /// Frees slot `index` for the next call, under a new generation so that a late reply
    /// to the old call finds no match. Generation 0 is skipped (see [`SlotKey::id`]).
    fn release(&mut self, index: u32) {
        if let Some(slot) = self.slots.get_mut(index as usize) {
            slot.generation = slot.generation.wrapping_add(1).max(1);
            self.free.push(index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pm_core::wire::FrameKind;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<CountingWaker>, Waker) {
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        (counter.clone(), Waker::from(counter))
    }

    fn reply(id: u64) -> Reply {
        Ok(Frame::empty(FrameKind::ReplyOk, id))
    }

    #[test]
    fn a_reply_reaches_the_call_whose_id_it_carries_and_wakes_it() {
        let slots = ReplySlots::default();
        let first = slots.take().expect("open");
        let second = slots.take().expect("open");
        assert_ne!(first.id(), second.id());
        let (woken, waker) = waker();
        let mut cx = Context::from_waker(&waker);
        assert!(slots.poll_reply(second, &mut cx).is_pending());
        assert!(slots.complete(second.id(), reply(second.id())));
        assert_eq!(woken.0.load(Ordering::SeqCst), 1);
        match slots.poll_reply(second, &mut cx) {
            Poll::Ready(Ok(frame)) => assert_eq!(frame.id(), second.id()),
            other => panic!("expected the reply, got {other:?}"),
        }
        assert!(slots.poll_reply(first, &mut cx).is_pending());
    }

    #[test]
    fn a_late_reply_to_an_abandoned_call_does_not_reach_the_call_that_reuses_its_slot() {
        let slots = ReplySlots::default();
        let old = slots.take().expect("open");
        assert!(
            slots.abandon(old),
            "no reply had come: the call may be running"
        );
        let new = slots.take().expect("open");
        assert_ne!(old.id(), new.id(), "a reused slot gets a new id");
        assert!(!slots.complete(old.id(), reply(old.id())));
        let (_, waker) = waker();
        assert!(slots
            .poll_reply(new, &mut Context::from_waker(&waker))
            .is_pending());
    }

    #[test]
    fn abandoning_a_call_whose_reply_arrived_says_there_is_nothing_to_cancel() {
        let slots = ReplySlots::default();
        let key = slots.take().expect("open");
        assert!(slots.complete(key.id(), reply(key.id())));
        assert!(!slots.abandon(key));
        assert!(!slots.complete(key.id(), reply(key.id())), "freed");
    }

    #[test]
    fn closing_ends_every_waiting_call_with_the_error_and_refuses_new_ones() {
        let slots = ReplySlots::default();
        let keys: Vec<SlotKey> = (0..3).map(|_| slots.take().expect("open")).collect();
        let (woken, waker) = waker();
        let mut cx = Context::from_waker(&waker);
        for key in &keys {
            assert!(slots.poll_reply(*key, &mut cx).is_pending());
        }
        slots.close(&Error::Transport("first".into()));
        slots.close(&Error::Transport("second".into()));
        assert_eq!(woken.0.load(Ordering::SeqCst), 3);
        for key in keys {
            match slots.poll_reply(key, &mut cx) {
                Poll::Ready(Err(Error::Transport(reason))) => assert_eq!(reason, "first"),
                other => panic!("expected the closing error, got {other:?}"),
            }
        }
        assert!(matches!(slots.take(), Err(Error::Transport(reason)) if reason == "first"));
        assert!(slots.closed().is_some());
    }

    #[test]
    fn ids_never_collide_with_the_handshake_and_generations_skip_zero_when_they_wrap() {
        let slots = ReplySlots::default();
        let key = slots.take().expect("open");
        assert!(key.id() >= 1 << 32);
        slots.lock().slots[0].generation = u32::MAX;
        let wrapped = SlotKey {
            index: 0,
            generation: u32::MAX,
        };
        slots.abandon(wrapped);
        let next = slots.take().expect("open");
        assert_eq!(next.index, 0);
        assert_eq!(next.generation, 1, "generation 0 is skipped");
        assert!(next.id() >= 2);
    }

    #[test]
    fn a_reply_with_an_id_no_slot_has_is_dropped() {
        let slots = ReplySlots::default();
        assert!(!slots.complete(7, reply(7)));
        assert!(!slots.complete(u64::MAX, reply(u64::MAX)));
    }
}
