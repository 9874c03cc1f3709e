//! The frame decoder under arbitrary bytes, cut into arbitrary pieces: it must never panic,
//! never reserve more than one frame within its limit, and never yield a frame over it.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pm_core::wire::{FrameDecoder, Incoming, LEN_PREFIX};

const LIMIT: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    // The first byte chooses the piece size, the rest is the stream.
    let Some((&piece, stream)) = data.split_first() else {
        return;
    };
    let piece = usize::from(piece).max(1);
    let mut decoder = FrameDecoder::new(LIMIT);
    let mut buffer = BytesMut::new();
    for chunk in stream.chunks(piece) {
        buffer.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buffer) {
                Ok(Some(Incoming::Frame(frame))) => {
                    assert!(frame.payload_len() <= LIMIT);
                    let _ = pm_core::wire::decode_call(&frame);
                    let _ = pm_core::wire::decode_error(&frame);
                }
                Ok(Some(Incoming::Oversize { len, .. })) => assert!(len > LIMIT),
                Ok(None) => break,
                Err(_) => return,
            }
            assert!(buffer.capacity() <= 2 * (LEN_PREFIX + LIMIT) + 2 * piece + 64);
        }
    }
});
