//! `Isolation::None` keeps the semantics of the isolations that cross a thread or a process:
//! each test runs its scenario under `Isolation::Worker` and `Isolation::None`, mostly, and
//! asks for the same outcome. Written by an adversarial review of a path that ran None calls
//! in the caller's own task (since withdrawn); its five findings are the regression tests of
//! any such shortcut: a method that blocks its thread must still meet its caller's deadline
//! and a kill, the caller's trace context must not leak in without tracing, a call waiting
//! for a slot when a shutdown begins must not start, and deep re-entrant calls must not
//! overflow one stack.
#![allow(missing_docs)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pm_runtime::prelude::*;
use pm_runtime::trace::{self, TraceContext};
use pm_runtime::{ClientStub, Error, RemoteErrorKind};
use pm_tests::{eventually, start_call, Lifecycle, Tracer};

fn manager(isolation: Isolation) -> ProcessManager {
    ProcessManager::new(ProcessManagerConfig {
        isolation,
        ..Default::default()
    })
}

fn manager_with(isolation: Isolation, f: impl FnOnce(&mut ProcessManagerConfig)) -> ProcessManager {
    let mut config = ProcessManagerConfig {
        isolation,
        ..Default::default()
    };
    f(&mut config);
    ProcessManager::new(config)
}

const BOTH: [Isolation; 2] = [Isolation::Worker, Isolation::None];

// ---------------------------------------------------------------------------------------
// Processes of this review.

/// Raised by `Blocker::block` when it starts, one flag per test.
static BLOCK_STARTED: [AtomicBool; 8] = [const { AtomicBool::new(false) }; 8];

/// A method that blocks its thread (as CPU-bound or synchronous code does).
#[derive(Debug, Default)]
pub struct Blocker;

#[process(name = "blocker", version = "1.0.0")]
impl Blocker {
    /// Raises flag `tag`, then blocks the thread for `millis`.
    #[public]
    pub async fn block(&self, tag: u32, millis: u64) -> u64 {
        BLOCK_STARTED[tag as usize].store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(millis));
        millis
    }

    /// Answers at once.
    #[public]
    pub async fn ping(&self) -> u32 {
        1
    }
}

/// How many `Counted` instances were built, and how many dropped.
static COUNTED_BUILT: AtomicU64 = AtomicU64::new(0);
static COUNTED_DROPPED: AtomicU64 = AtomicU64::new(0);
/// Calls of `Counted::hold` running now.
static COUNTED_HOLDING: AtomicU64 = AtomicU64::new(0);

/// Knows which incarnation it is; its drop is counted.
#[derive(Debug)]
pub struct Counted {
    incarnation: u64,
    sick: AtomicBool,
}

impl Drop for Counted {
    fn drop(&mut self) {
        COUNTED_DROPPED.fetch_add(1, Ordering::SeqCst);
    }
}

#[process(name = "counted", version = "1.0.0")]
impl Counted {
    pub async fn init() -> Self {
        Counted {
            incarnation: COUNTED_BUILT.fetch_add(1, Ordering::SeqCst) + 1,
            sick: AtomicBool::new(false),
        }
    }

