//! Races and edge cases of pools found by two adversarial reviews: of the first pool commit
//! (f5d87ca), and of its fixes and the hot path after them (through 59c8bf1). Each test
//! failed on the reviewed code unless marked "Coverage"; the comment on each says what went
//! wrong there (line numbers refer to the reviewed code).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pm_runtime::prelude::*;
use pm_runtime::{CircuitBreaker, Error, PoolEvent};
use pm_tests::{eventually, pid_alive, wait_dead, PoolWorker, Who};

const WORKER: &str = env!("CARGO_BIN_EXE_test-pool-worker");

async fn pool(pm: &ProcessManager, options: PoolOptions) -> Pool<PoolWorker> {
    tokio::time::timeout(
        Duration::from_secs(60),
        pm.pool::<PoolWorker>(WORKER, options),
    )
    .await
    .expect("the pool starts in time")
    .expect("the pool starts")
}

fn running(pm: &ProcessManager, id: ProcessId) -> bool {
    pm.info(id)
        .is_some_and(|info| matches!(info.state, ProcessState::Running { .. }))
}

async fn shutdown(pm: &ProcessManager) {
    tokio::time::timeout(Duration::from_secs(60), pm.shutdown())
        .await
        .expect("shutdown in time")
        .expect("shutdown");
}

/// A one-member Child pool whose member is SIGKILLed with an idempotent call in flight and
/// comes back within milliseconds. Returns the pool, the in-flight call's task and the
/// member's new pid once it runs again.
async fn one_member_killed_mid_idempotent_call(
    pm: &ProcessManager,
) -> (
    Arc<Pool<PoolWorker>>,
    tokio::task::JoinHandle<Result<Who, Error>>,
) {
    let pool = Arc::new(
        pool(
            pm,
            PoolOptions {
                size: 1,
                ..Default::default()
            },
        )
        .await,
    );
    let member = Pool::members(&pool)[0];
    let victim = pm.info(member).and_then(|i| i.pid).expect("pid");
    let call = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.hold_again(1500).await })
    };
    assert!(
        eventually(Duration::from_secs(10), async || {
            tokio::time::timeout(Duration::from_secs(2), pool.running())
                .await
                .is_ok_and(|r| r.unwrap_or(0) > 0)
        })
        .await,
        "the idempotent call never started"
    );
    // SAFETY: signalling a child this test owns.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    assert!(
        eventually(Duration::from_secs(10), async || running(pm, member)
            && pm
                .info(member)
                .and_then(|i| i.pid)
                .is_some_and(|p| p != victim))
        .await,
        "the member did not come back"
    );
    (pool, call)
}

fn restarting_fast() -> ProcessManager {
    ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        restart_policy: RestartPolicy {
            backoff: Backoff {
                kind: BackoffKind::Linear,
                initial: Duration::from_millis(10),
                max: Duration::from_millis(50),
            },
            ..Default::default()
        },
        grace_period: Duration::from_millis(500),
        ..Default::default()
    })
}

/// Was a bug (high): the retry of an idempotent call whose only possible member died is queued
/// with `avoid` = that member (mod.rs:241, dispatch.rs:141). It can never be served, and
/// `pump_locked` stops at it (dispatch.rs:286: an unkeyed waiter nobody can take ends the
/// pass), and `acquire` queues every later call behind it (dispatch.rs:199), so the whole
/// pool stalls for ALL_DOWN_WAIT (10 s) although its member is back and idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_retry_with_no_other_member_goes_to_the_restarted_one_and_stalls_nothing() {
    let pm = restarting_fast();
    let (pool, retried) = one_member_killed_mid_idempotent_call(&pm).await;
    let started = Instant::now();
    let next = tokio::time::timeout(Duration::from_secs(4), pool.who()).await;
    let stalled = started.elapsed();
    let retried = tokio::time::timeout(Duration::from_secs(20), retried)
        .await
        .expect("the retried call ends")
        .expect("task");
    assert!(
        matches!(next, Ok(Ok(_))),
        "a call to a pool whose one member is up and idle did not finish within 4 s: {next:?} \
         after {stalled:?}"
    );
    // One member only: the retry may go to it again (Ok), or give the first error back.
    assert!(
        matches!(retried, Ok(_) | Err(Error::ProcessExited { .. })),
        "{retried:?}"
    );
    shutdown(&pm).await;
}

