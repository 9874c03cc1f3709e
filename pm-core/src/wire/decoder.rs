//! Splitting a byte stream into frames.

use bytes::{Buf, BytesMut};

use super::{Frame, WireError, BODY_HEADER, HEADER_LEN, LEN_PREFIX};

/// What a [`FrameDecoder`] found in the byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A complete frame within the limit.
    Frame(Frame),
    /// A frame over the limit. Its payload is being discarded without being buffered; the
    /// receiver should answer its id with an error.
    Oversize {
        /// The raw kind byte.
        kind: u8,
        /// The frame's id.
        id: u64,
        /// The declared body length.
        len: usize,
    },
}

/// Splits a byte stream into frames, refusing oversized ones before allocating for them.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max: usize,
    skipping: usize,
}

impl FrameDecoder {
    /// A decoder accepting bodies up to `max` bytes.
    pub fn new(max: usize) -> Self {
        Self { max, skipping: 0 }
    }

    /// The limit in force.
    pub fn max(&self) -> usize {
        self.max
    }

    /// The wire length (prefix included) of the frame `src` begins with, when its length
    /// prefix is in, valid and within the limit, and no oversized frame is being skipped: a
    /// reader may then collect that many bytes any way it likes and check them with
    /// [`Frame::from_wire`], instead of calling [`FrameDecoder::decode`].
    pub fn frame_len(&self, src: &[u8]) -> Option<usize> {
        if self.skipping > 0 {
            return None;
        }
        let prefix: [u8; LEN_PREFIX] = src.get(..LEN_PREFIX)?.try_into().ok()?;
        let len = u32::from_be_bytes(prefix) as usize;
        (BODY_HEADER..=self.max)
            .contains(&len)
            .then_some(LEN_PREFIX + len)
    }

    /// Takes the next item out of `src`, or `Ok(None)` if more bytes are needed. Errors are
    /// fatal for the stream: after one, the connection must be closed.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Incoming>, WireError> {
        if self.skipping > 0 {
            let n = self.skipping.min(src.len());
            src.advance(n);
            self.skipping -= n;
            if self.skipping > 0 {
                return Ok(None);
            }
        }
        if src.len() < LEN_PREFIX {
            src.reserve(HEADER_LEN);
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if len < BODY_HEADER {
            return Err(WireError::Truncated(len));
        }
        if len > self.max {
            if src.len() < HEADER_LEN {
                return Ok(None);
            }
            let kind = src[LEN_PREFIX];
            let id = (&src[LEN_PREFIX + 1..HEADER_LEN]).get_u64();
            src.advance(HEADER_LEN);
            self.skipping = len - BODY_HEADER;
            let n = self.skipping.min(src.len());
            src.advance(n);
            self.skipping -= n;
            return Ok(Some(Incoming::Oversize { kind, id, len }));
        }
        let total = LEN_PREFIX + len;
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        let wire = src.split_to(total).freeze();
        Frame::from_wire(wire).map(|frame| Some(Incoming::Frame(frame)))
    }
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, Bytes};

    use super::*;
    use crate::wire::{encode_call, encode_reply, DEFAULT_MAX_FRAME};

    #[test]
    fn decoder_splits_a_stream_into_frames() {
        let a = encode_call(1, "a", None, &(1,), 1024).expect("encodes");
        let b = encode_reply(2, &"hello", 1024).expect("encodes");
        let mut stream = BytesMut::new();
        stream.extend_from_slice(a.wire());
        stream.extend_from_slice(b.wire());
        let mut decoder = FrameDecoder::new(1024);
        assert_eq!(decoder.decode(&mut stream), Ok(Some(Incoming::Frame(a))));
        assert_eq!(decoder.decode(&mut stream), Ok(Some(Incoming::Frame(b))));
        assert_eq!(decoder.decode(&mut stream), Ok(None));
    }

    #[test]
    fn frame_len_is_known_from_the_prefix_only_for_a_frame_within_the_limit() {
        let a = encode_call(1, "a", None, &(1,), 1024).expect("encodes");
        let decoder = FrameDecoder::new(1024);
        assert_eq!(decoder.frame_len(&a.wire()[..3]), None);
        assert_eq!(decoder.frame_len(&a.wire()[..4]), Some(a.wire().len()));
        assert_eq!(FrameDecoder::new(8).frame_len(a.wire()), None);
        assert_eq!(decoder.frame_len(&[0, 0, 0, 3]), None);
    }

    #[test]
    fn decoder_waits_for_a_partial_frame() {
        let a = encode_call(1, "a", None, &(1,), 1024).expect("encodes");
        let mut decoder = FrameDecoder::new(1024);
        let mut stream = BytesMut::from(&a.wire()[..5]);
        assert_eq!(decoder.decode(&mut stream), Ok(None));
        stream.extend_from_slice(&a.wire()[5..]);
        assert_eq!(decoder.decode(&mut stream), Ok(Some(Incoming::Frame(a))));
    }

    #[test]
    fn decoder_reports_and_skips_an_oversized_frame_then_reads_the_next() {
        let big =
            encode_call(9, "put", None, &(Bytes::from(vec![7u8; 300]),), 4096).expect("encodes");
        let small = encode_call(10, "get", None, &(), 4096).expect("encodes");
        let mut decoder = FrameDecoder::new(100);
        let mut stream = BytesMut::new();
        // the oversized frame arrives in pieces
        stream.extend_from_slice(&big.wire()[..20]);
        let first = decoder.decode(&mut stream).expect("no error");
        assert!(matches!(
            first,
            Some(Incoming::Oversize {
                id: 9,
                kind: 10,
                ..
            })
        ));
        assert_eq!(decoder.decode(&mut stream), Ok(None));
        stream.extend_from_slice(&big.wire()[20..]);
        stream.extend_from_slice(small.wire());
        assert_eq!(
            decoder.decode(&mut stream),
            Ok(Some(Incoming::Frame(small)))
        );
    }

    #[test]
    fn decoder_does_not_reserve_memory_for_a_huge_length_prefix() {
        let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
        let mut stream = BytesMut::new();
        stream.put_u32(u32::MAX);
        stream.put_u8(10);
        stream.put_u64(1);
        let item = decoder.decode(&mut stream).expect("no error");
        assert!(matches!(item, Some(Incoming::Oversize { len, .. }) if len == u32::MAX as usize));
        assert!(stream.capacity() < 1024 * 1024);
    }

    #[test]
    fn decoder_rejects_a_body_shorter_than_its_header() {
        let mut decoder = FrameDecoder::new(1024);
        let mut stream = BytesMut::new();
        stream.put_u32(3);
        stream.put_bytes(0, 3);
        assert_eq!(decoder.decode(&mut stream), Err(WireError::Truncated(3)));
    }

    #[test]
    fn unknown_frame_kind_is_an_error() {
        let mut stream = BytesMut::new();
        stream.put_u32(9);
        stream.put_u8(99);
        stream.put_u64(1);
        let mut decoder = FrameDecoder::new(1024);
        assert_eq!(decoder.decode(&mut stream), Err(WireError::UnknownKind(99)));
    }
}
