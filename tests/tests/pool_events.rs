//! What a pool announces: each member leaves the pool once, whatever ends it.

use std::time::Duration;

use pm_runtime::prelude::*;
use pm_runtime::PoolEvent;
use pm_tests::PoolWorker;

const WORKER: &str = env!("CARGO_BIN_EXE_test-pool-worker");

/// Guard: a member killed while a reload is under way (restarts disabled, so nothing replaces
/// it) is announced as removed once, though the reload reaches it later and turns its
/// successor away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_killed_during_a_reload_is_announced_as_removed_once() {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        restart_policy: RestartPolicy {
            enabled: false,
            ..Default::default()
        },
        grace_period: Duration::from_millis(500),
        ..Default::default()
    });
    let pool = pm_tests::pool_of::<PoolWorker>(&pm, WORKER, 3).await;
    let before = Pool::members(&pool);
    let mut events = pm.subscribe();
    let reload = {
        let pool = pool.clone();
        tokio::spawn(async move { Pool::reload(&pool).await })
    };
    // The reload has taken its snapshot once it admitted its first fresh member.
    let first_added = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Ok(ProcessEvent::Pool {
                event: PoolEvent::MemberAdded { .. },
                ..
            }) = events.recv().await
            {
                return;
            }
        }
    })
    .await;
    assert!(first_added.is_ok(), "the reload admitted no member");
    pm.kill(before[2])
        .await
        .expect("kill a member not yet reloaded");
    let reloaded = tokio::time::timeout(Duration::from_secs(60), reload)
        .await
        .expect("the reload ends")
        .expect("task");
    assert!(reloaded.is_ok(), "{reloaded:?}");
    // Every event of the reload was sent before it returned.
    let mut removals = 0;
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        seen.push(format!("{event:?}"));
        if let ProcessEvent::Pool {
            event: PoolEvent::MemberRemoved { member, .. },
            ..
        } = event
        {
            if member == before[2] {
                removals += 1;
            }
        }
    }
    pm.shutdown().await.expect("shutdown");
    assert_eq!(
        removals, 1,
        "member {} was announced as removed {removals} times: {seen:#?}",
        before[2]
    );
}
