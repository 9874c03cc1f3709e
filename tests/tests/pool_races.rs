//! Races and edge cases of pools found by an adversarial review of the first pool commit
//! (f5d87ca). Each test but the last failed on that commit; the comment on each says what
//! went wrong there (line numbers refer to that commit).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pm_runtime::prelude::*;
use pm_runtime::{CircuitBreaker, Error, PoolEvent};
use pm_tests::{eventually, PoolWorker, Who};

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
