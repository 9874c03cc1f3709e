//! The wire protocol: frames, their kinds, and the MessagePack payloads they carry.
//!
//! # Frame layout
//!
//! ```text
//! +------------+--------+-------------+---------------------------+
//! | len: u32BE | kind:u8| id: u64 BE  | payload (MessagePack)     |
//! +------------+--------+-------------+---------------------------+
//!               \________________ len bytes ____________________/
//! ```
//!
//! `len` counts everything after itself and may not exceed the receiver's limit (16 MiB by
//! default). Because `kind` and `id` sit at fixed offsets, a receiver can answer an oversized
//! call with an error reply for its id while discarding its payload without buffering it.
//!
//! # Conversation
//!
//! 1. The client sends [`FrameKind::Hello`] with a [`Hello`] payload (protocol version and the
//!    process's token); the process answers [`FrameKind::Welcome`] with its [`Welcome`]
//!    identity, or [`FrameKind::Reject`] with a reason and closes.
//! 2. The client sends [`FrameKind::Init`] with the dependencies; the process builds its
//!    instance and answers [`FrameKind::ReplyOk`] or [`FrameKind::ReplyErr`] with the same id.
//! 3. Calls: [`FrameKind::Call`] carries the method name, an optional deadline in milliseconds,
//!    optionally the caller's trace context (a 25-byte bin: trace id, span id, flags; see
//!    [`crate::trace`]) and the arguments as one MessagePack array; replies carry the call's id and come in any
//!    order. [`FrameKind::Cancel`] aborts a call in flight.
//! 4. [`FrameKind::Shutdown`] asks the process to refuse new calls, run its shutdown hooks,
//!    finish what is in flight within the given grace period, answer, and exit.

use std::io;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::{Error, RemoteError, RemoteErrorKind};

pub mod buffers;
mod call;
mod decoder;

pub use call::{
    call_method, call_overhead, calls_method, decode_call, encode_call, encode_call_raw, Call,
};
pub use decoder::{FrameDecoder, Incoming};

/// The largest frame accepted unless configured otherwise: 16 MiB.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;
/// Calls in flight per connection unless configured otherwise.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;
/// The protocol version both sides announce in the handshake.
pub const PROTOCOL_VERSION: u32 = 1;
/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 4;
/// Bytes of `kind` and `id`, the fixed part of every frame body.
pub const BODY_HEADER: usize = 9;
/// Bytes before the payload: length prefix, kind and id.
pub const HEADER_LEN: usize = LEN_PREFIX + BODY_HEADER;

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// Client → process: protocol version and token.
    Hello = 1,
    /// Process → client: the process's identity.
    Welcome = 2,
    /// Process → client: the handshake was refused; the payload is the reason.
    Reject = 3,
    /// Client → process: the dependencies to build the instance from.
    Init = 4,
    /// Client → process: a method call.
    Call = 10,
    /// Process → client: a call's result.
    ReplyOk = 11,
    /// Process → client: a call's error, a [`RemoteError`].
    ReplyErr = 12,
    /// Client → process: abort the call with this id.
    Cancel = 13,
    /// Client → process: shut down gracefully; the payload is the grace period in ms.
    Shutdown = 20,
}

impl TryFrom<u8> for FrameKind {
    type Error = WireError;

    fn try_from(value: u8) -> Result<Self, WireError> {
        Ok(match value {
            1 => Self::Hello,
            2 => Self::Welcome,
            3 => Self::Reject,
            4 => Self::Init,
            10 => Self::Call,
            11 => Self::ReplyOk,
            12 => Self::ReplyErr,
            13 => Self::Cancel,
            20 => Self::Shutdown,
            other => return Err(WireError::UnknownKind(other)),
        })
    }
}

/// A frame that could not be built or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The frame's body would exceed the limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The body's length, or a lower bound of it when encoding stopped early.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The kind byte names no known frame kind.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// The length prefix is too short to hold a kind and an id.
    #[error("frame body of {0} bytes is shorter than its 9-byte header")]
    Truncated(usize),
    /// The payload is not the MessagePack this kind of frame carries.
    #[error("malformed payload: {0}")]
    Malformed(String),
    /// A value could not be encoded as MessagePack.
    #[error("could not encode: {0}")]
    Encode(String),
}

