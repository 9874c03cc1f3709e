//! Supervision against real child processes: crash loops, backoff, kills mid-call, stubborn
//! children, descendants, a killed manager, deadlines, cancellation and resource limits. Repeated spawn/stop cycles live in
//! `leaks.rs`, alone in their test binary, because they count the whole process's fds and
//! threads.

use std::time::{Duration, Instant};

use pm_runtime::prelude::*;
use pm_runtime::Error;
use pm_tests::start_call;
use pm_tests::{pid_alive, wait_dead, CrashPlan, Crasher, Lifecycle, SlowStart};

const CRASHER: &str = env!("CARGO_BIN_EXE_test-crasher");
const LIFECYCLE: &str = env!("CARGO_BIN_EXE_test-lifecycle");
const MANAGER: &str = env!("CARGO_BIN_EXE_test-manager");
const SLOW_START: &str = env!("CARGO_BIN_EXE_test-slow-start");

fn policy(max_restarts: u32, window_ms: u64, initial_ms: u64, max_ms: u64) -> RestartPolicy {
    RestartPolicy {
        enabled: true,
        max_restarts,
        window: Duration::from_millis(window_ms),
        backoff: Backoff {
            kind: BackoffKind::Exponential,
            initial: Duration::from_millis(initial_ms),
            max: Duration::from_millis(max_ms),
        },
        ..Default::default()
    }
}

fn child_manager(restart_policy: RestartPolicy) -> ProcessManager {
    ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        restart_policy,
        grace_period: Duration::from_millis(300),
        ..Default::default()
    })
}

fn plan(after_ms: u64) -> CrashPlan {
    CrashPlan {
        after_ms,
        code: 3,
        marker: None,
        first_after_ms: 0,
    }
}

/// Collects events until `done` says stop or `within` passes.
async fn collect_events(
    events: &mut tokio::sync::broadcast::Receiver<ProcessEvent>,
    within: Duration,
    mut done: impl FnMut(&ProcessEvent) -> bool,
) -> Vec<ProcessEvent> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while let Ok(Ok(event)) = tokio::time::timeout_at(deadline, events.recv()).await {
        let stop = done(&event);
        seen.push(event);
        if stop {
            break;
        }
    }
    seen
}

/// Spawns a `Crasher` following `plan` and collects events until it has failed for good
/// (at most 10 s).
async fn crash_until_failed(
    pm: &ProcessManager,
    events: &mut tokio::sync::broadcast::Receiver<ProcessEvent>,
    plan: CrashPlan,
) -> (ProcessHandle<Crasher>, Vec<ProcessEvent>) {
    let crasher = pm
        .spawn::<Crasher>(CRASHER, SpawnOptions::default().dependencies(plan))
        .await
        .expect("spawn");
    let seen = collect_events(events, Duration::from_secs(10), |e| {
        matches!(e, ProcessEvent::Failed { .. })
    })
    .await;
    (crasher, seen)
}

