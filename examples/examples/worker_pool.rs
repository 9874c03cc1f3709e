//! The worker-pool pattern: CPU-bound jobs spread over a pool of child processes, with pools
//! of 1 and 2 members timed side by side.
//!
//! Run it with `cargo run --release -p pm-examples --example worker_pool` (a debug build
//! works too, only slower).

#![allow(clippy::print_stdout)] // an example prints what it shows

use std::sync::Arc;
use std::time::{Duration, Instant};

use pm_examples::built_binary;
use pm_examples::patterns::PrimeCounter;
use pm_runtime::prelude::*;

/// Jobs per run, each counting the primes in a range of this many numbers.
const JOBS: u64 = 8;
const CHUNK: u64 = 40_000;

/// Runs every job on a pool of `size` members, all in flight at once; the primes found and
/// how long it took.
async fn run(
    pm: &ProcessManager,
    binary: &std::path::Path,
    size: usize,
) -> Result<(u64, Duration), pm_runtime::Error> {
    let pool = Arc::new(
        pm.pool::<PrimeCounter>(
            binary,
            PoolOptions {
                size,
                ..Default::default()
            },
        )
        .await?,
    );
    let started = Instant::now();
    let mut jobs = tokio::task::JoinSet::new();
    for job in 0..JOBS {
        let pool = pool.clone();
        jobs.spawn(async move { pool.count_primes(job * CHUNK, (job + 1) * CHUNK).await });
    }
    let mut primes = 0;
    while let Some(done) = jobs.join_next().await {
        primes += done.map_err(|err| pm_runtime::Error::Transport(err.to_string()))??;
    }
    let took = started.elapsed();
    Pool::drain(&pool).await?;
    Ok((primes, took))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let binary = built_binary("prime-counter")?;
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        ..Default::default()
    });
    let (one, one_took) = run(&pm, &binary, 1).await?;
    println!(
        "pool of 1: {one} primes below {} in {} ms",
        JOBS * CHUNK,
        one_took.as_millis()
    );
    let (two, two_took) = run(&pm, &binary, 2).await?;
    println!(
        "pool of 2: {two} primes below {} in {} ms",
        JOBS * CHUNK,
        two_took.as_millis()
    );
    println!(
        "speed-up with 2 members: {:.2}x on {} CPUs",
        one_took.as_secs_f64() / two_took.as_secs_f64(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    pm.shutdown().await?;
    Ok(())
}