impl From<WireError> for Error {
    fn from(err: WireError) -> Self {
        Error::Protocol(err.to_string())
    }
}

/// One complete frame in wire form. Cheap to clone (reference-counted bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    wire: Bytes,
    kind: FrameKind,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("kind", &self.kind)
            .field("id", &self.id())
            .field("payload_len", &self.payload_len())
            .finish()
    }
}

impl Frame {
    /// Checks and wraps a frame in wire form (length prefix included).
    ///
    /// Fails when the prefix disagrees with the length, the body is shorter than its header,
    /// or the kind is unknown.
    pub fn from_wire(wire: Bytes) -> Result<Self, WireError> {
        if wire.len() < HEADER_LEN {
            return Err(WireError::Truncated(wire.len().saturating_sub(LEN_PREFIX)));
        }
        let declared = u32::from_be_bytes([wire[0], wire[1], wire[2], wire[3]]) as usize;
        if declared != wire.len() - LEN_PREFIX {
            return Err(WireError::Malformed(format!(
                "length prefix says {declared} bytes, frame has {}",
                wire.len() - LEN_PREFIX
            )));
        }
        let kind = FrameKind::try_from(wire[LEN_PREFIX])?;
        Ok(Self { wire, kind })
    }

    /// A frame with no payload.
    pub fn empty(kind: FrameKind, id: u64) -> Self {
        let mut buf = BytesMut::with_capacity(HEADER_LEN);
        buf.put_u32(BODY_HEADER as u32);
        buf.put_u8(kind as u8);
        buf.put_u64(id);
        Self {
            wire: buf.freeze(),
            kind,
        }
    }

    /// The frame's kind.
    pub fn kind(&self) -> FrameKind {
        self.kind
    }

    /// The call id (0 for frames outside a call).
    pub fn id(&self) -> u64 {
        let mut id = &self.wire[LEN_PREFIX + 1..HEADER_LEN];
        id.get_u64()
    }

    /// The payload, without copying.
    pub fn payload(&self) -> Bytes {
        self.wire.slice(HEADER_LEN..)
    }

    /// The payload's length in bytes.
    pub fn payload_len(&self) -> usize {
        self.wire.len() - HEADER_LEN
    }

    /// The whole frame as it goes on the wire.
    pub fn wire(&self) -> &Bytes {
        &self.wire
    }

    /// Decodes the payload as one MessagePack value.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, WireError> {
        rmp_serde::from_slice(&self.wire[HEADER_LEN..])
            .map_err(|e| WireError::Malformed(e.to_string()))
    }
}

/// An `io::Write` into a frame buffer that refuses to grow the body past the limit, so an
/// oversized value is refused without first being encoded whole.
struct LimitedWriter<'a> {
    buf: &'a mut Vec<u8>,
    max_wire: usize,
    hit_limit: &'a mut bool,
}

