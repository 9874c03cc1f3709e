//! Admission: which member takes a call, and the fair queue of calls waiting for a free one.
//!
//! Picking a member and taking one of its call slots happen under the pool's one lock, so
//! two concurrent calls never both see the same idle member as idle. A finished call gives
//! its slot back without the lock and only takes it when calls wait, to hand the freed
//! capacity to the oldest of them.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use pm_core::{Error, ProcessId};
use tokio::sync::oneshot;

use super::member::Member;
use super::ring::Ring;
use super::strategy::{choose, Candidate};
use super::PoolCore;
use crate::managed::Link;
use crate::rpc::client::RpcConnection;

/// A member's call slot, taken for one call: given back when dropped.
pub(crate) struct Reserved {
    pub(crate) member: Arc<Member>,
    pub(crate) conn: Arc<RpcConnection>,
}

/// Where the pool is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    Running,
    /// Draining or stopping: new calls are refused.
    Stopping,
    Stopped,
}

/// What admission gives a call.
pub(crate) enum Admitted {
    /// A member's slot, now.
    Ready(Reserved),
    /// A place in the queue.
    Queued(Turn),
}

/// A call's place in the queue.
pub(crate) struct Turn {
    ticket: u64,
    rx: oneshot::Receiver<Result<Reserved, Error>>,
    /// When the call stops waiting for a member to come back, if none was up.
    hopeless_after: Option<Instant>,
}

/// A call waiting for a free member.
pub(crate) struct Waiter {
    ticket: u64,
    key: Option<u64>,
    avoid: Option<ProcessId>,
    tx: oneshot::Sender<Result<Reserved, Error>>,
}

/// What the pool's lock guards.
pub(crate) struct State {
    /// In rotation (unless their process is down right now), in slot order.
    pub(crate) members: Vec<Arc<Member>>,
    /// Members being replaced or removed: finishing their calls, then stopped.
    pub(crate) retiring: Vec<Arc<Member>>,
    pub(crate) ring: Ring,
    pub(crate) queue: VecDeque<Waiter>,
    pub(crate) phase: Phase,
    /// The slots of members that failed for good whose replacements are on their way.
    pub(crate) healing: Vec<u64>,
    /// How many of those a resize down no longer wants.
    pub(crate) cancelled_healing: usize,
    pub(crate) next_slot: u64,
    next_ticket: u64,
    scratch: Vec<Candidate>,
}

impl State {
    pub(crate) fn new() -> Self {
        Self {
            members: Vec::new(),
            retiring: Vec::new(),
            ring: Ring::default(),
            queue: VecDeque::new(),
            phase: Phase::Running,
            healing: Vec::new(),
            cancelled_healing: 0,
            next_slot: 0,
            next_ticket: 0,
            scratch: Vec::new(),
        }
    }

    /// The members the pool will have once the replacements on their way arrive.
    pub(crate) fn expected_size(&self) -> usize {
        self.members.len() + self.healing.len() - self.cancelled_healing
    }

    /// One replacement for `slot` is no longer on its way.
    pub(crate) fn forget_healing(&mut self, slot: u64) {
        if let Some(at) = self.healing.iter().position(|s| *s == slot) {
            self.healing.swap_remove(at);
        }
    }

    pub(crate) fn rebuild_ring(&mut self) {
        self.ring = Ring::new(self.members.iter().map(|m| m.slot));
    }

    /// Whether some member may take calls later: one is up or restarting, or a replacement
    /// is on its way.
    fn may_recover(&self) -> bool {
        !self.healing.is_empty()
            || self
                .members
                .iter()
                .any(|m| !matches!(&*m.managed.watch_link().borrow(), Link::Gone(_)))
    }
}

impl PoolCore {
    /// Takes a slot of a member that can take the call now, by key or by strategy.
    /// `avoid` (the member a retried call failed on) is a preference: when no other member
    /// can take the call, it may go there again (restarted meanwhile).
    fn try_pick(
        &self,
        state: &mut State,
        key: Option<u64>,
        avoid: Option<ProcessId>,
    ) -> Option<Reserved> {
        let pick = |state: &mut State, avoid| match key {
            Some(hash) => self.pick_keyed(state, hash, avoid),
            None => self.pick_by_strategy(state, avoid),
        };
        pick(state, avoid).or_else(|| avoid.and_then(|_| pick(state, None)))
    }

