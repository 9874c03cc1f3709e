//! CPU and memory as the manager reports them: a child busy on a core shows it, and a child
//! is charged for the memory of its own children.

use std::time::Duration;

use pm_runtime::prelude::*;
use pm_tests::Lifecycle;

const LIFECYCLE: &str = env!("CARGO_BIN_EXE_test-lifecycle");
const HOG: &str = env!("CARGO_BIN_EXE_test-hog");

fn manager() -> ProcessManager {
    ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        restart_policy: RestartPolicy {
            enabled: false,
            ..Default::default()
        },
        ..Default::default()
    })
}

/// Resident bytes of one OS process alone.
fn own_rss(pid: u32) -> u64 {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[tokio::test]
async fn a_child_that_burns_a_core_reports_at_least_half_a_core() {
    let pm = manager();
    let busy = pm
        .spawn::<Lifecycle>(LIFECYCLE, SpawnOptions::default())
        .await
        .expect("spawn");
    // The figure covers the time since the previous reading: take one just before.
    pm.get_metrics(busy.id()).await.expect("metrics");
    let spun = busy.spin(1500).await.expect("spin");
    assert!(spun > 0);
    let cpu = pm.get_metrics(busy.id()).await.expect("metrics").cpu;
    assert!(
        cpu >= 50.0,
        "a child spinning for 1.5 s reported {cpu:.1}% cpu"
    );
    assert!(cpu <= 250.0, "more than two cores' worth: {cpu:.1}%");
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_child_is_charged_for_the_memory_its_own_child_allocates() {
    let pm = manager();
    let parent = pm
        .spawn::<Lifecycle>(LIFECYCLE, SpawnOptions::default())
        .await
        .expect("spawn");
    let pid = parent.pid().await.expect("pid");
    let hog = parent
        .spawn_hog(HOG.to_owned(), 200)
        .await
        .expect("spawn_hog");
    assert_ne!(hog, 0, "the grandchild did not start");
    let memory = pm.get_metrics(parent.id()).await.expect("metrics").memory;
    let own = own_rss(pid);
    pm.shutdown().await.expect("shutdown");
    let hog_gone = pm_tests::wait_dead(hog, Duration::from_secs(10)).await;
    assert!(
        memory > 200 << 20,
        "reported {} MiB for a tree holding 200 MiB",
        memory >> 20
    );
    assert!(own < 100 << 20, "the child itself holds {} MiB", own >> 20);
    assert!(hog_gone, "the grandchild outlived the shutdown");
}

#[tokio::test]
async fn a_worker_reports_the_memory_of_the_managers_process() {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Worker,
        ..Default::default()
    });
    let worker = pm
        .spawn::<Lifecycle>(LIFECYCLE, SpawnOptions::default())
        .await
        .expect("spawn");
    let memory = pm.get_metrics(worker.id()).await.expect("metrics").memory;
    let host = own_rss(std::process::id());
    // The same process, read twice a moment apart: within a few MiB of each other.
    assert!(memory.abs_diff(host) < 64 << 20, "{memory} vs {host}");
    pm.shutdown().await.expect("shutdown");
}
