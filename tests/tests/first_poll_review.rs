//! Review of the first poll in the call loop (pm-runtime/src/rpc/server/first_poll.rs and
//! `CallLoop::start_call`). Its first version (d477c81) polled every call once where it was
//! read, with a no-op waker; one that finished was answered there, one that waited went to a
//! runner. The tests marked "FINDING" failed on it. Since, a method is on probation first
//! (its calls run on runners, timed, until 8 in a row were quick), a struck-out method stays
//! off for good whatever its calls' count, the first poll's time counts against the deadline,
//! and a call polled already does not wait behind a backlog. The tests of the loop path
//! put their method through its probation first (`promote`).
//!
//! A raw peer speaks frames to a process hosted in this test's own (multi-threaded) runtime,
//! as a process binary or an `Isolation::None` instance is; one test goes through a
//! `ProcessManager` with `Isolation::None`. The tests that fail on d477c81 are marked
//! "FINDING"; the others confirm behaviour the review probed and found sound.
#![allow(missing_docs)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use pm_core::wire::{decode_error, encode_call, Frame, FrameBuilder, FrameKind};
use pm_runtime::prelude::*;
use pm_runtime::{Error, RemoteErrorKind};
use pm_tests::within;
use pm_transport::Connection;

const TOKEN: &str = "0123456789abcdef-first-poll-review";
const LIMIT: Duration = Duration::from_secs(30);
/// How long a call that should get through while another blocks is given to do so: far
/// longer than it takes when it does get through.
const GET_THROUGH: Duration = Duration::from_secs(10);

/// One flag per test: `stall(tag, 0)` started, may finish, finished.
static STARTED: [AtomicBool; 16] = [const { AtomicBool::new(false) }; 16];
static RELEASE: [AtomicBool; 16] = [const { AtomicBool::new(false) }; 16];
static FINISHED: [AtomicBool; 16] = [const { AtomicBool::new(false) }; 16];
/// Calls of `block_then_wait` whose body ran to its end.
static BODIES_FINISHED: AtomicU64 = AtomicU64::new(0);

/// Releases a `stall` call when dropped, so a failing test never leaves a thread blocked.
struct Release(usize);

impl Drop for Release {
    fn drop(&mut self) {
        RELEASE[self.0].store(true, SeqCst);
    }
}

#[derive(Debug, Default)]
pub struct Probe {
    bumps: u64,
}

