//! A child that floods its stdout keeps the manager's memory bounded: long lines are cut,
//! lines over the rate limit are dropped and counted in a warning, and the pipe is always
//! drained so the child never blocks.

use std::time::Duration;

use pm_runtime::prelude::*;
use pm_tests::capture::captured;
use pm_tests::resources::rss;
use pm_tests::Lifecycle;

const LIFECYCLE: &str = env!("CARGO_BIN_EXE_test-lifecycle");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_megabytes_of_output_leave_the_managers_memory_bounded() {
    let captured = captured();
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        ..Default::default()
    });
    let chatty = pm
        .spawn::<Lifecycle>(LIFECYCLE, SpawnOptions::default().name("flooder"))
        .await
        .expect("spawn");
    let before = rss();
    // 100 MiB in short lines, then 100 MiB as one line with no newline at all.
    let lines = ProcessHandle::with_timeout(&chatty, Duration::from_secs(120));
    assert_eq!(lines.flood(100, 100).await.expect("flood"), 100 << 20);
    assert_eq!(lines.flood(100, 0).await.expect("flood"), 100 << 20);
    // The child is not blocked: it answers at once.
    chatty.pid().await.expect("still answering");
    let after = rss();
    let grown = after.saturating_sub(before);
    assert!(
        grown < 64 << 20,
        "the manager grew by {} MiB ({} -> {} MiB) for 200 MiB of output",
        grown >> 20,
        before >> 20,
        after >> 20
    );
    pm.stop(chatty.id()).await.expect("stop");
    let text = captured.text();
    assert!(
        text.contains("over the rate limit"),
        "no warning counted the dropped lines"
    );
    let forwarded = text.lines().filter(|l| l.contains("fffff")).count();
    assert!(
        (1..=20_000).contains(&forwarded),
        "{forwarded} flood lines were forwarded"
    );
    assert!(
        text.lines().all(|l| l.len() < 16 * 1024),
        "a line longer than the cut was forwarded"
    );
    pm.shutdown().await.expect("shutdown");
}