/// Was a bug (high, a call that never ends): a waiter that leaves the queue on its deadline (or
/// the 10 s all-down limit) is removed by `forget_waiter` (dispatch.rs:323-329) without a
/// pump, so calls queued behind it stay queued while a member is idle; with no deadline
/// they wait forever. Reached here through the stalled retry above: it leaves after 10 s,
/// and the plain call queued behind it (no deadline) is never served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_queued_behind_a_waiter_that_gave_up_is_served() {
    let pm = restarting_fast();
    let (pool, retried) = one_member_killed_mid_idempotent_call(&pm).await;
    let queued = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.who().await })
    };
    // The retry gives up (or succeeds) within about 10 s.
    let _ = tokio::time::timeout(Duration::from_secs(20), retried)
        .await
        .expect("the retried call ends");
    let served = tokio::time::timeout(Duration::from_secs(8), queued).await;
    assert!(
        matches!(served, Ok(Ok(Ok(_)))),
        "the call queued behind it never ended (queued: {}): {served:?}",
        Pool::queued(&pool)
    );
    shutdown(&pm).await;
}

/// Was a bug (medium): `reload` replaces members from a snapshot (membership.rs:257) and
/// `replace` does not check that `old` is still a member (membership.rs:235-244). A member
/// that ended for good after the snapshot is removed and replaced by `member_gone` /
/// `replace_failed` (membership.rs:90-117), and then replaced again by the reload: two
/// members share one slot and the pool ends one member over its size (and the ring's
/// `find` by slot, dispatch.rs:110, only ever routes keys to one of the two).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_killed_during_a_reload_is_replaced_once_and_the_pool_keeps_its_size() {
    let pm = restarting_fast();
    let pool = Arc::new(
        pool(
            &pm,
            PoolOptions {
                size: 3,
                ..Default::default()
            },
        )
        .await,
    );
    let before = Pool::members(&pool);
    let mut events = pm.subscribe();
    let reload = {
        let pool = pool.clone();
        tokio::spawn(async move { Pool::reload(&pool).await })
    };
    // The reload has taken its snapshot once it admitted its first fresh member.
    let first_added = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match events.recv().await {
                Ok(ProcessEvent::Pool {
                    event: PoolEvent::MemberAdded { .. },
                    ..
                }) => return,
                Ok(_) => {}
                Err(err) => panic!("{err}"),
            }
        }
    })
    .await;
    assert!(first_added.is_ok(), "the reload admitted no member");
    pm.kill(before[2])
        .await
        .expect("kill a member not yet reloaded");
    tokio::time::timeout(Duration::from_secs(60), reload)
        .await
        .expect("the reload ends")
        .expect("task")
        .expect("reload");
    // Let the replacement of the killed member arrive, then look.
    assert!(
        eventually(Duration::from_secs(10), async || {
            let members = Pool::members(&pool);
            members.len() >= 3 && members.iter().all(|id| running(&pm, *id))
        })
        .await
    );
    // Nothing may follow: a second replacement would show up within this window.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let members = Pool::members(&pool);
    let listed = pm
        .list()
        .into_iter()
        .filter(|i| i.pool == Some(pool.id()) && matches!(i.state, ProcessState::Running { .. }))
        .count();
    assert_eq!(
        (members.len(), listed),
        (3, 3),
        "a pool of 3 ended with members {members:?} ({listed} running listed)"
    );
    shutdown(&pm).await;
}

fn slow_replacements() -> ProcessManager {
    ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Worker,
        restart_policy: RestartPolicy {
            backoff: Backoff {
                kind: BackoffKind::Linear,
                initial: Duration::from_millis(1000),
                max: Duration::from_secs(5),
            },
            ..Default::default()
        },
        grace_period: Duration::from_millis(300),
        ..Default::default()
    })
}

