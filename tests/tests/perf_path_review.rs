//! Review of the call-path performance work (4933818..225df9f): the stream reader's large
//! frame path (cancel safety, chunk boundaries, oversized frames skipped before it, bad kinds
//! through it, end of stream), the hand-written call frame as a process reads it (method
//! names at string-header boundaries, the health check under another string header), and
//! large calls through the pooled buffers end to end.

use std::time::Duration;

use bytes::Bytes;
use pm_core::wire::{
    encode_call, encode_call_raw, encode_raw_reply, Frame, FrameBuilder, FrameKind, Incoming,
    WireError, BODY_HEADER, LEN_PREFIX,
};
use pm_core::RemoteErrorKind;
use pm_examples::Calculator;
use pm_runtime::prelude::*;
use pm_runtime::Error;
use pm_tests::standalone::{next_frame, Host};
use pm_tests::within;
use pm_transport::{from_unix_stream, Connection, TransportError};
use tokio::io::AsyncWriteExt;

const CALCULATOR: &str = env!("CARGO_BIN_EXE_test-calculator");
const TOKEN: &str = "0123456789abcdef-perf-path-review";
const LIMIT: Duration = Duration::from_secs(30);

/// A reply frame whose wire length (prefix included) is exactly `wire_len`, payload bytes
/// recognisable by `id`.
fn frame_of_wire_len(id: u64, wire_len: usize) -> Frame {
    let payload: Vec<u8> = (0..wire_len - LEN_PREFIX - BODY_HEADER)
        .map(|i| (i as u64 * 7 + id) as u8)
        .collect();
    let frame = encode_raw_reply(id, &payload, 64 << 20).expect("fits");
    assert_eq!(frame.wire().len(), wire_len);
    frame
}

/// A frame's wire bytes with its kind byte replaced.
fn with_kind(frame: &Frame, kind: u8) -> Vec<u8> {
    let mut wire = frame.wire().to_vec();
    wire[LEN_PREFIX] = kind;
    wire
}

/// Writes `bytes` into a socketpair in `piece`-byte writes, yielding between them; the
/// other end is a frame connection accepting bodies up to `max`.
fn feed(bytes: Vec<u8>, piece: usize, max: usize) -> (Connection, tokio::task::JoinHandle<()>) {
    let (raw, other) = tokio::net::UnixStream::pair().expect("socketpair");
    let conn = from_unix_stream(other, max, "review");
    let writer = tokio::spawn(async move {
        let (_read, mut write) = raw.into_split();
        for chunk in bytes.chunks(piece) {
            if write.write_all(chunk).await.is_err() {
                return;
            }
            tokio::task::yield_now().await;
        }
        // Dropping the write half ends the stream.
    });
    (conn, writer)
}

/// The next item, receiving with receives abandoned part-way first: each attempt polls
/// `recv` at most twice before it is dropped (as a `select!` branch not taken), until one
/// completes.
async fn recv_abandoning(conn: &mut Connection) -> Option<Result<Incoming, TransportError>> {
    loop {
        tokio::select! {
            biased;
            item = conn.receiver.recv() => return item,
            () = tokio::task::yield_now() => {}
        }
    }
}

fn expect_frame(item: Option<Result<Incoming, TransportError>>, want: &Frame) {
    match item {
        Some(Ok(Incoming::Frame(frame))) => {
            assert_eq!(frame.id(), want.id());
            assert_eq!(frame.wire(), want.wire(), "frame {} differs", want.id());
        }
        other => panic!("expected frame {}, got {other:?}", want.id()),
    }
}

/// Coverage: frames at the read chunk's boundary (wire lengths 64 KiB - 1, 64 KiB, 64 KiB + 1,
/// the large path's first) and well past it, between small frames, arrive whole and in order
/// while every receive is abandoned after at most two polls, whatever the write sizes.
#[tokio::test(flavor = "current_thread")]
async fn frames_around_the_chunk_size_survive_abandoned_receives() {
    let sizes = [
        64 * 1024 - 1,
        64 * 1024,
        64 * 1024 + 1,
        64 * 1024 + 2,
        128 * 1024 + 1,
        300_001,
    ];
    for piece in [1000, 4093, 65_536, 70_001] {
        let mut expected = Vec::new();
        let mut id = 0;
        for size in sizes {
            id += 1;
            expected.push(frame_of_wire_len(id, 40));
            id += 1;
            expected.push(frame_of_wire_len(id, size));
        }
        id += 1;
        expected.push(frame_of_wire_len(id, 13));
        let bytes: Vec<u8> = expected.iter().flat_map(|f| f.wire().to_vec()).collect();
        let (mut conn, writer) = feed(bytes, piece, 1 << 20);
        within("frames through abandoned receives", LIMIT, async {
            for want in &expected {
                expect_frame(recv_abandoning(&mut conn).await, want);
            }
            assert!(recv_abandoning(&mut conn).await.is_none(), "a clean end");
        })
        .await;
        writer.await.expect("writer");
    }
}