#[process(name = "first-poll-probe", version = "1.0.0")]
impl Probe {
    /// Blocks its thread (as synchronous code does) for `millis`, or, with 0, until flag
    /// `tag` is released; all within one poll. Answers 7.
    #[public]
    pub async fn stall(&self, tag: u32, millis: u64) -> u64 {
        let tag = tag as usize;
        STARTED[tag].store(true, SeqCst);
        let until = Instant::now() + Duration::from_millis(millis);
        if millis == 0 && RELEASE[tag].load(SeqCst) {
            // Released already (the probation's calls): quick.
            return 7;
        }
        // In place, so the runtime's other threads (timers, sockets) go on meanwhile.
        tokio::task::block_in_place(|| {
            while !RELEASE[tag].load(SeqCst) && (millis == 0 || Instant::now() < until) {
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        FINISHED[tag].store(true, SeqCst);
        7
    }

    /// Releases flag `tag`: what a `stall(tag, 0)` call waits for.
    #[public]
    pub async fn release(&self, tag: u32) -> bool {
        RELEASE[tag as usize].store(true, SeqCst);
        true
    }

    /// Blocks its thread for `block_ms`, then waits `wait_ms` without blocking.
    #[public]
    pub async fn block_then_wait(&self, block_ms: u64, wait_ms: u64) -> u64 {
        // Zeros (the probation's calls) are quick: no hand-over of the thread, no timer.
        if block_ms > 0 {
            tokio::task::block_in_place(|| std::thread::sleep(Duration::from_millis(block_ms)));
        }
        if wait_ms > 0 {
            tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        }
        BODIES_FINISHED.fetch_add(1, SeqCst);
        block_ms + wait_ms
    }

    /// Quick methods, four of them so that no one of them is polled often enough to strike
    /// out by being preempted on a loaded machine.
    #[public]
    pub async fn f0(&self) -> u32 {
        0
    }
    #[public]
    pub async fn f1(&self) -> u32 {
        1
    }
    #[public]
    pub async fn f2(&self) -> u32 {
        2
    }
    #[public]
    pub async fn f3(&self) -> u32 {
        3
    }

    /// Yields once (its first poll wakes its waker, the no-op one in the call loop), then
    /// answers 5.
    #[public]
    pub async fn yield_once(&self) -> u64 {
        tokio::task::yield_now().await;
        5
    }

    /// Spends far more than a task's coop budget, then answers 6.
    #[public]
    pub async fn burn_budget(&self) -> u64 {
        for _ in 0..1_000 {
            tokio::task::consume_budget().await;
        }
        6
    }

    /// Panics before its first await.
    #[public]
    pub async fn boom(&self) -> u64 {
        panic!("boom before any await")
    }

    /// Waits `millis` under the shared lock.
    #[public]
    pub async fn hold_shared(&self, millis: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        millis
    }

    /// Counts its calls under the exclusive lock.
    #[public]
    pub async fn bump(&mut self) -> u64 {
        self.bumps += 1;
        self.bumps
    }

    /// Whether this call ran in a task, and in the same one before and after its first wait
    /// (not once its method is polled in the call loop: the first poll is the loop's task).
    #[public]
    pub async fn task_ids(&self) -> (bool, bool) {
        let before = tokio::task::try_id();
        tokio::task::yield_now().await;
        let after = tokio::task::try_id();
        (before.is_some(), before == after)
    }

    #[health_check]
    pub async fn health(&self) -> HealthStatus {
        HealthStatus::healthy()
    }
}

// ---------------------------------------------------------------------------------------
// Helpers: `Probe` hosted on a unix socket in this runtime, and a raw peer.

type Hosted = pm_tests::standalone::InProcessHost;

async fn host_probe(name: &str) -> Hosted {
    Hosted::start::<Probe>(name, TOKEN).await
}

async fn handshaken(hosted: &Hosted) -> Connection {
    hosted.handshaken(TOKEN).await
}

async fn next_frame(conn: &mut Connection, limit: Duration) -> Option<Frame> {
    pm_tests::standalone::frame_within(conn, limit).await
}

fn call<A: serde::Serialize>(conn: &Connection, id: u64, method: &str, args: &A) {
    call_within(conn, id, method, None, args);
}

fn call_within<A: serde::Serialize>(
    conn: &Connection,
    id: u64,
    method: &str,
    deadline: Option<Duration>,
    args: &A,
) {
    let frame = encode_call(id, method, deadline, args, 1 << 20).expect("encodes");
    conn.sender.send(frame).expect("open");
}

/// The frame answering `id`, within `limit`; frames for other ids are collected in `other`.
async fn reply_to(
    conn: &mut Connection,
    id: u64,
    limit: Duration,
    other: &mut Vec<Frame>,
) -> Option<Frame> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let frame = next_frame(conn, left).await?;
        if frame.id() == id {
            return Some(frame);
        }
        other.push(frame);
    }
}

/// A successful reply to `id`, decoded; panics on anything else.
async fn ok_reply<T: serde::de::DeserializeOwned>(conn: &mut Connection, id: u64) -> T {
    let mut other = Vec::new();
    let frame = reply_to(conn, id, LIMIT, &mut other)
        .await
        .unwrap_or_else(|| panic!("call {id} unanswered"));
    assert!(other.is_empty(), "unexpected frames {other:?}");
    assert_eq!(
        frame.kind(),
        FrameKind::ReplyOk,
        "{:?}",
        decode_error(&frame)
    );
    frame.decode::<T>().expect("decodes")
}

async fn until(what: &str, flag: &AtomicBool) {
    within(what, LIMIT, async {
        while !flag.load(SeqCst) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
}

const FILLERS: [&str; 4] = ["f0", "f1", "f2", "f3"];

/// `n` quick calls (ids from `first`), in batches, each answered before the next batch.
async fn quick_calls(conn: &mut Connection, first: u64, n: u64) {
    let mut id = first;
    while id < first + n {
        let batch = (first + n - id).min(64);
        for i in 0..batch {
            call(conn, id + i, FILLERS[((id + i) % 4) as usize], &());
        }
        let mut missing: std::collections::HashSet<u64> = (id..id + batch).collect();
        while !missing.is_empty() {
            let frame = next_frame(conn, LIMIT).await.expect("a quick reply");
            assert_eq!(frame.kind(), FrameKind::ReplyOk, "{frame:?}");
            assert!(missing.remove(&frame.id()), "an unexpected reply {frame:?}");
        }
        id += batch;
    }
}

/// Calls `method` with `args` until it has had a probation's worth of quick calls in a row
/// (twice over, as a loaded machine can make one slow): from then on it is polled in the loop.
async fn promote<A: serde::Serialize>(
    conn: &mut Connection,
    first_id: u64,
    method: &str,
    args: &A,
) {
    for i in 0..32 {
        call(conn, first_id + i, method, args);
        let mut other = Vec::new();
        let reply = reply_to(conn, first_id + i, LIMIT, &mut other)
            .await
            .expect("a probation call answered");
        assert_eq!(reply.kind(), FrameKind::ReplyOk, "{reply:?} {other:?}");
    }
}

/// Flag of the `stall` calls that put it through its probation: released from the start.
const PROMOTION_TAG: usize = 15;

// ---------------------------------------------------------------------------------------
// FINDING 1: a call whose first poll blocks its thread holds up the whole connection for as
// long as it blocks, with no bound: nothing more is read meanwhile (not a health check, a
// cancel, a shutdown, or the very call it waits for). Before d477c81 every call ran on a
// runner task and the call loop kept reading. The strike rule only moves a method off after
// three such polls have *ended*; a first poll that never ends deadlocks the connection.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_method_that_waits_for_another_call_does_not_deadlock_its_connection() {
    const TAG: usize = 0;
    let _release = Release(TAG);
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::None,
        ..Default::default()
    });
    let handle = pm
        .spawn::<Probe>("unused-binary-name", SpawnOptions::default())
        .await
        .expect("spawn");
    let waiter = {
        let handle = handle.clone();
        tokio::spawn(async move { handle.stall(TAG as u32, 0).await })
    };
    until("the waiting call started", &STARTED[TAG]).await;
    // The call `stall` waits for: it must reach the process while `stall` waits.
    let released = tokio::time::timeout(GET_THROUGH, handle.release(TAG as u32)).await;
    let got_through = matches!(released, Ok(Ok(true)));
    // Unblock in any case, so the process (and the test) can end.
    RELEASE[TAG].store(true, SeqCst);
    let waited = within("the waiting call", LIMIT, waiter).await;
    assert!(
        got_through,
        "`release` did not get through within {GET_THROUGH:?} while `stall` waited for it \
         (got {released:?}); `stall` then answered {waited:?}"
    );
    assert!(matches!(waited, Ok(Ok(7))), "{waited:?}");
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_health_check_is_answered_while_a_methods_first_poll_blocks() {
    const TAG: usize = 1;
    let _release = Release(TAG);
    let hosted = host_probe("health").await;
    let mut conn = handshaken(&hosted).await;
    call(&conn, 10, "stall", &(TAG as u32, 0u64));
    until("the blocking call started", &STARTED[TAG]).await;
    call(&conn, 11, "$health", &());
    let mut other = Vec::new();
    let health = reply_to(&mut conn, 11, GET_THROUGH, &mut other).await;
    let still_blocked = !FINISHED[TAG].load(SeqCst);
    RELEASE[TAG].store(true, SeqCst);
    assert!(
        health.is_some() && still_blocked,
        "no health-check reply within {GET_THROUGH:?} while a call blocked its thread \
         (reply {health:?}, other frames {other:?})"
    );
    assert_eq!(health.expect("checked").kind(), FrameKind::ReplyOk);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shutdown_is_acknowledged_within_its_grace_while_a_methods_first_poll_blocks() {
    const TAG: usize = 2;
    let _release = Release(TAG);
    let hosted = host_probe("shutdown").await;
    let mut conn = handshaken(&hosted).await;
    call(&conn, 10, "stall", &(TAG as u32, 0u64));
    until("the blocking call started", &STARTED[TAG]).await;
    let mut shutdown = FrameBuilder::new(FrameKind::Shutdown, 11, 1 << 20);
    shutdown.value(&300u64).expect("grace");
    conn.sender
        .send(shutdown.finish().expect("fits"))
        .expect("open");
    let mut other = Vec::new();
    let ack = reply_to(&mut conn, 11, GET_THROUGH, &mut other).await;
    let still_blocked = !FINISHED[TAG].load(SeqCst);
    RELEASE[TAG].store(true, SeqCst);
    assert!(
        ack.is_some() && still_blocked,
        "a shutdown with 300 ms of grace was not acknowledged within {GET_THROUGH:?} while a \
         call blocked its thread (ack {ack:?}, other frames {other:?})"
    );
    // The blocked call was answered for, as a leftover of the shutdown.
    let leftover = other
        .iter()
        .find(|f| f.id() == 10)
        .expect("call 10 answered");
    assert_eq!(decode_error(leftover).kind, RemoteErrorKind::ShuttingDown);
}

// ---------------------------------------------------------------------------------------
// FINDING 2: strikes are forgiven at fixed multiples of 1024 first polls, not over a sliding
// window: three slow first polls in a row that straddle a forgiving point are never three
// strikes "within 1024 polls" as far as `FirstPoll` counts, so the method stays in the loop
// and its next call holds the loop up again. (More generally, a method that blocks on every
// call but is called fewer than three times per 1024 polls is never moved off.)
// ---------------------------------------------------------------------------------------

/// Three `stall(tag_quick, 5)` calls (each a first poll far over the 200 µs budget), after
/// `quick` quick calls; then `stall(tag_gate, 0)`, and a quick call sent while it blocks.
/// Whether that quick call was answered while the gate still blocked.
async fn quick_call_gets_past_a_struck_out_method(
    conn: &mut Connection,
    quick: u64,
    tag_quick: usize,
    tag_gate: usize,
) -> (bool, Vec<Frame>) {
    RELEASE[PROMOTION_TAG].store(true, SeqCst);
    promote(conn, 5_000, "stall", &(PROMOTION_TAG as u32, 0u64)).await;
    quick_calls(conn, 1_000, quick).await;
    for id in 0..3u64 {
        call(conn, 50 + id, "stall", &(tag_quick as u32, 5u64));
        assert_eq!(ok_reply::<u64>(conn, 50 + id).await, 7);
    }
    call(conn, 60, "stall", &(tag_gate as u32, 0u64));
    until("the gated call started", &STARTED[tag_gate]).await;
    call(conn, 61, "f0", &());
    let mut other = Vec::new();
    let quick = reply_to(conn, 61, GET_THROUGH, &mut other).await;
    let through = quick.is_some() && !FINISHED[tag_gate].load(SeqCst);
    RELEASE[tag_gate].store(true, SeqCst);
    (through, other)
}

/// The rule itself, where it works: three slow first polls in a row move `stall` off the
/// call loop, and a quick call gets past the fourth `stall`, which now blocks a runner.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_slow_first_polls_in_a_row_move_a_method_off_the_call_loop() {
    let _release = (Release(3), Release(4));
    let hosted = host_probe("moved-off").await;
    let mut conn = handshaken(&hosted).await;
    let (through, other) = quick_call_gets_past_a_struck_out_method(&mut conn, 0, 3, 4).await;
    assert!(
        through,
        "a quick call did not get past a method struck out (frames {other:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_slow_first_polls_in_a_row_move_a_method_off_even_across_a_forgiving_point() {
    let _release = (Release(5), Release(6));
    let hosted = host_probe("straddle").await;
    let mut conn = handshaken(&hosted).await;
    // 1022 quick first polls: the three slow ones are polls 1023, 1024 and 1025, and the
    // strikes are forgiven at poll 1024, between the second and the third.
    let (through, other) = quick_call_gets_past_a_struck_out_method(&mut conn, 1_022, 5, 6).await;
    assert!(
        through,
        "after three slow first polls in a row (polls 1023-1025) `stall` was still polled in \
         the call loop: a quick call did not get past its fourth call within {GET_THROUGH:?} \
         (frames {other:?})"
    );
}

// ---------------------------------------------------------------------------------------
// FINDING 3: a call's deadline is applied by `run_call` on its runner, which now starts only
// after the first poll in the call loop: the time that poll took is not counted. A call with
// a 1.5 s deadline whose first poll blocks 1 s and which then waits 1 s is answered Ok after
// 2 s (its body ran to the end) instead of being aborted at 1.5 s, as it was before.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_calls_deadline_counts_the_time_its_first_poll_took() {
    let hosted = host_probe("deadline").await;
    let mut conn = handshaken(&hosted).await;
    promote(&mut conn, 5_000, "block_then_wait", &(0u64, 0u64)).await;
    let finished_before = BODIES_FINISHED.load(SeqCst);
    let started = Instant::now();
    call_within(
        &conn,
        10,
        "block_then_wait",
        Some(Duration::from_millis(1_500)),
        &(1_000u64, 1_000u64),
    );
    let mut other = Vec::new();
    let reply = reply_to(&mut conn, 10, LIMIT, &mut other)
        .await
        .expect("call 10 answered");
    let took = started.elapsed();
    let outcome = if reply.kind() == FrameKind::ReplyOk {
        format!("Ok({:?})", reply.decode::<u64>())
    } else {
        format!("{:?}", decode_error(&reply))
    };
    assert!(
        reply.kind() == FrameKind::ReplyErr
            && decode_error(&reply).kind == RemoteErrorKind::DeadlineExceeded,
        "a call with a 1.5 s deadline that blocked 1 s and waited 1 s got {outcome} after \
         {took:?} (bodies finished: {})",
        BODIES_FINISHED.load(SeqCst) - finished_before
    );
}

// ---------------------------------------------------------------------------------------
// FINDING 4 (minor): a call's future now changes tasks in the middle of the call: its first
// poll runs in the connection's call-loop task (shared by every call polled there), the rest
// in a runner. `tokio::task::try_id()` (and anything keyed by it, or attributing work to a
// task) sees one call as two tasks; before, a call ran within one runner task throughout.
// ---------------------------------------------------------------------------------------

/// Documented since (first_poll.rs): on probation a call runs in one runner task throughout;
/// once its method is promoted, its first poll runs in the call loop's task and the rest on a
/// runner. That change is also what shows the promotion from outside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_runs_in_one_task_per_call_on_probation_and_is_polled_in_the_loop_after() {
    let hosted = host_probe("task-id").await;
    let mut conn = handshaken(&hosted).await;
    for id in 0..8u64 {
        call(&conn, 10 + id, "task_ids", &());
        let (in_a_task, same_task) = ok_reply::<(bool, bool)>(&mut conn, 10 + id).await;
        assert!(in_a_task);
        assert!(same_task, "call {id} of the probation changed tasks");
    }
    let mut promoted = false;
    for id in 8..400u64 {
        call(&conn, 10 + id, "task_ids", &());
        let (_, same_task) = ok_reply::<(bool, bool)>(&mut conn, 10 + id).await;
        if !same_task {
            promoted = true;
            break;
        }
    }
    assert!(
        promoted,
        "400 quick calls and `task_ids` was never polled in the loop"
    );
}

