//! A child's stdout and stderr reach the manager's `tracing`, line by line, with the process
//! name and pid, and nothing is lost when the child dies right after writing.

use std::time::Duration;

use pm_runtime::prelude::*;
use pm_tests::capture::captured;
use pm_tests::{Lifecycle, Tracer};

const LIFECYCLE: &str = env!("CARGO_BIN_EXE_test-lifecycle");
const TRACER: &str = env!("CARGO_BIN_EXE_test-tracer");

#[tokio::test]
async fn every_line_a_child_writes_before_crashing_reaches_tracing_with_name_and_pid() {
    let captured = captured();

    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        restart_policy: RestartPolicy {
            enabled: false,
            ..Default::default()
        },
        ..Default::default()
    });
    let handle = pm
        .spawn::<Lifecycle>(LIFECYCLE, SpawnOptions::default().name("chatty"))
        .await
        .expect("spawn");
    let pid = handle.pid().await.expect("pid");
    let _ = handle.print_and_exit(500, 9).await; // the process dies with the call in flight

    let last = "line 499 of 500";
    let mut text = String::new();
    for _ in 0..100 {
        text = captured.text();
        if text.contains(last) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..500 {
        let line = format!("line {i} of 500");
        let found = text
            .lines()
            .find(|l| l.contains(&format!("{line} ")) || l.ends_with(&line));
        let found = found.unwrap_or_else(|| panic!("`{line}` was lost"));
        assert!(found.contains("process=chatty"), "{found}");
        assert!(found.contains(&format!("pid={pid}")), "{found}");
        assert!(found.contains("stdout"), "{found}");
    }
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn what_a_child_logs_inside_a_traced_call_reaches_tracing_at_its_level_with_the_trace_id() {
    let captured = captured();
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        monitoring: Monitoring {
            tracing: true,
            ..Default::default()
        },
        ..Default::default()
    });
    let tracer = pm
        .spawn::<Tracer>(TRACER, SpawnOptions::default().name("traced"))
        .await
        .expect("spawn");
    let caller = pm_runtime::trace::TraceContext::new_root();
    let seen = pm_runtime::trace::scope(caller, tracer.seen())
        .await
        .expect("call")
        .expect("a context");
    let trace_id = caller.trace_id().to_string();
    let line = pm_tests::eventually(Duration::from_secs(10), async || {
        captured
            .text()
            .lines()
            .any(|l| l.contains("traced call arrived") && l.contains(&trace_id))
    })
    .await;
    let text = captured.text();
    assert!(line, "no line of the child names trace {trace_id}:\n{text}");
    let found = text
        .lines()
        .find(|l| l.contains("traced call arrived") && l.contains(&trace_id))
        .unwrap_or_default();
    assert!(
        found.contains(" INFO "),
        "forwarded at another level: {found}"
    );
    assert!(found.contains("process=traced"), "{found}");
    assert!(
        found.contains(&format!("span_id={}", seen.span_id)),
        "{found}"
    );
    assert!(
        found.contains(&format!("parent_id={}", caller.span_id())),
        "{found}"
    );
    pm.shutdown().await.expect("shutdown");
}
