//! A call's first poll, in the call loop itself.
//!
//! Most calls finish the first time they are polled: `add` has nothing to wait for. Handing
//! such a call to a runner task costs more than the call: the hand-over, the runner's wake-up,
//! the registry entry a cancel would need, and a timer for its deadline. So the call loop
//! polls each call once, where it decoded it, and a call that finishes there is answered at
//! once. A call that has something to wait for goes to a runner, as every call did before,
//! and is cancellable, bounded by its deadline and aborted with the connection from there.
//!
//! What a poll in the call loop must not do is hold the loop up: while it runs, no frame is
//! read, so no cancel, health check or shutdown gets through. A method that blocks its
//! thread (CPU-bound or synchronous code) would do that. So each first poll is timed, and a
//! method whose first poll took longer than [`DEFAULT_BUDGET`] [`STRIKES`] times is not polled in the
//! loop again on that connection: its calls go straight to runners. A thread preempted in the
//! middle of a quick poll (a loaded machine does that) makes one slow poll now and then, not
//! several in a row, so the strikes of a method not yet moved off are forgiven every
//! [`FORGIVE_AFTER`] polls. A blocking method costs the loop [`STRIKES`] slow polls; the fast
//! path costs two clock reads. [`FIRST_POLL_BUDGET_ENV`] sets another budget, or turns this
//! off.
//!
//! The poll uses a no-op waker. A call that is not finished has registered it wherever it
//! waits; the runner's first poll registers the runner's waker in its place, as every future
//! must on each poll, and looks again at whatever the no-op wake-up would have announced.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use pm_core::{RemoteError, RemoteErrorKind};

use super::lock;
use crate::catch::panic_message;
use crate::host::FIRST_POLL_BUDGET_ENV;
use crate::process::{BoxFuture, DispatchResult};

/// A first poll longer than this is a strike against its method, unless
/// [`FIRST_POLL_BUDGET_ENV`] sets another budget.
pub(super) const DEFAULT_BUDGET: Duration = Duration::from_micros(200);

/// This process's budget: `None` when no call is to be polled in the loop.
fn budget() -> Option<Duration> {
    static BUDGET: OnceLock<Option<Duration>> = OnceLock::new();
    *BUDGET.get_or_init(|| {
        match std::env::var(FIRST_POLL_BUDGET_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            Some(0) => None,
            Some(micros) => Some(Duration::from_micros(micros)),
            None => Some(DEFAULT_BUDGET),
        }
    })
}

/// This many strikes, within [`FORGIVE_AFTER`] polls, and a method's calls go to runners only.
pub(super) const STRIKES: u32 = 3;

/// Every this many first polls, the strikes of methods not yet moved off are forgiven.
pub(super) const FORGIVE_AFTER: u32 = 1024;

/// At most this many methods are tracked; past that, no call is polled in the loop at all (a
/// process with that many blocking methods gains nothing from it).
const MAX_TRACKED: usize = 32;

/// Which methods of one connection are polled in its call loop. Used by the call loop's task
/// only; the atomics make it `Sync`, as the loop's future needs, not shared.
#[derive(Debug)]
pub(super) struct FirstPoll {
    /// A first poll longer than this is a strike; `None`: no call is polled in the loop.
    budget: Option<Duration>,
    /// Set once a method was moved off the loop: until then, no lookup is needed.
    any_moved: AtomicBool,
    /// Set once a method has a strike: until then, nothing needs forgiving.
    any_strikes: AtomicBool,
    /// Set when more methods struck out than are tracked: nothing is polled in the loop.
    off: AtomicBool,
    /// First polls since strikes were last forgiven.
    polls: AtomicU32,
    /// Methods with strikes, and how many.
    struck: Mutex<Vec<(Box<str>, u32)>>,
}

impl FirstPoll {
    /// With this process's budget ([`FIRST_POLL_BUDGET_ENV`]).
    pub(super) fn new() -> Self {
        Self::with_budget(budget())
    }

    fn with_budget(budget: Option<Duration>) -> Self {
        Self {
            budget,
            any_moved: AtomicBool::new(budget.is_none()),
            any_strikes: AtomicBool::new(false),
            off: AtomicBool::new(budget.is_none()),
            polls: AtomicU32::new(0),
            struck: Mutex::new(Vec::new()),
        }
    }

    /// Whether a call of `method` is polled in the call loop.
    pub(super) fn allows(&self, method: &str) -> bool {
        if !self.any_moved.load(Ordering::Relaxed) {
            return true;
        }
        !self.off.load(Ordering::Relaxed)
            && !lock(&self.struck)
                .iter()
                .any(|(m, strikes)| &**m == method && *strikes >= STRIKES)
    }

