//! The sidecar pattern: a main service and two sidecars (logging and metrics) that watch it
//! by its process id. Handed the id and the manager's status endpoint, each sidecar follows
//! the service from there, across a crash and restart of the service.
//!
//! Run it with `cargo run -p pm-examples --example sidecar`.

#![allow(clippy::print_stdout)] // an example prints what it shows

use std::time::Duration;

use pm_examples::built_binary;
use pm_examples::patterns::sidecar::{LoggingSidecar, MetricsSidecar};
use pm_examples::Calculator;
use pm_runtime::prelude::*;
use pm_runtime::StatusOptions;

/// Asks `probe` every 50 ms until it returns `Some`, for at most 30 s.
async fn until<T, F, Fut>(mut probe: F) -> Result<T, Box<dyn std::error::Error>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, pm_runtime::Error>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = probe().await? {
            return Ok(value);
        }
        if tokio::time::Instant::now() > deadline {
            return Err("the sidecars never saw it".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        ..Default::default()
    });
    let status = pm.serve_status(StatusOptions::default()).await?;
    // `http://127.0.0.1:port/` on loopback (no token there).
    let status_address = status
        .url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let main_service = pm
        .spawn::<Calculator>(built_binary("calculator")?, SpawnOptions::default())
        .await?;
    let logging = pm
        .spawn::<LoggingSidecar>(built_binary("logging-sidecar")?, SpawnOptions::default())
        .await?;
    let metrics = pm
        .spawn::<MetricsSidecar>(built_binary("metrics-sidecar")?, SpawnOptions::default())
        .await?;
    // The sidecars get the main service's id, a plain serialisable value.
    logging
        .configure(main_service.id(), status_address.clone())
        .await?;
    metrics.monitor(main_service.id(), status_address).await?;
    println!(
        "main service is process {}; the sidecars watch it",
        main_service.id()
    );

    for i in 0..5 {
        main_service.add(i, 1).await?;
    }
    let _ = main_service.div(1, 0).await;
    let (requests, errors) = until(|| async {
        Ok(metrics
            .latest()
            .await?
            .filter(|(requests, _)| *requests >= 6))
    })
    .await?;
    println!("metrics sidecar: {requests} requests, {errors} errors");

    let old_pid = main_service.pid().await?;
    std::process::Command::new("kill")
        .args(["-9", &old_pid.to_string()])
        .status()?;
    // Calls wait for the restarted service (a call caught by the crash fails: ask again).
    let new_pid =
        until(|| async { Ok(main_service.pid().await.ok().filter(|pid| *pid != old_pid)) }).await?;
    println!("main service restarted: pid {old_pid} -> {new_pid}");
    let log = until(|| async {
        let log = logging.log().await?;
        let seen = log
            .iter()
            .any(|line| line.ends_with(&format!("running pid {new_pid}")));
        Ok(seen.then_some(log))
    })
    .await?;
    println!("logging sidecar:");
    for line in log {
        println!("  {line}");
    }
    pm.shutdown().await?;
    status.shutdown().await;
    Ok(())
}
