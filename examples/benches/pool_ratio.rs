//! The cost of routing a call through a pool, as a ratio to a plain handle measured in the
//! same rounds: `cargo bench -p pm-examples --bench pool_ratio` (pin with `taskset -c 0`).
//!
//! A criterion run measures its cases one after the other, and on this shared machine a
//! child sometimes settles into a slower scheduling pattern for a whole case, which swamps a
//! difference of a few percent. Here blocks of calls alternate between a plain handle and a
//! pool of one member (each a child of its own over ipc), and the ratio is taken per round,
//! so both sides see the same machine state; the median and quartiles of those ratios are
//! printed.

#![allow(clippy::print_stdout)]

mod common;

use std::time::Instant;

use common::CALCULATOR;
use pm_examples::Calculator;
use pm_runtime::prelude::*;
use pm_runtime::Process;

/// Calls per block.
const BLOCK: u32 = 5_000;
/// Rounds, each one block of each.
const ROUNDS: usize = 60;

/// Microseconds per call of one block of `add` calls.
async fn block(client: &<Calculator as Process>::Client) -> f64 {
    let start = Instant::now();
    for _ in 0..BLOCK {
        let sum = client.add(1, 2).await.expect("add");
        assert_eq!(sum, 3);
    }
    start.elapsed().as_secs_f64() * 1e6 / f64::from(BLOCK)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that is not ours means "not this binary".
    if std::env::args()
        .skip(1)
        .any(|arg| !arg.starts_with("--") && arg != "pool_ratio")
    {
        return;
    }
    let runtime = common::runtime();
    let pm = common::manager(&runtime, Isolation::Child);
    runtime.block_on(async {
        let plain = pm
            .spawn::<Calculator>(CALCULATOR, SpawnOptions::default())
            .await
            .expect("calculator spawns");
        let pool = pm
            .pool::<Calculator>(
                CALCULATOR,
                PoolOptions {
                    size: 1,
                    ..Default::default()
                },
            )
            .await
            .expect("calculator pool starts");
        // Warm up both.
        block(&plain).await;
        block(&pool).await;
        let (mut plains, mut pools, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            // Alternate which goes first, so neither always follows the other.
            let (a, b) = if round % 2 == 0 {
                let a = block(&plain).await;
                (a, block(&pool).await)
            } else {
                let b = block(&pool).await;
                (block(&plain).await, b)
            };
            plains.push(a);
            pools.push(b);
            ratios.push(b / a);
        }
        let (plain_median, pool_median) = (median(&mut plains), median(&mut pools));
        let ratio_median = median(&mut ratios);
        let (low, high) = (ratios[ROUNDS / 4], ratios[3 * ROUNDS / 4]);
        println!(
            "pool_ratio: plain add {plain_median:.2} µs, pool-of-1 add {pool_median:.2} µs; \
             pool/plain per round: median {ratio_median:.3} (quartiles {low:.3}..{high:.3}), \
             {ROUNDS} rounds of {BLOCK} calls each"
        );
        pm.shutdown().await.expect("shutdown");
    });
}