/// Was a bug (medium): `resize_now` counts members being replaced (`healing`) in the current size
/// but can only retire members in rotation (membership.rs:194-219), and nothing cancels a
/// pending replacement. With both members of a pool of 2 being replaced, `resize(1)` retires
/// nothing, returns Ok and emits Resized{2->1}; both replacements then arrive: the pool ends
/// at 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resize_down_while_members_are_being_replaced_ends_at_the_new_size() {
    let pm = slow_replacements();
    let pool = pool(
        &pm,
        PoolOptions {
            size: 2,
            ..Default::default()
        },
    )
    .await;
    for id in Pool::members(&pool) {
        pm.kill(id).await.expect("kill");
    }
    assert!(
        eventually(Duration::from_secs(5), async || Pool::members(&pool)
            .is_empty())
        .await
    );
    tokio::time::timeout(Duration::from_secs(30), Pool::resize(&pool, 1))
        .await
        .expect("resize ends")
        .expect("resize");
    // Both replacements are due within about 3 s.
    assert!(
        eventually(Duration::from_secs(10), async || !Pool::members(&pool)
            .is_empty())
        .await
    );
    // Nothing may follow: a cancelled replacement would have arrived within this window.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        Pool::members(&pool).len(),
        1,
        "resized to 1, the pool has {:?}",
        Pool::members(&pool)
    );
    shutdown(&pm).await;
}

/// Was a bug (medium): the same accounting retires the one live member when the other is being
/// replaced: `resize(1)` on a pool of 2 whose member 0 is being replaced computes
/// from = 1 + 1 and retires member 1, so the pool has no member until the replacement is
/// up (1 s here; up to `backoff.max` in general) and calls wait or time out meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resize_down_while_a_member_is_replaced_keeps_the_live_member() {
    let pm = slow_replacements();
    let pool = pool(
        &pm,
        PoolOptions {
            size: 2,
            ..Default::default()
        },
    )
    .await;
    let members = Pool::members(&pool);
    pm.kill(members[0]).await.expect("kill");
    assert!(
        eventually(Duration::from_secs(5), async || Pool::members(&pool)
            == [members[1]])
        .await
    );
    tokio::time::timeout(Duration::from_secs(30), Pool::resize(&pool, 1))
        .await
        .expect("resize ends")
        .expect("resize");
    let kept = Pool::members(&pool);
    let quick = Pool::with_timeout(&pool, Duration::from_millis(300));
    let call = tokio::time::timeout(Duration::from_secs(5), quick.who()).await;
    assert!(
        matches!(call, Ok(Ok(_))) && kept == [members[1]],
        "after resize(1) the members are {kept:?} (the live one was {}), and a call got {call:?}",
        members[1]
    );
    shutdown(&pm).await;
}

/// Was a bug (low, contract): `acquire` only tries a member directly when the queue is empty
/// (dispatch.rs:199) and checks `max_queue` before queueing (dispatch.rs:204), so keyed
/// calls waiting for their own busy member fill the queue and an unkeyed call is refused
/// with `Overloaded` while another member is idle. The issue: only "calls beyond what all
/// members can take" queue, and only past the queue is a call `Overloaded`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unkeyed_call_is_not_overloaded_while_a_member_is_idle() {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Worker,
        limits: Limits {
            max_in_flight: 1,
            ..Default::default()
        },
        grace_period: Duration::from_millis(500),
        ..Default::default()
    });
    let pool = Arc::new(
        pool(
            &pm,
            PoolOptions {
                size: 2,
                max_queue: 1,
                ..Default::default()
            },
        )
        .await,
    );
    let busy_owner = Pool::with_key(&pool, 0u32).who().await.expect("call");
    let mut other_key = None;
    for k in 1..1000u32 {
        if Pool::with_key(&pool, k).who().await.expect("call") != busy_owner {
            other_key = Some(k);
            break;
        }
    }
    let other_key = other_key.expect("a key owned by the other member");
    let holding: Vec<_> = (0..2)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { Pool::with_key(&pool, 0u32).hold_once(1500).await })
        })
        .collect();
    // One holds the owner, one waits for it.
    assert!(eventually(Duration::from_secs(5), async || Pool::queued(&pool) == 1).await);
    let unkeyed = tokio::time::timeout(Duration::from_secs(5), pool.who()).await;
    let keyed_other = tokio::time::timeout(
        Duration::from_secs(5),
        Pool::with_key(&pool, other_key).who(),
    )
    .await;
    for call in holding {
        let _ = tokio::time::timeout(Duration::from_secs(10), call).await;
    }
    assert!(
        matches!(unkeyed, Ok(Ok(who)) if who != busy_owner),
        "an unkeyed call with an idle member: {unkeyed:?}"
    );
    assert!(
        matches!(keyed_other, Ok(Ok(_))),
        "a call for the idle member's key: {keyed_other:?}"
    );
    shutdown(&pm).await;
}

