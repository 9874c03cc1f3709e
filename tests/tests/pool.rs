//! Pools against real child processes (and under Worker and None where the behaviour does
//! not depend on an OS process): balancing, keyed routing, self-healing, idempotent retry,
//! backpressure, resizing, autoscaling, the circuit breaker, rolling reload and chaos.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pm_runtime::prelude::*;
use pm_runtime::{Autoscale, CircuitBreaker, Error, PoolEvent};
use pm_tests::{eventually, pid_alive, wait_dead, PoolWorker, Who};

const WORKER: &str = env!("CARGO_BIN_EXE_test-pool-worker");

fn manager(isolation: Isolation) -> ProcessManager {
    ProcessManager::new(ProcessManagerConfig {
        isolation,
        grace_period: Duration::from_millis(500),
        ..Default::default()
    })
}

fn options(size: usize, strategy: Strategy) -> PoolOptions {
    PoolOptions {
        size,
        strategy,
        ..Default::default()
    }
}

async fn pool(pm: &ProcessManager, options: PoolOptions) -> Pool<PoolWorker> {
    pm.pool::<PoolWorker>(WORKER, options)
        .await
        .expect("the pool starts")
}

/// The pids of the pool's members right now.
fn member_pids(pm: &ProcessManager, pool: &Pool<PoolWorker>) -> Vec<u32> {
    Pool::members(pool)
        .into_iter()
        .filter_map(|id| pm.info(id).and_then(|info| info.pid))
        .collect()
}

