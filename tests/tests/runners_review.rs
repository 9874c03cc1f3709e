//! Review of the reusable runner tasks (pm-runtime/src/rpc/server/runners.rs, a61693e): a
//! raw peer speaks frames to a process hosted in this test's own runtime, whose methods the
//! test controls (one blocks its thread until released, so a cancel lands while its call is
//! being polled).
#![allow(missing_docs)]

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::{Duration, Instant};

use pm_core::wire::{encode_call, Frame, FrameKind};
use pm_runtime::prelude::*;
use pm_tests::within;
use pm_transport::Connection;

const TOKEN: &str = "0123456789abcdef-runners-review";
const LIMIT: Duration = Duration::from_secs(30);

/// One flag per test: `Gate::block` started, was released, finished.
static STARTED: [AtomicBool; 8] = [const { AtomicBool::new(false) }; 8];
static RELEASE: [AtomicBool; 8] = [const { AtomicBool::new(false) }; 8];
static FINISHED: [AtomicBool; 8] = [const { AtomicBool::new(false) }; 8];

/// Releases a `block` call when dropped, so a failing test never leaves a thread blocked.
struct Release(usize);

impl Drop for Release {
    fn drop(&mut self) {
        RELEASE[self.0].store(true, SeqCst);
    }
}

#[derive(Debug, Default)]
pub struct Gate;

