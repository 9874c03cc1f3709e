//! Review of the call-path performance work (4933818..225df9f), pure pm-core parts: the
//! hand-written call encoder against the general one at every MessagePack length boundary,
//! the exact frame limits, the buffer pool and the per-thread scratch buffer.
//!
//! Only one test here touches buffers of 64 KiB or more (the pool is process-wide and tests
//! run in parallel): `the_pool_*`.

use std::time::Duration;

use pm_core::trace::TraceContext;
use pm_core::wire::{
    buffers, call_overhead, calls_method, decode_call, encode_call_raw, encode_value,
    encode_value_vec, Frame, FrameBuilder, FrameKind, WireError, BODY_HEADER, HEADER_LEN,
};

/// The call frame as the general encoder writes it (what `encode_call_raw` replaced).
fn reference_call(
    id: u64,
    method: &str,
    deadline: Option<Duration>,
    trace: Option<&TraceContext>,
    args: &[u8],
    max: usize,
) -> Result<Frame, WireError> {
    let deadline_ms = deadline.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut builder = FrameBuilder::new(FrameKind::Call, id, max);
    builder.str(method)?.opt_u64(deadline_ms)?;
    if let Some(trace) = trace {
        builder.bin(&trace.to_wire())?;
    }
    builder.raw(args)?;
    builder.finish()
}

fn args() -> Vec<u8> {
    encode_value(&(1i64, "two"), 1024).expect("fits").to_vec()
}

/// Method names of every string-header boundary, deadlines of every integer-header boundary
/// (and the sub-millisecond and unrepresentable ones), with and without a trace context:
/// the hand-written frame is byte for byte the general encoder's, decodes back, and
/// `calls_method` recognises its name (and not a name one byte longer or shorter).
#[test]
fn hand_written_call_frames_match_the_general_encoder_at_every_length_boundary() {
    let trace = TraceContext::new_root();
    let args = args();
    let deadlines = [
        None,
        Some(Duration::ZERO),
        Some(Duration::from_micros(999)),
        Some(Duration::from_millis(127)),
        Some(Duration::from_millis(128)),
        Some(Duration::from_millis(255)),
        Some(Duration::from_millis(256)),
        Some(Duration::from_millis(65_535)),
        Some(Duration::from_millis(65_536)),
        Some(Duration::from_millis(u64::from(u32::MAX))),
        Some(Duration::from_millis(u64::from(u32::MAX) + 1)),
        Some(Duration::from_millis(u64::MAX)),
        Some(Duration::MAX),
    ];
    // 65_535/65_536 make frames of 64 KiB or more: they are in the pool test below.
    for len in [0usize, 1, 30, 31, 32, 33, 254, 255, 256, 257, 4096] {
        let method = "m".repeat(len);
        for deadline in deadlines {
            for trace in [None, Some(&trace)] {
                let frame =
                    encode_call_raw(7, &method, deadline, trace, &args, 1 << 20).expect("fits");
                let reference =
                    reference_call(7, &method, deadline, trace, &args, 1 << 20).expect("fits");
                assert_eq!(
                    frame.wire(),
                    reference.wire(),
                    "method of {len} bytes, {deadline:?}, trace {}",
                    trace.is_some()
                );
                let call = decode_call(&frame).expect("decodes");
                assert_eq!(call.method, method);
                let want = deadline.map(|d| {
                    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                });
                assert_eq!(call.deadline, want, "method of {len} bytes");
                assert_eq!(call.trace.is_some(), trace.is_some());
                assert_eq!(&call.args[..], &args[..]);
                assert!(calls_method(&frame, &method), "method of {len} bytes");
                assert!(!calls_method(&frame, &format!("{method}m")));
                if len > 0 {
                    assert!(!calls_method(&frame, &method[1..]));
                }
                // The caller's bound on the overhead holds for every shape of the frame.
                assert!(
                    frame.payload_len() + BODY_HEADER <= call_overhead(&method) + args.len(),
                    "method of {len} bytes: overhead {} < {}",
                    call_overhead(&method),
                    frame.payload_len() + BODY_HEADER - args.len()
                );
            }
        }
    }
}