    /// Polls `future`, a call of `method`, once, here. `Some` with its result when it
    /// finished (a panic is an error result; the future must then be dropped), `None` when it
    /// waits for something and must go to a runner.
    pub(super) fn poll(
        &self,
        method: &str,
        future: &mut BoxFuture<'static, DispatchResult>,
    ) -> Option<DispatchResult> {
        let mut cx = Context::from_waker(Waker::noop());
        let started = Instant::now();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            future.as_mut().poll(&mut cx)
        }));
        let took = started.elapsed();
        if self.budget.is_some_and(|budget| took > budget) {
            self.strike(method, took);
        }
        self.count_poll();
        match outcome {
            Ok(Poll::Ready(result)) => Some(result),
            Ok(Poll::Pending) => None,
            Err(payload) => Some(Err(RemoteError::new(
                RemoteErrorKind::Panic,
                panic_message(payload.as_ref()),
            ))),
        }
    }

    /// Counts a poll, and forgives the strikes of methods not moved off every
    /// [`FORGIVE_AFTER`] of them. One thread counts: a load and a store, no read-modify-write.
    fn count_poll(&self) {
        let polls = self.polls.load(Ordering::Relaxed) + 1;
        if polls < FORGIVE_AFTER {
            self.polls.store(polls, Ordering::Relaxed);
            return;
        }
        self.polls.store(0, Ordering::Relaxed);
        if self.any_strikes.load(Ordering::Relaxed) {
            let mut struck = lock(&self.struck);
            struck.retain(|(_, strikes)| *strikes >= STRIKES);
            self.any_strikes
                .store(!struck.is_empty(), Ordering::Relaxed);
        }
    }

    fn strike(&self, method: &str, took: Duration) {
        let mut struck = lock(&self.struck);
        self.any_strikes.store(true, Ordering::Relaxed);
        let tracked = struck.len();
        let strikes = match struck.iter_mut().find(|(m, _)| &**m == method) {
            Some((_, strikes)) => {
                *strikes += 1;
                *strikes
            }
            None if tracked < MAX_TRACKED => {
                struck.push((method.into(), 1));
                1
            }
            None => {
                self.off.store(true, Ordering::Relaxed);
                self.any_moved.store(true, Ordering::Relaxed);
                tracing::debug!("many methods' first polls took long: every call goes to runners");
                return;
            }
        };
        if strikes == STRIKES {
            self.any_moved.store(true, Ordering::Relaxed);
            tracing::debug!(
                method,
                ?took,
                "a call's first poll took long again: this method's calls go to runners from now on"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(id: u64) -> BoxFuture<'static, DispatchResult> {
        Box::pin(async move {
            pm_core::wire::encode_reply(id, &id, 1024)
                .map_err(|e| RemoteError::new(RemoteErrorKind::Internal, e.to_string()))
        })
    }

    #[test]
    fn a_call_with_nothing_to_wait_for_finishes_in_its_first_poll() {
        let first = FirstPoll::with_budget(Some(DEFAULT_BUDGET));
        let mut future = ready(7);
        let frame = first
            .poll("add", &mut future)
            .expect("finished")
            .expect("ok");
        assert_eq!(frame.id(), 7);
        assert!(first.allows("add"));
    }

    #[test]
    fn a_call_that_waits_is_left_for_a_runner() {
        let first = FirstPoll::with_budget(Some(DEFAULT_BUDGET));
        let mut future: BoxFuture<'static, DispatchResult> = Box::pin(async {
            std::future::pending::<()>().await;
            unreachable!("never woken")
        });
        assert!(first.poll("wait", &mut future).is_none());
        assert!(first.allows("wait"));
    }

    #[test]
    fn a_panic_in_the_first_poll_is_an_error_result() {
        let first = FirstPoll::with_budget(Some(DEFAULT_BUDGET));
        let mut future: BoxFuture<'static, DispatchResult> = Box::pin(async { panic!("boom") });
        let error = first
            .poll("boom", &mut future)
            .expect("finished")
            .expect_err("a panic");
        assert_eq!(error.kind, RemoteErrorKind::Panic);
        assert!(error.message.contains("boom"), "{error:?}");
    }

    fn blocking() -> BoxFuture<'static, DispatchResult> {
        Box::pin(async {
            std::thread::sleep(DEFAULT_BUDGET * 2);
            pm_core::wire::encode_reply(1, &1u8, 1024)
                .map_err(|e| RemoteError::new(RemoteErrorKind::Internal, e.to_string()))
        })
    }

    #[test]
    fn a_method_whose_first_polls_block_is_not_polled_in_the_loop_again() {
        let first = FirstPoll::with_budget(Some(DEFAULT_BUDGET));
        for strike in 1..=STRIKES {
            assert!(first.allows("crunch"), "before strike {strike}");
            assert!(first.poll("crunch", &mut blocking()).is_some());
        }
        assert!(!first.allows("crunch"));
        assert!(
            first.allows("add"),
            "only the slow method is moved off the loop"
        );
    }

    #[test]
    fn an_occasional_slow_poll_is_forgiven() {
        let first = FirstPoll::with_budget(Some(DEFAULT_BUDGET));
        for _ in 0..3 * STRIKES {
            for _ in 0..STRIKES - 1 {
                assert!(first.poll("add", &mut blocking()).is_some());
            }
            for i in 0..FORGIVE_AFTER {
                assert!(first.poll("add", &mut ready(u64::from(i))).is_some());
            }
        }
        assert!(first.allows("add"));
    }

    #[test]
    fn a_method_moved_off_stays_off_past_the_forgiving() {
        let first = FirstPoll::with_budget(Some(DEFAULT_BUDGET));
        for _ in 0..STRIKES {
            first.strike("crunch", DEFAULT_BUDGET * 2);
        }
        for i in 0..2 * FORGIVE_AFTER {
            assert!(first.poll("add", &mut ready(u64::from(i))).is_some());
        }
        assert!(!first.allows("crunch"));
    }

    #[test]
    fn a_budget_of_zero_polls_no_call_in_the_loop() {
        let first = FirstPoll::with_budget(None);
        assert!(!first.allows("add"));
    }

    #[test]
    fn past_the_tracked_methods_nothing_is_polled_in_the_loop() {
        let first = FirstPoll::with_budget(Some(DEFAULT_BUDGET));
        for i in 0..=MAX_TRACKED {
            first.strike(&format!("m{i}"), DEFAULT_BUDGET * 2);
        }
        assert!(!first.allows("add"));
        assert!(!first.allows("m0"));
    }
}
