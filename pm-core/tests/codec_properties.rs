//! Properties of the frame codec and the messages in it: every frame and message round-trips
//! however the byte stream is cut, and arbitrary bytes cut arbitrarily never panic the
//! decoder, never make it reserve more than one frame's worth, and end in a typed error.

use std::time::Duration;

use bytes::BytesMut;
use pm_core::wire::{
    decode_call, decode_error, encode_call, encode_error, Frame, FrameBuilder, FrameDecoder,
    FrameKind, Hello, Incoming, HEADER_LEN, LEN_PREFIX,
};
use pm_core::{RemoteError, RemoteErrorKind};
use proptest::prelude::*;

const LIMIT: usize = 4096;

const KINDS: [FrameKind; 9] = [
    FrameKind::Hello,
    FrameKind::Welcome,
    FrameKind::Reject,
    FrameKind::Init,
    FrameKind::Call,
    FrameKind::ReplyOk,
    FrameKind::ReplyErr,
    FrameKind::Cancel,
    FrameKind::Shutdown,
];

/// Feeds `wire` to a decoder in pieces of the given sizes (cycled), collecting what it yields
/// until the bytes run out or it fails. Checks after every step that the buffer never holds
/// room for more than one frame within the limit beyond what was fed.
fn decode_in_pieces(wire: &[u8], pieces: &[usize]) -> (Vec<Incoming>, Option<String>) {
    let mut decoder = FrameDecoder::new(LIMIT);
    let mut buffer = BytesMut::new();
    let mut out = Vec::new();
    let mut fed = 0;
    let mut sizes = pieces.iter().cycle();
    while fed < wire.len() {
        let size = (*sizes.next().unwrap_or(&1)).max(1).min(wire.len() - fed);
        buffer.extend_from_slice(&wire[fed..fed + size]);
        fed += size;
        loop {
            match decoder.decode(&mut buffer) {
                Ok(Some(item)) => out.push(item),
                Ok(None) => break,
                Err(err) => return (out, Some(err.to_string())),
            }
            assert!(
                buffer.capacity() <= 2 * (LEN_PREFIX + LIMIT) + 2 * size + 64,
                "the decoder reserved {} bytes with a limit of {LIMIT}",
                buffer.capacity()
            );
        }
    }
    (out, None)
}

