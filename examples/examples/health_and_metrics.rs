//! Health checks, a restart after a crash, and what the manager measures: the metrics of one
//! process as a table, and every process in the Prometheus text format.
//!
//! Run it with `cargo run -p pm-examples --example health_and_metrics`.

#![allow(clippy::print_stdout)] // an example prints what it shows

use std::time::Duration;

use pm_examples::{built_binary, Calculator};
use pm_runtime::prelude::*;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        monitoring: Monitoring {
            health_check: HealthCheckConfig {
                enabled: true,
                interval: Duration::from_millis(500),
                timeout: Duration::from_secs(2),
                failure_threshold: 3,
            },
            ..Default::default()
        },
        ..Default::default()
    });
    let calc = pm
        .spawn::<Calculator>(built_binary("calculator")?, SpawnOptions::default())
        .await?;

    let health = pm.get_health(calc.id()).await?;
    println!("health: {:?}", health.status);
    for check in &health.checks {
        println!("  check {}: {:?}", check.name, check.status);
    }

    for i in 0..20 {
        calc.add(i, i).await?;
    }
    let _ = calc.div(1, 0).await; // an application error: counted in `errors`

    // A crash: the restart policy (on by default) starts a new incarnation; the handle
    // follows it.
    let mut events = pm.subscribe();
    let old_pid = calc.pid().await?;
    std::process::Command::new("kill")
        .args(["-9", &old_pid.to_string()])
        .status()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await?? {
            ProcessEvent::Crashed { reason, .. } => println!("crashed: {reason}"),
            ProcessEvent::Restarting { attempt, delay, .. } => {
                println!("restarting: attempt {attempt} after {delay:?}")
            }
            ProcessEvent::Ready { pid, .. } => {
                println!("ready again: pid {old_pid} -> {pid}");
                break;
            }
            _ => {}
        }
    }
    let info = pm.info(calc.id()).ok_or("not listed")?;
    println!("state {:?}, restarts {}", info.state, info.restarts);
    println!("2 + 2 = {} (on the new incarnation)", calc.add(2, 2).await?);

    let m = pm.get_metrics(calc.id()).await?;
    println!("| requests | errors | p50 | p95 | p99 | cpu % | memory KiB |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {:?} | {:?} | {:?} | {:.1} | {} |",
        m.requests,
        m.errors,
        m.latency.p50,
        m.latency.p95,
        m.latency.p99,
        m.cpu,
        m.memory / 1024
    );
    println!("Prometheus text (excerpt):");
    for line in pm.metrics_text().lines().filter(|line| {
        line.starts_with("titan_pm_calls_total") || line.starts_with("titan_pm_restarts_total")
    }) {
        println!("  {line}");
    }
    pm.shutdown().await?;
    Ok(())
}
