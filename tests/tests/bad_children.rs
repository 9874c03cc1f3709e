//! A binary that is not a well-behaved process fails its spawn with a clear `Error::Spawn`,
//! within the handshake timeout, and leaves nothing behind: one that exits at once, one that
//! closes the connection the manager handed it, one that writes garbage on it.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use pm_examples::Calculator;
use pm_runtime::prelude::*;
use pm_runtime::Error;

/// A shell script standing in for a process binary; removed when dropped.
struct Script(PathBuf);

impl Script {
    fn new(name: &str, body: &str) -> Self {
        let path = std::env::temp_dir().join(format!("titan-bad-{}-{name}", std::process::id()));
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("mode");
        Script(path)
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Spawns `script` as a calculator; the error, and how long it took.
async fn spawn_error(script: &Script) -> (String, Duration) {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        ..Default::default()
    });
    let started = Instant::now();
    let err = pm
        .spawn::<Calculator>(&script.0, SpawnOptions::default())
        .await
        .expect_err("not a process binary");
    let took = started.elapsed();
    assert!(matches!(err, Error::Spawn { .. }), "{err:?}");
    assert!(pm.list().is_empty(), "a failed spawn is not listed");
    pm.shutdown().await.expect("shutdown");
    (err.to_string(), took)
}

#[tokio::test]
async fn a_binary_that_exits_at_once_fails_its_spawn_saying_how_it_exited() {
    let script = Script::new("exits", "exit 3");
    let (message, _) = spawn_error(&script).await;
    assert!(message.contains("exited with code 3"), "{message}");
}

#[tokio::test]
async fn a_binary_that_closes_its_connection_fails_its_spawn_at_once() {
    // The connection arrives as the child's stdin; closing it and lingering is the test.
    let script = Script::new("closes", "exec 0<&-\nsleep 5");
    let (message, took) = spawn_error(&script).await;
    assert!(
        message.contains("closed") || message.contains("handshake"),
        "{message}"
    );
    assert!(
        took < Duration::from_secs(4),
        "took {took:?}: it waited for the exit"
    );
}

#[tokio::test]
async fn a_binary_that_writes_garbage_on_its_connection_fails_its_spawn() {
    let script = Script::new(
        "garbage",
        "printf 'this is not a frame, it is garbage from a confused child' >&0\nsleep 5",
    );
    let (message, took) = spawn_error(&script).await;
    assert!(message.contains("does not speak the protocol"), "{message}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
}
