//! Costs of a few percent, as ratios measured in the same rounds:
//! `cargo bench -p pm-examples --bench ratio` (pin with `taskset -c 0`).
//!
//! - `pool`: a call routed through a pool of one member against a plain handle;
//! - `metrics`: a plain handle with per-call statistics on against one with them off
//!   (`Monitoring::metrics: false`);
//! - `tracing`: a plain handle with trace context on (`Monitoring::tracing: true`) against one
//!   with it off.
//!
//! A criterion run measures its cases one after the other, and on this shared machine a
//! child sometimes settles into a slower scheduling pattern for a whole case, which swamps a
//! difference of a few percent. Here blocks of calls alternate between the two sides (each a
//! child of its own over ipc), and the ratio is taken per round, so both sides see the same
//! machine state; the median and quartiles of those ratios are printed.

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

/// Alternates blocks of `add` calls on `subject` and `baseline` and prints the median
/// per-round ratio subject/baseline.
async fn compare(
    label: &str,
    subject: &<Calculator as Process>::Client,
    baseline: &<Calculator as Process>::Client,
) {
    // Warm up both.
    block(baseline).await;
    block(subject).await;
    let (mut baselines, mut subjects, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // Alternate which goes first, so neither always follows the other.
        let (a, b) = if round % 2 == 0 {
            let a = block(baseline).await;
            (a, block(subject).await)
        } else {
            let b = block(subject).await;
            (block(baseline).await, b)
        };
        baselines.push(a);
        subjects.push(b);
        ratios.push(b / a);
    }
    let (baseline_median, subject_median) = (median(&mut baselines), median(&mut subjects));
    let ratio_median = median(&mut ratios);
    let (low, high) = (ratios[ROUNDS / 4], ratios[3 * ROUNDS / 4]);
    println!(
        "ratio/{label}: baseline {baseline_median:.2} µs, subject {subject_median:.2} µs; \
         per round: median {ratio_median:.3} (quartiles {low:.3}..{high:.3}), \
         {ROUNDS} rounds of {BLOCK} calls each"
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that is not ours means "not this binary".
    if std::env::args()
        .skip(1)
        .any(|arg| !arg.starts_with("--") && arg != "ratio")
    {
        return;
    }
    let runtime = common::runtime();
    let pm = common::manager(&runtime, Isolation::Child);
    let quiet = runtime.block_on(async {
        ProcessManager::new(ProcessManagerConfig {
            isolation: Isolation::Child,
            monitoring: Monitoring {
                metrics: false,
                ..Default::default()
            },
            ..Default::default()
        })
    });
    let traced = runtime.block_on(async {
        ProcessManager::new(ProcessManagerConfig {
            isolation: Isolation::Child,
            monitoring: Monitoring {
                tracing: true,
                ..Default::default()
            },
            ..Default::default()
        })
    });
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
        let unmeasured = quiet
            .spawn::<Calculator>(CALCULATOR, SpawnOptions::default())
            .await
            .expect("calculator spawns");
        compare("pool (pool of 1 / plain handle)", &pool, &plain).await;
        let tracing = traced
            .spawn::<Calculator>(CALCULATOR, SpawnOptions::default())
            .await
            .expect("calculator spawns");
        compare("metrics (on / off)", &plain, &unmeasured).await;
        compare("tracing (on / off)", &tracing, &plain).await;
        pm.shutdown().await.expect("shutdown");
        quiet.shutdown().await.expect("shutdown");
        traced.shutdown().await.expect("shutdown");
    });
}
