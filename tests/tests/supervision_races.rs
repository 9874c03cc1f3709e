//! Supervision trees under races and edge cases found in review: children stopped for good,
//! a stop during a backoff, a shutdown racing a start, a dropped manager, states and events,
//! binaries started through a wrapper.
//! Each test waits on events or states, never on a sleep, and ends with `pm.shutdown()`.

use std::time::Duration;

use pm_runtime::prelude::*;
use pm_runtime::{
    ChildRestart, ChildSpec, RestartStrategy, Supervisor, SupervisorSpec, SupervisorState,
};
use pm_tests::tree::{sigkill, word, words_until};
use pm_tests::{pid_alive, wait_dead, Lifecycle, SlowStart};
use tokio::sync::broadcast;

const LIFECYCLE: &str = env!("CARGO_BIN_EXE_test-lifecycle");
const SLOW_START: &str = env!("CARGO_BIN_EXE_test-slow-start");
const WITHIN: Duration = Duration::from_secs(30);

fn config() -> ProcessManagerConfig {
    ProcessManagerConfig {
        isolation: Isolation::Child,
        grace_period: Duration::from_millis(500),
        ..Default::default()
    }
}

fn manager() -> ProcessManager {
    ProcessManager::new(config())
}

fn quick() -> Backoff {
    Backoff {
        kind: BackoffKind::Linear,
        initial: Duration::from_millis(10),
        max: Duration::from_millis(10),
    }
}

fn fixed(delay: Duration) -> Backoff {
    Backoff {
        kind: BackoffKind::Linear,
        initial: delay,
        max: delay,
    }
}

fn lifecycle(name: &str) -> ChildSpec {
    pm_tests::tree::lifecycle(name, LIFECYCLE)
}

fn has(seen: &[String], w: &str) -> bool {
    seen.iter().any(|s| s == w)
}

