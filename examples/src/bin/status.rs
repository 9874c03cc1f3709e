//! The status page demo: a calculator and a pool of three, all child processes, under steady
//! mixed traffic, with the status endpoint serving `/`, `/status` and `/metrics`.
//!
//! Run it with `cargo run -p pm-examples --bin status`, open the address it prints, and stop
//! it with Ctrl-C. Options: `--listen ADDR` (default `127.0.0.1:9464`), `--seconds N` (stop
//! after N seconds; default: run until interrupted).

#![allow(clippy::print_stdout, clippy::print_stderr)] // a demo prints what it shows

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use pm_examples::{built_binary, Calculator};
use pm_runtime::prelude::*;
use pm_runtime::StatusOptions;

struct Args {
    listen: SocketAddr,
    seconds: Option<u64>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
        seconds: None,
    };
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        let value = given
            .next()
            .ok_or_else(|| format!("`{flag}` needs a value"))?;
        match flag.as_str() {
            "--listen" => {
                args.listen = value
                    .parse()
                    .map_err(|err| format!("--listen {value}: {err}"))?;
            }
            "--seconds" => {
                args.seconds = Some(
                    value
                        .parse()
                        .map_err(|err| format!("--seconds {value}: {err}"))?,
                );
            }
            other => {
                return Err(format!(
                    "unknown option `{other}`; try --listen or --seconds"
                ))
            }
        }
    }
    Ok(args)
}

/// Calls forever: mostly quick additions, some slow calls, a few errors.
async fn traffic(calc: ProcessHandle<Calculator>, pool: Pool<Calculator>) {
    let mut turn = 0u64;
    loop {
        turn += 1;
        let _ = calc.add(turn as i64, 1).await;
        let _ = pool.add(1, 2).await;
        if turn % 10 == 0 {
            let _ = pool.sleep(25).await;
        }
        if turn % 25 == 0 {
            let _ = calc.div(1, 0).await;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let binary = built_binary("calculator")?;
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        monitoring: Monitoring {
            health_check: HealthCheckConfig {
                interval: Duration::from_secs(2),
                ..Default::default()
            },
            ..Default::default()
        },
        ..Default::default()
    });
    let calc = pm
        .spawn::<Calculator>(&binary, SpawnOptions::default().name("calculator"))
        .await?;
    let pool = pm
        .pool::<Calculator>(
            &binary,
            PoolOptions {
                size: 3,
                spawn: SpawnOptions::default().name("calc-pool"),
                ..Default::default()
            },
        )
        .await?;
    let server = pm
        .serve_status(StatusOptions {
            address: args.listen,
            token: None,
        })
        .await?;
    println!("status page: {}", server.url());
    println!("  curl -s http://{}/status", server.local_addr());
    println!("  curl -s http://{}/metrics", server.local_addr());
    let load = tokio::spawn(traffic(calc, pool));
    match args.seconds {
        Some(seconds) => tokio::time::sleep(Duration::from_secs(seconds)).await,
        None => {
            println!("Ctrl-C stops it");
            tokio::signal::ctrl_c().await?;
        }
    }
    load.abort();
    server.shutdown().await;
    pm.shutdown().await?;
    println!("shut down");
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(std::io::stderr)
        .init();
    let args = match parse_args() {
        Ok(args) => args,
        Err(err) => {
            eprintln!("status: {err}");
            return ExitCode::from(2);
        }
    };
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
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("status demo failed: {err}");
            ExitCode::FAILURE
        }
    }
}
