//! What observability costs per call: a typed `add` to a child over ipc with per-call
//! statistics on (the default), off (`Monitoring::metrics: false`), and with trace context on
//! as well (`Monitoring::tracing: true`: the call carries a `traceparent` and the child runs it
//! in a span). `taskset -c 0 cargo bench -p pm-examples --bench observability`.
//!
//! Criterion measures the cases one after another; for differences of a few percent the
//! interleaved `ratio` bench is the steadier figure.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use pm_examples::Calculator;
use pm_runtime::prelude::*;

#[allow(dead_code)] // this bench builds its own managers
mod common;
use common::CALCULATOR;

fn observability(c: &mut Criterion) {
    let mut group = c.benchmark_group("observability");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(60);
    let runtime = common::runtime();
    for (label, metrics, tracing) in [
        ("add_metrics_on", true, false),
        ("add_metrics_off", false, false),
        ("add_metrics_on_tracing_on", true, true),
    ] {
        let pm = runtime.block_on(async {
            ProcessManager::new(ProcessManagerConfig {
                isolation: Isolation::Child,
                monitoring: Monitoring {
                    metrics,
                    tracing,
                    ..Default::default()
                },
                ..Default::default()
            })
        });
        let calc = runtime
            .block_on(pm.spawn::<Calculator>(CALCULATOR, SpawnOptions::default()))
            .expect("calculator spawns");
        group.bench_function(label, |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let start = Instant::now();
                    for i in 0..iters as i64 {
                        let sum = calc.add(i, 1).await.expect("add");
                        assert_eq!(sum, i + 1);
                    }
                    start.elapsed()
                })
            })
        });
        runtime.block_on(pm.shutdown()).expect("shutdown");
    }
    group.finish();
}

criterion_group!(benches, observability);
criterion_main!(benches);
