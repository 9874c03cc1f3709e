//! Reading frames off a socket: the transport's own reader (as every stream connection uses
//! it) against the same decoder driven through tokio-util's `FramedRead`, on 10 000 call
//! frames per iteration written by a thread on the other end of a socketpair.
//! `taskset -c 0 cargo bench -p pm-bench --bench framing`.

use std::io::Write;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures_util::StreamExt;
use pm_core::wire::{encode_call, FrameDecoder, Incoming, WireError};
use tarpc::tokio_util::codec::{Decoder, FramedRead};

const FRAMES: u64 = 10_000;
const MAX: usize = 16 << 20;

/// The same decoder behind tokio-util's trait.
struct Codec(FrameDecoder);

impl Decoder for Codec {
    type Item = Incoming;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Incoming>, Self::Error> {
        self.0
            .decode(src)
            .map_err(|err: WireError| std::io::Error::other(err.to_string()))
    }
}

/// A socketpair whose far end writes `blob` each time it is asked to.
fn feeder(blob: Vec<u8>) -> (tokio::net::UnixStream, mpsc::Sender<()>) {
    let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    let (ask, asked) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        while asked.recv().is_ok() {
            if theirs.write_all(&blob).is_err() {
                return;
            }
        }
    });
    ours.set_nonblocking(true).expect("nonblocking");
    (tokio::net::UnixStream::from_std(ours).expect("tokio"), ask)
}

fn framing(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut blob = Vec::new();
    for id in 0..FRAMES {
        let frame = encode_call(id, "add", None, &(id as i64, 1i64), 1024).expect("fits");
        blob.extend_from_slice(frame.wire());
    }
    let mut group = c.benchmark_group("framing");
    group
        .throughput(Throughput::Elements(FRAMES))
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));

    let (stream, ask) = rt.block_on(async { feeder(blob.clone()) });
    let mut conn = rt.block_on(async { pm_transport::from_unix_stream(stream, MAX, "bench") });
    group.bench_function("transport_reader", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    ask.send(()).expect("feeder");
                    for _ in 0..FRAMES {
                        match conn.receiver.recv().await {
                            Some(Ok(Incoming::Frame(_))) => {}
                            other => panic!("{other:?}"),
                        }
                    }
                }
                start.elapsed()
            })
        })
    });

    let (stream, ask) = rt.block_on(async { feeder(blob.clone()) });
    let mut framed = FramedRead::new(stream, Codec(FrameDecoder::new(MAX)));
    group.bench_function("tokio_util_framed_read", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    ask.send(()).expect("feeder");
                    for _ in 0..FRAMES {
                        match framed.next().await {
                            Some(Ok(Incoming::Frame(_))) => {}
                            other => panic!("{other:?}"),
                        }
                    }
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, framing);
criterion_main!(benches);
