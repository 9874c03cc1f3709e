//! Sequential round trips: a typed `add` call to a child process over the ipc transport,
//! beside a raw baseline in the same run (the same 4-byte-length-prefixed, ~32-byte
//! ping-pong over a socketpair to a child process, with no framework), and the same `add`
//! to a worker thread for reference.
//!
//! Pin everything to one CPU for stable ratios (`taskset -c 0 cargo bench -p pm-examples`);
//! children inherit the affinity. A wake-up across vCPUs costs 40-60 µs on the reference
//! machine, so unpinned figures are noisier.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use pm_examples::Calculator;
use pm_runtime::prelude::*;

mod common;
use common::CALCULATOR;

const RAW_ECHO: &str = env!("CARGO_BIN_EXE_raw-echo");

/// The raw peer, with our end of its socketpair.
struct RawEcho {
    child: Child,
    stream: UnixStream,
}

impl RawEcho {
    fn start() -> Self {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        let fd = theirs.as_raw_fd();
        let mut command = Command::new(RAW_ECHO);
        command.stdin(Stdio::null());
        // SAFETY: dup2 is async-signal-safe and allocates nothing.
        unsafe {
            command.pre_exec(move || {
                if libc::dup2(fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("raw-echo starts");
        drop(theirs);
        Self {
            child,
            stream: ours,
        }
    }

    fn ping(&mut self, message: &[u8], reply: &mut [u8]) {
        let mut frame = Vec::with_capacity(4 + message.len());
        frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
        frame.extend_from_slice(message);
        self.stream.write_all(&frame).expect("write");
        self.stream.read_exact(reply).expect("read");
    }
}

impl Drop for RawEcho {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn round_trips(c: &mut Criterion) {
    let mut group = c.benchmark_group("round_trip");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(60);

    // The raw baseline: 32 bytes out, 32 bytes back.
    let mut raw = RawEcho::start();
    let message = [7u8; 32];
    let mut reply = [0u8; 36];
    group.bench_function("raw_socketpair_echo_32B", |b| {
        b.iter(|| raw.ping(&message, &mut reply));
    });
    drop(raw);

    let runtime = common::runtime();
    for (label, isolation) in [
        ("pm_add_child_ipc", Isolation::Child),
        ("pm_add_worker_channel", Isolation::Worker),
    ] {
        let pm = common::manager(&runtime, isolation);
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

criterion_group!(benches, round_trips);
criterion_main!(benches);
