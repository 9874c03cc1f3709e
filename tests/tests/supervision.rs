//! Supervision trees over real child processes: which pids change under each strategy when
//! one child is killed with SIGKILL, in which order children stop and start, restart types,
//! the restart budget, escalation to a parent, and a clean stop of the whole tree.

use std::time::Duration;

use pm_runtime::prelude::*;
use pm_runtime::{
    ChildRestart, ChildSpec, Error, RestartStrategy, Supervisor, SupervisorSpec, SupervisorState,
};
use pm_tests::tree::{count, sigkill, words_until};
use pm_tests::{pid_alive, wait_dead, CrashPlan, Crasher, Lifecycle};

const LIFECYCLE: &str = env!("CARGO_BIN_EXE_test-lifecycle");
const CRASHER: &str = env!("CARGO_BIN_EXE_test-crasher");
const WITHIN: Duration = Duration::from_secs(30);

fn manager() -> ProcessManager {
    ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        grace_period: Duration::from_millis(500),
        ..Default::default()
    })
}

fn quick() -> Backoff {
    Backoff {
        kind: BackoffKind::Linear,
        initial: Duration::from_millis(10),
        max: Duration::from_millis(10),
    }
}

fn lifecycle(name: &str) -> ChildSpec {
    pm_tests::tree::lifecycle(name, LIFECYCLE)
}

/// A supervisor `app` over three lifecycle children `a`, `b`, `c`.
fn abc(strategy: RestartStrategy) -> SupervisorSpec {
    SupervisorSpec::new("app")
        .strategy(strategy)
        .restart_budget(5, Duration::from_secs(30))
        .backoff(quick())
        .child(lifecycle("a"))
        .child(lifecycle("b"))
        .child(lifecycle("c"))
}

async fn pids(app: &Supervisor) -> [u32; 3] {
    let mut out = [0; 3];
    for (slot, name) in out.iter_mut().zip(["a", "b", "c"]) {
        let child = app.process::<Lifecycle>(name).expect("child");
        *slot = child.pid().await.expect("answers");
    }
    out
}

/// Kills `b` and returns the pids before and after, and the events until the last expected
/// start (`last`) was seen.
async fn kill_b(
    pm: &ProcessManager,
    app: &Supervisor,
    starts: usize,
) -> ([u32; 3], [u32; 3], Vec<String>) {
    let mut events = pm.subscribe();
    let before = pids(app).await;
    sigkill(before[1]);
    let seen = words_until(&mut events, |seen| {
        seen.iter().filter(|w| w.starts_with("started")).count() >= starts
    })
    .await;
    let after = pids(app).await;
    (before, after, seen)
}