// ---------------------------------------------------------------------------------------
// Probed and found sound.
// ---------------------------------------------------------------------------------------

/// A first poll that wakes its (no-op) waker and returns Pending: the runner polls it again
/// and it finishes. So does one whose first poll runs out of the call loop's coop budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_that_wake_themselves_in_their_first_poll_are_answered() {
    let hosted = host_probe("wake").await;
    let mut conn = handshaken(&hosted).await;
    for round in 0..50u64 {
        let id = 100 + 2 * round;
        call(&conn, id, "yield_once", &());
        call(&conn, id + 1, "burn_budget", &());
        let mut answers = std::collections::HashMap::new();
        while answers.len() < 2 {
            let frame = next_frame(&mut conn, LIMIT).await.expect("a reply");
            assert_eq!(
                frame.kind(),
                FrameKind::ReplyOk,
                "{:?}",
                decode_error(&frame)
            );
            let answer = frame.decode::<u64>().expect("u64");
            assert!(
                answers.insert(frame.id(), answer).is_none(),
                "answered twice"
            );
        }
        assert_eq!(answers.get(&id), Some(&5), "{answers:?}");
        assert_eq!(answers.get(&(id + 1)), Some(&6), "{answers:?}");
    }
}

/// A method that panics before its first await: a Panic error, once; the connection goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_first_poll_is_one_error_reply_and_the_connection_goes_on() {
    let hosted = host_probe("panic").await;
    let mut conn = handshaken(&hosted).await;
    for round in 0..20u64 {
        call(&conn, 10 + 2 * round, "boom", &());
        call(&conn, 11 + 2 * round, "f1", &());
    }
    let mut seen = std::collections::HashMap::<u64, u32>::new();
    while seen.len() < 40 {
        let frame = next_frame(&mut conn, LIMIT).await.expect("a reply");
        assert!((10..50).contains(&frame.id()), "{frame:?}");
        *seen.entry(frame.id()).or_default() += 1;
        if frame.id() % 2 == 0 {
            let error = decode_error(&frame);
            assert_eq!(error.kind, RemoteErrorKind::Panic, "{error:?}");
            assert!(error.message.contains("boom before any await"), "{error:?}");
        } else {
            assert_eq!(frame.decode::<u32>().expect("u32"), 1);
        }
    }
    assert!(seen.values().all(|n| *n == 1), "{seen:?}");
    // Nothing else comes (no second reply to any call): a round trip shows the queue empty.
    call(&conn, 99, "f2", &());
    assert_eq!(ok_reply::<u32>(&mut conn, 99).await, 2);
}

