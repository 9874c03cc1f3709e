//! The call path, each case beside its baseline in the same run:
//!
//! - `sequential`: one `add` at a time for every isolation × transport, beside a raw tokio
//!   ping-pong over the same kind of socket (a cross-thread round trip for Worker, an
//!   in-runtime one for None), and tarpc over a unix socket;
//! - `in_flight`: 64 and 256 calls in flight on one handle, beside a raw tokio multiplexer
//!   and tarpc;
//! - `payload`: a 1 MiB argument echoed back, beside a raw 1 MiB echo;
//! - `spawn`: spawn to the first reply, beside spawning the raw peer to its first echo.
//!
//! `taskset -c 0 cargo bench -p pm-bench --bench calls` (children inherit the affinity);
//! `python3 bench/table.py` prints the table of `docs/PERFORMANCE.md` from the results. The
//! idle child's resident memory is printed at the start.

#![allow(clippy::print_stdout)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use pm_bench::raw::{self, CrossThread, InRuntime, RawMux, RawPeer, Socket};
use pm_examples::Calculator;
use pm_runtime::prelude::*;
use tokio::runtime::Runtime;

mod tarpc_peer;

const CALCULATOR: &str = env!("CARGO_BIN_EXE_bench-calculator");
const RAW_ECHO: &str = env!("CARGO_BIN_EXE_raw-echo");

/// The client's runtime: one thread, so a call's cost is not blurred by hand-offs between
/// the caller's own workers.
fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn manager(rt: &Runtime, isolation: Isolation, transport: TransportKind) -> ProcessManager {
    rt.block_on(async {
        ProcessManager::new(ProcessManagerConfig {
            isolation,
            transport,
            ..Default::default()
        })
    })
}

/// Times `iters` sequential `add` calls on `calc`.
fn time_adds(rt: &Runtime, calc: &ProcessHandle<Calculator>, iters: u64) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        for i in 0..iters as i64 {
            let sum = calc.add(i, 1).await.expect("add");
            assert_eq!(sum, i + 1);
        }
        start.elapsed()
    })
}

fn group<'c>(
    c: &'c mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'c, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(40);
    group
}

fn sequential(c: &mut Criterion) {
    let rt = runtime();
    let mut group = group(c, "sequential");
    let message = [7u8; 32];
    let mut reply = [0u8; 36];
    for (label, socket) in [
        ("raw_socketpair", Socket::Pair),
        ("raw_unix", Socket::Unix),
        ("raw_tcp", Socket::Tcp),
    ] {
        let mut peer = rt
            .block_on(RawPeer::start(Path::new(RAW_ECHO), socket))
            .expect("raw peer");
        let mut stream = peer.take_stream();
        group.bench_function(label, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        raw::ping(&mut *stream, &message, &mut reply)
                            .await
                            .expect("echo");
                    }
                    start.elapsed()
                })
            })
        });
    }
    for (label, isolation, transport) in [
        ("child_ipc", Isolation::Child, TransportKind::Ipc),
        ("child_unix", Isolation::Child, TransportKind::Unix),
        ("child_tcp", Isolation::Child, TransportKind::Tcp),
        ("child_http", Isolation::Child, TransportKind::Http),
        ("worker_channel", Isolation::Worker, TransportKind::Ipc),
        ("worker_tcp", Isolation::Worker, TransportKind::Tcp),
        ("none_inline", Isolation::None, TransportKind::Ipc),
    ] {
        let pm = manager(&rt, isolation, transport);
        let calc = rt
            .block_on(pm.spawn::<Calculator>(CALCULATOR, SpawnOptions::default()))
            .expect("calculator spawns");
        group.bench_function(label, |b| {
            b.iter_custom(|iters| time_adds(&rt, &calc, iters))
        });
        rt.block_on(pm.shutdown()).expect("shutdown");
    }
    let cross = CrossThread::start();
    group.bench_function("raw_cross_thread", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters as i64 {
                    assert_eq!(cross.add(i, 1).await, Some(i + 1));
                }
                start.elapsed()
            })
        })
    });
    drop(cross);
    group.bench_function("raw_in_runtime", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let server = InRuntime::start();
                let start = Instant::now();
                for i in 0..iters as i64 {
                    assert_eq!(server.add(i, 1).await, Some(i + 1));
                }
                start.elapsed()
            })
        })
    });
    let tarpc = tarpc_peer::Peer::start(&rt);
    group.bench_function("tarpc_unix", |b| {
        b.iter_custom(|iters| rt.block_on(tarpc.sequential(iters)))
    });
    drop(tarpc);
    group.finish();
}

/// Runs `total` calls with `width` in flight at once: `width` workers, each calling in turn.
async fn in_flight<F, Fut>(total: u64, width: u64, call: F) -> Duration
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    // Exactly `total` calls: the first `total % width` workers make one more.
    let start = Instant::now();
    let workers: Vec<_> = (0..width)
        .map(|w| {
            let call = &call;
            let calls = total / width + u64::from(w < total % width);
            async move {
                for i in 0..calls {
                    call(w + i * width).await;
                }
            }
        })
        .collect();
    futures_util::future::join_all(workers).await;
    start.elapsed()
}

