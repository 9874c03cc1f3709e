//! The per-process owner task (`pm-runtime/src/managed/owner.rs`) at its edges, found in
//! review: a runtime that is gone, a spawn given up on as its start finished, a dropped
//! manager with calls in flight.

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use pm_runtime::prelude::*;
use pm_runtime::Error;
use pm_tests::{wait_dead, Lifecycle, LINGERING};

const LIFECYCLE: &str = env!("CARGO_BIN_EXE_test-lifecycle");

/// SIGKILLs a child this test started, whatever the outcome.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: signalling a process this test started.
        unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn child_config() -> ProcessManagerConfig {
    ProcessManagerConfig {
        isolation: Isolation::Child,
        grace_period: Duration::from_millis(300),
        ..Default::default()
    }
}

/// Spawns a `Lifecycle` child on a runtime of its own, then shuts that runtime down (as the
/// end of a `#[tokio::test]`, or of a worker's runtime, does) while the manager and the
/// handle live on.
fn spawned_on_a_runtime_now_gone(
    pm: &ProcessManager,
) -> (ProcessHandle<Lifecycle>, ProcessId, u32) {
    let first = runtime();
    let (handle, pid) = first.block_on(async {
        let handle = pm
            .spawn::<Lifecycle>(LIFECYCLE, SpawnOptions::default())
            .await
            .expect("spawn");
        let pid = handle.pid().await.expect("pid");
        (handle, pid)
    });
    drop(first);
    let id = handle.id();
    (handle, id, pid)
}

/// Old code: the call fails at once (the connection's writer is gone). Now the owner's drop
/// aborts the connection but leaves `Link::Up(closed)` published, so `wait_for_link` waits for
/// a link change that never comes: a call without a deadline hangs forever.
#[test]
fn a_call_on_a_process_whose_runtime_is_gone_fails_instead_of_hanging() {
    let pm = ProcessManager::new(child_config());
    let (handle, _id, pid) = spawned_on_a_runtime_now_gone(&pm);
    let _child = KillOnDrop(pid);
    runtime().block_on(async {
        let outcome = tokio::time::timeout(Duration::from_secs(5), handle.pid()).await;
        let shut_down = pm.shutdown().await;
        let outcome = outcome.expect("the call hung: it never ended, not even with an error");
        assert!(outcome.is_err(), "{outcome:?}");
        shut_down.expect("shutdown");
    });
}

/// Once the runtime a process was spawned on is gone, its owner is gone too: the process
/// ends for good then (its child killed, `Stopped` announced once), and a later `shutdown`
/// finds it stopped.
#[test]
fn a_process_whose_runtime_is_gone_ends_stopped_and_is_announced_once() {
    let pm = ProcessManager::new(child_config());
    let mut events = pm.subscribe();
    let (_handle, id, pid) = spawned_on_a_runtime_now_gone(&pm);
    let _child = KillOnDrop(pid);
    runtime().block_on(async {
        pm.shutdown().await.expect("shutdown");
        let state = pm.info(id).expect("info").state;
        assert!(
            matches!(state, ProcessState::Stopped { .. }),
            "after shutdown the process is {state:?}"
        );
        let mut stopped = 0;
        while let Ok(event) = events.try_recv() {
            if event == (ProcessEvent::Stopped { id }) {
                stopped += 1;
            }
        }
        assert_eq!(stopped, 1, "announced stopped exactly once");
        assert!(wait_dead(pid, Duration::from_secs(2)).await);
    });
}

/// A spawn given up on (a timeout around it) just as its start finished: the guard's
/// `kill_in_background` queues `Kill { done: None }`, but the owner gets to it only after the
/// last `Arc<Managed>` is gone, returns on the failed upgrade and drops the command: the
/// process announced `Spawned` and `Ready` and never `Stopped`. Old code: `kill_now` ran in a
/// task holding the process and announced `Stopped`.
#[tokio::test]
async fn a_spawn_given_up_on_just_as_its_start_finished_still_announces_stopped() {
    let pm = ProcessManager::new(ProcessManagerConfig {
        // No health polling: no monitor task keeps the process alive behind the owner.
        monitoring: Monitoring {
            health_check: HealthCheckConfig {
                enabled: false,
                ..Default::default()
            },
            ..Default::default()
        },
        ..child_config()
    });
    let mut events = pm.subscribe();
    // In a task of its own: the test body is polled only once the run queue is empty, after
    // the task finishing the start; a task is polled in the order it was woken.
    let giving_up = tokio::spawn({
        let pm = pm.clone();
        let mut events = pm.subscribe();
        async move {
            let mut spawning = Box::pin(pm.spawn::<Lifecycle>(LIFECYCLE, SpawnOptions::default()));
            let ready = tokio::select! {
                biased;
                _ = &mut spawning => None,
                ready = async {
                    loop {
                        match events.recv().await {
                            Ok(ProcessEvent::Ready { id, pid }) => break (id, pid),
                            Ok(_) => {}
                            Err(err) => panic!("events: {err}"),
                        }
                    }
                } => Some(ready),
            };
            // Given up on now, as a timeout around `spawn` firing at this moment would.
            drop(spawning);
            ready
        }
    });
    let Some((id, pid)) = giving_up.await.expect("task") else {
        // The start finished in the spawn's own task (as before the owner task): no moment
        // between `Ready` and the end of `spawn` to give up at.
        pm.shutdown().await.expect("shutdown");
        return;
    };
    let _child = KillOnDrop(pid);
    let stopped = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match events.recv().await {
                Ok(ProcessEvent::Stopped { id: stopped }) if stopped == id => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    })
    .await;
    assert!(
        wait_dead(pid, Duration::from_secs(2)).await,
        "the child lives on"
    );
    assert!(pm.list().is_empty(), "still listed: {:?}", pm.list());
    pm.shutdown().await.expect("shutdown");
    assert!(
        matches!(stopped, Ok(true)),
        "the process announced Ready and never Stopped"
    );
}

/// Old `abandon` ended the calls in flight at once with `Unavailable("its manager was
/// dropped")`; now it sends `Kill`, whose handler ends them with `ProcessExited("it was
/// killed")`: a dropped manager looks to callers like a process that died.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_flight_when_the_manager_is_dropped_fail_as_unavailable_not_as_a_killed_process() {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Worker,
        grace_period: Duration::from_millis(300),
        ..Default::default()
    });
    let handle = pm
        .spawn::<Lifecycle>("unused", SpawnOptions::default())
        .await
        .expect("spawn");
    let before = LINGERING.load(SeqCst);
    let call = {
        let handle = handle.clone();
        tokio::spawn(async move { handle.linger(30_000).await })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while LINGERING.load(SeqCst) == before {
        assert!(Instant::now() < deadline, "the call never ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(pm);
    let outcome = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("the call ended")
        .expect("task");
    match outcome {
        Err(Error::Unavailable { reason, .. }) => {
            assert!(reason.contains("manager was dropped"), "{reason}");
        }
        other => panic!("the call in flight ended with {other:?}"),
    }
}