/// Coverage: an oversized frame skipped without buffering, then a large frame whose head
/// arrives in the same read as the oversized frame's tail, then a small one: `Oversize` with
/// the first frame's id and kind, then both frames whole (the large path takes over only once
/// the skip has ended).
#[tokio::test(flavor = "current_thread")]
async fn an_oversized_frame_skipped_then_a_large_frame_then_a_small_one() {
    let max = 200 * 1024;
    let oversized = encode_call(
        9,
        "m",
        None,
        &(Bytes::from(vec![5u8; 300 * 1024]),),
        1 << 20,
    )
    .expect("fits");
    let large = frame_of_wire_len(10, 150 * 1024);
    let small = frame_of_wire_len(11, 20);
    let just_over = frame_of_wire_len(12, max + LEN_PREFIX + 1);
    let exactly = frame_of_wire_len(13, max + LEN_PREFIX);
    let mut bytes = Vec::new();
    for frame in [&oversized, &large, &small, &just_over, &exactly] {
        bytes.extend_from_slice(frame.wire());
    }
    for piece in [4093, 70_001, 1 << 20] {
        let (mut conn, writer) = feed(bytes.clone(), piece, max);
        within("the frames after a skipped one", LIMIT, async {
            match recv_abandoning(&mut conn).await {
                Some(Ok(Incoming::Oversize { kind, id, len })) => {
                    assert_eq!((kind, id), (FrameKind::Call as u8, 9));
                    assert_eq!(len, oversized.wire().len() - LEN_PREFIX);
                }
                other => panic!("expected Oversize, got {other:?}"),
            }
            expect_frame(recv_abandoning(&mut conn).await, &large);
            expect_frame(recv_abandoning(&mut conn).await, &small);
            match recv_abandoning(&mut conn).await {
                Some(Ok(Incoming::Oversize { id: 12, len, .. })) => assert_eq!(len, max + 1),
                other => panic!("expected Oversize of one byte over, got {other:?}"),
            }
            expect_frame(recv_abandoning(&mut conn).await, &exactly);
            assert!(recv_abandoning(&mut conn).await.is_none());
        })
        .await;
        writer.await.expect("writer");
    }
}

/// Coverage: a frame with an unknown kind byte arriving through the large path ends the
/// stream with `UnknownKind` (as through the small path), and nothing after it is read.
#[tokio::test(flavor = "current_thread")]
async fn an_unknown_kind_through_the_large_path_ends_the_stream() {
    for size in [100, 64 * 1024, 64 * 1024 + 1, 200_000] {
        let bad = with_kind(&frame_of_wire_len(1, size), 99);
        let mut bytes = frame_of_wire_len(2, 30).wire().to_vec();
        bytes.extend_from_slice(&bad);
        bytes.extend_from_slice(frame_of_wire_len(3, 30).wire());
        let (mut conn, writer) = feed(bytes, 70_001, 1 << 20);
        within("the bad kind", LIMIT, async {
            expect_frame(recv_abandoning(&mut conn).await, &frame_of_wire_len(2, 30));
            match recv_abandoning(&mut conn).await {
                Some(Err(TransportError::Wire(WireError::UnknownKind(99)))) => {}
                other => panic!("size {size}: expected UnknownKind, got {other:?}"),
            }
            assert!(conn.receiver.recv().await.is_none(), "size {size}");
        })
        .await;
        writer.await.expect("writer");
    }
}

