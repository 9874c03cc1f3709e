//! Teardown that must leave nothing running: a killed in-process instance's calls, and the
//! worker threads of a manager dropped without `shutdown`.

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use pm_runtime::prelude::*;
use pm_runtime::Error;
use pm_tests::{Lifecycle, LINGERING, LINGER_DROPPED};

async fn wait_until(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_in_process_instance_aborts_the_calls_it_is_running() {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::None,
        ..Default::default()
    });
    let handle = pm
        .spawn::<Lifecycle>("unused", SpawnOptions::default())
        .await
        .expect("spawn");
    let dropped_before = LINGER_DROPPED.load(SeqCst);
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let handle = handle.clone();
            tokio::spawn(async move { handle.linger(30_000).await })
        })
        .collect();
    wait_until(Duration::from_secs(5), "the calls never ran", || {
        LINGERING.load(SeqCst) == 3
    })
    .await;
    pm.kill(handle.id()).await.expect("kill");
    for call in calls {
        let outcome = tokio::time::timeout(Duration::from_secs(2), call)
            .await
            .expect("the caller's call ended")
            .expect("task");
        assert!(outcome.is_err(), "{outcome:?}");
    }
    wait_until(
        Duration::from_secs(2),
        "the methods kept running in the process after kill",
        || LINGERING.load(SeqCst) == 0 && LINGER_DROPPED.load(SeqCst) - dropped_before == 3,
    )
    .await;
    pm.shutdown().await.expect("shutdown");
}

/// Threads of this OS process whose name starts with `prefix` (names are cut at 15 bytes).
fn threads_named(prefix: &str) -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return usize::MAX;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .filter(|name| name.trim_end().starts_with(prefix))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_manager_without_shutdown_ends_its_worker_threads() {
    // Thread names are cut at 15 bytes: "pm-worker-abandoned" shows as "pm-worker-aband".
    const SHOWN_AS: &str = "pm-worker-aband";
    let pm = ProcessManager::new(ProcessManagerConfig::default());
    let handle = pm
        .spawn::<Lifecycle>("unused", SpawnOptions::default().name("abandoned"))
        .await
        .expect("spawn");
    assert_eq!(handle.slow(0).await.expect("call"), 0);
    assert_eq!(threads_named(SHOWN_AS), 1);
    drop(pm);
    // The handle outlives its manager: its calls fail, and its worker is gone.
    let err = handle.slow(0).await.expect_err("manager dropped");
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    wait_until(
        Duration::from_secs(3),
        "the worker thread outlived its manager",
        || threads_named(SHOWN_AS) == 0,
    )
    .await;
}