/// Was a bug (low, contract): a call refused by the open breaker returns from `call` at
/// mod.rs:209 (`self.breaker_admit()?`) before `self.stats.record` (mod.rs:248), so the
/// pool's metrics count none of the calls that failed fast. DESIGN.md: "`errors` in metrics
/// counts every call that did not return `Ok`".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_failed_fast_by_the_breaker_count_in_the_pools_metrics() {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Worker,
        ..Default::default()
    });
    let pool = pool(
        &pm,
        PoolOptions {
            size: 1,
            circuit_breaker: Some(CircuitBreaker {
                failure_threshold: 1,
                open_for: Duration::from_secs(30),
                probes: 1,
            }),
            ..Default::default()
        },
    )
    .await;
    assert!(pool.boom().await.is_err());
    for _ in 0..3 {
        let fast = pool.who().await;
        assert!(matches!(fast, Err(Error::CircuitOpen { .. })), "{fast:?}");
    }
    let metrics = pm.get_metrics(pool.id()).await.expect("metrics");
    assert_eq!(
        (metrics.requests, metrics.errors),
        (4, 4),
        "four calls, none Ok"
    );
    shutdown(&pm).await;
}

/// Coverage: calls already queued when a pool is drained finish, and
/// the drain ends. Passes on f5d87ca.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_queued_when_a_pool_is_drained_finish() {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Worker,
        limits: Limits {
            max_in_flight: 1,
            ..Default::default()
        },
        grace_period: Duration::from_secs(3),
        ..Default::default()
    });
    let pool = Arc::new(
        pool(
            &pm,
            PoolOptions {
                size: 1,
                ..Default::default()
            },
        )
        .await,
    );
    let first = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.hold_once(400).await })
    };
    let queued: Vec<_> = (0..3)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.hold_once(50).await })
        })
        .collect();
    assert!(eventually(Duration::from_secs(5), async || Pool::queued(&pool) == 3).await);
    let drain = tokio::time::timeout(Duration::from_secs(20), Pool::drain(&pool)).await;
    assert!(matches!(drain, Ok(Ok(()))), "{drain:?}");
    let mut pids = HashSet::new();
    for call in std::iter::once(first).chain(queued) {
        let who = tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .expect("the call ends")
            .expect("task")
            .expect("a queued call finishes");
        pids.insert(who);
    }
    assert_eq!(pids.len(), 1);
    assert!(matches!(pool.who().await, Err(Error::Unavailable { .. })));
    shutdown(&pm).await;
}

// Found by a second review, of the fixes above and the hot path after them.

/// The tests that look at every child of this test process take this, so that the
/// children of a test running beside them are not counted.
static CHILDREN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits for the next `MemberAdded` event of any pool.
async fn member_added(events: &mut tokio::sync::broadcast::Receiver<ProcessEvent>) -> bool {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match events.recv().await {
                Ok(ProcessEvent::Pool {
                    event: PoolEvent::MemberAdded { .. },
                    ..
                }) => return,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(err) => panic!("{err}"),
            }
        }
    })
    .await
    .is_ok()
}

