//! A call's first poll, in the call loop itself.
//!
//! Most calls finish the first time they are polled: `add` has nothing to wait for. Handing
//! such a call to a runner task costs more than the call: the hand-over, the runner's wake-up,
//! the registry entry a cancel would need, and a timer for its deadline. So the call loop
//! polls the calls of a method it has seen to be quick once, where it decoded them, and a call
//! that finishes there is answered at once. A call that has something to wait for goes on to
//! a runner, as every call did before, and is cancellable, bounded by its deadline and aborted
//! with the connection from there.
//!
//! What a poll in the call loop must not do is hold the loop up: while it runs, no frame is
//! read, so no cancel, health check or shutdown gets through. A method that blocks its
//! thread (CPU-bound or synchronous code) would do that. So:
//! - **A method is on probation first.** Its calls run on runners, timed from start to
//!   reply; after [`PROMOTE_AFTER`] calls in a row that each took no longer than the budget
//!   ([`DEFAULT_BUDGET`]), its calls are polled in the loop. A method that blocks never gets
//!   there, so the loop never waits on it.
//! - **A promoted method can strike out.** Each first poll in the loop is timed; a method
//!   whose first polls took longer than the budget [`STRIKES`] times within
//!   [`FORGIVE_AFTER`] of its calls (counted from its first strike) is not polled in the loop
//!   again on that connection. A thread preempted in the middle of a quick poll (a loaded
//!   machine does that) makes one slow poll now and then, not several close together. A
//!   quick method that starts to block costs the loop [`STRIKES`] slow polls.
//!
//! What this changes for a method, once promoted:
//! - A call's first poll runs in the call loop's task, the rest (if any) in a runner's:
//!   `tokio::task::try_id()` differs across the call's first wait.
//! - A promoted method that then blocks its thread holds up its connection's reading for as
//!   long as that poll blocks, up to [`STRIKES`] times; one that blocks until another call on
//!   the same connection arrives never sees it (on a runner, it blocked a worker thread, and
//!   the loop went on reading). Such a method should not be promoted: set
//!   [`FIRST_POLL_BUDGET_ENV`] to `0`, or keep the blocking off the runtime
//!   (`spawn_blocking`).
//!
//! What it does not change: the time a first poll took counts against the call's deadline
//! on the runner that takes the call on; a call polled in the loop and not finished does not
//! wait behind a client's backed-up replies before it is polled again (it may hold the
//! instance's lock).
//!
//! [`FIRST_POLL_BUDGET_ENV`] sets another budget, or turns polling in the loop off.
//!
//! The poll uses a no-op waker. A call that is not finished has registered it wherever it
//! waits; the runner's first poll registers the runner's waker in its place, as every future
//! must on each poll, and looks again at whatever the no-op wake-up would have announced.

use std::sync::{Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use pm_core::{RemoteError, RemoteErrorKind};

use super::lock;
use crate::catch::panic_message;
use crate::host::FIRST_POLL_BUDGET_ENV;
use crate::process::{BoxFuture, DispatchResult};

/// A call or first poll longer than this does not count as quick, unless
/// [`FIRST_POLL_BUDGET_ENV`] sets another budget.
pub(super) const DEFAULT_BUDGET: Duration = Duration::from_micros(200);

/// Quick calls in a row on runners after which a method's calls are polled in the loop.
pub(super) const PROMOTE_AFTER: u32 = 8;

/// Slow first polls, within [`FORGIVE_AFTER`] calls of the method, after which its calls go
/// to runners for good.
pub(super) const STRIKES: u32 = 3;

/// A method's strikes are forgiven once this many of its calls have been placed in the loop
/// since its first strike.
pub(super) const FORGIVE_AFTER: u32 = 1024;

/// At most this many methods are tracked; calls of any other go to runners.
const MAX_TRACKED: usize = 64;

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

/// Where a call of a method runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Placement {
    /// Polled once in the loop: report how long with [`FirstPoll::poll`] and this ticket.
    Loop(Ticket),
    /// On a runner, timed: report the outcome with [`FirstPoll::probed`] and this ticket.
    Probe(Ticket),
    /// On a runner.
    Runner,
}