/// An id in flight on a runner, reused for a call that would finish in its first poll: the
/// second is refused (and not polled), the first answered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_id_of_a_call_on_a_runner_is_refused_and_the_first_answered_once() {
    let hosted = host_probe("duplicate").await;
    let mut conn = handshaken(&hosted).await;
    call(&conn, 5, "hold_shared", &(300u64,));
    call(&conn, 5, "f0", &());
    let refused = next_frame(&mut conn, LIMIT).await.expect("a reply");
    assert_eq!(refused.id(), 5);
    assert_eq!(refused.kind(), FrameKind::ReplyErr);
    assert_eq!(
        decode_error(&refused).kind,
        RemoteErrorKind::InvalidArguments
    );
    let held = next_frame(&mut conn, LIMIT).await.expect("a reply");
    assert_eq!(held.id(), 5);
    assert_eq!(held.decode::<u64>().expect("u64"), 300);
    call(&conn, 6, "f0", &());
    assert_eq!(ok_reply::<u32>(&mut conn, 6).await, 0);
}

/// Exclusive calls (write lock taken in the first poll, with the no-op waker) interleaved
/// with shared calls holding the read lock on runners: every call is answered, each
/// exclusive call once, in turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_calls_contending_with_shared_ones_on_runners_are_all_answered() {
    let hosted = host_probe("exclusive").await;
    let mut conn = handshaken(&hosted).await;
    const N: u64 = 40;
    for i in 0..N {
        call(&conn, 1_000 + i, "hold_shared", &(5 + i % 3,));
        call(&conn, 2_000 + i, "bump", &());
        call(&conn, 3_000 + i, "f3", &());
    }
    let mut bumps = Vec::new();
    let mut answered = std::collections::HashMap::<u64, u32>::new();
    while answered.len() < (3 * N) as usize {
        let frame = next_frame(&mut conn, LIMIT)
            .await
            .expect("every call answered");
        assert_eq!(
            frame.kind(),
            FrameKind::ReplyOk,
            "{:?}",
            decode_error(&frame)
        );
        *answered.entry(frame.id()).or_default() += 1;
        if (2_000..3_000).contains(&frame.id()) {
            bumps.push(frame.decode::<u64>().expect("u64"));
        }
    }
    assert!(answered.values().all(|n| *n == 1), "{answered:?}");
    bumps.sort_unstable();
    assert_eq!(bumps, (1..=N).collect::<Vec<_>>());
    call(&conn, 9, "bump", &());
    assert_eq!(ok_reply::<u64>(&mut conn, 9).await, N + 1);
}

