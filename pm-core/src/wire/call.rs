//! Call frames: the one frame every call sends, encoded by hand, and its decoding.

use std::time::Duration;

use bytes::{BufMut, Bytes};
use serde::Serialize;

use super::{
    buffers, Frame, FrameBuilder, FrameKind, WireError, BODY_HEADER, HEADER_LEN, LEN_PREFIX,
};
use crate::trace::{TraceContext, WIRE_LEN as TRACE_WIRE_LEN};

/// Bytes a call frame needs besides its arguments: header, method name, deadline and trace
/// context.
pub fn call_overhead(method: &str) -> usize {
    BODY_HEADER + 5 + method.len() + 9 + 2 + TRACE_WIRE_LEN
}

/// Encodes a call frame around arguments already encoded as MessagePack, carrying `trace`
/// (the caller's trace context) when given.
///
/// Written by hand rather than through [`FrameBuilder`]: its fields are a string, an integer
/// and a fixed-size bin, and this is the one frame every call sends. The frame's buffer has
/// exactly its size, so it becomes the frame without a second allocation.
pub fn encode_call_raw(
    id: u64,
    method: &str,
    deadline: Option<Duration>,
    trace: Option<&TraceContext>,
    args: &[u8],
    max: usize,
) -> Result<Frame, WireError> {
    let deadline_ms = deadline.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let body = (BODY_HEADER
        + str_len(method)
        + deadline_ms.map_or(1, uint_len)
        + trace.map_or(0, |_| 2 + TRACE_WIRE_LEN))
    .saturating_add(args.len());
    let too_large = WireError::TooLarge { len: body, max };
    if body > max {
        return Err(too_large);
    }
    let prefix = u32::try_from(body).map_err(|_| too_large)?;
    let mut buf = buffers::take(LEN_PREFIX + body);
    buf.put_u32(prefix);
    buf.put_u8(FrameKind::Call as u8);
    buf.put_u64(id);
    put_str(&mut buf, method);
    match deadline_ms {
        Some(ms) => put_uint(&mut buf, ms),
        None => buf.put_u8(NIL),
    }
    if let Some(trace) = trace {
        buf.put_u8(BIN8);
        buf.put_u8(TRACE_WIRE_LEN as u8);
        buf.put_slice(&trace.to_wire());
    }
    buf.put_slice(args);
    debug_assert_eq!(buf.len(), LEN_PREFIX + body);
    Ok(Frame {
        wire: buffers::freeze(buf),
        kind: FrameKind::Call,
    })
}

/// MessagePack's `nil`.
const NIL: u8 = 0xc0;
/// MessagePack's marker of a `bin` of up to 255 bytes.
const BIN8: u8 = 0xc4;

/// Appends `value` as a MessagePack string, in the shortest form.
fn put_str(buf: &mut Vec<u8>, value: &str) {
    let len = value.len();
    match len {
        0..32 => buf.put_u8(0xa0 | len as u8),
        32..256 => {
            buf.put_u8(0xd9);
            buf.put_u8(len as u8);
        }
        256..65_536 => {
            buf.put_u8(0xda);
            buf.put_u16(len as u16);
        }
        _ => {
            buf.put_u8(0xdb);
            buf.put_u32(len as u32);
        }
    }
    buf.put_slice(value.as_bytes());
}

/// Appends `value` as a MessagePack unsigned integer, in the shortest form.
fn put_uint(buf: &mut Vec<u8>, value: u64) {
    match value {
        0..128 => buf.put_u8(value as u8),
        128..256 => {
            buf.put_u8(0xcc);
            buf.put_u8(value as u8);
        }
        256..65_536 => {
            buf.put_u8(0xcd);
            buf.put_u16(value as u16);
        }
        65_536..=0xffff_ffff => {
            buf.put_u8(0xce);
            buf.put_u32(value as u32);
        }
        _ => {
            buf.put_u8(0xcf);
            buf.put_u64(value);
        }
    }
}

