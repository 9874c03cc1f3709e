//! The schema a process sends in its Welcome only explains a mismatch: at the smallest
//! valid `limits.max_frame_size`, where it does not fit, it is left out and the handshake
//! still completes.
#![allow(missing_docs)]

use std::time::Duration;

use pm_runtime::prelude::*;

fn manager(max_frame_size: usize) -> ProcessManager {
    ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        limits: Limits {
            max_frame_size,
            ..Default::default()
        },
        ..Default::default()
    })
}

async fn spawn_ok<P: pm_runtime::Process>(binary: &str, max: usize) -> Result<(), String> {
    let pm = manager(max);
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        pm.spawn::<P>(binary, SpawnOptions::default()),
    )
    .await;
    let outcome = match result {
        Err(_) => Err("timed out".to_owned()),
        Ok(Err(err)) => Err(err.to_string()),
        Ok(Ok(_)) => Ok(()),
    };
    let _ = pm.shutdown().await;
    outcome
}

#[tokio::test]
async fn the_smallest_valid_frame_limit_still_completes_the_handshake() {
    // Limits::check accepts 1 KiB. Before the schema was in the Welcome, these handshakes
    // fitted easily (a Welcome was ~60 bytes).
    let mut failures = Vec::new();
    for (name, result) in [
        (
            "lifecycle",
            spawn_ok::<pm_tests::Lifecycle>(env!("CARGO_BIN_EXE_test-lifecycle"), 1024).await,
        ),
        (
            "shapes",
            spawn_ok::<pm_tests::shapes::Shapes>(env!("CARGO_BIN_EXE_test-shapes"), 1024).await,
        ),
        (
            // The control: the same spawn with the default limit works.
            "lifecycle, default limit",
            spawn_ok::<pm_tests::Lifecycle>(
                env!("CARGO_BIN_EXE_test-lifecycle"),
                pm_core::wire::DEFAULT_MAX_FRAME,
            )
            .await,
        ),
    ] {
        if let Err(err) = result {
            failures.push(format!("{name}: {err}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
