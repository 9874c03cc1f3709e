//! A manager that spawns and stops for ever does not grow for ever: ended processes stay
//! listed up to `Retention::max_ended`, oldest forgotten first, and `remove` forgets one on
//! request (PM2's `delete`).

use pm_runtime::prelude::*;
use pm_runtime::Error;
use pm_tests::Lifecycle;

fn manager(max_ended: usize) -> ProcessManager {
    ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::None,
        retention: Retention { max_ended },
        ..Default::default()
    })
}

fn ended(pm: &ProcessManager) -> usize {
    pm.list().iter().filter(|p| p.state.is_terminal()).count()
}

#[tokio::test]
async fn ended_processes_beyond_the_retention_are_forgotten_oldest_first() {
    let pm = manager(3);
    let mut ids = Vec::new();
    for _ in 0..10 {
        let handle = pm
            .spawn_linked::<Lifecycle>(SpawnOptions::default())
            .await
            .expect("spawn");
        handle.pid().await.expect("a call");
        pm.stop(handle.id()).await.expect("stop");
        ids.push(handle.id());
        // Forgetting happens as the next process is listed: at most one over the bound.
        assert!(ended(&pm) <= 4, "{:?}", pm.list());
    }
    let running = pm
        .spawn_linked::<Lifecycle>(SpawnOptions::default())
        .await
        .expect("spawn");
    assert_eq!(ended(&pm), 3, "{:?}", pm.list());
    for old in &ids[..7] {
        assert_eq!(pm.info(*old), None, "process {old} is still listed");
        assert!(matches!(pm.stop(*old).await, Err(Error::NotFound(_))));
    }
    for kept in &ids[7..] {
        let info = pm.info(*kept).expect("the newest ended ones are kept");
        assert_eq!(info.state, ProcessState::Stopped {});
    }
    assert_eq!(
        pm.info(running.id()).map(|i| i.state),
        Some(ProcessState::Running {})
    );
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn three_hundred_spawn_stop_cycles_leave_a_bounded_list() {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::None,
        ..Default::default()
    });
    for _ in 0..300 {
        let handle = pm
            .spawn_linked::<Lifecycle>(SpawnOptions::default())
            .await
            .expect("spawn");
        pm.stop(handle.id()).await.expect("stop");
    }
    let listed = pm.list().len();
    assert!(
        listed <= Retention::default().max_ended + 1,
        "{listed} entries listed after 300 cycles"
    );
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn remove_stops_a_running_process_and_forgets_it() {
    let pm = manager(100);
    let mut events = pm.subscribe();
    let handle = pm
        .spawn_linked::<Lifecycle>(SpawnOptions::default())
        .await
        .expect("spawn");
    handle.pid().await.expect("a call");
    pm.remove(handle.id()).await.expect("remove");
    assert_eq!(pm.info(handle.id()), None);
    assert!(pm.list().is_empty(), "{:?}", pm.list());
    assert!(matches!(
        pm.kill(handle.id()).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        pm.remove(handle.id()).await,
        Err(Error::NotFound(_))
    ));
    // It was stopped on the way out, not left running unlisted.
    assert!(matches!(handle.pid().await, Err(Error::Unavailable { .. })));
    let mut stopped = false;
    while let Ok(event) = events.try_recv() {
        stopped |= matches!(event, ProcessEvent::Stopped { id } if id == handle.id());
    }
    assert!(stopped, "no Stopped event before the process was forgotten");
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn remove_of_a_pool_forgets_the_pool_and_its_members_but_refuses_a_member() {
    let pm = manager(100);
    let pool = pm
        .pool::<Lifecycle>(
            "unused for Isolation::None",
            PoolOptions {
                size: 2,
                ..Default::default()
            },
        )
        .await
        .expect("pool");
    let member = pm.list()[0].id;
    assert!(matches!(pm.remove(member).await, Err(Error::Config(_))));
    pm.remove(pool.id()).await.expect("remove the pool");
    assert_eq!(pm.info(pool.id()), None);
    assert!(pm.list().is_empty(), "{:?}", pm.list());
    pm.shutdown().await.expect("shutdown");
}