impl io::Write for LimitedWriter<'_> {
    #[inline]
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > self.max_wire {
            *self.hit_limit = true;
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "frame limit reached",
            ));
        }
        if self.buf.capacity() - self.buf.len() < data.len() {
            buffers::reserve(self.buf, data.len(), self.max_wire);
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Builds one frame: header first, then payload values, then [`FrameBuilder::finish`].
#[derive(Debug)]
pub struct FrameBuilder {
    buf: Vec<u8>,
    kind: FrameKind,
    id: u64,
    max: usize,
    overflowed: bool,
}

impl FrameBuilder {
    /// Starts a frame of `kind` for call `id` whose body may not exceed `max` bytes.
    pub fn new(kind: FrameKind, id: u64, max: usize) -> Self {
        Self::in_buffer(kind, id, max, buffers::scratch())
    }

    /// Starts a frame with room for `capacity` bytes on the wire (header included), for a
    /// frame whose size is known: a large one is then encoded without growing, and a small
    /// one of exactly that size becomes its frame without a copy.
    fn with_capacity(kind: FrameKind, id: u64, max: usize, capacity: usize) -> Self {
        Self::in_buffer(kind, id, max, buffers::take(capacity.max(HEADER_LEN)))
    }

    fn in_buffer(kind: FrameKind, id: u64, max: usize, mut buf: Vec<u8>) -> Self {
        buf.clear();
        buf.resize(HEADER_LEN, 0);
        Self {
            buf,
            kind,
            id,
            max,
            overflowed: false,
        }
    }

    fn writer(&mut self) -> LimitedWriter<'_> {
        LimitedWriter {
            max_wire: self.max.saturating_add(LEN_PREFIX),
            buf: &mut self.buf,
            hit_limit: &mut self.overflowed,
        }
    }

    fn too_large(&self) -> WireError {
        WireError::TooLarge {
            len: self.buf.len() - LEN_PREFIX + 1,
            max: self.max,
        }
    }

    /// Appends a value as MessagePack (structs as arrays: compact, positional).
    pub fn value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<&mut Self, WireError> {
        let result = rmp_serde::encode::write(&mut self.writer(), value);
        self.check(result.map_err(|e| e.to_string()))
    }

    /// Appends a value as MessagePack with field names (for handshake records that may grow).
    pub fn named<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<&mut Self, WireError> {
        let result = rmp_serde::encode::write_named(&mut self.writer(), value);
        self.check(result.map_err(|e| e.to_string()))
    }

    /// Appends a MessagePack string.
    pub fn str(&mut self, value: &str) -> Result<&mut Self, WireError> {
        let result = rmp::encode::write_str(&mut self.writer(), value);
        self.check(result.map_err(|e| e.to_string()))
    }

    /// Appends an optional unsigned integer (`nil` for `None`).
    pub fn opt_u64(&mut self, value: Option<u64>) -> Result<&mut Self, WireError> {
        let result = match value {
            Some(v) => rmp::encode::write_uint(&mut self.writer(), v)
                .map(drop)
                .map_err(|e| e.to_string()),
            None => rmp::encode::write_nil(&mut self.writer()).map_err(|e| e.to_string()),
        };
        self.check(result)
    }

    /// Appends a MessagePack binary field.
    pub fn bin(&mut self, value: &[u8]) -> Result<&mut Self, WireError> {
        let result = rmp::encode::write_bin(&mut self.writer(), value);
        self.check(result.map_err(|e| e.to_string()))
    }

    /// Appends bytes that already are MessagePack.
    pub fn raw(&mut self, msgpack: &[u8]) -> Result<&mut Self, WireError> {
        let result = io::Write::write_all(&mut self.writer(), msgpack);
        self.check(result.map_err(|e| e.to_string()))
    }

    fn check(&mut self, result: Result<(), String>) -> Result<&mut Self, WireError> {
        match result {
            Ok(()) if !self.overflowed => Ok(self),
            _ if self.overflowed => Err(self.too_large()),
            Ok(()) => Ok(self),
            Err(message) => Err(WireError::Encode(message)),
        }
    }

    /// Writes the header and returns the frame.
    pub fn finish(mut self) -> Result<Frame, WireError> {
        let body = self.buf.len() - LEN_PREFIX;
        if self.overflowed || body > self.max {
            return Err(self.too_large());
        }
        let len = u32::try_from(body).map_err(|_| self.too_large())?;
        let mut header = &mut self.buf[..HEADER_LEN];
        header.put_u32(len);
        header.put_u8(self.kind as u8);
        header.put_u64(self.id);
        Ok(Frame {
            wire: buffers::freeze(std::mem::take(&mut self.buf)),
            kind: self.kind,
        })
    }
}

impl Drop for FrameBuilder {
    /// A frame abandoned (too large, or its value failed to encode) gives its buffer back.
    fn drop(&mut self) {
        buffers::give(std::mem::take(&mut self.buf));
    }
}

/// Encodes one value as MessagePack on its own (not in a frame), refusing to produce more
/// than `max` bytes: an oversized value fails with [`WireError::TooLarge`] without being
/// encoded whole.
pub fn encode_value<T: Serialize + ?Sized>(value: &T, max: usize) -> Result<Bytes, WireError> {
    encode_value_vec(value, max).map(buffers::freeze)
}