/// The call frame's limit is exact: a body of exactly `max` bytes is sent, one byte more is
/// `TooLarge` naming the body's length and the limit; the general encoder agrees.
#[test]
fn the_call_frame_limit_is_exact_and_agrees_with_the_general_encoder() {
    let args = args();
    let trace = TraceContext::new_root();
    for (method, deadline, trace) in [
        ("add".to_owned(), None, None),
        ("x".repeat(31), Some(Duration::from_millis(300)), None),
        (
            "y".repeat(32),
            Some(Duration::from_millis(70_000)),
            Some(&trace),
        ),
    ] {
        let body = encode_call_raw(1, &method, deadline, trace, &args, 1 << 20)
            .expect("fits")
            .payload_len()
            + BODY_HEADER;
        assert!(encode_call_raw(1, &method, deadline, trace, &args, body).is_ok());
        assert!(reference_call(1, &method, deadline, trace, &args, body).is_ok());
        match encode_call_raw(1, &method, deadline, trace, &args, body - 1) {
            Err(WireError::TooLarge { len, max }) => assert_eq!((len, max), (body, body - 1)),
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert!(matches!(
            reference_call(1, &method, deadline, trace, &args, body - 1),
            Err(WireError::TooLarge { .. })
        ));
    }
}

/// `encode_value_vec`'s limit is exact too, and a refused value leaves the scratch buffer
/// usable (the next value encodes from an empty buffer).
#[test]
fn encode_value_vec_limit_is_exact_and_a_refusal_leaves_the_scratch_buffer_clean() {
    let value = "z".repeat(100);
    let len = encode_value(&value, 1 << 20).expect("fits").len();
    let exact = encode_value_vec(&value, len).expect("exactly at the limit");
    assert_eq!(exact.len(), len);
    buffers::give(exact);
    assert!(matches!(
        encode_value_vec(&value, len - 1),
        Err(WireError::TooLarge { max, .. }) if max == len - 1
    ));
    let next = encode_value_vec(&1u8, 16).expect("fits");
    assert_eq!(next, vec![1u8]);
    buffers::give(next);
}

/// Small frames built one after another through the scratch buffer stay intact: a frame
/// copied out of the scratch buffer is not overwritten by the next frame written into it,
/// nor is one that kept the scratch storage (longer than the copy limit).
#[test]
fn frames_built_through_the_scratch_buffer_do_not_alias_each_other() {
    let mut frames = Vec::new();
    for i in 0..200u32 {
        let len = (i as usize * 37) % 4000;
        let value = vec![(i % 251) as u8; len];
        let mut builder = FrameBuilder::new(FrameKind::ReplyOk, u64::from(i), 1 << 20);
        builder.value(&serde_bytes_like(&value)).expect("fits");
        frames.push((i, value, builder.finish().expect("fits")));
        // Interleave values encoded on their own and given back.
        let scratch = encode_value_vec(&(i, "interleaved"), 1024).expect("fits");
        buffers::give(scratch);
    }
    for (i, value, frame) in frames {
        assert_eq!(frame.id(), u64::from(i));
        let decoded: Vec<u8> = frame.decode().expect("decodes");
        assert_eq!(decoded, value, "frame {i}");
    }
}

fn serde_bytes_like(value: &[u8]) -> Vec<u8> {
    value.to_vec()
}

/// The scratch buffer is bounded: giving a buffer of 60 KiB (under the pool's minimum) or
/// 8 KiB does not make it this thread's scratch buffer.
#[test]
fn the_scratch_buffer_never_keeps_more_than_its_bound() {
    for capacity in [8 * 1024, 60 * 1024] {
        buffers::give(Vec::with_capacity(capacity));
        let scratch = buffers::scratch();
        assert!(
            scratch.capacity() <= 4096,
            "kept a scratch buffer of {} bytes",
            scratch.capacity()
        );
    }
}

thread_local! {
    static LATE: Late = const { Late };
}

/// Uses the buffers from a thread-local destructor, that may run after the scratch slot is
/// gone.
struct Late;

impl Drop for Late {
    fn drop(&mut self) {
        let scratch = buffers::scratch();
        buffers::give(scratch);
        buffers::give(Vec::with_capacity(100));
        let frame = FrameBuilder::new(FrameKind::ReplyOk, 1, 1024);
        let _ = frame.finish().expect("fits");
        let _ = encode_value(&"late", 1024).expect("fits");
        let _ = buffers::freeze(b"tiny".to_vec());
    }
}

/// The buffers work from other thread-locals' destructors (after the scratch slot may be
/// destroyed), on a thread that used the scratch buffer first, and on one that did not.
#[test]
fn the_buffers_work_during_thread_teardown() {
    for use_scratch_first in [true, false] {
        std::thread::spawn(move || {
            if use_scratch_first {
                buffers::give(encode_value_vec(&"x", 64).expect("fits"));
            }
            LATE.with(|_| {});
            if !use_scratch_first {
                return;
            }
            buffers::give(buffers::scratch());
        })
        .join()
        .expect("the thread ends without a panic");
    }
}

/// The pool: frames of 64 KiB and more (method names of 65 535 and 65 536 bytes: `str16` and
/// `str32` headers), reuse of a frame's storage once its last clone is dropped (on another
/// thread too), the pool's bounds, and frames kept alive while others reuse storage.
#[test]
fn the_pool_reuses_returned_storage_within_its_bounds_and_never_aliases_live_frames() {
    let args = args();
    let trace = TraceContext::new_root();
    for len in [65_535usize, 65_536, 65_537] {
        let method = "n".repeat(len);
        for deadline in [None, Some(Duration::from_millis(65_536))] {
            let frame =
                encode_call_raw(3, &method, deadline, Some(&trace), &args, 1 << 20).expect("fits");
            let reference =
                reference_call(3, &method, deadline, Some(&trace), &args, 1 << 20).expect("fits");
            assert_eq!(frame.wire(), reference.wire(), "method of {len} bytes");
            let call = decode_call(&frame).expect("decodes");
            assert_eq!(call.method.len(), len);
            assert!(calls_method(&frame, &method));
            assert!(frame.payload_len() + BODY_HEADER <= call_overhead(&method) + args.len());
        }
    }

    // A frozen pooled buffer goes back when its last clone drops, even on another thread.
    let size = 3 * 1024 * 1024 + 12_345;
    let mut buffer = buffers::take(size);
    buffer.resize(size, 0xab);
    let storage = buffer.as_ptr() as usize;
    let bytes = buffers::freeze(buffer);
    let tail = bytes.slice(size - 10..);
    drop(bytes);
    std::thread::spawn(move || drop(tail)).join().expect("drop");
    // Had the storage been freed, a plain allocation of that size would likely get it.
    let blocker = Vec::<u8>::with_capacity(size);
    assert_ne!(blocker.as_ptr() as usize, storage, "the storage was freed");
    let again = buffers::take(size);
    assert_eq!(again.as_ptr() as usize, storage, "the storage came back");
    assert!(again.is_empty());
    drop(again);

    // Live frames are never handed out again: build many large frames, keep them all, check
    // each still reads back what it was built with.
    let mut live = Vec::new();
    for i in 0..24u8 {
        let payload = vec![i; 70_000 + usize::from(i) * 1000];
        let frame = pm_core::wire::encode_raw_reply(u64::from(i), &payload, 1 << 22).expect("fits");
        live.push((i, frame));
        if i % 3 == 0 {
            // Some dropped and given back while others live.
            live.remove(0);
        }
    }
    for (i, frame) in &live {
        assert!(
            frame.wire()[HEADER_LEN..].iter().all(|b| b == i),
            "frame {i} was overwritten"
        );
    }
    drop(live);

    // Bounded: of 20 buffers of 1 MiB given back, at most 8 are ever handed out again, and
    // at most 16 MiB of them.
    // Emptied first (of what the steps above left in it); these are freed, not given back.
    let drained: Vec<Vec<u8>> = (0..buffers::POOL_MAX_BUFFERS)
        .map(|_| buffers::take(buffers::POOLED_MIN))
        .collect();
    let given: Vec<Vec<u8>> = (0..20).map(|_| Vec::with_capacity(1 << 20)).collect();
    let pointers: std::collections::HashSet<usize> =
        given.iter().map(|b| b.as_ptr() as usize).collect();
    for buffer in given {
        buffers::give(buffer);
    }
    // The freed ones' addresses are taken by plain allocations first, so a buffer that
    // `take` returns at one of the given addresses came from the pool.
    let blockers: Vec<Vec<u8>> = (0..20).map(|_| Vec::with_capacity(1 << 20)).collect();
    let blocked: std::collections::HashSet<usize> =
        blockers.iter().map(|b| b.as_ptr() as usize).collect();
    let taken: Vec<Vec<u8>> = (0..20).map(|_| buffers::take(1 << 20)).collect();
    let reused = taken
        .iter()
        .map(|b| b.as_ptr() as usize)
        .filter(|p| pointers.contains(p) && !blocked.contains(p))
        .count();
    assert!(reused > 0, "the pool kept none");
    assert!(reused <= buffers::POOL_MAX_BUFFERS, "{reused} reused");
    drop(taken);
    drop(blockers);
    drop(blocker);
    drop(drained);
}