/// The pids of this test process's live children that run the pool worker binary.
fn worker_children() -> HashSet<u32> {
    let me = std::process::id();
    let mut found = HashSet::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let mut fields = stat[close + 1..].split_whitespace();
        let state = fields.next().unwrap_or("");
        let ppid: u32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if ppid != me || state == "Z" {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains("test-pool-worker") {
            found.insert(pid);
        }
    }
    found
}

/// Finding (medium, a call with no deadline): `Pool::with_key` (mod.rs:427-433) builds its
/// client from `pool.core` with `Caller::new`, whose timeout is `None`, so the deadline of a
/// pool made with `Pool::with_timeout` (mod.rs:437-443, kept only in `pool.client`'s caller)
/// is dropped. `Pool::with_key(&Pool::with_timeout(&pool, d), key)` waits in the queue for
/// its busy member with no deadline at all (and there is no public way to give a keyed
/// client a deadline).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_client_of_a_pool_with_a_timeout_keeps_the_timeout() {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Worker,
        limits: Limits {
            max_in_flight: 1,
            ..Default::default()
        },
        grace_period: Duration::from_millis(500),
        ..Default::default()
    });
    let pool = Arc::new(
        pool(
            &pm,
            PoolOptions {
                size: 1,
                ..Default::default()
            },
        )
        .await,
    );
    let holding = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.hold_once(4000).await })
    };
    assert!(
        eventually(Duration::from_secs(10), async || {
            // The member is busy once a second call has to queue and times out.
            let probe = Pool::with_timeout(&pool, Duration::from_millis(50));
            matches!(probe.who().await, Err(Error::Timeout { .. }))
        })
        .await,
        "the member never got busy"
    );
    let quick = Pool::with_timeout(&pool, Duration::from_millis(300));
    let keyed = Pool::with_key(&quick, "user-42");
    let started = Instant::now();
    let call = tokio::time::timeout(Duration::from_secs(20), keyed.who()).await;
    let took = started.elapsed();
    let _ = tokio::time::timeout(Duration::from_secs(20), holding).await;
    assert!(
        matches!(call, Ok(Err(Error::Timeout { .. }))) && took < Duration::from_secs(2),
        "a keyed call through a pool with a 300 ms timeout got {call:?} after {took:?}"
    );
    shutdown(&pm).await;
}

/// Finding (low-medium): a reload spawns a successor for every member of its snapshot
/// (membership.rs:289-294). When one of them ended for good meanwhile and the pool could not
/// replace it (its replacement budget is spent: `Decision::GiveUp`, membership.rs:136-143;
/// or the replacement's spawn failed, membership.rs:177-181), `admit(Join::Succeeding)`
/// refuses the successor because `old` is no longer a member (membership.rs:63-66), and
/// `replace` ends it (membership.rs:267-274): a ready member is thrown away while its place
/// stays empty, and the reload returns Ok with the pool one member short for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_fills_the_place_of_a_member_that_ended_for_good_and_was_not_replaced() {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Worker,
        // No replacement budget: a member that ends for good is not replaced.
        restart_policy: RestartPolicy {
            max_restarts: 0,
            ..Default::default()
        },
        grace_period: Duration::from_millis(300),
        ..Default::default()
    });
    let pool = Arc::new(
        pool(
            &pm,
            PoolOptions {
                size: 3,
                ..Default::default()
            },
        )
        .await,
    );
    let before = Pool::members(&pool);
    let mut events = pm.subscribe();
    let reload = {
        let pool = pool.clone();
        tokio::spawn(async move { Pool::reload(&pool).await })
    };
    assert!(
        member_added(&mut events).await,
        "the reload admitted no member"
    );
    pm.kill(before[2])
        .await
        .expect("kill a member not yet reloaded");
    let reloaded = tokio::time::timeout(Duration::from_secs(60), reload)
        .await
        .expect("the reload ends")
        .expect("task");
    assert!(reloaded.is_ok(), "{reloaded:?}");
    let full = eventually(Duration::from_secs(5), async || {
        let members = Pool::members(&pool);
        members.len() == 3 && members.iter().all(|id| running(&pm, *id))
    })
    .await;
    assert!(
        full,
        "a reload of a pool of 3 left members {:?}",
        Pool::members(&pool)
    );
    shutdown(&pm).await;
}