/// Coverage: the stream's end exactly at a large frame's end is a clean end; an end inside the
/// next frame's length prefix, or inside a large frame, is a wire error naming what was
/// buffered, and the stream then ends.
#[tokio::test(flavor = "current_thread")]
async fn ends_of_stream_at_and_inside_a_large_frame() {
    let large = frame_of_wire_len(1, 100_000);
    let (mut conn, writer) = feed(large.wire().to_vec(), 70_001, 1 << 20);
    within("a clean end", LIMIT, async {
        expect_frame(recv_abandoning(&mut conn).await, &large);
        assert!(recv_abandoning(&mut conn).await.is_none());
    })
    .await;
    writer.await.expect("writer");

    for cut in [2usize, 13, 65_536, 65_537, 99_999] {
        let mut bytes = large.wire().to_vec();
        let next = frame_of_wire_len(2, 100_000);
        bytes.extend_from_slice(&next.wire()[..cut]);
        let (mut conn, writer) = feed(bytes, 70_001, 1 << 20);
        within("an end inside a frame", LIMIT, async {
            expect_frame(recv_abandoning(&mut conn).await, &large);
            match recv_abandoning(&mut conn).await {
                Some(Err(TransportError::Wire(WireError::Malformed(message)))) => {
                    assert!(
                        message.contains(&format!("({cut} bytes buffered)")),
                        "cut {cut}: {message}"
                    );
                }
                other => panic!("cut {cut}: expected a wire error, got {other:?}"),
            }
            assert!(conn.receiver.recv().await.is_none());
        })
        .await;
        writer.await.expect("writer");
    }
}

/// Calls the calculator speaking raw frames: the answer to call `id`.
async fn answer(conn: &mut Connection, frame: Frame) -> Frame {
    let id = frame.id();
    conn.sender.send(frame).expect("send");
    loop {
        let reply = next_frame(&mut conn.receiver).await;
        if reply.id() == id {
            return reply;
        }
    }
}

/// Coverage: the process reads hand-written call frames whose method names sit at every
/// string-header boundary (31/32 bytes: fixstr/str8, 255/256: str8/str16) and answers each
/// with `UnknownMethod` for its id; `$health` is recognised as the health check whether its
/// name comes as a fixstr or as a str8 (`calls_method`'s fallback) and answered `ReplyOk`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_reads_hand_written_call_frames_at_every_name_boundary() {
    let host = Host::start(CALCULATOR, "unix:", TOKEN);
    let mut conn = within("handshake", LIMIT, host.handshaken(TOKEN)).await;
    let args = pm_core::wire::encode_value(&(), 64).expect("fits");
    let mut id = 100;
    for len in [1usize, 31, 32, 255, 256, 65_535] {
        id += 1;
        let method = "q".repeat(len);
        let deadline = Some(Duration::from_millis(65_536));
        let frame = encode_call_raw(id, &method, deadline, None, &args, 1 << 20).expect("fits");
        let reply = within("unknown method", LIMIT, answer(&mut conn, frame)).await;
        assert_eq!(reply.kind(), FrameKind::ReplyErr, "name of {len} bytes");
        let error = pm_core::wire::decode_error(&reply);
        assert_eq!(error.kind, RemoteErrorKind::UnknownMethod, "{error:?}");
    }
    id += 1;
    let health = encode_call_raw(id, "$health", None, None, &args, 1024).expect("fits");
    let reply = within("health", LIMIT, answer(&mut conn, health)).await;
    assert_eq!(
        reply.kind(),
        FrameKind::ReplyOk,
        "{:?}",
        pm_core::wire::decode_error(&reply)
    );
    // The same health check with its name as a str8.
    id += 1;
    let mut builder = FrameBuilder::new(FrameKind::Call, id, 1024);
    builder
        .raw(&[0xd9, 7])
        .and_then(|b| b.raw(b"$health"))
        .and_then(|b| b.opt_u64(None))
        .and_then(|b| b.raw(&args))
        .expect("fits");
    let reply = within(
        "health as str8",
        LIMIT,
        answer(&mut conn, builder.finish().expect("fits")),
    )
    .await;
    assert_eq!(
        reply.kind(),
        FrameKind::ReplyOk,
        "{:?}",
        pm_core::wire::decode_error(&reply)
    );
    // And an ordinary call still works after all of it.
    id += 1;
    let add = encode_call(id, "add", None, &(2i64, 3i64), 1024).expect("fits");
    let reply = within("add", LIMIT, answer(&mut conn, add)).await;
    assert_eq!(reply.decode::<i64>().expect("i64"), 5);
}

fn manager(max_frame_size: usize) -> ProcessManager {
    ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        transport: TransportKind::Unix,
        limits: Limits {
            max_frame_size,
            ..Limits::default()
        },
        ..Default::default()
    })
}

