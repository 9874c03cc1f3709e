//! Repeated spawn/stop cycles must leave nothing behind: no zombie child, no open fd, no thread.
//!
//! The counts are read from `/proc/self`, which covers the whole test process, so this file
//! holds exactly one test: any other test running beside it in the same binary would open
//! sockets and threads of its own and make the counts meaningless.

use std::time::{Duration, Instant};

use pm_runtime::prelude::*;
use pm_tests::resources::{fd_count, thread_count, zombie_children};
use pm_tests::Lifecycle;

const LIFECYCLE: &str = env!("CARGO_BIN_EXE_test-lifecycle");

/// How long resources may take to be released after the last `stop` returns (reaper tasks,
/// closing writer tasks, worker threads joining).
const SETTLE: Duration = Duration::from_secs(5);

/// Polls until fds, threads and zombies are back at or under the baseline, or `SETTLE` passes;
/// returns the last counts seen.
async fn settled_counts(fds: usize, threads: usize) -> (usize, usize, usize) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let now = (fd_count(), thread_count(), zombie_children());
        if (now.0 <= fds && now.1 <= threads && now.2 == 0) || Instant::now() >= deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls until the warm-up's teardown is over: its child (if any) reaped, no zombie, and fds
/// and threads unchanged from one look to the next; panics after `SETTLE`. Returns the counts.
async fn quiet_counts(warm_pid: Option<u32>) -> (usize, usize) {
    let deadline = Instant::now() + SETTLE;
    let mut last = (fd_count(), thread_count());
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = (fd_count(), thread_count());
        let reaped = warm_pid.is_none_or(|pid| !pm_tests::pid_exists(pid));
        if reaped && zombie_children() == 0 && now == last {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "the warm-up never settled: child reaped {reaped}, counts {last:?} -> {now:?}"
        );
        last = now;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_spawn_stop_cycles_leave_no_zombie_fd_or_thread_behind() {
    for isolation in [Isolation::Child, Isolation::Worker] {
        let pm = ProcessManager::new(ProcessManagerConfig {
            isolation,
            ..Default::default()
        });
        // Warm up once so lazily created runtime resources exist before counting.
        let warm = pm
            .spawn::<Lifecycle>(LIFECYCLE, SpawnOptions::default())
            .await
            .expect("spawn");
        let warm_pid = warm.pid().await.expect("pid");
        pm.stop(warm.id()).await.expect("stop");
        let warm_child = (isolation == Isolation::Child).then_some(warm_pid);
        let (fds, threads) = quiet_counts(warm_child).await;
        for cycle in 0..500u64 {
            let handle = pm
                .spawn::<Lifecycle>(LIFECYCLE, SpawnOptions::default())
                .await
                .unwrap_or_else(|e| panic!("{isolation:?}: spawn {cycle}: {e}"));
            // A real call per cycle, so every connection carried traffic before it closed.
            assert_eq!(handle.slow(cycle % 2).await.expect("call"), cycle % 2);
            pm.stop(handle.id())
                .await
                .unwrap_or_else(|e| panic!("{isolation:?}: stop {cycle}: {e}"));
        }
        let (fds_after, threads_after, zombies) = settled_counts(fds, threads).await;
        assert_eq!(zombies, 0, "{isolation:?}: zombies left");
        assert!(fds_after <= fds, "{isolation:?}: fds {fds} -> {fds_after}");
        assert!(
            threads_after <= threads,
            "{isolation:?}: threads {threads} -> {threads_after}"
        );
        pm.shutdown().await.expect("shutdown");
    }
}