fn frame_strategy() -> impl Strategy<Value = (FrameKind, u64, Vec<u8>)> {
    (
        0..KINDS.len(),
        any::<u64>(),
        proptest::collection::vec(any::<u8>(), 0..512),
    )
        .prop_map(|(kind, id, payload)| (KINDS[kind], id, payload))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn frames_round_trip_however_the_stream_is_cut(
        frames in proptest::collection::vec(frame_strategy(), 1..8),
        pieces in proptest::collection::vec(1usize..64, 1..8),
    ) {
        let mut wire = Vec::new();
        let mut built = Vec::new();
        for (kind, id, payload) in &frames {
            let mut builder = FrameBuilder::new(*kind, *id, LIMIT);
            builder.bin(payload).expect("within the limit");
            let frame = builder.finish().expect("within the limit");
            wire.extend_from_slice(frame.wire());
            built.push(frame);
        }
        let (decoded, error) = decode_in_pieces(&wire, &pieces);
        prop_assert_eq!(error, None);
        prop_assert_eq!(decoded.len(), built.len());
        for (item, frame) in decoded.iter().zip(&built) {
            let Incoming::Frame(got) = item else {
                return Err(TestCaseError::fail("a frame within the limit came out oversized"));
            };
            prop_assert_eq!(got.wire(), frame.wire());
            prop_assert_eq!(got.kind(), frame.kind());
            prop_assert_eq!(got.id(), frame.id());
        }
    }

    #[test]
    fn arbitrary_bytes_cut_arbitrarily_never_panic_and_end_typed(
        garbage in proptest::collection::vec(any::<u8>(), 0..4096),
        pieces in proptest::collection::vec(1usize..512, 1..8),
    ) {
        // Either frames (whole, or oversized and skipped), then more bytes needed, or a
        // typed error: no panic, no unbounded reserve (checked inside).
        let (decoded, _error) = decode_in_pieces(&garbage, &pieces);
        for item in decoded {
            match item {
                Incoming::Frame(frame) => prop_assert!(frame.payload_len() <= LIMIT),
                Incoming::Oversize { len, .. } => prop_assert!(len > LIMIT),
            }
        }
    }

    #[test]
    fn a_length_prefix_over_the_limit_is_skipped_without_buffering_its_body(
        len in (LIMIT as u32 + 1)..u32::MAX,
        id in any::<u64>(),
    ) {
        let mut wire = Vec::new();
        wire.extend_from_slice(&len.to_be_bytes());
        wire.push(FrameKind::Call as u8);
        wire.extend_from_slice(&id.to_be_bytes());
        // Only part of the huge body follows: the decoder must not wait to hold it.
        wire.extend_from_slice(&vec![0u8; 1024]);
        let (decoded, error) = decode_in_pieces(&wire, &[300]);
        prop_assert_eq!(error, None);
        prop_assert_eq!(decoded.len(), 1);
        let is_oversize = matches!(decoded[0], Incoming::Oversize { id: got, .. } if got == id);
        prop_assert!(is_oversize);
    }

    #[test]
    fn handshake_messages_round_trip(
        protocol in any::<u32>(),
        token in "[0-9a-f]{0,128}",
        pid in any::<u32>(),
        name in any::<String>(),
        fingerprint in any::<u64>(),
    ) {
        let hello = Hello { protocol, token: token.clone() };
        let mut builder = FrameBuilder::new(FrameKind::Hello, 0, LIMIT);
        builder.named(&hello).expect("fits");
        let back: Hello = builder.finish().expect("fits").decode().expect("decodes");
        prop_assert_eq!((back.protocol, back.token), (protocol, token));
        let welcome = pm_core::wire::Welcome {
            protocol,
            identity: pm_core::Identity { name, version: "1.0.0".into(), fingerprint },
            pid,
            schema: None,
        };
        let mut builder = FrameBuilder::new(FrameKind::Welcome, 0, 1 << 20);
        builder.named(&welcome).expect("fits");
        let back: pm_core::wire::Welcome = builder.finish().expect("fits").decode().expect("decodes");
        prop_assert_eq!(back, welcome);
    }

    #[test]
    fn calls_round_trip_with_method_deadline_and_arguments(
        id in any::<u64>(),
        method in "[a-z_$][a-z0-9_]{0,40}",
        deadline in proptest::option::of(0u64..10_000_000),
        args in (any::<i64>(), any::<String>(), proptest::collection::vec(any::<u8>(), 0..64)),
    ) {
        let deadline = deadline.map(Duration::from_millis);
        let frame = encode_call(id, &method, deadline, &args, LIMIT).expect("fits");
        let call = decode_call(&frame).expect("decodes");
        prop_assert_eq!(call.method, method.as_str());
        prop_assert_eq!(call.deadline, deadline);
        let back: (i64, String, Vec<u8>) = rmp_serde::from_slice(&call.args).expect("args");
        prop_assert_eq!(back, args);
    }

    #[test]
    fn errors_round_trip_and_any_reply_frame_decodes_to_some_error(
        id in any::<u64>(),
        message in any::<String>(),
        payload in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let error = RemoteError::new(RemoteErrorKind::Application, message.clone());
        let frame = encode_error(id, &error, LIMIT);
        let back = decode_error(&frame);
        prop_assert_eq!(back.kind, RemoteErrorKind::Application);
        prop_assert_eq!(back.message, message);
        // Garbage in an error frame still gives an error, never a panic.
        let mut builder = FrameBuilder::new(FrameKind::ReplyErr, id, LIMIT);
        builder.raw(&payload).expect("fits");
        if let Ok(frame) = builder.finish() {
            let _ = decode_error(&frame);
            let _ = decode_call(&frame);
            let _ = frame.decode::<Hello>();
        }
    }

    #[test]
    fn any_payload_in_a_call_frame_decodes_or_fails_typed(
        payload in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut wire = Vec::new();
        let len = u32::try_from(HEADER_LEN - LEN_PREFIX + payload.len()).expect("small");
        wire.extend_from_slice(&len.to_be_bytes());
        wire.push(FrameKind::Call as u8);
        wire.extend_from_slice(&7u64.to_be_bytes());
        wire.extend_from_slice(&payload);
        if let Ok(frame) = Frame::from_wire(bytes::Bytes::from(wire)) {
            let _ = decode_call(&frame);
        }
    }
}