fn pipelined(c: &mut Criterion) {
    let rt = runtime();
    let mut group = group(c, "in_flight");
    group.throughput(Throughput::Elements(1));
    let mut peer = rt
        .block_on(RawPeer::start(Path::new(RAW_ECHO), Socket::Pair))
        .expect("raw peer");
    let mux = rt.block_on(async { RawMux::start(peer.take_stream()) });
    let pm = manager(&rt, Isolation::Child, TransportKind::Ipc);
    let calc = rt
        .block_on(pm.spawn::<Calculator>(CALCULATOR, SpawnOptions::default()))
        .expect("calculator spawns");
    let tarpc = Arc::new(tarpc_peer::Peer::start(&rt));
    for width in [64u64, 256] {
        let payload = [7u8; 16];
        group.bench_function(format!("raw_mux_{width}"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(in_flight(iters, width, |_| {
                    let mux = mux.clone();
                    async move {
                        let echo = mux.call(&payload).await.expect("echo");
                        assert_eq!(echo.len(), payload.len());
                    }
                }))
            })
        });
        group.bench_function(format!("child_ipc_{width}"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(in_flight(iters, width, |i| {
                    let calc = &calc;
                    async move {
                        assert_eq!(calc.add(i as i64, 1).await.expect("add"), i as i64 + 1);
                    }
                }))
            })
        });
        group.bench_function(format!("tarpc_unix_{width}"), |b| {
            b.iter_custom(|iters| rt.block_on(tarpc.in_flight(iters, width)))
        });
    }
    rt.block_on(pm.shutdown()).expect("shutdown");
    drop(peer);
    group.finish();
}

fn payload(c: &mut Criterion) {
    const MIB: usize = 1 << 20;
    let rt = runtime();
    let mut group = group(c, "payload");
    group.throughput(Throughput::Bytes(2 * MIB as u64));
    group.sample_size(20);
    let mut peer = rt
        .block_on(RawPeer::start(Path::new(RAW_ECHO), Socket::Pair))
        .expect("raw peer");
    let mut stream = peer.take_stream();
    let message = vec![7u8; MIB];
    let mut reply = vec![0u8; MIB + 4];
    group.bench_function("raw_echo_1mib", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    raw::ping(&mut *stream, &message, &mut reply)
                        .await
                        .expect("echo");
                }
                start.elapsed()
            })
        })
    });
    drop(peer);
    let pm = manager(&rt, Isolation::Child, TransportKind::Ipc);
    let calc = rt
        .block_on(pm.spawn::<Calculator>(CALCULATOR, SpawnOptions::default()))
        .expect("calculator spawns");
    let data = bytes::Bytes::from(vec![7u8; MIB]);
    group.bench_function("child_ipc_echo_1mib", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let back = calc.echo_bytes(data.clone()).await.expect("echo");
                    assert_eq!(back.len(), MIB);
                }
                start.elapsed()
            })
        })
    });
    rt.block_on(pm.shutdown()).expect("shutdown");
    group.finish();
}

fn spawn(c: &mut Criterion) {
    let rt = runtime();
    let mut group = group(c, "spawn");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    group.bench_function("raw_spawn_first_echo", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let mut peer = RawPeer::start(Path::new(RAW_ECHO), Socket::Pair)
                        .await
                        .expect("raw peer");
                    let mut stream = peer.take_stream();
                    let mut reply = [0u8; 8];
                    raw::ping(&mut *stream, &[1, 2, 3, 4], &mut reply)
                        .await
                        .expect("echo");
                    total += start.elapsed();
                    drop(stream);
                    drop(peer);
                }
                total
            })
        })
    });
    let pm = manager(&rt, Isolation::Child, TransportKind::Ipc);
    group.bench_function("child_spawn_first_reply", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let calc = pm
                        .spawn::<Calculator>(CALCULATOR, SpawnOptions::default())
                        .await
                        .expect("calculator spawns");
                    assert_eq!(calc.add(1, 2).await.expect("add"), 3);
                    total += start.elapsed();
                    pm.kill(calc.id()).await.expect("kill");
                }
                total
            })
        })
    });
    rt.block_on(pm.shutdown()).expect("shutdown");
    group.finish();
}

/// Prints the resident memory of an idle child (after one call), as `get_metrics` reads it.
fn idle_memory() {
    let rt = runtime();
    let pm = manager(&rt, Isolation::Child, TransportKind::Ipc);
    rt.block_on(async {
        let calc = pm
            .spawn::<Calculator>(CALCULATOR, SpawnOptions::default())
            .await
            .expect("calculator spawns");
        calc.add(1, 2).await.expect("add");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let memory = pm.get_metrics(calc.id()).await.expect("metrics").memory;
        let mib = memory as f64 / f64::from(1 << 20);
        println!("idle child resident memory: {mib:.2} MiB");
        // Beside criterion's results (`<target>/criterion`), for `bench/table.py`.
        let target = std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()));
        if let Some(dir) = target.map(|t| t.join("criterion")) {
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::write(dir.join("idle-child-rss-mib.txt"), format!("{mib:.2}\n"));
        }
        pm.shutdown().await.expect("shutdown");
    });
}

fn main() {
    if tarpc_peer::serve_if_asked() {
        return;
    }
    let mut criterion = Criterion::default().configure_from_args();
    idle_memory();
    sequential(&mut criterion);
    pipelined(&mut criterion);
    payload(&mut criterion);
    spawn(&mut criterion);
    criterion.final_summary();
}