/// [`encode_value`] into a buffer of this thread's (see [`buffers::scratch`]): hand it back
/// with [`buffers::give`] once done with it, and the next value is encoded without allocating.
pub fn encode_value_vec<T: Serialize + ?Sized>(
    value: &T,
    max: usize,
) -> Result<Vec<u8>, WireError> {
    let mut buf = buffers::scratch();
    let mut hit_limit = false;
    let result = rmp_serde::encode::write(
        &mut LimitedWriter {
            buf: &mut buf,
            max_wire: max,
            hit_limit: &mut hit_limit,
        },
        value,
    );
    let outcome = match result {
        _ if hit_limit => Err(WireError::TooLarge {
            len: buf.len() + 1,
            max,
        }),
        Ok(()) => return Ok(buf),
        Err(err) => Err(WireError::Encode(err.to_string())),
    };
    buffers::give(buf);
    outcome
}

/// The client's first frame.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the client.
    pub protocol: u32,
    /// The process's secret token, proving the client may call it.
    pub token: String,
}

impl std::fmt::Debug for Hello {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hello")
            .field("protocol", &self.protocol)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// The process's answer to [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// [`PROTOCOL_VERSION`] of the process.
    pub protocol: u32,
    /// Name, version and method-table fingerprint.
    pub identity: crate::schema::Identity,
    /// The OS pid of the process hosting it.
    pub pid: u32,
    /// The structure of its method table ([`Schema::to_bytes`](crate::schema::Schema::to_bytes)),
    /// so that a client whose fingerprint differs can say what differs. Kept as bytes and
    /// decoded apart, so that a schema this build cannot read is ignored rather than failing
    /// the handshake. Absent from peers that predate it, and when it would not fit the frame.
    #[serde(default)]
    pub schema: Option<bytes::Bytes>,
}

/// Encodes a successful reply carrying `value`.
pub fn encode_reply<T: Serialize + ?Sized>(
    id: u64,
    value: &T,
    max: usize,
) -> Result<Frame, WireError> {
    let mut builder = FrameBuilder::new(FrameKind::ReplyOk, id, max);
    builder.value(value)?;
    builder.finish()
}

/// Encodes a successful reply whose value is already MessagePack.
pub fn encode_raw_reply(id: u64, msgpack: &[u8], max: usize) -> Result<Frame, WireError> {
    let body = BODY_HEADER.saturating_add(msgpack.len());
    if body > max {
        return Err(WireError::TooLarge { len: body, max });
    }
    let capacity = LEN_PREFIX + body;
    let mut builder = FrameBuilder::with_capacity(FrameKind::ReplyOk, id, max, capacity);
    builder.raw(msgpack)?;
    builder.finish()
}

/// Encodes an error reply. An error too large for the limit (a huge message or payload) is
/// cut down to its kind and a note, so the caller always hears back.
pub fn encode_error(id: u64, error: &RemoteError, max: usize) -> Frame {
    let mut builder = FrameBuilder::new(FrameKind::ReplyErr, id, max);
    if builder.named(error).is_ok() {
        if let Ok(frame) = builder.finish() {
            return frame;
        }
    }
    let fallback = RemoteError::new(
        error.kind,
        "the error reply exceeded the frame limit and was dropped",
    );
    let mut builder = FrameBuilder::new(FrameKind::ReplyErr, id, usize::MAX);
    match builder.named(&fallback) {
        Ok(_) => builder
            .finish()
            .unwrap_or_else(|_| Frame::empty(FrameKind::ReplyErr, id)),
        Err(_) => Frame::empty(FrameKind::ReplyErr, id),
    }
}