/// Which tracked method a probing call was of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ticket(usize);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// On runners, with this many quick calls in a row.
    Probation(u32),
    /// Polled in the loop, with this many strikes, and this many calls placed in the loop
    /// since the first of them.
    Promoted { strikes: u32, since: u32 },
    /// On runners for good.
    StruckOut,
}

#[derive(Debug)]
struct Tracked {
    method: Box<str>,
    standing: Standing,
}

/// Where one connection's calls run, by method. Shared by the call loop, which asks and
/// times its polls, and the runners, which report how long probing calls took.
#[derive(Debug)]
pub(super) struct FirstPoll {
    /// A call or first poll longer than this is slow; `None`: no call is polled in the loop.
    budget: Option<Duration>,
    /// Methods seen, in the order first seen (a ticket is an index: entries are never
    /// removed).
    methods: Mutex<Vec<Tracked>>,
}

impl FirstPoll {
    /// With this process's budget ([`FIRST_POLL_BUDGET_ENV`]).
    pub(super) fn new() -> Self {
        Self::with_budget(budget())
    }

    fn with_budget(budget: Option<Duration>) -> Self {
        Self {
            budget,
            methods: Mutex::new(Vec::new()),
        }
    }

    /// Where a call of `method` runs.
    pub(super) fn place(&self, method: &str) -> Placement {
        if self.budget.is_none() {
            return Placement::Runner;
        }
        let mut methods = lock(&self.methods);
        let index = match methods.iter().position(|t| &*t.method == method) {
            Some(index) => index,
            None if methods.len() < MAX_TRACKED => {
                methods.push(Tracked {
                    method: method.into(),
                    standing: Standing::Probation(0),
                });
                methods.len() - 1
            }
            None => return Placement::Runner,
        };
        match &mut methods[index].standing {
            Standing::Promoted { strikes, since } => {
                if *strikes > 0 {
                    *since += 1;
                    if *since > FORGIVE_AFTER {
                        *strikes = 0;
                    }
                }
                Placement::Loop(Ticket(index))
            }
            Standing::Probation(_) => Placement::Probe(Ticket(index)),
            Standing::StruckOut => Placement::Runner,
        }
    }

    /// A probing call placed with `ticket` took `took`, from its start on a runner to its
    /// reply.
    pub(super) fn probed(&self, ticket: Ticket, took: Duration) {
        let Some(budget) = self.budget else {
            return;
        };
        let mut methods = lock(&self.methods);
        let Some(tracked) = methods.get_mut(ticket.0) else {
            return;
        };
        if let Standing::Probation(quick) = tracked.standing {
            tracked.standing = if took > budget {
                Standing::Probation(0)
            } else if quick + 1 >= PROMOTE_AFTER {
                tracing::debug!(
                    method = &*tracked.method,
                    "calls are polled in the call loop"
                );
                Standing::Promoted {
                    strikes: 0,
                    since: 0,
                }
            } else {
                Standing::Probation(quick + 1)
            };
        }
    }