/// Finding (low, debatable contract): `counts_as_failure` (mod.rs:292-306) leaves the pool's
/// own overload out of the breaker (`Overloaded`), but a call that times out while it waits
/// in the pool's queue (dispatch.rs:287-291) counts as a failure like a dead member. A pool
/// whose members are all healthy but busy opens its breaker after `failure_threshold` queue
/// timeouts, and then fails every call fast with `CircuitOpen` for `open_for` although a
/// member is idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_timing_out_in_the_queue_do_not_open_the_breaker() {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Worker,
        limits: Limits {
            max_in_flight: 1,
            ..Default::default()
        },
        grace_period: Duration::from_millis(500),
        ..Default::default()
    });
    let pool = Arc::new(
        pool(
            &pm,
            PoolOptions {
                size: 1,
                circuit_breaker: Some(CircuitBreaker {
                    failure_threshold: 3,
                    open_for: Duration::from_secs(30),
                    probes: 1,
                }),
                ..Default::default()
            },
        )
        .await,
    );
    let holding = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.hold_once(2500).await })
    };
    assert!(
        eventually(Duration::from_secs(10), async || {
            // Busy once a short call has to wait and times out.
            let quick = Pool::with_timeout(&pool, Duration::from_millis(100));
            matches!(quick.who().await, Err(Error::Timeout { .. }))
        })
        .await
    );
    let quick = Pool::with_timeout(&pool, Duration::from_millis(100));
    for _ in 0..3 {
        let _ = quick.who().await;
    }
    let held = tokio::time::timeout(Duration::from_secs(20), holding)
        .await
        .expect("the long call ends")
        .expect("task");
    assert!(held.is_ok(), "{held:?}");
    // The member is idle and healthy now.
    let after = tokio::time::timeout(Duration::from_secs(5), pool.who()).await;
    assert!(
        matches!(after, Ok(Ok(_))),
        "a call to a pool with an idle, healthy member after queue timeouts: {after:?}"
    );
    shutdown(&pm).await;
}

/// Coverage: `pm.shutdown()` while a rolling reload is between members (a fresh member
/// spawning, the old one draining) ends every child the pool ever started, and nothing of
/// the pool is left running in `pm.list()`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_during_a_reload_leaves_no_child_running() {
    let _serial = CHILDREN.lock().await;
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        grace_period: Duration::from_millis(500),
        ..Default::default()
    });
    let pool = Arc::new(
        pool(
            &pm,
            PoolOptions {
                size: 3,
                ..Default::default()
            },
        )
        .await,
    );
    let mut events = pm.subscribe();
    let load = {
        let pool = pool.clone();
        tokio::spawn(async move {
            for _ in 0..200 {
                if pool.hold_again(50).await.is_err() {
                    break;
                }
            }
        })
    };
    let reload = {
        let pool = pool.clone();
        tokio::spawn(async move { Pool::reload(&pool).await })
    };
    assert!(
        member_added(&mut events).await,
        "the reload admitted no member"
    );
    let seen: HashSet<u32> = worker_children();
    assert!(seen.len() >= 3, "the members' children are seen: {seen:?}");
    shutdown(&pm).await;
    let _ = tokio::time::timeout(Duration::from_secs(30), reload)
        .await
        .expect("the reload ends");
    let _ = tokio::time::timeout(Duration::from_secs(30), load).await;
    let mut alive = Vec::new();
    for pid in seen.iter().chain(worker_children().iter()) {
        if !wait_dead(*pid, Duration::from_secs(5)).await {
            alive.push(*pid);
        }
    }
    let listed: Vec<_> = pm
        .list()
        .into_iter()
        .filter(|i| i.pool == Some(pool.id()) && !matches!(i.state, ProcessState::Stopped { .. }))
        .collect();
    assert!(
        alive.is_empty() && listed.is_empty(),
        "after shutdown mid-reload: alive {alive:?}, listed {listed:?}"
    );
}

