//! The quickstart: spawn the calculator as a child process and call it.
//!
//! Run it with `cargo run -p pm-examples --bin quickstart`.

#![allow(clippy::print_stdout, clippy::print_stderr)] // a demo prints what it shows

use std::process::ExitCode;

use pm_examples::{built_binary, Calculator, MathError};
use pm_runtime::prelude::*;
use pm_runtime::Error;

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let binary = built_binary("calculator")?;
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        ..Default::default()
    });
    let calc = pm
        .spawn::<Calculator>(&binary, SpawnOptions::default())
        .await?;
    let sum = calc.add(5, 3).await?;
    let child_pid = calc.pid().await?;
    println!(
        "5 + 3 = {sum}   (computed by child pid {child_pid}; this is pid {})",
        std::process::id()
    );

    match calc.div(1, 0).await {
        Err(err @ Error::Remote { .. }) => {
            let typed: Option<MathError> = err.remote_payload();
            println!("1 / 0 -> {err}   (typed: {typed:?})");
        }
        other => println!("1 / 0 -> unexpected {other:?}"),
    }
    match calc.panic("boom".into()).await {
        Err(err) => println!("panic  -> {err}"),
        Ok(v) => println!("panic  -> unexpected {v}"),
    }
    println!("after the panic, 2 + 2 = {}", calc.add(2, 2).await?);

    let health = pm.get_health(calc.id()).await?;
    let metrics = pm.get_metrics(calc.id()).await?;
    println!(
        "health: {:?}, metrics: {} requests, {} errors, p50 {:?}, rss {} KiB",
        health.status,
        metrics.requests,
        metrics.errors,
        metrics.latency.p50,
        metrics.memory / 1024
    );

    pm.shutdown().await?;
    let gone = std::path::Path::new(&format!("/proc/{child_pid}")).exists();
    println!("shut down; child {child_pid} still present: {gone}");
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start a runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("quickstart failed: {err}");
            ExitCode::FAILURE
        }
    }
}