    /// Polls `future`, a call placed in the loop with `ticket`, once, here.
    pub(super) fn poll(
        &self,
        ticket: Ticket,
        future: &mut BoxFuture<'static, DispatchResult>,
    ) -> FirstOutcome {
        let mut cx = Context::from_waker(Waker::noop());
        let started = Instant::now();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            future.as_mut().poll(&mut cx)
        }));
        let took = started.elapsed();
        self.polled(ticket, took);
        match outcome {
            Ok(Poll::Ready(result)) => FirstOutcome::Done(result),
            Ok(Poll::Pending) => FirstOutcome::Waiting { took },
            Err(payload) => FirstOutcome::Done(Err(RemoteError::new(
                RemoteErrorKind::Panic,
                panic_message(payload.as_ref()),
            ))),
        }
    }

    /// A first poll in the loop of the call placed with `ticket` took `took`: a strike when
    /// it was over the budget.
    fn polled(&self, ticket: Ticket, took: Duration) {
        if self.budget.is_none_or(|budget| took <= budget) {
            return;
        }
        let mut methods = lock(&self.methods);
        let Some(tracked) = methods.get_mut(ticket.0) else {
            return;
        };
        if let Standing::Promoted { strikes, .. } = tracked.standing {
            tracked.standing = if strikes + 1 >= STRIKES {
                tracing::debug!(
                    method = &*tracked.method,
                    ?took,
                    "a call's first poll took long again: this method's calls go to runners from now on"
                );
                Standing::StruckOut
            } else {
                Standing::Promoted {
                    strikes: strikes + 1,
                    since: 0,
                }
            };
        }
    }
}

/// What a first poll in the loop came to.
pub(super) enum FirstOutcome {
    /// The call finished (a panic is an error result): the future must be dropped.
    Done(DispatchResult),
    /// The call waits for something, and goes to a runner; the poll took `took`.
    Waiting { took: Duration },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_poll() -> FirstPoll {
        FirstPoll::with_budget(Some(DEFAULT_BUDGET))
    }

