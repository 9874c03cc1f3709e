//! A child's stdout and stderr reach the manager's `tracing`, line by line, with the process
//! name and pid, and nothing is lost when the child dies right after writing.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pm_runtime::prelude::*;
use pm_tests::Lifecycle;

const LIFECYCLE: &str = env!("CARGO_BIN_EXE_test-lifecycle");

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut out) = self.0.lock() {
            out.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        self.0
            .lock()
            .map(|out| String::from_utf8_lossy(&out).into_owned())
            .unwrap_or_default()
    }
}

#[tokio::test]
async fn every_line_a_child_writes_before_crashing_reaches_tracing_with_name_and_pid() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .init();

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