/// A calculator child of `pm`, spawned within `LIMIT`.
async fn calculator(pm: &ProcessManager) -> ProcessHandle<Calculator> {
    within(
        "spawn",
        LIMIT,
        pm.spawn::<Calculator>(CALCULATOR, SpawnOptions::default()),
    )
    .await
    .expect("spawns")
}

fn pattern(seed: u8, len: usize) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect::<Vec<u8>>(),
    )
}

/// Coverage: large calls both ways through the pooled buffers, concurrently: 16 tasks, each
/// echoing payloads of sizes around 64 KiB, 1 MiB and past half the pool (never pooled),
/// every reply carrying exactly its own bytes (no buffer handed out while still in use).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_large_echoes_come_back_intact() {
    let pm = manager(16 << 20);
    let calc = calculator(&pm).await;
    let sizes = [
        64 * 1024 - 40,
        64 * 1024 - 20,
        64 * 1024,
        64 * 1024 + 1,
        200_000,
        1 << 20,
        (8 << 20) + 1,
    ];
    let tasks: Vec<_> = (0..16u8)
        .map(|task| {
            let calc = calc.clone();
            tokio::spawn(async move {
                for round in 0..3u8 {
                    for (i, size) in sizes.iter().enumerate() {
                        let seed = task.wrapping_mul(17).wrapping_add(round * 7 + i as u8);
                        let data = pattern(seed, *size);
                        let back = calc.echo_bytes(data.clone()).await.expect("echo");
                        assert!(back == data, "task {task} size {size}: the reply differs");
                    }
                }
            })
        })
        .collect();
    within("the echoes", Duration::from_secs(120), async {
        for task in tasks {
            task.await.expect("task");
        }
    })
    .await;
    within("shutdown", LIMIT, pm.shutdown())
        .await
        .expect("shutdown");
}

/// Coverage: arguments right at the caller's limit (frame limit minus `call_overhead`) are
/// sent and answered; one byte more is refused before sending, with `Protocol`, and the
/// connection still serves the next call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_at_the_frame_limit_are_sent_and_one_byte_more_is_refused() {
    let max = 256 * 1024;
    let pm = manager(max);
    let calc = calculator(&pm).await;
    // `echo(Vec<u8>)` with bytes under 128: one byte each, inside an array16/array32 header
    // and the one-element argument array; find the largest accepted length.
    let limit = max - pm_core::wire::call_overhead("echo");
    let header = |n: usize| {
        1 + if n < 16 {
            1
        } else if n < 65_536 {
            3
        } else {
            5
        }
    };
    let fits = limit - header(limit);
    let echoed = within("the largest call", LIMIT, calc.echo(vec![1u8; fits]))
        .await
        .expect("at the limit: sent and answered");
    assert_eq!(echoed, fits);
    match within("one byte more", LIMIT, calc.echo(vec![1u8; fits + 1])).await {
        Err(Error::Protocol(message)) => assert!(message.contains("cannot be sent"), "{message}"),
        other => panic!("expected a refusal before sending, got {other:?}"),
    }
    assert_eq!(
        within("after", LIMIT, calc.add(1, 2)).await.expect("add"),
        3
    );
    within("shutdown", LIMIT, pm.shutdown())
        .await
        .expect("shutdown");
}

/// Coverage: deadlines at the edges through the hand-written frame: a timeout too large to
/// represent as an instant is no deadline (the call succeeds), one of a microsecond times out
/// (and does not hang), and 65 536 ms (the u16/u32 header boundary) is honoured as a deadline
/// that has not passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_at_the_edges_are_sent_and_honoured() {
    let pm = manager(1 << 20);
    let calc = calculator(&pm).await;
    let forever = ProcessHandle::with_timeout(&calc, Duration::MAX);
    assert_eq!(
        within("no deadline", LIMIT, forever.add(1, 1))
            .await
            .expect("add"),
        2
    );
    let boundary = ProcessHandle::with_timeout(&calc, Duration::from_millis(65_536));
    assert_eq!(
        within("65 536 ms", LIMIT, boundary.sleep(1))
            .await
            .expect("sleep"),
        1
    );
    let tiny = ProcessHandle::with_timeout(&calc, Duration::from_micros(1));
    match within("a microsecond", LIMIT, tiny.sleep(50)).await {
        Err(Error::Timeout { .. }) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(
        within("after", LIMIT, calc.add(2, 2)).await.expect("add"),
        4
    );
    within("shutdown", LIMIT, pm.shutdown())
        .await
        .expect("shutdown");
}