    /// Which incarnation answers.
    #[public]
    pub async fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Holds the write lock for `millis`.
    #[public]
    pub async fn hold(&mut self, millis: u64) -> u64 {
        COUNTED_HOLDING.fetch_add(1, Ordering::SeqCst);
        struct Done;
        impl Drop for Done {
            fn drop(&mut self) {
                COUNTED_HOLDING.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _done = Done;
        tokio::time::sleep(Duration::from_millis(millis)).await;
        self.incarnation
    }

    /// Unhealthy from now on.
    #[public]
    pub async fn fall_ill(&self) {
        self.sick.store(true, Ordering::SeqCst);
    }

    #[health_check]
    pub async fn health(&self) -> HealthStatus {
        if self.sick.load(Ordering::SeqCst) {
            HealthStatus::unhealthy()
        } else {
            HealthStatus::healthy()
        }
    }
}

/// Panics in its method.
#[derive(Debug, Default)]
pub struct Panicker;

#[process(name = "panicker", version = "1.0.0")]
impl Panicker {
    #[public]
    pub async fn boom(&self) -> u32 {
        panic!("boom in a direct call")
    }

    #[public]
    pub async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }
}

/// A handle the `Relay` uses to call the tracer (one per isolation under test).
static RELAY_TARGET: std::sync::Mutex<Vec<ProcessHandle<Tracer>>> =
    std::sync::Mutex::new(Vec::new());

/// Calls another process from inside its method.
#[derive(Debug, Default)]
pub struct Relay;

#[process(name = "relay", version = "1.0.0")]
impl Relay {
    /// What the tracer saw, and this call's own context.
    #[public]
    pub async fn relay(&self) -> (Option<String>, Option<String>) {
        let target = RELAY_TARGET
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .expect("a target");
        let mine = trace::current().map(|ctx| ctx.span_id().to_string());
        let seen = target.seen().await.expect("the tracer answers");
        (mine, seen.and_then(|seen| seen.parent_id))
    }
}

// ---------------------------------------------------------------------------------------
// Deadlines and kills of a method that blocks its thread.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_ends_a_call_whose_method_blocks_its_thread() {
    let mut outcomes = Vec::new();
    for isolation in BOTH {
        let pm = manager(isolation);
        let handle = pm
            .spawn::<Lifecycle>("unused-binary-name", SpawnOptions::default())
            .await
            .expect("spawn");
        let short = ProcessHandle::with_timeout(&handle, Duration::from_millis(200));
        let started = Instant::now();
        let result = short.spin(2_000).await;
        let took = started.elapsed();
        let timely_timeout =
            matches!(result, Err(Error::Timeout { .. })) && took < Duration::from_millis(1_500);
        outcomes.push((
            isolation,
            timely_timeout,
            format!("{result:?} after {took:?}"),
        ));
        pm.shutdown().await.expect("shutdown");
    }
    assert!(
        outcomes.iter().all(|(_, ok, _)| *ok),
        "a 200 ms deadline on a 2 s spin: {outcomes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_ends_a_call_whose_method_blocks_its_thread_at_once() {
    let mut outcomes = Vec::new();
    for (tag, isolation) in BOTH.into_iter().enumerate() {
        let pm = manager(isolation);
        let handle = pm
            .spawn::<Blocker>("unused-binary-name", SpawnOptions::default())
            .await
            .expect("spawn");
        let caller = handle.clone();
        let tag32 = u32::try_from(tag).expect("small");
        let call = tokio::spawn(async move {
            let result = caller.block(tag32, 3_000).await;
            (result, Instant::now())
        });
        assert!(
            eventually(Duration::from_secs(5), async || BLOCK_STARTED[tag]
                .load(Ordering::SeqCst))
            .await,
            "the call never started"
        );
        let killed = Instant::now();
        pm.kill(handle.id()).await.expect("kill");
        let (result, ended) = call.await.expect("the caller's task");
        let after = ended.saturating_duration_since(killed);
        let ok = result.is_err() && after < Duration::from_millis(1_000);
        outcomes.push((
            isolation,
            ok,
            format!("{result:?}, {after:?} after the kill"),
        ));
        let _ = pm.shutdown().await;
    }
    assert!(
        outcomes.iter().all(|(_, ok, _)| *ok),
        "a kill mid-call: {outcomes:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Trace context.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tracing_a_method_does_not_see_its_callers_trace_context() {
    let mut outcomes = Vec::new();
    for isolation in BOTH {
        // Tracing is off (the default).
        let pm = manager(isolation);
        let handle = pm
            .spawn::<Tracer>("unused-binary-name", SpawnOptions::default())
            .await
            .expect("spawn");
        let callers = TraceContext::new_root();
        let seen = trace::scope(callers, handle.seen()).await.expect("seen");
        outcomes.push((isolation, seen));
        pm.shutdown().await.expect("shutdown");
    }
    assert!(
        outcomes.iter().all(|(_, seen)| seen.is_none()),
        "with tracing off, what the method saw as its trace context: {outcomes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tracing_a_nested_call_continues_the_methods_span() {
    let mut outcomes = Vec::new();
    for isolation in BOTH {
        let pm = manager_with(isolation, |c| c.monitoring.tracing = true);
        let tracer = pm
            .spawn::<Tracer>("unused-binary-name", SpawnOptions::default())
            .await
            .expect("spawn");
        RELAY_TARGET.lock().expect("lock").push(tracer);
        let relay = pm
            .spawn::<Relay>("unused-binary-name", SpawnOptions::default())
            .await
            .expect("spawn");
        let callers = TraceContext::new_root();
        let (mine, parent) = trace::scope(callers, relay.relay()).await.expect("relay");
        outcomes.push((
            isolation,
            mine.is_some() && mine == parent,
            format!("{mine:?} {parent:?}"),
        ));
        pm.shutdown().await.expect("shutdown");
    }
    assert!(outcomes.iter().all(|(_, ok, _)| *ok), "{outcomes:?}");
}

// ---------------------------------------------------------------------------------------
// Errors and metrics.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_unknown_methods_and_bad_arguments_are_typed_errors_and_counted() {
    let pm = manager(Isolation::None);
    let handle = pm
        .spawn::<Panicker>("unused-binary-name", SpawnOptions::default())
        .await
        .expect("spawn");
    match handle.boom().await {
        Err(Error::Remote { error, .. }) => {
            assert_eq!(error.kind, RemoteErrorKind::Panic, "{error:?}")
        }
        other => panic!("a panic: {other:?}"),
    }
    let caller = handle.__caller();
    let unknown = caller.call::<_, u32>("nope", &()).await;
    assert!(
        matches!(unknown, Err(Error::Protocol(ref m)) if m.contains("no method")),
        "{unknown:?}"
    );
    let bad = caller.call::<_, i64>("add", &("x", 2)).await;
    assert!(matches!(bad, Err(Error::Protocol(_))), "{bad:?}");
    assert_eq!(handle.add(2, 3).await.expect("add"), 5);
    let metrics = pm.get_metrics(handle.id()).await.expect("metrics");
    assert_eq!(metrics.requests, 4, "{metrics:?}");
    assert_eq!(metrics.errors, 3, "{metrics:?}");
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_checks_own_bound_of_two_holds_and_bypasses_call_slots() {
    let pm = manager_with(Isolation::None, |c| c.limits.max_in_flight = 1);
    let handle = pm
        .spawn::<Lifecycle>("unused-binary-name", SpawnOptions::default())
        .await
        .expect("spawn");
    // The one call slot is taken.
    let busy = start_call({
        let handle = handle.clone();
        async move { handle.slow(3_000).await }
    })
    .await;
    handle.slow_down_health(800).await.err();
    let caller = handle.__caller().clone();
    let checks: Vec<_> = (0..3)
        .map(|_| {
            let caller = caller.clone();
            tokio::spawn(async move { caller.call::<_, HealthStatus>("$health", &()).await })
        })
        .collect();
    let mut ok = 0;
    let mut refused = 0;
    for check in checks {
        match check.await.expect("task") {
            Ok(_) => ok += 1,
            Err(Error::Remote { error, .. })
                if error.message.contains("health checks are already running") =>
            {
                refused += 1;
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!((ok, refused), (2, 1));
    busy.abort();
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_in_flight_bounds_direct_calls() {
    let pm = manager_with(Isolation::None, |c| c.limits.max_in_flight = 2);
    let handle = pm
        .spawn::<Lifecycle>("unused-binary-name", SpawnOptions::default())
        .await
        .expect("spawn");
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let handle = handle.clone();
            tokio::spawn(async move { handle.probe(100).await })
        })
        .collect();
    let mut most = 0;
    for call in calls {
        most = most.max(call.await.expect("task").expect("probe"));
    }
    assert_eq!(most, 2);
    pm.shutdown().await.expect("shutdown");
}

// ---------------------------------------------------------------------------------------
// Shutdown, kill, restart.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_lets_running_calls_finish_refuses_waiting_ones_and_ends_leftovers() {
    let pm = manager_with(Isolation::None, |c| {
        c.limits.max_in_flight = 2;
        c.grace_period = Duration::from_millis(700);
    });
    let handle = pm
        .spawn::<Lifecycle>("unused-binary-name", SpawnOptions::default())
        .await
        .expect("spawn");
    let quick = start_call({
        let handle = handle.clone();
        async move { handle.slow(300).await }
    })
    .await;
    let long = start_call({
        let handle = handle.clone();
        async move { handle.slow(10_000).await }
    })
    .await;
    // Both slots are taken: this one waits for a slot.
    let waiting = start_call({
        let handle = handle.clone();
        async move { handle.slow(10).await }
    })
    .await;
    let started = Instant::now();
    pm.stop(handle.id()).await.expect("stop");
    let stop_took = started.elapsed();
    let quick = tokio::time::timeout(Duration::from_secs(2), quick)
        .await
        .expect("quick ends")
        .expect("task");
    let long = tokio::time::timeout(Duration::from_secs(2), long)
        .await
        .expect("long ends")
        .expect("task");
    let waiting = tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .expect("waiting ends")
        .expect("task");
    assert_eq!(quick.expect("finished within the grace period"), 300);
    assert!(
        matches!(
            long,
            Err(Error::Unavailable { .. }) | Err(Error::ProcessExited { .. })
        ),
        "{long:?}"
    );
    assert!(
        matches!(waiting, Err(Error::Unavailable { .. })),
        "{waiting:?}"
    );
    assert!(stop_took < Duration::from_secs(3), "{stop_took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_ends_an_exclusive_call_at_once_and_the_instance_is_dropped() {
    let pm = manager(Isolation::None);
    let handle = pm
        .spawn::<Counted>(
            "unused-binary-name",
            SpawnOptions::default().name("kill-exclusive"),
        )
        .await
        .expect("spawn");
    let dropped_before = COUNTED_DROPPED.load(Ordering::SeqCst);
    let holder = tokio::spawn({
        let handle = handle.clone();
        async move { handle.hold(10_000).await }
    });
    assert!(
        eventually(Duration::from_secs(5), async || COUNTED_HOLDING
            .load(Ordering::SeqCst)
            >= 1)
        .await
    );
    let killed = Instant::now();
    pm.kill(handle.id()).await.expect("kill");
    let result = tokio::time::timeout(Duration::from_secs(1), holder)
        .await
        .expect("the call ends at once")
        .expect("task");
    assert!(result.is_err(), "{result:?}");
    assert!(killed.elapsed() < Duration::from_secs(1));
    assert!(
        eventually(Duration::from_secs(3), async || COUNTED_DROPPED
            .load(Ordering::SeqCst)
            > dropped_before)
        .await,
        "the killed instance was never dropped"
    );
    // While the handle is still alive.
    drop(handle);
    let _ = pm.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_incarnation_gets_its_own_direct_calls() {
    let pm = manager_with(Isolation::None, |c| {
        c.monitoring.health_check = HealthCheckConfig {
            enabled: true,
            interval: Duration::from_millis(50),
            timeout: Duration::from_millis(500),
            failure_threshold: 1,
        };
        c.restart_policy = RestartPolicy {
            enabled: true,
            max_restarts: 5,
            window: Duration::from_secs(60),
            backoff: Backoff {
                kind: BackoffKind::Exponential,
                initial: Duration::from_millis(10),
                max: Duration::from_millis(20),
            },
            ..Default::default()
        };
    });
    let handle = pm
        .spawn::<Counted>(
            "unused-binary-name",
            SpawnOptions::default().name("restarted"),
        )
        .await
        .expect("spawn");
    let first = handle.incarnation().await.expect("first");
    // A call in flight on the incarnation that will be ended: it holds the write lock, so
    // the health check (which needs the instance) times out and the monitor restarts it.
    let holder = start_call({
        let handle = handle.clone();
        async move { handle.hold(10_000).await }
    })
    .await;
    let result = tokio::time::timeout(Duration::from_secs(5), holder)
        .await
        .expect("the call on the ended incarnation ends")
        .expect("task");
    assert!(result.is_err(), "{result:?}");
    assert!(
        eventually(Duration::from_secs(5), async || {
            matches!(handle.incarnation().await, Ok(n) if n != first)
        })
        .await,
        "calls never reached the new incarnation"
    );
    let second = handle.incarnation().await.expect("second");
    assert_ne!(first, second);
    // An exclusive call works on the new incarnation (the old one's lock is not in the way).
    assert_eq!(handle.hold(1).await.expect("hold"), second);
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_callers_future_cancels_the_direct_call() {
    let pm = manager(Isolation::None);
    let handle = pm
        .spawn::<Lifecycle>("unused-binary-name", SpawnOptions::default())
        .await
        .expect("spawn");
    let before = handle.aborted().await.expect("aborted");
    let call = start_call({
        let handle = handle.clone();
        async move { handle.slow(10_000).await }
    })
    .await;
    // The method runs as a task of its own: wait until it has started.
    assert!(
        eventually(Duration::from_secs(10), async || handle
            .slow_running()
            .await
            .expect("running")
            == 1)
        .await
    );
    call.abort();
    let _ = call.await;
    assert!(
        eventually(Duration::from_secs(2), async || handle
            .aborted()
            .await
            .expect("aborted")
            > before)
        .await
    );
    // The slot came back: a call with a single slot runs.
    assert_eq!(handle.slow(1).await.expect("slow"), 1);
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_of_none_members_answer() {
    let pm = manager(Isolation::None);
    let pool = pm
        .pool::<Lifecycle>(
            "unused-binary-name",
            PoolOptions {
                size: 2,
                ..Default::default()
            },
        )
        .await
        .expect("pool");
    for _ in 0..4 {
        assert_eq!(pool.slow(1).await.expect("slow"), 1);
    }
    pm.shutdown().await.expect("shutdown");
}

// ---------------------------------------------------------------------------------------
// A call waiting for a slot when the shutdown begins, whose slot frees during the shutdown.

/// Released by `Gated`'s shutdown hook: the running call then finishes.
static GATES: [tokio::sync::Notify; 2] = [const { tokio::sync::Notify::const_new() }; 2];
/// Calls of `Gated::wait` that started, per gate.
static GATED_STARTED: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];

/// Its one call waits for its shutdown hook.
#[derive(Debug)]
pub struct Gated {
    gate: usize,
}

#[process(name = "gated", version = "1.0.0")]
impl Gated {
    pub async fn init(gate: u64) -> Self {
        Gated {
            gate: usize::try_from(gate).expect("small"),
        }
    }

    /// Waits until the shutdown hook opens the gate (or returns at once when `wait` is false).
    #[public]
    pub async fn wait(&self, wait: bool) -> bool {
        GATED_STARTED[self.gate].fetch_add(1, Ordering::SeqCst);
        if wait {
            GATES[self.gate].notified().await;
        }
        true
    }

    #[on_shutdown]
    pub async fn open(&self) {
        GATES[self.gate].notify_waiters();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_waiting_for_a_slot_when_the_shutdown_begins_is_refused_even_if_a_slot_frees() {
    let mut outcomes = Vec::new();
    for (gate, isolation) in BOTH.into_iter().enumerate() {
        let mut ran = 0;
        for _ in 0..10 {
            let pm = manager_with(isolation, |c| {
                c.limits.max_in_flight = 1;
                c.grace_period = Duration::from_secs(2);
            });
            let handle = pm
                .spawn::<Gated>(
                    "unused-binary-name",
                    SpawnOptions::default().dependencies(gate as u64),
                )
                .await
                .expect("spawn");
            let before = GATED_STARTED[gate].load(Ordering::SeqCst);
            let running = tokio::spawn({
                let handle = handle.clone();
                async move { handle.wait(true).await }
            });
            assert!(
                eventually(Duration::from_secs(5), async || GATED_STARTED[gate]
                    .load(Ordering::SeqCst)
                    > before)
                .await
            );
            // Waits for the one slot.
            let waiting = start_call({
                let handle = handle.clone();
                async move { handle.wait(false).await }
            })
            .await;
            pm.stop(handle.id()).await.expect("stop");
            let running = running.await.expect("task");
            assert!(
                running.is_ok(),
                "the running call finishes within the grace: {running:?}"
            );
            if waiting.await.expect("task").is_ok() {
                ran += 1;
            }
        }
        outcomes.push((isolation, ran));
    }
    assert!(
        outcomes.iter().all(|(_, ran)| *ran == 0),
        "of 10 calls waiting for a slot when a stop began, how many ran: {outcomes:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Re-entrant calls, deep: a method that calls itself through its handle.

static RECURSOR: std::sync::OnceLock<ProcessHandle<Recursor>> = std::sync::OnceLock::new();

/// Calls itself `n` levels deep.
#[derive(Debug, Default)]
pub struct Recursor;

#[process(name = "recursor", version = "1.0.0")]
impl Recursor {
    #[public]
    pub async fn down(&self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        let me = RECURSOR.get().expect("the handle").clone();
        me.down(n - 1).await.expect("the nested call") + 1
    }
}

/// Run only in a child copy of this test binary (a stack overflow aborts the whole process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by a_method_may_call_itself_deeply_through_its_handle in a child process"]
async fn deep_reentrancy_inner() {
    let depth: u32 = std::env::var("DIRECT_REVIEW_DEPTH")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(200);
    let isolation = match std::env::var("DIRECT_REVIEW_ISOLATION").as_deref() {
        Ok("worker") => Isolation::Worker,
        _ => Isolation::None,
    };
    let pm = manager(isolation);
    let handle = pm
        .spawn::<Recursor>("unused-binary-name", SpawnOptions::default())
        .await
        .expect("spawn");
    RECURSOR.set(handle.clone()).expect("once");
    // From a spawned task, as any caller on a runtime worker thread (2 MiB stack).
    let result = tokio::spawn(async move { handle.down(depth).await })
        .await
        .expect("task");
    assert_eq!(result.expect("down"), depth);
    pm.shutdown().await.expect("shutdown");
}

#[test]
fn a_method_may_call_itself_deeply_through_its_handle() {
    let mut outcomes = Vec::new();
    for isolation in ["worker", "none"] {
        let output = std::process::Command::new(std::env::current_exe().expect("exe"))
            .args([
                "--ignored",
                "--exact",
                "deep_reentrancy_inner",
                "--test-threads=1",
            ])
            .env("DIRECT_REVIEW_DEPTH", "200")
            .env("DIRECT_REVIEW_ISOLATION", isolation)
            .output()
            .expect("run the test binary");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .rfind(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_owned();
        outcomes.push((isolation, output.status.to_string(), last));
    }
    assert!(
        outcomes
            .iter()
            .all(|(_, status, _)| status == "exit status: 0"),
        "200 nested calls of a method to itself: {outcomes:?}"
    );
}
