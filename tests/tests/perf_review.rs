//! An adversarial review of the performance work (edfb50b..c34d556): the writer's burst
//! turn, the client's deadline clock and the transports under bursts. No test here failed on
//! the reviewed code: each is marked "Coverage" and guards a property the review checked.

use std::time::{Duration, Instant};

use pm_examples::Calculator;
use pm_runtime::prelude::*;
use pm_runtime::Error;
use pm_tests::start_call;

const CALCULATOR: &str = env!("CARGO_BIN_EXE_test-calculator");

fn manager(transport: TransportKind, max_in_flight: usize) -> ProcessManager {
    ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        transport,
        limits: Limits {
            max_in_flight,
            ..Limits::default()
        },
        ..Default::default()
    })
}

async fn spawn(pm: &ProcessManager) -> ProcessHandle<Calculator> {
    tokio::time::timeout(
        Duration::from_secs(30),
        pm.spawn::<Calculator>(CALCULATOR, SpawnOptions::default()),
    )
    .await
    .expect("the calculator spawns in time")
    .expect("the calculator spawns")
}

async fn shutdown(pm: &ProcessManager) {
    tokio::time::timeout(Duration::from_secs(60), pm.shutdown())
        .await
        .expect("shutdown in time")
        .expect("shutdown");
}

/// Coverage: the stream writer's extra scheduler turn in a burst (stream.rs write_frames)
/// loses, reorders or strands no frame. 256 calls at once in both directions, several
/// rounds back to back (every round after the first is a burst), each answered with its own
/// sum, on a socketpair, a unix socket and TCP; then a graceful shutdown still gets its
/// answer right after the burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_of_calls_are_all_answered_and_shutdown_follows() {
    for transport in [TransportKind::Ipc, TransportKind::Unix, TransportKind::Tcp] {
        let pm = manager(transport, 1024);
        let calc = spawn(&pm).await;
        for round in 0..5i64 {
            let calls: Vec<_> = (0..256i64)
                .map(|i| {
                    let calc = calc.clone();
                    tokio::spawn(async move { (i, calc.add(round * 1000 + i, 1).await) })
                })
                .collect();
            for call in calls {
                let (i, sum) = tokio::time::timeout(Duration::from_secs(20), call)
                    .await
                    .expect("answered in time")
                    .expect("task");
                assert_eq!(sum.expect("add"), round * 1000 + i + 1, "{transport:?}");
            }
        }
        // A lone call right after the burst is flushed too (it is within 5 µs of a write
        // only by chance, and then takes one turn).
        let lone = tokio::time::timeout(Duration::from_secs(5), calc.add(1, 1)).await;
        assert_eq!(lone.expect("in time").expect("add"), 2);
        shutdown(&pm).await;
    }
}

/// Coverage: with the clock read only for calls with a deadline (rpc/client.rs), a deadline
/// still covers the wait for a free in-flight slot: with one slot taken by a long call, a
/// call with a 200 ms timeout fails with `Timeout` in about that time, not after the long
/// call; a call without a deadline still waits for the slot and succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_covers_the_wait_for_a_slot() {
    let pm = manager(TransportKind::Ipc, 1);
    let calc = spawn(&pm).await;
    // The long call holds the one slot once it has started.
    let long = {
        let calc = calc.clone();
        start_call(async move { calc.sleep(1500).await }).await
    };
    let hurried = ProcessHandle::with_timeout(&calc, Duration::from_millis(200));
    let started = Instant::now();
    let outcome = hurried.add(1, 2).await;
    let took = started.elapsed();
    assert!(
        matches!(outcome, Err(Error::Timeout { .. })),
        "expected a timeout, got {outcome:?}"
    );
    assert!(
        took < Duration::from_millis(1000),
        "timed out only after {took:?}"
    );
    let patient = tokio::time::timeout(Duration::from_secs(10), calc.add(2, 3))
        .await
        .expect("the patient call gets the slot in time");
    assert_eq!(patient.expect("add"), 5);
    assert_eq!(long.await.expect("task").expect("sleep"), 1500);
    shutdown(&pm).await;
}