/// Calls that finish in their first poll, and a cancel right behind each one (which then
/// finds nothing to cancel; before d477c81 it could also win, and the call went unanswered):
/// no call is answered twice, and every call behind a cancel is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancels_behind_calls_finished_in_their_first_poll_lose_nothing() {
    let hosted = host_probe("cancels").await;
    let mut conn = handshaken(&hosted).await;
    for round in 0..100u64 {
        let id = 10 + 2 * round;
        call(&conn, id, "f2", &());
        conn.sender
            .send(Frame::empty(FrameKind::Cancel, id))
            .expect("open");
        call(&conn, id + 1, "f1", &());
    }
    // A round trip behind them all, through a slow call so that every earlier call has
    // finished (and its reply been sent) before this reply is.
    call(&conn, 999, "hold_shared", &(300u64,));
    let mut other = Vec::new();
    let last = reply_to(&mut conn, 999, LIMIT, &mut other)
        .await
        .expect("the last call answered");
    assert_eq!(last.kind(), FrameKind::ReplyOk, "{:?}", decode_error(&last));
    let mut seen = std::collections::HashMap::<u64, u32>::new();
    for frame in &other {
        assert_eq!(
            frame.kind(),
            FrameKind::ReplyOk,
            "{:?}",
            decode_error(frame)
        );
        *seen.entry(frame.id()).or_default() += 1;
    }
    assert!(seen.values().all(|n| *n == 1), "{seen:?}");
    for round in 0..100u64 {
        let id = 11 + 2 * round;
        assert_eq!(seen.get(&id), Some(&1), "call {id} unanswered");
    }
    call(&conn, 1_000, "$health", &());
    let health = reply_to(&mut conn, 1_000, LIMIT, &mut other)
        .await
        .expect("the health check answered");
    assert_eq!(
        health.kind(),
        FrameKind::ReplyOk,
        "{:?}",
        decode_error(&health)
    );
}

/// The typed client sees a method's panic in its first poll as `Error::Remote` with kind
/// Panic, under `Isolation::None` and `Isolation::Worker` alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_poll_panic_is_a_remote_panic_under_worker_and_none() {
    for isolation in [Isolation::Worker, Isolation::None] {
        let pm = ProcessManager::new(ProcessManagerConfig {
            isolation,
            ..Default::default()
        });
        let handle = pm
            .spawn::<Probe>("unused-binary-name", SpawnOptions::default())
            .await
            .expect("spawn");
        match handle.boom().await {
            Err(Error::Remote { error, .. }) => {
                assert_eq!(
                    error.kind,
                    RemoteErrorKind::Panic,
                    "{isolation:?}: {error:?}"
                )
            }
            other => panic!("{isolation:?}: a panic, got {other:?}"),
        }
        assert_eq!(handle.yield_once().await.expect("yield_once"), 5);
        assert_eq!(handle.bump().await.expect("bump"), 1);
        pm.shutdown().await.expect("shutdown");
    }
}