/// Bytes of `value` as a MessagePack string.
fn str_len(value: &str) -> usize {
    let marker = match value.len() {
        0..32 => 1,
        32..256 => 2,
        256..65_536 => 3,
        _ => 5,
    };
    marker + value.len()
}

/// Bytes of `value` as the smallest MessagePack unsigned integer.
fn uint_len(value: u64) -> usize {
    match value {
        0..128 => 1,
        128..256 => 2,
        256..65_536 => 3,
        65_536..=0xffff_ffff => 5,
        _ => 9,
    }
}

/// A decoded call, borrowing the method name from its frame.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    /// The method to run.
    pub method: &'a str,
    /// Time left until the caller gives up, if it set a deadline.
    pub deadline: Option<Duration>,
    /// The caller's trace context, when it sent one.
    pub trace: Option<TraceContext>,
    /// The arguments: one MessagePack array.
    pub args: Bytes,
}

/// Encodes a call frame. Fails with [`WireError::TooLarge`] when the arguments push the frame
/// past `max`, before anything is sent.
pub fn encode_call<A: Serialize + ?Sized>(
    id: u64,
    method: &str,
    deadline: Option<Duration>,
    args: &A,
    max: usize,
) -> Result<Frame, WireError> {
    let deadline_ms = deadline.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut builder = FrameBuilder::new(FrameKind::Call, id, max);
    builder.str(method)?.opt_u64(deadline_ms)?.value(args)?;
    builder.finish()
}

/// The method name of a call frame and the bytes after it, reading nothing more.
fn split_method(frame: &Frame) -> Result<(&str, &[u8]), WireError> {
    rmp::decode::read_str_from_slice(&frame.wire()[HEADER_LEN..])
        .map_err(|e| WireError::Malformed(format!("call without a method name: {e}")))
}

/// The method a call frame names, without decoding its deadline or arguments; `None` when the
/// payload does not start with a method name.
pub fn call_method(frame: &Frame) -> Option<&str> {
    split_method(frame).ok().map(|(method, _)| method)
}

/// Whether a call frame calls `method`. Compares bytes when the name is encoded as the short
/// string an encoder writes for a name under 32 bytes, without checking it is UTF-8; decodes
/// the name otherwise.
pub fn calls_method(frame: &Frame, method: &str) -> bool {
    let payload = &frame.wire()[HEADER_LEN..];
    match payload.split_first() {
        Some((&marker, rest)) if marker & 0xe0 == 0xa0 => {
            let len = usize::from(marker & 0x1f);
            rest.get(..len) == Some(method.as_bytes())
        }
        _ => call_method(frame) == Some(method),
    }
}

/// Decodes a call frame's payload.
pub fn decode_call(frame: &Frame) -> Result<Call<'_>, WireError> {
    let (method, rest) = split_method(frame)?;
    let mut reader: &[u8] = rest;
    let deadline = match reader.first() {
        Some(0xc0) => {
            reader = &reader[1..];
            None
        }
        Some(_) => {
            let ms: u64 = rmp::decode::read_int(&mut reader)
                .map_err(|e| WireError::Malformed(format!("call deadline: {e}")))?;
            Some(Duration::from_millis(ms))
        }
        None => return Err(WireError::Malformed("call without a deadline field".into())),
    };
    // An optional trace context, a bin field; the arguments are always an array.
    let trace = match reader.first() {
        Some(0xc4) => {
            let len = usize::from(*reader.get(1).unwrap_or(&0));
            let context = reader
                .get(2..2 + len)
                .filter(|_| len == TRACE_WIRE_LEN)
                .and_then(TraceContext::from_wire)
                .ok_or_else(|| {
                    WireError::Malformed("call with a malformed trace context".into())
                })?;
            reader = &reader[2 + len..];
            Some(context)
        }
        _ => None,
    };
    let args_start = frame.wire().len() - reader.len();
    Ok(Call {
        method,
        deadline,
        trace,
        args: frame.wire().slice(args_start..),
    })
}