/// Whether the pool has `size` members, all running.
fn at_full_size(pm: &ProcessManager, pool: &Pool<PoolWorker>, size: usize) -> bool {
    let members = Pool::members(pool);
    members.len() == size
        && members.iter().all(|id| {
            pm.info(*id)
                .is_some_and(|info| matches!(info.state, ProcessState::Running { .. }))
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_eight_calls_over_four_members_under_every_isolation() {
    for isolation in [Isolation::Child, Isolation::Worker, Isolation::None] {
        let pm = manager(isolation);
        let pool = pool(&pm, options(4, Strategy::RoundRobin)).await;
        let mut seen: HashMap<Who, usize> = HashMap::new();
        for _ in 0..8 {
            *seen.entry(pool.who().await.expect("call")).or_default() += 1;
        }
        assert_eq!(seen.len(), 4, "{isolation:?}: {seen:?}");
        assert!(seen.values().all(|&n| n == 2), "{isolation:?}: {seen:?}");
        if isolation == Isolation::Child {
            let pids: HashSet<u32> = seen.keys().map(|who| who.0).collect();
            assert_eq!(pids.len(), 4, "four OS processes");
        }
        pm.shutdown().await.expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_slow_calls_land_on_distinct_members_under_least_loaded_and_power_of_two() {
    for strategy in [Strategy::LeastLoaded, Strategy::PowerOfTwo] {
        let pm = manager(Isolation::Child);
        let pool = Arc::new(pool(&pm, options(4, strategy)).await);
        let calls: Vec<_> = (0..4)
            .map(|_| {
                let pool = pool.clone();
                tokio::spawn(async move { pool.hold_once(400).await })
            })
            .collect();
        let mut seen = HashSet::new();
        for call in calls {
            seen.insert(call.await.expect("task").expect("call"));
        }
        assert_eq!(seen.len(), 4, "{strategy:?}: {seen:?}");
        pm.shutdown().await.expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_latency_moves_traffic_away_from_a_slow_member_and_back_after_it_recovers() {
    let pm = manager(Isolation::Child);
    let pool = pool(&pm, options(3, Strategy::LeastLatency)).await;
    let slow = Pool::with_key(&pool, "slow-one");
    let victim = slow.set_delay(30).await.expect("slowed");
    // Let the pool see it slow once.
    for _ in 0..6 {
        pool.who().await.expect("call");
    }
    let mut on_victim = 0;
    for _ in 0..60 {
        if pool.who().await.expect("call") == victim {
            on_victim += 1;
        }
    }
    assert!(
        on_victim <= 12,
        "the slow member still took {on_victim} of 60 calls"
    );
    slow.set_delay(0).await.expect("recovered");
    let back = eventually(Duration::from_secs(15), async || {
        let mut hits = 0;
        for _ in 0..30 {
            if pool.who().await.expect("call") == victim {
                hits += 1;
            }
        }
        hits >= 5
    })
    .await;
    assert!(back, "traffic did not return to the recovered member");
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_reaches_the_same_member_and_keys_spread_and_a_resize_moves_few() {
    let pm = manager(Isolation::Child);
    let pool = pool(&pm, options(4, Strategy::PowerOfTwo)).await;
    let owner = Pool::with_key(&pool, "user-42").who().await.expect("call");
    for _ in 0..10 {
        assert_eq!(
            Pool::with_key(&pool, "user-42").who().await.expect("call"),
            owner
        );
    }
    let mut spread = HashSet::new();
    for key in 0..200 {
        spread.insert(Pool::with_key(&pool, key).who().await.expect("call"));
    }
    assert!(spread.len() >= 3, "200 keys reached only {spread:?}");

    let mut before = Vec::with_capacity(10_000);
    for key in 0..10_000u32 {
        before.push(Pool::with_key(&pool, key).who().await.expect("call"));
    }
    Pool::resize(&pool, 5).await.expect("resize");
    let mut moved = 0;
    for (key, owner) in (0..10_000u32).zip(&before) {
        if Pool::with_key(&pool, key).who().await.expect("call") != *owner {
            moved += 1;
        }
    }
    assert!(
        (1_000..=3_500).contains(&moved),
        "a resize 4 -> 5 moved {moved} of 10000 keys"
    );
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_member_is_out_of_rotation_at_once_and_the_pool_is_back_to_size_within_5_s() {
    let pm = manager(Isolation::Child);
    let pool = pool(&pm, options(4, Strategy::RoundRobin)).await;
    let victim_id = Pool::members(&pool)[1];
    let victim = pm.info(victim_id).and_then(|i| i.pid).expect("pid");
    // SAFETY: signalling a child this test owns.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    assert!(wait_dead(victim, Duration::from_secs(5)).await);
    assert!(
        eventually(Duration::from_secs(2), async || !matches!(
            pm.info(victim_id).map(|i| i.state),
            Some(ProcessState::Running { .. })
        ))
        .await
    );
    for _ in 0..20 {
        let who = pool.who().await.expect("no call reaches the dead member");
        assert_ne!(who.0, victim);
    }
    assert!(
        eventually(Duration::from_secs(5), async || at_full_size(&pm, &pool, 4)).await,
        "the pool is not back to 4 running members"
    );
    let pids: HashSet<u32> = member_pids(&pm, &pool).into_iter().collect();
    assert_eq!(pids.len(), 4);
    assert!(!pids.contains(&victim));
    pm.shutdown().await.expect("shutdown");
}

/// Starts a 1.5 s call on the member owning `key` with `call`, waits until it runs there,
/// kills that member, and returns the call's outcome and the killed pid.
async fn kill_mid_call(
    pm: &ProcessManager,
    pool: &Pool<PoolWorker>,
    idempotent: bool,
) -> (Result<Who, Error>, u32) {
    let keyed = Pool::with_key(pool, "in-flight");
    let (victim, _) = keyed.who().await.expect("owner");
    let call = {
        let keyed = keyed.clone();
        tokio::spawn(async move {
            if idempotent {
                keyed.hold_again(1500).await
            } else {
                keyed.hold_once(1500).await
            }
        })
    };
    assert!(
        eventually(Duration::from_secs(5), async || keyed
            .running()
            .await
            .unwrap_or(0)
            > 0)
        .await
    );
    let _ = pm;
    // SAFETY: signalling a child this test owns.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let outcome = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the call ends")
        .expect("task");
    (outcome, victim)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_call_on_a_killed_member_succeeds_on_another_and_others_get_process_exited() {
    let pm = manager(Isolation::Child);
    let pool = pool(&pm, options(2, Strategy::RoundRobin)).await;
    let (outcome, victim) = kill_mid_call(&pm, &pool, true).await;
    let who = outcome.expect("retried on another member");
    assert_ne!(who.0, victim);

    assert!(eventually(Duration::from_secs(5), async || at_full_size(&pm, &pool, 2)).await);
    let (outcome, _) = kill_mid_call(&pm, &pool, false).await;
    assert!(
        matches!(outcome, Err(Error::ProcessExited { .. })),
        "{outcome:?}"
    );
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resize_up_and_down_and_removed_members_are_gone() {
    let pm = manager(Isolation::Child);
    let pool = pool(&pm, options(2, Strategy::RoundRobin)).await;
    let mut events = pm.subscribe();
    Pool::resize(&pool, 4).await.expect("grow");
    assert_eq!(Pool::members(&pool).len(), 4);
    let pids = member_pids(&pm, &pool);
    assert_eq!(pids.iter().collect::<HashSet<_>>().len(), 4);
    Pool::resize(&pool, 1).await.expect("shrink");
    let kept = member_pids(&pm, &pool);
    assert_eq!(kept.len(), 1);
    for pid in pids.iter().filter(|pid| !kept.contains(pid)) {
        assert!(
            wait_dead(*pid, Duration::from_secs(5)).await,
            "{pid} still runs"
        );
    }
    for _ in 0..3 {
        assert_eq!(pool.who().await.expect("call").0, kept[0]);
    }
    assert_eq!(
        pm.list()
            .iter()
            .filter(|i| i.pool == Some(pool.id()))
            .count(),
        1
    );
    let mut resized = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let ProcessEvent::Pool {
            pool: id,
            event: PoolEvent::Resized { from, to },
        } = event
        {
            assert_eq!(id, pool.id());
            resized.push((from, to));
        }
    }
    assert_eq!(resized, [(2, 4), (4, 1)]);
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscale_grows_under_load_and_shrinks_when_idle() {
    let pm = manager(Isolation::Worker);
    let scale = Autoscale {
        min: 1,
        max: 3,
        scale_up_at: 1.0,
        scale_up_after: Duration::from_millis(200),
        idle_for: Duration::from_millis(500),
        cooldown: Duration::from_millis(100),
        sample_every: Duration::from_millis(50),
    };
    let pool = Arc::new(
        pool(
            &pm,
            PoolOptions {
                size: 1,
                autoscale: Some(scale),
                ..Default::default()
            },
        )
        .await,
    );
    let busy = Arc::new(AtomicBool::new(true));
    let load: Vec<_> = (0..6)
        .map(|_| {
            let (pool, busy) = (pool.clone(), busy.clone());
            tokio::spawn(async move {
                while busy.load(Ordering::SeqCst) {
                    pool.hold_once(50).await.expect("call under load");
                }
            })
        })
        .collect();
    let grew = eventually(Duration::from_secs(10), async || {
        Pool::members(&pool).len() >= 2
    })
    .await;
    busy.store(false, Ordering::SeqCst);
    for task in load {
        task.await.expect("load task");
    }
    assert!(grew, "the pool did not grow under load");
    let shrank = eventually(Duration::from_secs(10), async || {
        Pool::members(&pool).len() == 1
    })
    .await;
    assert!(
        shrank,
        "the pool did not shrink when idle: {:?}",
        Pool::members(&pool)
    );
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_gives_overloaded_at_once_while_admitted_calls_succeed() {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        limits: Limits {
            max_in_flight: 1,
            ..Default::default()
        },
        ..Default::default()
    });
    let pool = Arc::new(
        pool(
            &pm,
            PoolOptions {
                size: 2,
                max_queue: 2,
                ..Default::default()
            },
        )
        .await,
    );
    let admitted: Vec<_> = (0..4)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.hold_once(800).await })
        })
        .collect();
    assert!(eventually(Duration::from_secs(5), async || Pool::queued(&pool) == 2).await);
    let started = Instant::now();
    let refused = pool.who().await;
    assert!(
        matches!(refused, Err(Error::Overloaded { queued: 2, .. })),
        "{refused:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    for call in admitted {
        call.await
            .expect("task")
            .expect("an admitted call succeeds");
    }
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_is_fifo_and_a_deadline_covers_the_wait() {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Worker,
        limits: Limits {
            max_in_flight: 1,
            ..Default::default()
        },
        ..Default::default()
    });
    let pool = Arc::new(pool(&pm, options(1, Strategy::PowerOfTwo)).await);
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let first = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.hold_once(5000).await })
    };
    // A probe queues only once the first call holds the one slot; a probe that ran before
    // the first call got there is replaced by another.
    let spawn_probe = || {
        let pool = pool.clone();
        tokio::spawn(async move { pool.who().await })
    };
    let mut probe = spawn_probe();
    assert!(
        eventually(Duration::from_secs(5), async || {
            if Pool::queued(&pool) == 1 {
                return true;
            }
            if probe.is_finished() {
                probe = spawn_probe();
            }
            false
        })
        .await
    );
    let mut waiting = Vec::new();
    for n in 0..5u64 {
        let (queued_pool, order) = (pool.clone(), order.clone());
        waiting.push(tokio::spawn(async move {
            queued_pool.hold_once(1).await.expect("queued call");
            order.lock().expect("order").push(n);
        }));
        let queued = (n + 2) as usize;
        assert!(
            eventually(Duration::from_secs(5), async || Pool::queued(&pool)
                == queued)
            .await
        );
    }
    let impatient = Pool::with_timeout(&pool, Duration::from_millis(50));
    let started = Instant::now();
    let timed_out = impatient.who().await;
    assert!(
        matches!(timed_out, Err(Error::Timeout { .. })),
        "{timed_out:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    first.await.expect("task").expect("first call");
    probe.await.expect("task").expect("probe");
    for task in waiting {
        task.await.expect("task");
    }
    assert_eq!(*order.lock().expect("order"), [0, 1, 2, 3, 4]);
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_fails_fast_half_opens_and_closes() {
    let pm = manager(Isolation::Worker);
    let pool = pool(
        &pm,
        PoolOptions {
            size: 2,
            circuit_breaker: Some(CircuitBreaker {
                failure_threshold: 3,
                open_for: Duration::from_millis(300),
                probes: 1,
            }),
            ..Default::default()
        },
    )
    .await;
    let mut events = pm.subscribe();
    for _ in 0..3 {
        assert!(pool.boom().await.is_err());
    }
    let started = Instant::now();
    let fast = pool.who().await;
    assert!(matches!(fast, Err(Error::CircuitOpen { .. })), "{fast:?}");
    assert!(started.elapsed() < Duration::from_millis(100));
    let closed = eventually(Duration::from_secs(5), async || pool.who().await.is_ok()).await;
    assert!(closed, "the breaker never let a probe through");
    pool.who().await.expect("closed again");
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let ProcessEvent::Pool { event, .. } = event {
            seen.push(event);
        }
    }
    assert_eq!(
        seen,
        [
            PoolEvent::CircuitOpened,
            PoolEvent::CircuitHalfOpen,
            PoolEvent::CircuitClosed
        ]
    );
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_options_are_refused_naming_the_field() {
    let pm = manager(Isolation::Worker);
    let refused = |result: Result<Pool<PoolWorker>, Error>| match result {
        Err(Error::Config(message)) => message,
        other => panic!("expected a config error, got {other:?}"),
    };
    let message = refused(
        pm.pool::<PoolWorker>(WORKER, options(0, Strategy::Random))
            .await,
    );
    assert!(message.contains("size"), "{message}");
    let bad_scale = PoolOptions {
        size: 2,
        autoscale: Some(Autoscale {
            min: 3,
            max: 2,
            ..Default::default()
        }),
        ..Default::default()
    };
    let message = refused(pm.pool::<PoolWorker>(WORKER, bad_scale).await);
    assert!(message.contains("autoscale.min"), "{message}");
    assert!(pm.list().is_empty(), "nothing was started");
    let pool = pool(&pm, options(1, Strategy::Random)).await;
    match Pool::resize(&pool, 0).await {
        Err(Error::Config(message)) => assert!(message.contains("size"), "{message}"),
        other => panic!("{other:?}"),
    }
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_under_constant_load_fails_no_call_and_replaces_every_member() {
    let pm = manager(Isolation::Child);
    let pool = Arc::new(pool(&pm, options(3, Strategy::PowerOfTwo)).await);
    let before: HashSet<u32> = member_pids(&pm, &pool).into_iter().collect();
    assert_eq!(before.len(), 3);
    let busy = Arc::new(AtomicBool::new(true));
    let (calls, failures) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let (pool, busy, calls, failures) =
                (pool.clone(), busy.clone(), calls.clone(), failures.clone());
            tokio::spawn(async move {
                while busy.load(Ordering::SeqCst) {
                    match pool.hold_once(5).await {
                        Ok(_) => calls.fetch_add(1, Ordering::SeqCst),
                        Err(err) => {
                            tracing::error!(%err, "call failed during reload");
                            failures.fetch_add(1, Ordering::SeqCst)
                        }
                    };
                }
            })
        })
        .collect();
    assert!(
        eventually(Duration::from_secs(5), async || calls
            .load(Ordering::SeqCst)
            > 20)
        .await
    );
    let mut events = pm.subscribe();
    let reload = {
        let pool = pool.clone();
        tokio::spawn(async move { Pool::reload(&pool).await })
    };
    let started = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(ProcessEvent::Pool {
                event: PoolEvent::ReloadStarted,
                ..
            }) = events.recv().await
            {
                break;
            }
        }
    })
    .await;
    assert!(started.is_ok(), "the reload never started");
    // A second reload while the first runs is refused.
    let second = Pool::reload(&pool).await;
    assert!(
        matches!(second, Err(Error::Unavailable { .. })),
        "{second:?}"
    );
    reload.await.expect("task").expect("reload");
    let during = calls.load(Ordering::SeqCst);
    assert!(
        eventually(Duration::from_secs(5), async || calls
            .load(Ordering::SeqCst)
            > during + 20)
        .await
    );
    busy.store(false, Ordering::SeqCst);
    for caller in callers {
        caller.await.expect("caller");
    }
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "calls failed during the reload"
    );
    let after: HashSet<u32> = member_pids(&pm, &pool).into_iter().collect();
    assert_eq!(after.len(), 3);
    assert!(
        after.is_disjoint(&before),
        "before {before:?}, after {after:?}"
    );
    for pid in before {
        assert!(wait_dead(pid, Duration::from_secs(5)).await);
    }
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_killing_a_member_every_200_ms_hangs_no_call_and_idempotent_calls_all_succeed() {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        restart_policy: RestartPolicy {
            max_restarts: 1000,
            backoff: Backoff {
                kind: BackoffKind::Exponential,
                initial: Duration::from_millis(10),
                max: Duration::from_millis(50),
            },
            ..Default::default()
        },
        grace_period: Duration::from_millis(500),
        ..Default::default()
    });
    let pool = Arc::new(pool(&pm, options(4, Strategy::PowerOfTwo)).await);
    let busy = Arc::new(AtomicBool::new(true));
    let (calls, failures) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let (pool, busy, calls, failures) =
                (pool.clone(), busy.clone(), calls.clone(), failures.clone());
            tokio::spawn(async move {
                let pool = Pool::with_timeout(&pool, Duration::from_secs(10));
                while busy.load(Ordering::SeqCst) {
                    match pool.who_again().await {
                        Ok(_) => calls.fetch_add(1, Ordering::SeqCst),
                        Err(err) => {
                            tracing::error!(%err, "idempotent call failed");
                            failures.fetch_add(1, Ordering::SeqCst)
                        }
                    };
                }
            })
        })
        .collect();
    let mut kills = 0;
    let started = Instant::now();
    let mut turn = 0;
    while started.elapsed() < Duration::from_secs(5) {
        // Time under test: the chaos cadence, a kill every 200 ms whatever state members are in.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let pids = member_pids(&pm, &pool);
        if let Some(pid) = pids.get(turn % pids.len().max(1)) {
            // SAFETY: signalling a child this test owns.
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
            kills += 1;
        }
        turn += 1;
    }
    busy.store(false, Ordering::SeqCst);
    for caller in callers {
        tokio::time::timeout(Duration::from_secs(15), caller)
            .await
            .expect("no call hangs")
            .expect("caller");
    }
    assert!(kills >= 15, "only {kills} kills");
    assert!(calls.load(Ordering::SeqCst) > 100);
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "idempotent calls failed"
    );
    // A member killed by the last round may still look running for a moment.
    assert!(
        eventually(Duration::from_secs(5), async || at_full_size(&pm, &pool, 4)
            && member_pids(&pm, &pool).into_iter().all(pid_alive))
        .await,
        "the pool did not end at full size"
    );
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_id_works_with_info_health_metrics_list_and_stop() {
    let pm = manager(Isolation::Child);
    let pool = pool(&pm, options(3, Strategy::RoundRobin)).await;
    for _ in 0..9 {
        pool.who().await.expect("call");
    }
    let info = pm.info(pool.id()).expect("pool info");
    assert_eq!(info.name, "pool-worker");
    assert!(matches!(info.state, ProcessState::Running { .. }));
    let health = pm.get_health(pool.id()).await.expect("health");
    assert_eq!(health.status, HealthState::Healthy);
    assert_eq!(health.checks.len(), 3);
    let metrics = pm.get_metrics(pool.id()).await.expect("metrics");
    assert_eq!(metrics.requests, 9);
    assert_eq!(metrics.members, Pool::members(&pool));
    assert!(metrics.memory > 0);
    let listed: Vec<ProcessId> = pm
        .list()
        .into_iter()
        .filter(|i| i.pool == Some(pool.id()))
        .map(|i| i.id)
        .collect();
    assert_eq!(listed, Pool::members(&pool));
    let pids = member_pids(&pm, &pool);
    pm.stop(pool.id()).await.expect("stop");
    for pid in pids {
        assert!(wait_dead(pid, Duration::from_secs(5)).await);
    }
    assert!(matches!(
        pm.info(pool.id()).map(|i| i.state),
        Some(ProcessState::Stopped { .. })
    ));
    assert!(matches!(pool.who().await, Err(Error::Unavailable { .. })));
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_pool_refuses_new_calls_and_finishes_those_in_flight() {
    // A grace period longer than the calls in flight, which the drain waits for.
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Worker,
        grace_period: Duration::from_secs(10),
        ..Default::default()
    });
    // Round-robin puts one call on each member, so any key reaches a member running one.
    let pool = Arc::new(pool(&pm, options(2, Strategy::RoundRobin)).await);
    let in_flight: Vec<_> = (0..2)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.hold_once(1500).await })
        })
        .collect();
    assert!(
        eventually(Duration::from_secs(5), async || {
            let a = Pool::with_key(&pool, 1).running().await.unwrap_or(0);
            let b = Pool::with_key(&pool, 2).running().await.unwrap_or(0);
            a + b > 0
        })
        .await
    );
    let drain = {
        let pool = pool.clone();
        tokio::spawn(async move { Pool::drain(&pool).await })
    };
    assert!(
        eventually(Duration::from_secs(5), async || matches!(
            pool.who().await,
            Err(Error::Unavailable { .. })
        ))
        .await
    );
    for call in in_flight {
        call.await
            .expect("task")
            .expect("a call in flight finishes");
    }
    drain.await.expect("task").expect("drain");
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_spreads_calls_over_every_transport() {
    for transport in [
        TransportKind::Ipc,
        TransportKind::Unix,
        TransportKind::Tcp,
        TransportKind::Http,
    ] {
        let pm = manager(Isolation::Child);
        let pool = pool(
            &pm,
            PoolOptions {
                size: 2,
                strategy: Strategy::RoundRobin,
                spawn: SpawnOptions::default().transport(transport),
                ..Default::default()
            },
        )
        .await;
        let mut seen = HashSet::new();
        for _ in 0..4 {
            seen.insert(pool.who().await.expect("call"));
        }
        assert_eq!(seen.len(), 2, "{transport:?}: {seen:?}");
        pm.shutdown().await.expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_ends_for_good_is_replaced_by_a_fresh_one() {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        restart_policy: RestartPolicy {
            enabled: false,
            ..Default::default()
        },
        grace_period: Duration::from_millis(500),
        ..Default::default()
    });
    let pool = pool(&pm, options(2, Strategy::RoundRobin)).await;
    let mut events = pm.subscribe();
    let before = Pool::members(&pool);
    let victim = pm.info(before[0]).and_then(|i| i.pid).expect("pid");
    // SAFETY: signalling a child this test owns.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    assert!(
        eventually(Duration::from_secs(5), async || {
            let now = Pool::members(&pool);
            now.len() == 2 && !now.contains(&before[0]) && at_full_size(&pm, &pool, 2)
        })
        .await,
        "the failed member was not replaced: {:?}",
        Pool::members(&pool)
    );
    assert!(
        pm.info(before[0]).is_none(),
        "the failed member is unlisted"
    );
    for _ in 0..4 {
        assert_ne!(pool.who().await.expect("call").0, victim);
    }
    let mut removed = false;
    let mut added = false;
    while let Ok(event) = events.try_recv() {
        match event {
            ProcessEvent::Pool {
                event: PoolEvent::MemberRemoved { member, .. },
                ..
            } if member == before[0] => removed = true,
            ProcessEvent::Pool {
                event: PoolEvent::MemberAdded { .. },
                ..
            } => added = true,
            _ => {}
        }
    }
    assert!(removed && added, "removed {removed}, added {added}");
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recycling_after_a_number_of_calls_replaces_the_member_without_failing_a_call() {
    let pm = manager(Isolation::Child);
    let pool = pool(
        &pm,
        PoolOptions {
            size: 1,
            recycle: pm_runtime::Recycle {
                after_calls: Some(10),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await;
    let first = pool.who().await.expect("call").0;
    let recycled = eventually(Duration::from_secs(10), async || {
        pool.who().await.expect("no call fails while recycling").0 != first
    })
    .await;
    assert!(recycled, "the member was never recycled");
    assert!(wait_dead(first, Duration::from_secs(5)).await);
    assert_eq!(Pool::members(&pool).len(), 1);
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_whose_every_member_is_down_answers_unavailable_without_waiting_forever() {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        // Members come back only after a long backoff.
        restart_policy: RestartPolicy {
            backoff: Backoff {
                kind: BackoffKind::Linear,
                initial: Duration::from_secs(30),
                max: Duration::from_secs(30),
            },
            window: Duration::from_secs(600),
            ..Default::default()
        },
        grace_period: Duration::from_millis(500),
        ..Default::default()
    });
    let pool = pool(&pm, options(2, Strategy::RoundRobin)).await;
    let members = Pool::members(&pool);
    for pid in member_pids(&pm, &pool) {
        // SAFETY: signalling a child this test owns.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        assert!(wait_dead(pid, Duration::from_secs(5)).await);
    }
    assert!(
        eventually(Duration::from_secs(5), async || members.iter().all(
            |id| matches!(
                pm.info(*id).map(|i| i.state),
                Some(ProcessState::Restarting { .. })
            )
        ))
        .await
    );
    let started = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(20), pool.who())
        .await
        .expect("the call ends on its own");
    assert!(
        matches!(outcome, Err(Error::Unavailable { .. })),
        "{outcome:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
    // With a deadline, the deadline decides.
    let impatient = Pool::with_timeout(&pool, Duration::from_millis(200));
    assert!(matches!(impatient.who().await, Err(Error::Timeout { .. })));
    pm.shutdown().await.expect("shutdown");
}
