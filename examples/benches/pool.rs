//! Pools, each case beside its baseline in the same run:
//!
//! - `pool_cpu`: 16 concurrent CPU-bound calls (`Hasher::digest(1)`, FNV-1a over 1 MiB) through
//!   a pool of one child process and through a pool of two (default strategy, power of two
//!   choices). Throughput is in calls per second. `digest` takes `&self` and a child serves
//!   each call in its own task on a multi-threaded runtime, so one member already spreads
//!   concurrent calls over every core.
//! - `pool_cpu_exclusive`: the same with `Hasher::digest_exclusive(1)`, which takes
//!   `&mut self`, so one member runs one call at a time and only more members use more cores.
//! - `pool_overhead`: sequential `Calculator::add` round trips to one child process over the
//!   ipc transport, through a plain handle and through a pool of size 1.
//!
//! Run `cargo bench -p pm-examples --bench pool`. The overhead group is steadier pinned to one
//! CPU (`taskset -c 0 cargo bench -p pm-examples --bench pool -- pool_overhead`; children
//! inherit the affinity); the cpu group means nothing pinned, as it measures the use of
//! several cores.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pm_examples::{Calculator, Hasher};
use pm_runtime::prelude::*;
use pm_runtime::Process;
use tokio::task::JoinSet;

mod common;
use common::CALCULATOR;

const HASHER: &str = env!("CARGO_BIN_EXE_hasher");

/// Calls in flight at once in the cpu group.
const CONCURRENT: usize = 16;

fn pool_cpu(c: &mut Criterion) {
    cpu_group(c, "pool_cpu", false);
}

fn pool_cpu_exclusive(c: &mut Criterion) {
    cpu_group(c, "pool_cpu_exclusive", true);
}

/// `CONCURRENT` calls at once to a pool of one hasher and to a pool of two: of `digest`
/// (`&self`: one process may run them in parallel), or of `digest_exclusive` (`&mut self`:
/// one process runs them one at a time).
fn cpu_group(c: &mut Criterion, name: &str, exclusive: bool) {
    let runtime = common::runtime();
    let pm = common::manager(&runtime, Isolation::Child);
    let pools: Vec<(&str, Pool<Hasher>)> = [("pool_size_1", 1), ("pool_size_2", 2)]
        .into_iter()
        .map(|(label, size)| {
            let pool = runtime
                .block_on(pm.pool::<Hasher>(
                    HASHER,
                    PoolOptions {
                        size,
                        ..Default::default()
                    },
                ))
                .expect("hasher pool starts");
            assert_eq!(Pool::members(&pool).len(), size);
            (label, pool)
        })
        .collect();
    // Every member hashes the same bytes, so every call answers the same.
    let expected = runtime
        .block_on(pools[0].1.digest(1))
        .expect("first digest");

    let mut group = c.benchmark_group(name);
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(20)
        .throughput(Throughput::Elements(CONCURRENT as u64));
    for (label, pool) in &pools {
        group.bench_function(*label, |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let mut calls = JoinSet::new();
                        for _ in 0..CONCURRENT {
                            let pool = pool.clone();
                            calls.spawn(async move {
                                if exclusive {
                                    pool.digest_exclusive(1).await
                                } else {
                                    pool.digest(1).await
                                }
                            });
                        }
                        while let Some(done) = calls.join_next().await {
                            let hash = done.expect("call task").expect("digest");
                            assert_eq!(hash, expected);
                        }
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
    runtime.block_on(pm.shutdown()).expect("shutdown");
}

fn pool_overhead(c: &mut Criterion) {
    let runtime = common::runtime();
    let pm = common::manager(&runtime, Isolation::Child);
    let plain = runtime
        .block_on(pm.spawn::<Calculator>(CALCULATOR, SpawnOptions::default()))
        .expect("calculator spawns");
    let pool = runtime
        .block_on(pm.pool::<Calculator>(
            CALCULATOR,
            PoolOptions {
                size: 1,
                ..Default::default()
            },
        ))
        .expect("calculator pool starts");

    let mut group = c.benchmark_group("pool_overhead");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(60)
        .throughput(Throughput::Elements(1));
    // Both deref to the same generated client type. Each case times its own calls while
    // alternating, untimed, with the other's: both see the same machine state (a run-long
    // shift of one child to a slower scheduling pattern otherwise swamps a 5% difference).
    let plain_client: &<Calculator as Process>::Client = &plain;
    let pool_client: &<Calculator as Process>::Client = &pool;
    let cases = [
        ("plain_add_child_ipc", plain_client, pool_client),
        ("pool1_add_child_ipc", pool_client, plain_client),
    ];
    for (label, timed, other) in cases {
        group.bench_function(label, |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iters {
                        let start = Instant::now();
                        let sum = timed.add(1, 2).await.expect("add");
                        spent += start.elapsed();
                        assert_eq!(sum, 3);
                        other.add(1, 2).await.expect("add");
                    }
                    spent
                })
            })
        });
    }
    group.finish();
    runtime.block_on(pm.shutdown()).expect("shutdown");
}

criterion_group!(benches, pool_cpu, pool_cpu_exclusive, pool_overhead);
criterion_main!(benches);