/// Kills `a` and waits until either `app/c` was started again or the supervisor gave up.
async fn kill_a_and_wait_for_c_or_give_up(
    events: &mut broadcast::Receiver<ProcessEvent>,
    app: &Supervisor,
) -> Vec<String> {
    let a = app.process::<Lifecycle>("a").expect("a");
    sigkill(a.pid().await.expect("a answers"));
    words_until(events, |seen| {
        has(seen, "started app/c") || has(seen, "gave-up app")
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// A slot stopped for good (user stop, a Transient's clean exit, a nested supervisor stopped by
// its handle) makes every later group restart fail, break before the later children, and burn
// the budget until the whole tree gives up.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn user_stop_of_one_child_does_not_make_a_later_one_for_all_restart_give_up() {
    let pm = manager();
    let spec = SupervisorSpec::new("app")
        .strategy(RestartStrategy::OneForAll)
        .restart_budget(3, Duration::from_secs(30))
        .backoff(quick())
        .child(lifecycle("a"))
        .child(lifecycle("b"))
        .child(lifecycle("c"));
    let app = pm.supervise(spec).await.expect("starts");
    let b = app.process::<Lifecycle>("b").expect("b");
    pm.stop(b.id()).await.expect("b is stopped by its user");
    let mut events = pm.subscribe();
    let seen = kill_a_and_wait_for_c_or_give_up(&mut events, &app).await;
    assert!(
        !has(&seen, "gave-up app") && app.state() == SupervisorState::Running,
        "one crash of `a` made the tree fail because `b` had been stopped: {seen:?}, {:?}",
        app.state()
    );
    let c = app.process::<Lifecycle>("c").expect("c");
    assert!(c.pid().await.is_ok());
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_transient_child_that_exited_cleanly_does_not_break_a_later_group_restart() {
    let pm = manager();
    let spec = SupervisorSpec::new("app")
        .strategy(RestartStrategy::OneForAll)
        .restart_budget(3, Duration::from_secs(30))
        .backoff(quick())
        .child(lifecycle("a"))
        .child(lifecycle("t").restart(ChildRestart::Transient))
        .child(lifecycle("c"));
    let app = pm.supervise(spec).await.expect("starts");
    let mut events = pm.subscribe();
    let t = app.process::<Lifecycle>("t").expect("t");
    let _ = t.exit_soon(0).await;
    words_until(&mut events, |seen| has(seen, "stopped app/t")).await;
    let seen = kill_a_and_wait_for_c_or_give_up(&mut events, &app).await;
    assert!(
        !has(&seen, "gave-up app") && app.state() == SupervisorState::Running,
        "a Transient's clean exit made the next group restart fail the tree: {seen:?}, {:?}",
        app.state()
    );
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_nested_supervisor_stopped_by_its_handle_does_not_make_its_parent_give_up() {
    let pm = manager();
    let inner = SupervisorSpec::new("inner").child(lifecycle("x"));
    let spec = SupervisorSpec::new("app")
        .strategy(RestartStrategy::OneForAll)
        .restart_budget(3, Duration::from_secs(30))
        .backoff(quick())
        .child(lifecycle("a"))
        .child(ChildSpec::supervisor(inner))
        .child(lifecycle("c"));
    let app = pm.supervise(spec).await.expect("starts");
    app.supervisor("inner").expect("inner").stop().await;
    let mut events = pm.subscribe();
    let seen = kill_a_and_wait_for_c_or_give_up(&mut events, &app).await;
    assert!(
        !has(&seen, "gave-up app") && app.state() == SupervisorState::Running,
        "stopping a nested supervisor made the parent's next group restart fail: {seen:?}"
    );
    pm.shutdown().await.expect("shutdown");
}

// ---------------------------------------------------------------------------------------------
// Stop and shutdown against backoff and start.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn stopping_a_supervisor_does_not_wait_out_a_restart_backoff() {
    let pm = manager();
    let spec = SupervisorSpec::new("app")
        .restart_budget(1, Duration::from_secs(120))
        .backoff(fixed(Duration::from_secs(20)))
        .child(lifecycle("a"));
    let app = pm.supervise(spec).await.expect("starts");
    let a = app.process::<Lifecycle>("a").expect("a");
    let first = a.pid().await.expect("answers");
    let mut events = pm.subscribe();
    sigkill(first);
    words_until(&mut events, |seen| has(seen, "restarting app/a")).await;
    let stopped = tokio::time::timeout(Duration::from_secs(5), app.stop()).await;
    assert!(
        stopped.is_ok(),
        "Supervisor::stop() waited out the 20 s backoff (and then restarted `a` only to stop it)"
    );
    assert_eq!(app.state(), SupervisorState::Stopped);
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn shutdown_racing_supervise_leaves_no_child_running() {
    let pm = manager();
    let spec = SupervisorSpec::new("app")
        .child(lifecycle("a"))
        .child(
            ChildSpec::process::<SlowStart>(
                "slow",
                SLOW_START,
                SpawnOptions::default().dependencies(5_000u64),
            )
            .optional(),
        )
        .child(lifecycle("c"));
    let mut events = pm.subscribe();
    let starting = tokio::spawn({
        let pm = pm.clone();
        async move { pm.supervise(spec).await }
    });
    // `slow` is being started (listed, in its `init`) when the shutdown begins.
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        match tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("slow is spawned")
        {
            Ok(ProcessEvent::Spawned { name, .. }) if name == "slow" => break,
            Ok(_) => {}
            Err(err) => panic!("events lost: {err}"),
        }
    }
    pm.shutdown().await.expect("shutdown");
    let supervised = starting.await.expect("the supervise task");
    let running: Vec<(Option<String>, Option<u32>)> = pm
        .list()
        .into_iter()
        .filter(|p| matches!(p.state, ProcessState::Running { .. }))
        .filter(|p| p.pid.is_some_and(pid_alive))
        .map(|p| (p.supervisor, p.pid))
        .collect();
    // Clean up whatever the race left, before asserting.
    pm.shutdown().await.expect("shutdown");
    assert!(
        running.is_empty(),
        "after shutdown() returned, supervise() went on to start children that no one stops: \
         {running:?} (supervise: {:?})",
        supervised.map(|app| app.state())
    );
}

#[tokio::test]
async fn a_dropped_manager_ends_its_supervisors() {
    let pm = manager();
    let app = pm
        .supervise(SupervisorSpec::new("app").child(lifecycle("a")))
        .await
        .expect("starts");
    let pid = app
        .process::<Lifecycle>("a")
        .expect("a")
        .pid()
        .await
        .expect("answers");
    drop(pm);
    assert!(
        wait_dead(pid, WITHIN).await,
        "the child dies with its manager"
    );
    let ended = tokio::time::timeout(Duration::from_secs(10), app.ended()).await;
    assert!(
        ended.is_ok(),
        "Supervisor::ended() never returns once the manager is dropped (state says {:?})",
        app.state()
    );
}

// ---------------------------------------------------------------------------------------------
// Process states and events under a supervisor.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_temporary_child_taken_down_with_its_group_announces_stopped() {
    let pm = manager();
    let spec = SupervisorSpec::new("app")
        .strategy(RestartStrategy::OneForAll)
        .backoff(quick())
        .child(lifecycle("a"))
        .child(lifecycle("tmp").restart(ChildRestart::Temporary));
    let app = pm.supervise(spec).await.expect("starts");
    let tmp = app.process::<Lifecycle>("tmp").expect("tmp");
    let a = app.process::<Lifecycle>("a").expect("a");
    let mut events = pm.subscribe();
    sigkill(a.pid().await.expect("answers"));
    let mut stopped = false;
    let mut started_a = false;
    let deadline = tokio::time::Instant::now() + WITHIN;
    while !started_a {
        match tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("a is restarted")
        {
            Ok(ProcessEvent::Stopped { id }) if id == tmp.id() => stopped = true,
            Ok(ProcessEvent::Supervisor { path, event }) => {
                started_a |= word(&path, &event) == "started app/a";
            }
            Ok(_) => {}
            Err(err) => panic!("events lost: {err}"),
        }
    }
    pm.shutdown().await.expect("shutdown");
    while let Ok(event) = events.try_recv() {
        stopped |= event == ProcessEvent::Stopped { id: tmp.id() };
    }
    assert!(
        stopped,
        "tmp ended for good (state {:?}) but no ProcessEvent::Stopped was ever sent for it",
        pm.info(tmp.id()).map(|i| i.state)
    );
}

#[tokio::test]
async fn a_supervised_child_that_exited_is_not_reported_running() {
    let pm = manager();
    let spec = SupervisorSpec::new("app")
        .restart_budget(1, Duration::from_secs(60))
        .backoff(fixed(Duration::from_secs(3)))
        .child(lifecycle("a"));
    let app = pm.supervise(spec).await.expect("starts");
    let a = app.process::<Lifecycle>("a").expect("a");
    let mut events = pm.subscribe();
    let _ = a.exit_soon(0).await;
    words_until(&mut events, |seen| has(seen, "restarting app/a")).await;
    let info = pm.info(a.id()).expect("listed");
    let state = info.state.clone();
    pm.shutdown().await.expect("shutdown");
    assert!(
        !matches!(state, ProcessState::Running { .. }),
        "`a` exited and waits for its restart, but is reported {state:?} (pid {:?})",
        info.pid
    );
}

#[tokio::test]
async fn health_recycling_of_a_supervised_child_ignores_the_managers_restart_policy() {
    let mut config = config();
    // The manager's own policy is off; the docs say it does not apply to supervised children.
    config.restart_policy.enabled = false;
    config.monitoring.health_check = HealthCheckConfig {
        enabled: true,
        interval: Duration::from_millis(100),
        timeout: Duration::from_secs(2),
        failure_threshold: 2,
    };
    let pm = ProcessManager::new(config);
    let spec = SupervisorSpec::new("app")
        .backoff(quick())
        .child(lifecycle("a"));
    let app = pm.supervise(spec).await.expect("starts");
    let a = app.process::<Lifecycle>("a").expect("a");
    let mut events = pm.subscribe();
    a.fall_ill().await.expect("answers");
    let mut unhealthy = 0;
    let mut recycled = false;
    let deadline = tokio::time::Instant::now() + WITHIN;
    while !recycled && unhealthy < 2 {
        match tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("an event")
        {
            Ok(ProcessEvent::Unhealthy { id, .. }) if id == a.id() => unhealthy += 1,
            Ok(ProcessEvent::Supervisor { path, event }) => {
                recycled |= word(&path, &event) == "crashed app/a";
            }
            Ok(_) => {}
            Err(err) => panic!("events lost: {err}"),
        }
    }
    pm.shutdown().await.expect("shutdown");
    assert!(
        recycled,
        "an unhealthy supervised child was reported unhealthy twice and never recycled"
    );
}

// ---------------------------------------------------------------------------------------------
// The child's own parent-death check (posix_spawn change).
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_binary_started_through_a_wrapper_script_still_starts() {
    use std::os::unix::fs::PermissionsExt;
    // A launcher that does not `exec` (a shell script, `timeout`, `strace`): the process's
    // parent is the wrapper, not the manager, though the manager is alive and well.
    let dir = std::env::temp_dir().join(format!("pm-review-wrapper-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let script = dir.join("lifecycle-wrapper.sh");
    std::fs::write(&script, format!("#!/bin/sh\n'{LIFECYCLE}'\nexit $?\n")).expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let pm = manager();
    let spawned = pm
        .spawn::<Lifecycle>(&script, SpawnOptions::default())
        .await;
    let answered = match &spawned {
        Ok(handle) => handle.pid().await.map(|_| ()),
        Err(err) => Err(err.clone()),
    };
    pm.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        answered.is_ok(),
        "a process started through a wrapper now refuses to start: {answered:?}"
    );
}