    fn pick_keyed(&self, state: &State, hash: u64, avoid: Option<ProcessId>) -> Option<Reserved> {
        // The owner if it is up; the next slots on the ring while it is not. A full owner
        // makes the call wait for it, so a key sticks to its member under load too.
        for slot in state.ring.successors(hash) {
            let Some(member) = state.members.iter().find(|m| m.slot == slot) else {
                continue;
            };
            if Some(member.id()) == avoid || member.is_retiring() {
                continue;
            }
            let Ok(conn) = member.managed.current() else {
                continue;
            };
            if member.in_flight() >= self.capacity {
                return None;
            }
            member.reserve();
            return Some(Reserved {
                member: member.clone(),
                conn,
            });
        }
        None
    }

    fn pick_by_strategy(&self, state: &mut State, avoid: Option<ProcessId>) -> Option<Reserved> {
        // Only the strategy that weighs latency reads the clock.
        let now = (self.strategy == super::Strategy::LeastLatency).then(Instant::now);
        let mut candidates = std::mem::take(&mut state.scratch);
        candidates.clear();
        for (index, member) in state.members.iter().enumerate() {
            let in_flight = member.in_flight();
            if in_flight < self.capacity && Some(member.id()) != avoid && !member.is_retiring() {
                let latency = now.map_or(0.0, |now| member.latency(now));
                candidates.push(Candidate {
                    index,
                    in_flight,
                    latency,
                });
            }
        }
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let mut picked = None;
        while !candidates.is_empty() {
            let at = choose(self.strategy, &candidates, turn);
            let member = &state.members[candidates[at].index];
            match member.managed.current() {
                Ok(conn) => {
                    member.reserve();
                    picked = Some(Reserved {
                        member: member.clone(),
                        conn,
                    });
                    break;
                }
                // Down right now (restarting): out of rotation until it is back.
                Err(_) => {
                    candidates.swap_remove(at);
                }
            }
        }
        state.scratch = candidates;
        picked
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A slot for one call at once when a member can take it and nobody waits for one;
    /// otherwise the call's place in the queue, to wait on with [`PoolCore::wait_turn`].
    /// Synchronous, so the common case costs no future state.
    pub(crate) fn admit_call(
        &self,
        key: Option<u64>,
        avoid: Option<ProcessId>,
    ) -> Result<Admitted, Error> {
        {
            let mut state = self.lock_state();
            if state.phase != Phase::Running {
                return Err(self.unavailable("the pool is stopping or stopped"));
            }
            // Nobody waits who could use a free member (waiting keyed calls are bound to their
            // own members): take one at once.
            if state.queue.iter().all(|w| w.key.is_some() && w.key != key) {
                if let Some(reserved) = self.try_pick(&mut state, key, avoid) {
                    return Ok(Admitted::Ready(reserved));
                }
            }
            if state.queue.len() >= self.max_queue {
                return Err(Error::Overloaded {
                    pool: self.name.clone(),
                    queued: state.queue.len(),
                });
            }
            let nothing_up = !state.members.iter().any(|m| m.managed.current().is_ok());
            if nothing_up && !state.may_recover() {
                return Err(self.unavailable("no member is running and none is restarting"));
            }
            let ticket = state.next_ticket;
            state.next_ticket += 1;
            let (tx, rx) = oneshot::channel();
            state.queue.push_back(Waiter {
                ticket,
                key,
                avoid,
                tx,
            });
            self.queued.store(state.queue.len(), Ordering::SeqCst);
            // A slot freed between the pick above and the store of `queued` was given back
            // by a call that saw no waiter: look again now that the waiter is visible.
            self.pump_locked(&mut state);
            Ok(Admitted::Queued(Turn {
                ticket,
                rx,
                hopeless_after: nothing_up.then(|| Instant::now() + super::ALL_DOWN_WAIT),
            }))
        }
    }

    /// Waits for a queued call's turn, within `due`.
    pub(crate) async fn wait_turn(
        &self,
        turn: Turn,
        method: &str,
        due: Option<Instant>,
        timeout: Option<std::time::Duration>,
    ) -> Result<Reserved, Error> {
        let Turn {
            ticket,
            rx,
            hopeless_after,
        } = turn;
        let mut waiting = Queued {
            core: self,
            ticket,
            rx: Some(rx),
        };
        let rx = waiting
            .rx
            .as_mut()
            .ok_or_else(|| self.unavailable("lost"))?;
        let limit = match (due, hopeless_after) {
            (Some(due), Some(hopeless)) => Some((due.min(hopeless), hopeless < due)),
            (Some(due), None) => Some((due, false)),
            (None, Some(hopeless)) => Some((hopeless, true)),
            (None, None) => None,
        };
        let outcome = match limit {
            Some((at, hopeless)) => match tokio::time::timeout_at(at.into(), rx).await {
                Ok(outcome) => outcome,
                Err(_) if hopeless => {
                    return Err(self.unavailable(format!(
                        "no member came back within {:?}",
                        super::ALL_DOWN_WAIT
                    )))
                }
                Err(_) => {
                    return Err(Error::Timeout {
                        method: method.to_owned(),
                        after: timeout.unwrap_or_default(),
                    })
                }
            },
            None => rx.await,
        };
        waiting.rx = None;
        outcome.unwrap_or_else(|_| Err(self.unavailable("the pool is gone")))
    }

    /// Hands free capacity to the calls waiting for it, oldest first. A waiter for a key
    /// whose member is full is skipped, not served out of turn by another member.
    pub(crate) fn pump_locked(&self, state: &mut State) {
        let mut index = 0;
        while index < state.queue.len() {
            let (key, avoid) = (state.queue[index].key, state.queue[index].avoid);
            match self.try_pick(state, key, avoid) {
                Some(reserved) => {
                    let waiter = state.queue.remove(index);
                    if let Some(waiter) = waiter {
                        if let Err(Ok(unused)) = waiter.tx.send(Ok(reserved)) {
                            unused.member.release();
                        }
                    }
                }
                // Nobody can take an unkeyed call: nothing more can be served.
                None if key.is_none() => break,
                None => index += 1,
            }
        }
        self.queued.store(state.queue.len(), Ordering::SeqCst);
    }

    /// Hands freed capacity on, if calls wait.
    pub(crate) fn pump(&self) {
        if self.queued.load(Ordering::SeqCst) > 0 {
            let mut state = self.lock_state();
            self.pump_locked(&mut state);
        }
    }

    /// Gives a slot back and serves a waiting call with it.
    pub(crate) fn release(&self, reserved: &Reserved) {
        reserved.member.release();
        self.pump();
    }

    /// Ends every waiting call with `error`.
    pub(crate) fn fail_waiters(&self, state: &mut State, error: &Error) {
        for waiter in state.queue.drain(..) {
            let _ = waiter.tx.send(Err(error.clone()));
        }
        self.queued.store(0, Ordering::SeqCst);
    }

    /// Ends the waiting calls when no member can ever take them.
    pub(crate) fn fail_waiters_if_hopeless(&self, state: &mut State) {
        if !state.queue.is_empty() && !state.may_recover() {
            let error = self.unavailable("no member is running and none is restarting");
            self.fail_waiters(state, &error);
        }
    }

    fn forget_waiter(&self, ticket: u64) -> bool {
        let mut state = self.lock_state();
        let before = state.queue.len();
        state.queue.retain(|w| w.ticket != ticket);
        let removed = before != state.queue.len();
        // The waiter that left may have held up those behind it.
        self.pump_locked(&mut state);
        removed
    }
}

/// A queued call: leaves the queue when given up on, and gives back a slot it was handed
/// too late.
struct Queued<'a> {
    core: &'a PoolCore,
    ticket: u64,
    rx: Option<oneshot::Receiver<Result<Reserved, Error>>>,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else {
            return;
        };
        if !self.core.forget_waiter(self.ticket) {
            // Already served: the slot it was handed goes to the next waiter.
            rx.close();
            if let Ok(Ok(reserved)) = rx.try_recv() {
                self.core.release(&reserved);
            }
        }
    }
}