#[tokio::test]
async fn one_for_one_restarts_only_the_killed_child() {
    let pm = manager();
    let app = pm
        .supervise(abc(RestartStrategy::OneForOne))
        .await
        .expect("starts");
    let (before, after, seen) = kill_b(&pm, &app, 1).await;
    assert_eq!(
        seen,
        ["crashed app/b", "restarting app/b", "started app/b"],
        "only b is touched"
    );
    assert_eq!(after[0], before[0], "a keeps its pid");
    assert_ne!(after[1], before[1], "b is a new process");
    assert_eq!(after[2], before[2], "c keeps its pid");
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn one_for_all_stops_the_others_in_reverse_order_and_restarts_all_in_order() {
    let pm = manager();
    let app = pm
        .supervise(abc(RestartStrategy::OneForAll))
        .await
        .expect("starts");
    let (before, after, seen) = kill_b(&pm, &app, 3).await;
    assert_eq!(
        seen,
        [
            "crashed app/b",
            "stopped app/c",
            "stopped app/a",
            "restarting app/b",
            "started app/a",
            "started app/b",
            "started app/c",
        ]
    );
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        assert_ne!(after[i], before[i], "{name} is a new process");
        assert!(wait_dead(before[i], WITHIN).await, "old {name} is gone");
    }
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn rest_for_one_restarts_the_killed_child_and_those_started_after_it() {
    let pm = manager();
    let app = pm
        .supervise(abc(RestartStrategy::RestForOne))
        .await
        .expect("starts");
    let (before, after, seen) = kill_b(&pm, &app, 2).await;
    assert_eq!(
        seen,
        [
            "crashed app/b",
            "stopped app/c",
            "restarting app/b",
            "started app/b",
            "started app/c",
        ]
    );
    assert_eq!(after[0], before[0], "a, started before b, keeps its pid");
    assert_ne!(after[1], before[1]);
    assert_ne!(after[2], before[2]);
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_transient_child_is_restarted_after_a_crash_but_not_after_a_clean_exit() {
    let pm = manager();
    let spec = SupervisorSpec::new("app")
        .backoff(quick())
        .child(lifecycle("t").restart(ChildRestart::Transient));
    let app = pm.supervise(spec).await.expect("starts");
    let t = app.process::<Lifecycle>("t").expect("child");
    let mut events = pm.subscribe();
    let first = t.pid().await.expect("answers");
    sigkill(first);
    words_until(&mut events, |seen| count(seen, "started app/t") == 1).await;
    let second = t.pid().await.expect("answers after the crash");
    assert_ne!(second, first);

    let _ = t.exit_soon(0).await;
    let seen = words_until(&mut events, |seen| count(seen, "stopped app/t") == 1).await;
    assert!(count(&seen, "exited app/t") == 1, "{seen:?}");
    assert_eq!(count(&seen, "restarting app/t"), 0, "a clean exit is final");
    assert!(wait_dead(second, WITHIN).await);
    assert!(matches!(t.pid().await, Err(Error::Unavailable { .. })));
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_temporary_child_is_never_restarted_not_even_with_its_group() {
    let pm = manager();
    let spec = SupervisorSpec::new("app")
        .strategy(RestartStrategy::OneForAll)
        .backoff(quick())
        .child(lifecycle("a"))
        .child(lifecycle("tmp").restart(ChildRestart::Temporary));
    let app = pm.supervise(spec).await.expect("starts");
    let a = app.process::<Lifecycle>("a").expect("child");
    let tmp = app.process::<Lifecycle>("tmp").expect("child");
    let tmp_pid = tmp.pid().await.expect("answers");
    let mut events = pm.subscribe();
    // A's crash takes the temporary child down with the group, and it stays down.
    sigkill(a.pid().await.expect("answers"));
    let seen = words_until(&mut events, |seen| count(seen, "started app/a") == 1).await;
    assert_eq!(count(&seen, "started app/tmp"), 0, "{seen:?}");
    assert!(wait_dead(tmp_pid, WITHIN).await);
    assert!(
        tmp.pid().await.is_err(),
        "the temporary child stays stopped"
    );
    assert!(a.pid().await.is_ok());
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_crash_loop_exhausts_the_budget_and_the_supervisor_stops_its_children_in_reverse_order() {
    let pm = manager();
    let crashing = CrashPlan {
        after_ms: 50,
        code: 3,
        marker: None,
        first_after_ms: 0,
    };
    let spec = SupervisorSpec::new("app")
        .restart_budget(2, Duration::from_secs(30))
        .backoff(quick())
        .child(lifecycle("a"))
        .child(ChildSpec::process::<Crasher>(
            "crasher",
            CRASHER,
            SpawnOptions::default().dependencies(crashing),
        ))
        .child(lifecycle("c"));
    let mut events = pm.subscribe();
    let app = pm.supervise(spec).await.expect("starts");
    let a_pid = app
        .process::<Lifecycle>("a")
        .expect("a")
        .pid()
        .await
        .expect("a");
    let c_pid = app
        .process::<Lifecycle>("c")
        .expect("c")
        .pid()
        .await
        .expect("c");
    let state = tokio::time::timeout(WITHIN, app.ended())
        .await
        .expect("ends");
    assert!(matches!(state, SupervisorState::Failed { .. }), "{state:?}");
    let seen = words_until(&mut events, |seen| count(seen, "gave-up app") == 1).await;
    assert_eq!(
        seen.iter().filter(|w| *w == "crashed app/crasher").count(),
        3
    );
    assert_eq!(
        seen.iter()
            .filter(|w| *w == "restarting app/crasher")
            .count(),
        2
    );
    let tail: Vec<&str> = seen
        .iter()
        .rev()
        .take(3)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        ["stopped app/c", "stopped app/a", "gave-up app"],
        "{seen:?}"
    );
    assert!(!pid_alive(a_pid) || wait_dead(a_pid, WITHIN).await);
    assert!(!pid_alive(c_pid) || wait_dead(c_pid, WITHIN).await);
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_nested_supervisor_that_gives_up_is_restarted_by_its_parent() {
    let pm = manager();
    let inner = SupervisorSpec::new("inner")
        .restart_budget(0, Duration::from_secs(30))
        .backoff(quick())
        .child(lifecycle("x"));
    let spec = SupervisorSpec::new("app")
        .backoff(quick())
        .child(lifecycle("a"))
        .child(ChildSpec::supervisor(inner));
    let app = pm.supervise(spec).await.expect("starts");
    let x = app
        .supervisor("inner")
        .expect("nested")
        .process::<Lifecycle>("x")
        .expect("x");
    let a = app.process::<Lifecycle>("a").expect("a");
    let (a_pid, x_pid) = (a.pid().await.expect("a"), x.pid().await.expect("x"));
    let mut events = pm.subscribe();
    sigkill(x_pid);
    let seen = words_until(&mut events, |seen| count(seen, "started app/inner") == 1).await;
    assert_eq!(
        seen,
        [
            "crashed app/inner/x",
            "gave-up app/inner",
            "crashed app/inner",
            "restarting app/inner",
            "started app/inner/x",
            "started app/inner",
        ]
    );
    let new_x = x
        .pid()
        .await
        .expect("the handle to x answers after the restart");
    assert_ne!(new_x, x_pid);
    assert_eq!(
        a.pid().await.expect("a"),
        a_pid,
        "one-for-one: a is untouched"
    );
    assert_eq!(app.state(), SupervisorState::Running);
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn stopping_the_tree_stops_children_in_reverse_order_and_leaves_no_process_behind() {
    let pm = manager();
    let app = pm
        .supervise(abc(RestartStrategy::OneForAll))
        .await
        .expect("starts");
    let before = pids(&app).await;
    let mut events = pm.subscribe();
    app.stop().await;
    let seen = words_until(&mut events, |seen| {
        count(seen, "supervisor-stopped app") == 1
    })
    .await;
    assert_eq!(
        seen,
        [
            "stopped app/c",
            "stopped app/b",
            "stopped app/a",
            "supervisor-stopped app"
        ]
    );
    for pid in before {
        assert!(wait_dead(pid, WITHIN).await, "{pid} is gone");
    }
    assert_eq!(app.state(), SupervisorState::Stopped);
    let b = app.process::<Lifecycle>("b").expect("handle");
    assert!(matches!(b.pid().await, Err(Error::Unavailable { .. })));
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn an_optional_child_that_cannot_start_does_not_block_the_others() {
    let pm = manager();
    let spec = SupervisorSpec::new("app")
        .child(lifecycle("a"))
        .child(
            ChildSpec::process::<Lifecycle>(
                "missing",
                "/nonexistent/binary",
                SpawnOptions::default(),
            )
            .optional(),
        )
        .child(lifecycle("c"));
    let app = pm
        .supervise(spec)
        .await
        .expect("starts without the optional child");
    assert!(app
        .process::<Lifecycle>("c")
        .expect("c")
        .pid()
        .await
        .is_ok());
    assert!(matches!(
        app.process::<Lifecycle>("missing"),
        Err(Error::Unavailable { .. })
    ));
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_critical_child_that_cannot_start_fails_the_start_and_stops_those_before_it() {
    let pm = manager();
    let mut events = pm.subscribe();
    let spec = SupervisorSpec::new("app")
        .child(lifecycle("a"))
        .child(ChildSpec::process::<Lifecycle>(
            "missing",
            "/nonexistent/binary",
            SpawnOptions::default(),
        ));
    let err = pm
        .supervise(spec)
        .await
        .expect_err("a critical child is missing");
    assert!(matches!(err, Error::Spawn { .. }), "{err:?}");
    let seen = words_until(&mut events, |seen| count(seen, "stopped app/a") == 1).await;
    assert_eq!(seen, ["started app/a", "stopped app/a"]);
    assert!(pm
        .list()
        .iter()
        .all(|p| !matches!(p.state, ProcessState::Running { .. })));
}

#[tokio::test]
async fn a_spec_with_two_children_of_one_name_is_refused() {
    let pm = manager();
    let spec = SupervisorSpec::new("app")
        .child(lifecycle("a"))
        .child(lifecycle("a"));
    assert!(matches!(pm.supervise(spec).await, Err(Error::Config(_))));
    let slash = SupervisorSpec::new("app").child(lifecycle("a/b"));
    assert!(matches!(pm.supervise(slash).await, Err(Error::Config(_))));
}

#[tokio::test]
async fn typed_access_refuses_the_wrong_process_type_or_name() {
    let pm = manager();
    let app = pm
        .supervise(SupervisorSpec::new("app").child(lifecycle("a")))
        .await
        .expect("starts");
    assert!(matches!(
        app.process::<Crasher>("a"),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        app.process::<Lifecycle>("zz"),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(app.supervisor("a"), Err(Error::NotFound(_))));
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn list_shows_the_tree_with_paths() {
    let pm = manager();
    let inner = SupervisorSpec::new("inner").child(lifecycle("x"));
    let spec = SupervisorSpec::new("app")
        .child(lifecycle("a"))
        .child(ChildSpec::supervisor(inner));
    let _app = pm.supervise(spec).await.expect("starts");
    let loose = pm
        .spawn::<Lifecycle>(LIFECYCLE, SpawnOptions::default())
        .await
        .expect("spawn");
    let list = pm.list();
    let paths: Vec<Option<&str>> = list.iter().map(|p| p.supervisor.as_deref()).collect();
    assert_eq!(
        paths,
        [
            Some("app"),
            Some("app/a"),
            Some("app/inner"),
            Some("app/inner/x"),
            None
        ]
    );
    assert_eq!(list[4].id, loose.id());
    assert!(list[1].pid.is_some());
    pm.shutdown().await.expect("shutdown");
    assert!(pm
        .list()
        .iter()
        .all(|p| matches!(p.state, ProcessState::Stopped { .. })));
}

#[tokio::test]
async fn a_pool_after_a_crashed_child_under_rest_for_one_is_reloaded_with_fresh_members() {
    let pm = manager();
    let spec = SupervisorSpec::new("app")
        .strategy(RestartStrategy::RestForOne)
        .backoff(quick())
        .child(lifecycle("db"))
        .child(ChildSpec::pool::<Lifecycle>(
            "workers",
            LIFECYCLE,
            PoolOptions {
                size: 2,
                ..Default::default()
            },
        ));
    let app = pm.supervise(spec).await.expect("starts");
    let workers = app.pool::<Lifecycle>("workers").expect("typed pool");
    let before: Vec<ProcessId> = Pool::members(&workers);
    assert_eq!(before.len(), 2);
    let listed: Vec<Option<String>> = pm.list().into_iter().map(|p| p.supervisor).collect();
    assert_eq!(
        listed,
        [
            Some("app".to_owned()),
            Some("app/db".to_owned()),
            Some("app/workers".to_owned()),
            Some("app/workers".to_owned()),
            Some("app/workers".to_owned()),
        ],
        "the pool's entry, then its two members, under the tree"
    );
    let db = app.process::<Lifecycle>("db").expect("db");
    let mut events = pm.subscribe();
    sigkill(db.pid().await.expect("db answers"));
    let seen = words_until(&mut events, |seen| count(seen, "started app/workers") == 1).await;
    assert_eq!(
        seen,
        [
            "crashed app/db",
            "restarting app/db",
            "started app/db",
            "started app/workers"
        ]
    );
    let after: Vec<ProcessId> = Pool::members(&workers);
    assert_eq!(after.len(), 2);
    assert!(
        after.iter().all(|id| !before.contains(id)),
        "every member was replaced: {before:?} -> {after:?}"
    );
    assert!(workers.pid().await.is_ok(), "the pool handle answers");
    assert!(matches!(
        app.pool::<Crasher>("workers"),
        Err(Error::NotFound(_))
    ));
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_pool_that_fails_as_a_whole_is_a_crashed_child_to_its_supervisor() {
    // With restarts disabled, a member that exits fails for good and cannot be replaced.
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        grace_period: Duration::from_millis(500),
        restart_policy: RestartPolicy {
            enabled: false,
            ..Default::default()
        },
        ..Default::default()
    });
    let crashing = CrashPlan {
        after_ms: 100,
        code: 3,
        marker: None,
        first_after_ms: 0,
    };
    let spec = SupervisorSpec::new("app")
        .restart_budget(1, Duration::from_secs(30))
        .backoff(quick())
        .child(lifecycle("a"))
        .child(ChildSpec::pool::<Crasher>(
            "crashers",
            CRASHER,
            PoolOptions {
                size: 1,
                spawn: SpawnOptions::default().dependencies(crashing),
                ..Default::default()
            },
        ));
    let mut events = pm.subscribe();
    let app = pm.supervise(spec).await.expect("starts");
    let state = tokio::time::timeout(WITHIN, app.ended())
        .await
        .expect("ends");
    assert!(matches!(state, SupervisorState::Failed { .. }), "{state:?}");
    let seen = words_until(&mut events, |seen| count(seen, "gave-up app") == 1).await;
    assert!(count(&seen, "crashed app/crashers") >= 1, "{seen:?}");
    assert_eq!(seen.last().map(String::as_str), Some("gave-up app"));
    pm.shutdown().await.expect("shutdown");
}