/// Coverage: dropping the manager (no shutdown) while a reload runs leaves no child
/// running, including the fresh member the reload was starting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_manager_during_a_reload_leaves_no_child_running() {
    let _serial = CHILDREN.lock().await;
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        grace_period: Duration::from_millis(500),
        ..Default::default()
    });
    let pool = Arc::new(
        pool(
            &pm,
            PoolOptions {
                size: 3,
                ..Default::default()
            },
        )
        .await,
    );
    let mut events = pm.subscribe();
    let reload = {
        let pool = pool.clone();
        tokio::spawn(async move { Pool::reload(&pool).await })
    };
    assert!(
        member_added(&mut events).await,
        "the reload admitted no member"
    );
    drop(events);
    drop(pm);
    let _ = tokio::time::timeout(Duration::from_secs(30), reload)
        .await
        .expect("the reload ends");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !worker_children().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let alive = worker_children();
    assert!(
        alive.is_empty(),
        "children left running after the manager was dropped mid-reload: {alive:?}"
    );
    drop(pool);
}

/// Finding (low, transient): `replace_failed` (membership.rs:152-184) runs in a task of its
/// own that `stop` neither waits for nor ends: `stop` takes `changing` (which
/// `replace_failed` never holds) and ends the members and retiring ones it sees
/// (membership.rs:341-350). A replacement whose spawn began before the stop is still
/// starting (listed, its child alive) when `pm.stop(pool.id())` returns; only later does
/// `admit` refuse it and `end_member` stop it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_stop_leaves_no_replacement_starting_or_running() {
    let _serial = CHILDREN.lock().await;
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        restart_policy: RestartPolicy {
            backoff: Backoff {
                kind: BackoffKind::Linear,
                initial: Duration::from_millis(200),
                max: Duration::from_millis(200),
            },
            ..Default::default()
        },
        grace_period: Duration::from_millis(500),
        ..Default::default()
    });
    let pool = pool(
        &pm,
        PoolOptions {
            size: 2,
            ..Default::default()
        },
    )
    .await;
    let before = Pool::members(&pool);
    pm.kill(before[0]).await.expect("kill");
    // The replacement is listed, starting, once its spawn began: look often, its start is
    // quick.
    let deadline = Instant::now() + Duration::from_secs(10);
    let starting = loop {
        if pm.list().iter().any(|i| {
            i.pool == Some(pool.id())
                && !before.contains(&i.id)
                && matches!(i.state, ProcessState::Starting { .. })
        }) {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    };
    assert!(starting, "no replacement was seen starting");
    tokio::time::timeout(Duration::from_secs(30), pm.stop(pool.id()))
        .await
        .expect("stop in time")
        .expect("stop");
    let left: Vec<_> = pm
        .list()
        .into_iter()
        .filter(|i| {
            i.pool == Some(pool.id())
                && !matches!(
                    i.state,
                    ProcessState::Stopped { .. } | ProcessState::Failed { .. }
                )
        })
        .map(|i| (i.id, i.state, i.pid.map(pid_alive)))
        .collect();
    let children = worker_children();
    // How long until the pool's own task ends it (without a shutdown).
    let stopped_at = Instant::now();
    let cleaned = eventually(Duration::from_secs(10), async || {
        worker_children().is_empty()
            && !pm.list().iter().any(|i| {
                i.pool == Some(pool.id())
                    && !matches!(
                        i.state,
                        ProcessState::Stopped { .. } | ProcessState::Failed { .. }
                    )
            })
    })
    .await;
    let after = stopped_at.elapsed();
    shutdown(&pm).await;
    assert!(
        left.is_empty() && children.is_empty(),
        "after pm.stop(pool) returned: listed and not stopped {left:?}, worker children alive \
         {children:?} (ended by the pool later: {cleaned}, after {after:?})"
    );
}