/// The delays of the `Restarting` events among `seen`, in milliseconds.
fn restart_delays_ms(seen: &[ProcessEvent]) -> Vec<u64> {
    seen.iter()
        .filter_map(|e| match e {
            ProcessEvent::Restarting { delay, .. } => Some(delay.as_millis() as u64),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_crash_loop_ends_in_failed_after_exactly_max_restarts_plus_one_starts() {
    let pm = child_manager(policy(3, 10_000, 10, 50));
    let mut events = pm.subscribe();
    let (crasher, seen) = crash_until_failed(&pm, &mut events, plan(50)).await;
    let starts = seen
        .iter()
        .filter(|e| matches!(e, ProcessEvent::Spawned { .. }))
        .count();
    assert_eq!(starts, 4, "{seen:#?}");
    assert!(
        matches!(seen.last(), Some(ProcessEvent::Failed { .. })),
        "{seen:#?}"
    );
    let crashes: Vec<&CrashReason> = seen
        .iter()
        .filter_map(|e| match e {
            ProcessEvent::Crashed { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(crashes.len(), 4);
    assert!(
        crashes.iter().all(
            |r| **r == CrashReason::Exited { code: 3 } && r.to_string() == "exited with code 3"
        ),
        "{crashes:?}"
    );
    // No more spawns afterwards, and calls end at once.
    // Deliberate absence window: no event may follow Failed within it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(events.try_recv().is_err(), "events after Failed");
    let info = pm.info(crasher.id()).expect("info");
    assert!(
        matches!(info.state, ProcessState::Failed { .. }),
        "{info:?}"
    );
    assert_eq!(info.restarts, 3);
    let started = Instant::now();
    let err = crasher.pid().await.expect_err("failed for good");
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(100));
    // Failed is final: kill and stop change neither the state nor what callers are told,
    // and announce nothing.
    pm.kill(crasher.id()).await.expect("kill");
    pm.stop(crasher.id()).await.expect("stop");
    assert_eq!(pm.info(crasher.id()).expect("info").state, info.state);
    let err = crasher.pid().await.expect_err("failed for good");
    assert!(err.to_string().contains("failed for good"), "{err}");
    pm.shutdown().await.expect("shutdown");
    assert!(events.try_recv().is_err(), "events after Failed");
}

#[tokio::test]
async fn a_child_crashing_slower_than_the_window_keeps_being_restarted() {
    let pm = child_manager(policy(1, 300, 10, 20));
    let mut events = pm.subscribe();
    let crasher = pm
        .spawn::<Crasher>(CRASHER, SpawnOptions::default().dependencies(plan(400)))
        .await
        .expect("spawn");
    let seen = collect_events(&mut events, Duration::from_millis(3500), |_| false).await;
    let restarts = seen
        .iter()
        .filter(|e| matches!(e, ProcessEvent::Restarting { .. }))
        .count();
    assert!(restarts >= 3, "only {restarts} restarts: {seen:#?}");
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, ProcessEvent::Failed { .. })),
        "{seen:#?}"
    );
    pm.kill(crasher.id()).await.expect("kill");
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_child_that_runs_fine_for_two_seconds_and_then_crash_loops_is_still_caught() {
    let marker = std::env::temp_dir().join(format!("pm-late-loop-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let pm = child_manager(policy(3, 1_000, 10, 40));
    let mut events = pm.subscribe();
    let plan = CrashPlan {
        after_ms: 30,
        code: 4,
        marker: Some(marker.to_string_lossy().into_owned()),
        first_after_ms: 2_000,
    };
    let (_crasher, seen) = crash_until_failed(&pm, &mut events, plan).await;
    let _ = std::fs::remove_file(&marker);
    assert!(
        matches!(seen.last(), Some(ProcessEvent::Failed { .. })),
        "{seen:#?}"
    );
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn restart_delays_follow_the_exponential_backoff_up_to_its_cap() {
    let pm = child_manager(policy(5, 20_000, 20, 100));
    let mut events = pm.subscribe();
    let (_crasher, seen) = crash_until_failed(&pm, &mut events, plan(30)).await;
    let delays = restart_delays_ms(&seen);
    assert_eq!(delays, vec![20, 40, 80, 100, 100], "{seen:#?}");
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn the_backoff_starts_over_after_an_incarnation_stays_up_for_the_stable_period() {
    let pm = child_manager(RestartPolicy {
        stable_after: Some(Duration::from_secs(1)),
        ..policy(100, 60_000, 20, 100)
    });
    let mut events = pm.subscribe();
    let handle = pm
        .spawn::<Lifecycle>(LIFECYCLE, SpawnOptions::default())
        .await
        .expect("spawn");
    collect_events(&mut events, Duration::from_secs(5), |e| {
        matches!(e, ProcessEvent::Ready { .. })
    })
    .await;
    let mut delays = Vec::new();
    // Three quick crashes grow the backoff; one incarnation outlives the stable period, so
    // the next crash starts over; the one after that grows again.
    for up_ms in [0, 0, 0, 1_500, 0] {
        // Time under test: this incarnation's uptime, measured against the stable period.
        tokio::time::sleep(Duration::from_millis(up_ms)).await;
        handle.exit_soon(1).await.expect("exit");
        let seen = collect_events(&mut events, Duration::from_secs(5), |e| {
            matches!(e, ProcessEvent::Ready { .. })
        })
        .await;
        delays.extend(restart_delays_ms(&seen));
    }
    assert_eq!(delays, vec![20, 40, 80, 20, 40]);
    pm.shutdown().await.expect("shutdown");
}

/// Starts a 30 s call, SIGKILLs `pid` (the child serving it) once the child has the call, and
/// returns the call's error, which must be `ProcessExited` within 3 s.
async fn kill_9_during_a_slow_call(handle: &ProcessHandle<Lifecycle>, pid: u32) -> Error {
    let call = {
        let handle = handle.clone();
        start_call(async move { handle.slow(30_000).await }).await
    };
    // Calls on one connection arrive in order: once a later one is answered, the child has
    // the slow one.
    assert_eq!(handle.pid().await.expect("pid"), pid);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let err = tokio::time::timeout(Duration::from_secs(3), call)
        .await
        .expect("the call ended")
        .expect("task")
        .expect_err("failed");
    assert!(matches!(err, Error::ProcessExited { .. }), "{err:?}");
    err
}

#[tokio::test]
async fn kill_9_mid_call_ends_that_call_with_process_exited_and_the_next_call_runs_on_a_new_pid() {
    let pm = child_manager(policy(5, 60_000, 10, 50));
    let handle = pm
        .spawn::<Lifecycle>(LIFECYCLE, SpawnOptions::default())
        .await
        .expect("spawn");
    let first = handle.pid().await.expect("pid");
    let err = kill_9_during_a_slow_call(&handle, first).await;
    assert!(err.to_string().contains("signal 9"), "{err}");
    let second = handle.pid().await.expect("the handle reconnects");
    assert_ne!(first, second);
    assert_eq!(pm.info(handle.id()).expect("info").restarts, 1);
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_child_ignoring_sigterm_is_sigkilled_at_the_grace_deadline() {
    let pm = child_manager(RestartPolicy::default());
    let handle = pm
        .spawn::<Lifecycle>(LIFECYCLE, SpawnOptions::default())
        .await
        .expect("spawn");
    let pid = handle.pid().await.expect("pid");
    handle.ignore_sigterm().await.expect("ignore");
    // Frozen: it can answer nothing, and SIGTERM does nothing to it.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
    let started = Instant::now();
    pm.stop(handle.id()).await.expect("stop");
    let took = started.elapsed();
    assert!(!pid_alive(pid), "{pid} survived stop");
    // grace 300 ms + 500 ms for the answer, then SIGTERM and 2 s until SIGKILL.
    assert!(
        took >= Duration::from_millis(2_500),
        "killed too early: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn stop_leaves_no_descendant_behind() {
    let pm = child_manager(RestartPolicy::default());
    let handle = pm
        .spawn::<Lifecycle>(LIFECYCLE, SpawnOptions::default())
        .await
        .expect("spawn");
    let grandchild = handle.spawn_grandchild().await.expect("grandchild");
    assert_ne!(grandchild, 0);
    assert!(pid_alive(grandchild));
    pm.stop(handle.id()).await.expect("stop");
    assert!(
        wait_dead(grandchild, Duration::from_secs(2)).await,
        "grandchild {grandchild} survived"
    );
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_child_reads_an_empty_stdin_and_never_the_managers_socket() {
    let pm = child_manager(RestartPolicy::default());
    let child = pm
        .spawn::<Lifecycle>(LIFECYCLE, SpawnOptions::default())
        .await
        .expect("spawns");
    // The socket reaches the child as its stdin; the child moves it away before serving.
    let (target, read) = child.stdin().await.expect("stdin call");
    assert_eq!(target, "/dev/null");
    assert_eq!(read, 0, "stdin reads as empty");
    assert!(child.pid().await.expect("calls still flow") > 0);
    pm.shutdown().await.expect("shutdown");
}

/// Starts `test-manager` with `args`; the manager and the first line it prints (the pids of
/// its children).
async fn manager_with_children(args: &[&str]) -> (tokio::process::Child, Vec<u32>) {
    let mut manager = tokio::process::Command::new(MANAGER)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("manager starts");
    let stdout = manager.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("the manager reports its children")
        .expect("read")
        .expect("a line");
    let children = line
        .split_whitespace()
        .map(|pid| pid.parse().expect("a pid"))
        .collect();
    (manager, children)
}

/// SIGKILLs `manager` and checks that none of `children` is alive two seconds later (two
/// seconds for all of them together, not each).
async fn kill_9_leaves_none_of(mut manager: tokio::process::Child, children: Vec<u32>) {
    assert!(children.iter().all(|pid| pid_alive(*pid)), "{children:?}");
    manager.start_kill().expect("SIGKILL");
    let _ = manager.wait().await;
    let deadline = Instant::now() + Duration::from_secs(2);
    for child in children {
        assert!(
            wait_dead(child, deadline.saturating_duration_since(Instant::now())).await,
            "child {child} outlived its manager"
        );
    }
}

#[tokio::test]
async fn kill_9_of_the_manager_leaves_no_child_alive_within_two_seconds() {
    let (manager, children) = manager_with_children(&[LIFECYCLE]).await;
    assert_eq!(children.len(), 1);
    kill_9_leaves_none_of(manager, children).await;
}

#[tokio::test]
async fn kill_9_of_a_manager_running_a_pool_and_nested_supervisors_leaves_no_child_alive() {
    let (manager, children) = manager_with_children(&[LIFECYCLE, "tree"]).await;
    // One process on its own, four pool members, and `db` and `web/api` in the tree.
    assert_eq!(children.len(), 7, "{children:?}");
    kill_9_leaves_none_of(manager, children).await;
}

#[tokio::test]
async fn a_call_past_its_deadline_times_out_and_the_process_aborts_it() {
    let pm = child_manager(RestartPolicy::default());
    let handle = pm
        .spawn::<Lifecycle>(LIFECYCLE, SpawnOptions::default())
        .await
        .expect("spawn");
    let hurried = ProcessHandle::with_timeout(&handle, Duration::from_millis(200));
    let started = Instant::now();
    let err = hurried.slow(5_000).await.expect_err("deadline");
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    let mut aborted = 0;
    for _ in 0..50 {
        aborted = handle.aborted().await.expect("aborted");
        if aborted == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(aborted, 1, "the process did not abort the call");
    // A call within its deadline still succeeds.
    assert_eq!(hurried.slow(10).await.expect("in time"), 10);
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn the_default_deadline_comes_from_resources_timeout() {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Worker,
        resources: Resources {
            timeout: Some(Duration::from_millis(150)),
            ..Default::default()
        },
        ..Default::default()
    });
    let handle = pm
        .spawn::<Lifecycle>(LIFECYCLE, SpawnOptions::default())
        .await
        .expect("spawn");
    let err = handle.slow(3_000).await.expect_err("deadline");
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_dropped_call_future_is_aborted_in_the_process() {
    for isolation in [Isolation::Child, Isolation::Worker] {
        let pm = ProcessManager::new(ProcessManagerConfig {
            isolation,
            ..Default::default()
        });
        let handle = pm
            .spawn::<Lifecycle>(LIFECYCLE, SpawnOptions::default())
            .await
            .expect("spawn");
        let call = {
            let handle = handle.clone();
            start_call(async move { handle.slow(10_000).await }).await
        };
        // Calls on one connection arrive in order: once a later one is answered, the process
        // has the slow one.
        handle.pid().await.expect("pid");
        call.abort();
        let mut aborted = 0;
        for _ in 0..50 {
            aborted = handle.aborted().await.expect("aborted");
            if aborted == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(aborted, 1, "{isolation:?}: the dropped call kept running");
        pm.shutdown().await.expect("shutdown");
    }
}

#[tokio::test]
async fn a_child_over_max_memory_is_restarted_with_the_reason_in_the_event() {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        restart_policy: policy(5, 60_000, 10, 50),
        resources: Resources {
            max_memory: Some(96 * 1024 * 1024),
            ..Default::default()
        },
        ..Default::default()
    });
    let mut events = pm.subscribe();
    let handle = pm
        .spawn::<Lifecycle>(LIFECYCLE, SpawnOptions::default())
        .await
        .expect("spawn");
    let first = handle.pid().await.expect("pid");
    handle.allocate(160).await.expect("allocates");
    let mut crashed = false;
    let seen = collect_events(&mut events, Duration::from_secs(5), |e| {
        crashed |= matches!(e, ProcessEvent::Crashed { .. });
        crashed && matches!(e, ProcessEvent::Ready { .. })
    })
    .await;
    let crash = seen.iter().find_map(|e| match e {
        ProcessEvent::Crashed { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    let crash = crash.expect("a crash event");
    assert!(
        matches!(crash, CrashReason::MemoryLimit { resident, limit }
            if limit == 96 * 1024 * 1024 && resident > limit),
        "{crash:?}"
    );
    assert!(crash.to_string().contains("max_memory"), "{crash}");
    let second = handle.pid().await.expect("pid");
    assert_ne!(first, second);
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn with_restart_on_failure_a_clean_exit_stops_and_a_failure_restarts() {
    let pm = child_manager(RestartPolicy {
        restart_on: RestartOn::OnFailure,
        ..policy(5, 60_000, 10, 50)
    });
    let clean = pm
        .spawn::<Lifecycle>(LIFECYCLE, SpawnOptions::default())
        .await
        .expect("spawn");
    clean.exit_soon(0).await.expect("exit");
    let failing = pm
        .spawn::<Lifecycle>(LIFECYCLE, SpawnOptions::default())
        .await
        .expect("spawn");
    let failing_pid = failing.pid().await.expect("pid");
    failing.exit_soon(1).await.expect("exit");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = pm.info(clean.id()).expect("info");
        if matches!(info.state, ProcessState::Stopped { .. }) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the clean exit did not stop it: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = pm.info(failing.id()).expect("info");
        if info.restarts >= 1 && matches!(info.state, ProcessState::Running { .. }) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the failure did not restart it: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(matches!(clean.pid().await, Err(Error::Unavailable { .. })));
    assert_ne!(failing.pid().await.expect("restarted"), failing_pid);
    pm.shutdown().await.expect("shutdown");
}

/// A manager of children whose health is polled every 100 ms, restarting after `threshold`
/// failed polls that each may take `timeout`.
fn health_polled(timeout: Duration, threshold: u32, limits: Limits) -> ProcessManager {
    ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        restart_policy: policy(5, 60_000, 10, 50),
        monitoring: Monitoring {
            health_check: HealthCheckConfig {
                enabled: true,
                interval: Duration::from_millis(100),
                timeout,
                failure_threshold: threshold,
            },
            ..Default::default()
        },
        limits,
        ..Default::default()
    })
}

#[tokio::test]
async fn failing_health_checks_restart_the_process_after_the_threshold_and_healthy_ones_never() {
    let pm = health_polled(Duration::from_millis(500), 3, Limits::default());
    let mut events = pm.subscribe();
    let steady = pm
        .spawn::<Lifecycle>(LIFECYCLE, SpawnOptions::default().name("steady"))
        .await
        .expect("spawn");
    let ill = pm
        .spawn::<Lifecycle>(LIFECYCLE, SpawnOptions::default().name("ill"))
        .await
        .expect("spawn");
    let (steady_pid, ill_pid) = (
        steady.pid().await.expect("pid"),
        ill.pid().await.expect("pid"),
    );
    ill.fall_ill().await.expect("fall ill");
    let mut unhealthy = false;
    let seen = collect_events(&mut events, Duration::from_secs(5), |e| {
        unhealthy |= matches!(e, ProcessEvent::Unhealthy { .. });
        unhealthy && matches!(e, ProcessEvent::Ready { .. })
    })
    .await;
    let reason = seen
        .iter()
        .find_map(|e| match e {
            ProcessEvent::Unhealthy { id, reason } if *id == ill.id() => Some(reason.clone()),
            _ => None,
        })
        .expect("an unhealthy event");
    assert!(
        reason.contains("3 consecutive health checks failed"),
        "{reason}"
    );
    // The crash that follows says it was the manager's verdict, as a cause to match on.
    let crash = seen
        .iter()
        .find_map(|e| match e {
            ProcessEvent::Crashed { id, reason } if *id == ill.id() => Some(reason.clone()),
            _ => None,
        })
        .expect("a crash event");
    assert!(
        matches!(crash, CrashReason::HealthChecks { failures: 3, .. }),
        "{crash:?}"
    );
    assert_ne!(ill.pid().await.expect("restarted"), ill_pid);
    // A healthy process is never restarted by polling.
    assert_eq!(steady.pid().await.expect("pid"), steady_pid);
    assert_eq!(pm.info(steady.id()).expect("info").restarts, 0);
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn shutdown_stops_processes_in_reverse_start_order() {
    let file = std::env::temp_dir().join(format!("pm-order-{}", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let pm = child_manager(RestartPolicy::default());
    let mut pids = Vec::new();
    for _ in 0..3 {
        let recorder = pm
            .spawn::<pm_tests::HookRecorder>(
                env!("CARGO_BIN_EXE_test-hooks"),
                SpawnOptions::default().dependencies(file.to_string_lossy().into_owned()),
            )
            .await
            .expect("spawn");
        pids.push(recorder.pid().await.expect("pid"));
    }
    pm.shutdown().await.expect("shutdown");
    let written = std::fs::read_to_string(&file).expect("hooks wrote");
    let _ = std::fs::remove_file(&file);
    let order: Vec<u32> = written
        .lines()
        .filter(|l| l.starts_with("close"))
        .filter_map(|l| l.rsplit("pid=").next()?.parse().ok())
        .collect();
    pids.reverse();
    assert_eq!(order, pids, "{written}");
}

#[tokio::test]
async fn a_restart_policy_that_could_never_trip_is_refused_at_spawn() {
    let pm = child_manager(RestartPolicy {
        backoff: Backoff {
            kind: BackoffKind::Linear,
            initial: Duration::from_secs(10),
            max: Duration::from_secs(60),
        },
        window: Duration::from_secs(30),
        max_restarts: 5,
        ..Default::default()
    });
    let err = pm
        .spawn::<Lifecycle>(LIFECYCLE, SpawnOptions::default())
        .await
        .expect_err("refused");
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert!(
        err.to_string().contains("can never fail a crash loop"),
        "{err}"
    );
    assert!(pm.list().is_empty());
}

#[tokio::test]
async fn a_panicking_or_hanging_hook_holds_up_neither_the_other_hooks_nor_the_stop() {
    for isolation in [Isolation::Child, Isolation::Worker] {
        let file =
            std::env::temp_dir().join(format!("pm-unruly-{}-{isolation:?}", std::process::id()));
        let _ = std::fs::remove_file(&file);
        let pm = ProcessManager::new(ProcessManagerConfig {
            isolation,
            grace_period: Duration::from_millis(300),
            ..Default::default()
        });
        let handle = pm
            .spawn::<pm_tests::UnrulyHooks>(
                env!("CARGO_BIN_EXE_test-unruly"),
                SpawnOptions::default().dependencies(file.to_string_lossy().into_owned()),
            )
            .await
            .expect("spawn");
        let pid = handle.pid().await.expect("pid");
        let started = Instant::now();
        pm.stop(handle.id()).await.expect("stop");
        let took = started.elapsed();
        let written = std::fs::read_to_string(&file).unwrap_or_default();
        let _ = std::fs::remove_file(&file);
        assert_eq!(written, format!("recorded pid={pid}"), "{isolation:?}");
        assert!(
            took < Duration::from_secs(2),
            "{isolation:?}: stop took {took:?}"
        );
        if isolation == Isolation::Child {
            assert!(!pid_alive(pid));
        }
        pm.shutdown().await.expect("shutdown");
    }
}

#[tokio::test]
async fn going_over_max_cpu_is_reported_as_an_unhealthy_event() {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        resources: Resources {
            max_cpu: Some(30.0),
            ..Default::default()
        },
        ..Default::default()
    });
    let mut events = pm.subscribe();
    let handle = pm
        .spawn::<Lifecycle>(LIFECYCLE, SpawnOptions::default())
        .await
        .expect("spawn");
    handle.spin(2_000).await.expect("spin");
    let seen = collect_events(&mut events, Duration::from_secs(3), |e| {
        matches!(e, ProcessEvent::Unhealthy { .. })
    })
    .await;
    let reason = seen
        .iter()
        .find_map(|e| match e {
            ProcessEvent::Unhealthy { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .expect("an unhealthy event for the cpu budget");
    assert!(reason.contains("max_cpu"), "{reason}");
    // Reported, not enforced: the process was not restarted.
    assert_eq!(pm.info(handle.id()).expect("info").restarts, 0);
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_spawned_from_a_short_lived_thread_outlives_that_thread() {
    let pm = child_manager(RestartPolicy {
        enabled: false,
        ..Default::default()
    });
    let runtime = tokio::runtime::Handle::current();
    let spawner = pm.clone();
    // The parent-death signal belongs to the thread that forked: a child forked here would
    // be killed the moment this thread ends.
    let handle = std::thread::spawn(move || {
        runtime.block_on(spawner.spawn::<Lifecycle>(LIFECYCLE, SpawnOptions::default()))
    })
    .join()
    .expect("the spawning thread ends")
    .expect("spawn");
    let pid = handle.pid().await.expect("pid");
    // Deliberate absence window: a parent-death signal from the ended thread would land in it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(handle.pid().await.expect("still serving"), pid);
    assert!(pid_alive(pid));
    assert!(matches!(
        pm.info(handle.id()).expect("info").state,
        ProcessState::Running { .. }
    ));
    pm.shutdown().await.expect("shutdown");
}

/// SIGKILLs a pid when dropped, so a test that fails leaves nothing behind.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: signalling a process this test started.
        unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
    }
}

#[tokio::test]
async fn a_call_in_flight_ends_when_the_child_dies_even_if_a_daemon_it_started_lives_on() {
    let pm = child_manager(policy(5, 60_000, 10, 50));
    let handle = pm
        .spawn::<Lifecycle>(LIFECYCLE, SpawnOptions::default())
        .await
        .expect("spawn");
    let daemon = handle.spawn_daemon().await.expect("daemon");
    assert_ne!(daemon, 0, "sleep could not be started");
    let _daemon = KillOnDrop(daemon);
    let inherited = std::fs::read_link(format!("/proc/{daemon}/fd/3"))
        .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
    assert!(!inherited, "the daemon inherited the manager's socket");
    let pid = handle.pid().await.expect("pid");
    kill_9_during_a_slow_call(&handle, pid).await;
    assert!(pid_alive(daemon), "the daemon is outside the child's group");
    pm.shutdown().await.expect("shutdown");
}

/// Whether `pid` has a thread named `name` (a process binary names its runtime's threads
/// `pm-<process name>`).
fn has_thread_named(pid: u32, name: &str) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/task")).is_ok_and(|tasks| {
        tasks.filter_map(Result::ok).any(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| comm.trim_end() == name)
        })
    })
}

/// Spawns a `SlowStart` whose init takes 10 s, in a task; returns the task and, once the
/// child is launched and its runtime (which runs the handshake, then the init) is up, its id
/// and pid.
async fn spawn_slow_start(
    pm: &ProcessManager,
) -> (
    tokio::task::JoinHandle<Result<ProcessId, Error>>,
    ProcessId,
    u32,
) {
    let spawning = {
        let pm = pm.clone();
        tokio::spawn(async move {
            pm.spawn::<SlowStart>(SLOW_START, SpawnOptions::default().dependencies(10_000u64))
                .await
                .map(|handle| handle.id())
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let (id, pid) = loop {
        // Listed, with the child's pid, from its launch on.
        if let Some(info) = pm.list().first() {
            if let Some(pid) = info.pid {
                assert!(matches!(info.state, ProcessState::Starting { .. }));
                // Into the handshake and the init: the child's runtime is up.
                if has_thread_named(pid, "pm-slow-start") {
                    break (info.id, pid);
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "the child was never launched or never started its runtime"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    (spawning, id, pid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_a_slow_init_ends_the_child_at_once_and_fails_the_spawn() {
    let pm = child_manager(policy(5, 60_000, 10, 50));
    let (spawning, id, pid) = spawn_slow_start(&pm).await;
    let _child = KillOnDrop(pid);
    let started = Instant::now();
    pm.kill(id).await.expect("kill");
    assert!(
        !pid_alive(pid),
        "kill returned with the child alive after {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let outcome = tokio::time::timeout(Duration::from_secs(2), spawning)
        .await
        .expect("the spawn ended")
        .expect("task");
    assert!(
        matches!(outcome, Err(Error::Unavailable { .. })),
        "{outcome:?}"
    );
    assert!(pm.list().is_empty(), "a failed spawn is not listed");
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_a_slow_init_stops_that_process_before_it_returns() {
    let pm = child_manager(policy(5, 60_000, 10, 50));
    let (spawning, _id, pid) = spawn_slow_start(&pm).await;
    let _child = KillOnDrop(pid);
    pm.shutdown().await.expect("shutdown");
    assert!(!pid_alive(pid), "shutdown returned with the child alive");
    let outcome = tokio::time::timeout(Duration::from_secs(2), spawning)
        .await
        .expect("the spawn ended")
        .expect("task");
    assert!(
        matches!(outcome, Err(Error::Unavailable { .. })),
        "{outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_busy_with_as_many_calls_as_it_may_run_still_passes_its_health_checks() {
    let max_in_flight = Limits {
        max_in_flight: 2,
        ..Default::default()
    };
    let pm = health_polled(Duration::from_millis(300), 2, max_in_flight);
    let mut events = pm.subscribe();
    let handle = pm
        .spawn::<Lifecycle>(LIFECYCLE, SpawnOptions::default())
        .await
        .expect("spawn");
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let handle = handle.clone();
            tokio::spawn(async move { handle.slow(1_500).await })
        })
        .collect();
    for call in busy {
        assert_eq!(call.await.expect("task").expect("busy call"), 1_500);
    }
    let health = pm.get_health(handle.id()).await.expect("health");
    assert_eq!(health.status, HealthState::Healthy);
    assert_eq!(pm.info(handle.id()).expect("info").restarts, 0);
    while let Ok(event) = events.try_recv() {
        assert!(
            !matches!(event, ProcessEvent::Unhealthy { .. }),
            "{event:?}"
        );
    }
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_stopped_or_restarting_process_reports_no_pid() {
    let pm = child_manager(policy(5, 60_000, 300, 300));
    let handle = pm
        .spawn::<Lifecycle>(LIFECYCLE, SpawnOptions::default())
        .await
        .expect("spawn");
    let pid = handle.pid().await.expect("pid");
    assert_eq!(pm.info(handle.id()).expect("info").pid, Some(pid));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let info = pm.info(handle.id()).expect("info");
        if matches!(info.state, ProcessState::Restarting { .. }) {
            assert_eq!(info.pid, None, "{info:?}");
            break;
        }
        assert!(Instant::now() < deadline, "never restarting: {info:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let second = handle.pid().await.expect("restarted");
    assert_eq!(pm.info(handle.id()).expect("info").pid, Some(second));
    pm.stop(handle.id()).await.expect("stop");
    assert_eq!(pm.info(handle.id()).expect("info").pid, None);
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawn_given_up_on_mid_init_ends_its_child_and_is_not_listed() {
    let pm = child_manager(policy(5, 60_000, 10, 50));
    let mut events = pm.subscribe();
    let (spawning, _id, pid) = spawn_slow_start(&pm).await;
    let _child = KillOnDrop(pid);
    // Dropping the spawn future, as a timeout around it would.
    spawning.abort();
    assert!(
        wait_dead(pid, Duration::from_secs(2)).await,
        "the child outlived its abandoned spawn"
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    while !pm.list().is_empty() {
        assert!(Instant::now() < deadline, "still listed: {:?}", pm.list());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seen = collect_events(&mut events, Duration::from_millis(300), |_| false).await;
    assert_eq!(
        seen.iter()
            .filter(|e| matches!(e, ProcessEvent::Stopped { .. }))
            .count(),
        1,
        "{seen:#?}"
    );
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_asking_for_health_all_the_time_never_make_a_healthy_process_fail_its_polls() {
    let pm = health_polled(Duration::from_secs(2), 2, Limits::default());
    let mut events = pm.subscribe();
    let handle = pm
        .spawn::<Lifecycle>(LIFECYCLE, SpawnOptions::default())
        .await
        .expect("spawn");
    handle.slow_down_health(150).await.expect("slow health");
    let until = Instant::now() + Duration::from_millis(1_500);
    let askers: Vec<_> = (0..3)
        .map(|_| {
            let pm = pm.clone();
            let id = handle.id();
            tokio::spawn(async move {
                let mut answered = 0u32;
                while Instant::now() < until {
                    let health = pm.get_health(id).await.expect("health");
                    assert_eq!(health.status, HealthState::Healthy);
                    answered += 1;
                }
                answered
            })
        })
        .collect();
    for asker in askers {
        assert!(asker.await.expect("task") > 0);
    }
    assert_eq!(pm.info(handle.id()).expect("info").restarts, 0);
    while let Ok(event) = events.try_recv() {
        assert!(
            !matches!(event, ProcessEvent::Unhealthy { .. }),
            "{event:?}"
        );
    }
    pm.shutdown().await.expect("shutdown");
}

#[test]
fn a_child_whose_manager_is_already_gone_exits_instead_of_running_as_an_orphan() {
    // A bootstrap naming a parent other than the real one is what a child sees when its
    // manager died between the spawn and the child's start: the parent-death signal would
    // never come, so the child must not serve.
    // A manager that has exited (and been reaped): its pid names no process now.
    let mut gone = std::process::Command::new("true").spawn().expect("runs");
    let gone_pid = gone.id();
    gone.wait().expect("reaped");
    let (_ours, theirs) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    let output = std::process::Command::new(LIFECYCLE)
        .env(
            "TITAN_PM_BOOTSTRAP",
            format!(
                "v1;fd=0;socket=connected;token=00ff;max_frame=1024;max_in_flight=4;\
                 parent={gone_pid}"
            ),
        )
        .stdin(std::process::Stdio::from(std::os::fd::OwnedFd::from(
            theirs,
        )))
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "the manager (pid {gone_pid}) exited while this process was starting"
        )),
        "{stderr}"
    );
}