#[process(name = "runners-gate", version = "1.0.0")]
impl Gate {
    /// Blocks its thread until flag `tag` is released (as synchronous code does), within one
    /// poll, then answers 111.
    #[public]
    pub async fn block(&self, tag: u32) -> u64 {
        let tag = tag as usize;
        STARTED[tag].store(true, SeqCst);
        // In place, so the runtime keeps its other threads (and its timers and sockets)
        // going while this poll lasts: a thread blocked outright can stall a runtime whose
        // other workers sleep.
        tokio::task::block_in_place(|| {
            while !RELEASE[tag].load(SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        FINISHED[tag].store(true, SeqCst);
        111
    }

    /// Waits `millis` without blocking, then answers `millis`.
    #[public]
    pub async fn hold(&self, millis: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        millis
    }

    /// Answers at once.
    #[public]
    pub async fn ping(&self) -> u64 {
        1
    }
}

type Hosted = pm_tests::standalone::InProcessHost;

async fn host_gate(name: &str) -> Hosted {
    Hosted::start::<Gate>(name, TOKEN).await
}

async fn handshaken(hosted: &Hosted) -> Connection {
    hosted.handshaken(TOKEN).await
}

async fn next_frame(conn: &mut Connection, limit: Duration) -> Option<Frame> {
    pm_tests::standalone::frame_within(conn, limit).await
}

fn call<A: serde::Serialize>(conn: &Connection, id: u64, method: &str, args: &A) {
    let frame = encode_call(id, method, None, args, 1 << 20).expect("encodes");
    conn.sender.send(frame).expect("open");
}

fn cancel(conn: &Connection, id: u64) {
    conn.sender
        .send(Frame::empty(FrameKind::Cancel, id))
        .expect("open");
}

/// Waits for the replies of `ids` (in any order), within `limit` for each; frames of other
/// ids are handed to `other`. Returns the ids never answered.
async fn await_replies(
    conn: &mut Connection,
    ids: &[u64],
    limit: Duration,
    mut other: impl FnMut(&Frame),
) -> Vec<u64> {
    let mut missing: Vec<u64> = ids.to_vec();
    while !missing.is_empty() {
        let Some(frame) = next_frame(conn, limit).await else {
            break;
        };
        if let Some(at) = missing.iter().position(|id| *id == frame.id()) {
            assert_eq!(frame.kind(), FrameKind::ReplyOk, "{frame:?}");
            missing.remove(at);
        } else {
            other(&frame);
        }
    }
    missing
}

async fn until(what: &str, flag: &AtomicBool) {
    within(what, LIMIT, async {
        while !flag.load(SeqCst) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
}

/// The shared scenario: call 5 blocks its thread; the client cancels it while it is being
/// polled and reuses id 5 for a `hold(hold_ms)` call (registered on another runner); then call
/// 5's first incarnation is released and finishes, in the same poll the cancel's abort landed
/// in. Returns once it finished.
async fn cancelled_call_finishes_under_a_reused_id(
    conn: &mut Connection,
    tag: usize,
    hold_ms: u64,
) {
    call(conn, 5, "block", &(tag as u32,));
    until("the blocking call started", &STARTED[tag]).await;
    cancel(conn, 5);
    // Frames are handled in order: once this ping is answered, the cancel has been too
    // (call 5 is out of the registry, its runner's abort requested while it is polled).
    call(conn, 7, "ping", &());
    let missing = await_replies(conn, &[7], LIMIT, |f| panic!("unexpected {f:?}")).await;
    assert!(missing.is_empty(), "ping 7 unanswered");
    // A new call under the cancelled call's id, and a ping behind it to know it is registered.
    call(conn, 5, "hold", &(hold_ms,));
    call(conn, 8, "ping", &());
    let missing = await_replies(conn, &[8], LIMIT, |f| panic!("unexpected {f:?}")).await;
    assert!(missing.is_empty(), "ping 8 unanswered");
    RELEASE[tag].store(true, SeqCst);
    until("the blocking call finished", &FINISHED[tag]).await;
}

// ---------------------------------------------------------------------------------------
// A cancelled call that finishes in the poll its abort landed in, after the client reused its
// id: the runner's `in_flight.remove(&id)` takes the *new* call's entry (keyed by id only), so
// the runner believes its call is still its own, replies, and goes idle with the abort
// pending. It dies at its first wait while listed as idle: the next call handed to it is
// dropped unanswered (and its registry entry stays, so a cancel cannot reach it).
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_after_a_cancelled_call_finished_under_a_reused_id_are_all_answered() {
    const TAG: usize = 0;
    let _release = Release(TAG);
    let hosted = host_gate("lost").await;
    let mut conn = handshaken(&hosted).await;
    cancelled_call_finishes_under_a_reused_id(&mut conn, TAG, 2_000).await;
    // A ping, then four calls at once: between them they take every idle runner.
    call(&conn, 9, "ping", &());
    let missing = await_replies(&mut conn, &[9], Duration::from_secs(5), |_| {}).await;
    assert!(missing.is_empty(), "call 9 was never answered");
    for id in 20..24 {
        call(&conn, id, "hold", &(200u64,));
    }
    let missing = await_replies(&mut conn, &[20, 21, 22, 23], Duration::from_secs(5), |_| {}).await;
    assert!(missing.is_empty(), "calls {missing:?} were never answered");
}

// The same race, seen from the new call: it must get its own reply (300), once; the cancelled
// call must get none. The runner of the cancelled call answers 111 under id 5 and removes the
// new call's entry, so the new call's own result is then dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_reusing_a_cancelled_calls_id_gets_its_own_reply_once() {
    const TAG: usize = 1;
    let _release = Release(TAG);
    let hosted = host_gate("reply").await;
    let mut conn = handshaken(&hosted).await;
    cancelled_call_finishes_under_a_reused_id(&mut conn, TAG, 300).await;
    let mut replies_to_5 = Vec::new();
    // Two ping round trips after the reply to 5 is due (300 ms), to catch a second one.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        let Some(frame) = next_frame(&mut conn, Duration::from_secs(10)).await else {
            break;
        };
        if frame.id() == 5 {
            replies_to_5.push(frame.decode::<u64>().expect("a u64 reply"));
            if replies_to_5.len() == 1 {
                // Let the new call's own 300 ms run out, then round-trip a ping: a second
                // reply to 5 would come before it. (The hold below is an absence window.)
                call(&conn, 30, "hold", &(600u64,));
            }
        } else if frame.id() == 30 {
            break;
        }
    }
    assert_eq!(
        replies_to_5,
        vec![300],
        "replies to the new call 5 (111 is the cancelled call's result)"
    );
}

// ---------------------------------------------------------------------------------------
// Cancels racing their calls' completion (no id reuse), and the connection's end after it:
// every call not cancelled is answered once, and after the client goes away the process
// closes its side (no idle or dying runner keeps a sender of the connection).
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancels_racing_completions_lose_no_other_call_and_the_connection_closes_after() {
    let hosted = host_gate("storm").await;
    let mut conn = handshaken(&hosted).await;
    let mut expected = Vec::new();
    let mut id = 100u64;
    for round in 0..200u64 {
        // A call cancelled about as it completes, and one left alone.
        call(&conn, id, "hold", &(round % 2,));
        if round % 3 == 0 {
            tokio::task::yield_now().await;
        }
        cancel(&conn, id);
        call(&conn, id + 1, "ping", &());
        expected.push(id + 1);
        id += 2;
        if round % 20 == 19 {
            let mut seen = std::collections::HashMap::<u64, u32>::new();
            let missing = await_replies(&mut conn, &expected, Duration::from_secs(5), |f| {
                *seen.entry(f.id()).or_default() += 1;
            })
            .await;
            assert!(missing.is_empty(), "calls {missing:?} never answered");
            assert!(
                seen.values().all(|n| *n == 1),
                "a cancelled call answered twice: {seen:?}"
            );
            expected.clear();
        }
    }
    // The client stops: the process must end the connection (its writer closes once every
    // sender, the runners' included, is gone).
    let Connection {
        sender,
        mut receiver,
        ..
    } = conn;
    drop(sender);
    let ended = within("the process closing the connection", LIMIT, async {
        loop {
            match receiver.recv().await {
                None | Some(Err(_)) => return true,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ended);
}