/// Decodes an error reply's payload; a reply that does not decode becomes an
/// [`RemoteErrorKind::Internal`] error saying so.
pub fn decode_error(frame: &Frame) -> RemoteError {
    frame.decode::<RemoteError>().unwrap_or_else(|e| {
        RemoteError::new(
            RemoteErrorKind::Internal,
            format!("undecodable error reply: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::trace::{TraceContext, WIRE_LEN as TRACE_WIRE_LEN};

    #[test]
    fn call_round_trips_with_method_deadline_and_args() {
        let frame = encode_call(
            7,
            "add",
            Some(Duration::from_millis(1500)),
            &(5i64, 3i64),
            1024,
        )
        .expect("encodes");
        assert_eq!(frame.kind(), FrameKind::Call);
        assert_eq!(frame.id(), 7);
        let call = decode_call(&frame).expect("decodes");
        assert_eq!(call.method, "add");
        assert_eq!(call.deadline, Some(Duration::from_millis(1500)));
        let args: (i64, i64) = rmp_serde::from_slice(&call.args).expect("args decode");
        assert_eq!(args, (5, 3));
    }

    #[test]
    fn a_call_carries_the_callers_trace_context_between_deadline_and_arguments() {
        let trace = TraceContext::new_root();
        let args = encode_value(&(5i64, 3i64), 1024).expect("fits");
        let frame = encode_call_raw(9, "add", None, Some(&trace), &args, 1024).expect("fits");
        let call = decode_call(&frame).expect("decodes");
        assert_eq!(call.trace, Some(trace));
        let args: (i64, i64) = rmp_serde::from_slice(&call.args).expect("args decode");
        assert_eq!(args, (5, 3));
        let untraced = encode_call_raw(9, "add", None, None, &args_bytes(), 1024).expect("fits");
        assert_eq!(decode_call(&untraced).expect("decodes").trace, None);
        assert_eq!(
            frame.wire().len() - untraced.wire().len(),
            2 + TRACE_WIRE_LEN
        );
    }

    fn args_bytes() -> Bytes {
        encode_value(&(5i64, 3i64), 1024).expect("fits")
    }

    #[test]
    fn a_call_with_a_malformed_trace_context_is_refused() {
        let mut builder = FrameBuilder::new(FrameKind::Call, 1, 1024);
        builder
            .str("add")
            .and_then(|b| b.opt_u64(None))
            .and_then(|b| b.bin(&[1, 2, 3]))
            .and_then(|b| b.raw(&args_bytes()))
            .expect("fits");
        let frame = builder.finish().expect("fits");
        assert!(matches!(decode_call(&frame), Err(WireError::Malformed(_))));
    }

    #[test]
    fn call_without_deadline_decodes_as_none() {
        let frame = encode_call(1, "ping", None, &(), 1024).expect("encodes");
        let call = decode_call(&frame).expect("decodes");
        assert_eq!(call.deadline, None);
        assert_eq!(call.method, "ping");
    }

    #[test]
    fn oversized_arguments_are_refused_while_encoding() {
        let big = vec![0u8; 4096];
        let err = encode_call(1, "put", None, &(serde_bytes_like(&big),), 1024).expect_err("fails");
        assert!(
            matches!(err, WireError::TooLarge { max: 1024, .. }),
            "{err:?}"
        );
    }

    fn serde_bytes_like(data: &[u8]) -> Bytes {
        Bytes::copy_from_slice(data)
    }

    #[test]
    fn encode_value_refuses_a_value_past_the_limit() {
        let small = encode_value(&(1u8, "hi"), 100).expect("fits");
        assert_eq!(
            rmp_serde::from_slice::<(u8, String)>(&small).expect("decodes"),
            (1, "hi".into())
        );
        let err = encode_value(&(Bytes::from(vec![0u8; 500]),), 100).expect_err("fails");
        assert!(matches!(err, WireError::TooLarge { max: 100, .. }));
    }

    #[test]
    fn a_call_frame_written_by_hand_is_the_frame_the_general_encoder_writes() {
        let trace = TraceContext::new_root();
        for method in ["m", &"x".repeat(40), &"y".repeat(300)] {
            for deadline in [
                None,
                Some(5),
                Some(200),
                Some(60_000),
                Some(100_000),
                Some(1 << 40),
            ] {
                for trace in [None, Some(&trace)] {
                    let deadline = deadline.map(Duration::from_millis);
                    let args = args_bytes();
                    let frame =
                        encode_call_raw(1, method, deadline, trace, &args, 1 << 20).expect("fits");
                    // The same frame through the general encoder.
                    let mut builder = FrameBuilder::new(FrameKind::Call, 1, 1 << 20);
                    builder
                        .str(method)
                        .and_then(|b| b.opt_u64(deadline.map(|d| d.as_millis() as u64)))
                        .expect("fits");
                    if let Some(trace) = trace {
                        builder.bin(&trace.to_wire()).expect("fits");
                    }
                    builder.raw(&args).expect("fits");
                    let reference = builder.finish().expect("fits");
                    assert_eq!(frame, reference, "{method} {deadline:?} {trace:?}");
                    let call = decode_call(&frame).expect("decodes");
                    assert_eq!((call.method, call.deadline), (method, deadline));
                }
            }
        }
        let limit = reference_len("m", &args_bytes()) - 1;
        assert!(matches!(
            encode_call_raw(1, "m", None, None, &args_bytes(), limit),
            Err(WireError::TooLarge { len, max }) if len == limit + 1 && max == limit
        ));
    }

    /// The body length of an untraced call without a deadline.
    fn reference_len(method: &str, args: &[u8]) -> usize {
        encode_call(1, method, None, &(), 1 << 20)
            .expect("fits")
            .payload_len()
            - 1
            + BODY_HEADER
            + args.len()
    }

    #[test]
    fn calls_method_tells_the_called_method_however_its_name_is_encoded() {
        let args = args_bytes();
        let short = encode_call_raw(1, "$health", None, None, &args, 1024).expect("fits");
        assert!(calls_method(&short, "$health"));
        assert!(!calls_method(&short, "$healt"));
        assert!(!calls_method(&short, "$healthy"));
        // The same frame with the name as a `str8`, which a different encoder may write: the
        // fixstr marker becomes two bytes, and the length prefix grows by one.
        let mut wire = short.wire().to_vec();
        wire.splice(HEADER_LEN..=HEADER_LEN, [0xd9, 7]);
        let body = u32::try_from(wire.len() - LEN_PREFIX).expect("small");
        wire[..LEN_PREFIX].copy_from_slice(&body.to_be_bytes());
        let long = Frame::from_wire(Bytes::from(wire)).expect("a valid frame");
        assert!(calls_method(&long, "$health"));
        assert!(!calls_method(&long, "add"));
        let empty = Frame::empty(FrameKind::Call, 1);
        assert!(!calls_method(&empty, "$health"));
    }

    #[test]
    fn a_raw_reply_past_the_limit_is_refused_with_its_exact_length() {
        let value = [0x90u8; 100];
        assert!(encode_raw_reply(1, &value, BODY_HEADER + 100).is_ok());
        assert_eq!(
            encode_raw_reply(1, &value, BODY_HEADER + 99),
            Err(WireError::TooLarge {
                len: BODY_HEADER + 100,
                max: BODY_HEADER + 99
            })
        );
    }

    #[test]
    fn raw_call_matches_typed_call() {
        let args = encode_value(&(5i64, 3i64), 1024).expect("fits");
        let raw = encode_call_raw(1, "add", None, None, &args, 1024).expect("fits");
        let typed = encode_call(1, "add", None, &(5i64, 3i64), 1024).expect("fits");
        assert_eq!(raw, typed);
        assert!(raw.payload_len() + BODY_HEADER <= call_overhead("add") + args.len());
    }

    #[test]
    fn error_reply_round_trips() {
        let err = RemoteError::new(RemoteErrorKind::Panic, "boom");
        let frame = encode_error(3, &err, 1024);
        assert_eq!(frame.kind(), FrameKind::ReplyErr);
        assert_eq!(decode_error(&frame), err);
    }

    #[test]
    fn an_error_reply_too_large_for_the_limit_still_reaches_the_caller() {
        let err = RemoteError::new(RemoteErrorKind::Application, "x".repeat(10_000));
        let frame = encode_error(3, &err, 1024);
        let back = decode_error(&frame);
        assert_eq!(back.kind, RemoteErrorKind::Application);
        assert!(back.message.contains("exceeded the frame limit"));
    }

    #[test]
    fn malformed_call_payload_is_reported() {
        let mut builder = FrameBuilder::new(FrameKind::Call, 1, 1024);
        builder.raw(&[0xc1]).expect("fits");
        let frame = builder.finish().expect("fits");
        assert!(matches!(decode_call(&frame), Err(WireError::Malformed(_))));
    }
}