    fn ready(id: u64) -> BoxFuture<'static, DispatchResult> {
        Box::pin(async move {
            pm_core::wire::encode_reply(id, &id, 1024)
                .map_err(|e| RemoteError::new(RemoteErrorKind::Internal, e.to_string()))
        })
    }

    const QUICK: Duration = Duration::from_micros(5);
    const SLOW: Duration = Duration::from_millis(5);

    /// Puts `method` through probation with quick calls; its ticket in the loop.
    fn promote(first: &FirstPoll, method: &str) -> Ticket {
        for _ in 0..PROMOTE_AFTER {
            let Placement::Probe(ticket) = first.place(method) else {
                panic!("{method} is not on probation");
            };
            first.probed(ticket, QUICK);
        }
        loop_ticket(first, method)
    }

    fn loop_ticket(first: &FirstPoll, method: &str) -> Ticket {
        match first.place(method) {
            Placement::Loop(ticket) => ticket,
            other => panic!("{method} is not polled in the loop: {other:?}"),
        }
    }

    #[test]
    fn a_new_method_runs_on_runners_until_enough_of_its_calls_in_a_row_were_quick() {
        let first = first_poll();
        for _ in 0..PROMOTE_AFTER - 1 {
            let Placement::Probe(ticket) = first.place("add") else {
                panic!("not on probation");
            };
            first.probed(ticket, QUICK);
        }
        // A slow one starts the count again.
        let Placement::Probe(ticket) = first.place("add") else {
            panic!("not on probation");
        };
        first.probed(ticket, SLOW);
        assert!(matches!(first.place("add"), Placement::Probe(_)));
        promote(&first, "add");
        assert!(
            matches!(first.place("crunch"), Placement::Probe(_)),
            "each method has its own standing"
        );
    }

    #[test]
    fn a_call_with_nothing_to_wait_for_finishes_in_its_first_poll() {
        let first = first_poll();
        let ticket = promote(&first, "add");
        let FirstOutcome::Done(result) = first.poll(ticket, &mut ready(7)) else {
            panic!("not finished");
        };
        assert_eq!(result.expect("ok").id(), 7);
    }

    #[test]
    fn a_call_that_waits_is_left_for_a_runner() {
        let first = first_poll();
        let ticket = promote(&first, "wait");
        let mut future: BoxFuture<'static, DispatchResult> = Box::pin(async {
            std::future::pending::<()>().await;
            unreachable!("never woken")
        });
        assert!(matches!(
            first.poll(ticket, &mut future),
            FirstOutcome::Waiting { .. }
        ));
    }

    #[test]
    fn a_panic_in_the_first_poll_is_an_error_result() {
        let first = first_poll();
        let ticket = promote(&first, "boom");
        let mut future: BoxFuture<'static, DispatchResult> = Box::pin(async { panic!("boom") });
        let FirstOutcome::Done(result) = first.poll(ticket, &mut future) else {
            panic!("not finished");
        };
        let error = result.expect_err("a panic");
        assert_eq!(error.kind, RemoteErrorKind::Panic);
        assert!(error.message.contains("boom"), "{error:?}");
    }

    #[test]
    fn a_first_poll_that_blocks_is_timed_as_a_strike() {
        let first = first_poll();
        let ticket = promote(&first, "crunch");
        for _ in 0..STRIKES {
            let mut future: BoxFuture<'static, DispatchResult> = Box::pin(async {
                std::thread::sleep(DEFAULT_BUDGET * 2);
                std::future::pending::<()>().await;
                unreachable!("never woken")
            });
            let FirstOutcome::Waiting { took } = first.poll(ticket, &mut future) else {
                panic!("finished");
            };
            assert!(took > DEFAULT_BUDGET, "{took:?}");
        }
        assert_eq!(first.place("crunch"), Placement::Runner);
    }

    #[test]
    fn a_promoted_method_whose_first_polls_block_goes_to_runners_for_good() {
        let first = first_poll();
        let crunch = promote(&first, "crunch");
        promote(&first, "add");
        for strike in 1..=STRIKES {
            assert_eq!(
                loop_ticket(&first, "crunch"),
                crunch,
                "before strike {strike}"
            );
            first.polled(crunch, SLOW);
        }
        assert_eq!(first.place("crunch"), Placement::Runner);
        for _ in 0..2 * FORGIVE_AFTER {
            let add = loop_ticket(&first, "add");
            first.polled(add, QUICK);
        }
        assert_eq!(
            first.place("crunch"),
            Placement::Runner,
            "struck out for good"
        );
        loop_ticket(&first, "add");
    }

    #[test]
    fn slow_polls_close_together_strike_out_wherever_they_fall() {
        // Whatever number of the method's calls came before, three slow first polls in a row
        // strike it out.
        for before in [0, 1, FORGIVE_AFTER - 1, FORGIVE_AFTER, FORGIVE_AFTER + 1] {
            let first = first_poll();
            promote(&first, "add");
            for _ in 0..before {
                first.polled(loop_ticket(&first, "add"), QUICK);
            }
            for _ in 0..STRIKES {
                first.polled(loop_ticket(&first, "add"), SLOW);
            }
            assert_eq!(
                first.place("add"),
                Placement::Runner,
                "after {before} quick calls"
            );
        }
    }

    #[test]
    fn slow_polls_far_apart_are_forgiven() {
        let first = first_poll();
        promote(&first, "add");
        for _ in 0..3 * STRIKES {
            for _ in 0..STRIKES - 1 {
                first.polled(loop_ticket(&first, "add"), SLOW);
            }
            for _ in 0..=FORGIVE_AFTER {
                first.polled(loop_ticket(&first, "add"), QUICK);
            }
        }
        loop_ticket(&first, "add");
    }

    #[test]
    fn a_budget_of_zero_polls_no_call_in_the_loop() {
        let first = FirstPoll::with_budget(None);
        for _ in 0..2 * PROMOTE_AFTER {
            assert_eq!(first.place("add"), Placement::Runner);
            first.probed(Ticket(0), QUICK);
        }
    }

    #[test]
    fn past_the_tracked_methods_calls_go_to_runners() {
        let first = first_poll();
        for i in 0..MAX_TRACKED {
            assert!(matches!(first.place(&format!("m{i}")), Placement::Probe(_)));
        }
        assert_eq!(first.place("one_too_many"), Placement::Runner);
        assert!(matches!(first.place("m0"), Placement::Probe(_)));
    }
}
