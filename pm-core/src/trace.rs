//! Trace context in the W3C Trace Context format (`traceparent`), as calls carry it across
//! process boundaries.
//!
//! A [`TraceContext`] names a trace (a 128-bit [`TraceId`]) and one span in it (a 64-bit
//! [`SpanId`]), plus the sampled flag. Its text form is the `traceparent` header value that
//! OpenTelemetry and every W3C-conformant tracer read and write:
//!
//! ```text
//! 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
//! ^^ ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ ^^^^^^^^^^^^^^^^ ^^
//! version       trace-id                 parent-id     flags
//! ```
//!
//! ```
//! use pm_core::trace::TraceContext;
//!
//! let root = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")?;
//! let child = root.child();
//! assert_eq!(child.trace_id(), root.trace_id());
//! assert_eq!(child.parent_id(), Some(root.span_id()));
//! assert_ne!(child.span_id(), root.span_id());
//! assert_eq!(root.to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
//! # Ok::<(), pm_core::trace::TraceParseError>(())
//! ```

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// The W3C `traceparent` version this crate writes.
const VERSION: u8 = 0;
/// The `sampled` bit of the trace flags.
const SAMPLED: u8 = 0x01;
/// Bytes of a trace context on the wire: trace id, span id, flags.
pub const WIRE_LEN: usize = 16 + 8 + 1;

/// A trace's identity: 128 bits, never all zero. Displays as 32 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(u128);

/// A span's identity within a trace: 64 bits, never all zero. Displays as 16 lowercase hex
/// digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId(u64);

impl TraceId {
    /// The id as a number; `None` for zero, which W3C reserves as invalid.
    pub fn new(value: u128) -> Option<Self> {
        (value != 0).then_some(Self(value))
    }

    /// The id as a number.
    pub fn get(self) -> u128 {
        self.0
    }

    fn random() -> Self {
        let high = u128::from(random_u64());
        Self((high << 64) | u128::from(random_u64()))
    }
}

impl SpanId {
    /// The id as a number; `None` for zero, which W3C reserves as invalid.
    pub fn new(value: u64) -> Option<Self> {
        (value != 0).then_some(Self(value))
    }

    /// The id as a number.
    pub fn get(self) -> u64 {
        self.0
    }

    fn random() -> Self {
        Self(random_u64())
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Where a trace stands: which trace, which span is current, and whether it is sampled.
///
/// The `parent_id` is the span this one was started under, when known; it is not part of the
/// `traceparent` text (which names only the current span, the parent of whatever comes next).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    trace_id: TraceId,
    span_id: SpanId,
    parent_id: Option<SpanId>,
    flags: u8,
}

/// Why a `traceparent` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid traceparent `{value}`: {reason}")]
pub struct TraceParseError {
    value: String,
    reason: &'static str,
}

impl TraceContext {
    /// A new trace with fresh random ids, sampled.
    pub fn new_root() -> Self {
        Self {
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            parent_id: None,
            flags: SAMPLED,
        }
    }

    /// A context from its parts.
    pub fn from_parts(trace_id: TraceId, span_id: SpanId, sampled: bool) -> Self {
        Self {
            trace_id,
            span_id,
            parent_id: None,
            flags: if sampled { SAMPLED } else { 0 },
        }
    }

    /// A new span in the same trace whose parent is this context's span.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id,
            span_id: SpanId::random(),
            parent_id: Some(self.span_id),
            flags: self.flags,
        }
    }

    /// Parses a W3C `traceparent` value (version `00`; later versions are read as far as the
    /// fields `00` defines, as the recommendation asks).
    ///
    /// # Errors
    /// [`TraceParseError`] when the value is not four dash-separated lowercase hex fields of
    /// the right lengths, uses the invalid version `ff`, or has an all-zero id.
    pub fn parse(value: &str) -> Result<Self, TraceParseError> {
        let refuse = |reason| TraceParseError {
            value: value.chars().take(80).collect(),
            reason,
        };
        let mut fields = value.trim().split('-');
        let (Some(version), Some(trace), Some(span), Some(flags)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(refuse("expected version-traceid-parentid-flags"));
        };
        let version = hex_field(version, 2).ok_or_else(|| refuse("bad version"))? as u8;
        if version == 0xff {
            return Err(refuse("version ff is invalid"));
        }
        if version == VERSION && fields.next().is_some() {
            return Err(refuse("version 00 has exactly four fields"));
        }
        let trace_id = hex_field(trace, 32)
            .and_then(TraceId::new)
            .ok_or_else(|| refuse("the trace id must be 32 lowercase hex digits, not all zero"))?;
        let span_id = hex_field(span, 16)
            .and_then(|id| SpanId::new(id as u64))
            .ok_or_else(|| refuse("the parent id must be 16 lowercase hex digits, not all zero"))?;
        // Flags this version does not define are not passed on (W3C: set them to zero).
        let flags = hex_field(flags, 2).ok_or_else(|| refuse("bad trace flags"))? as u8 & SAMPLED;
        Ok(Self {
            trace_id,
            span_id,
            parent_id: None,
            flags,
        })
    }

    /// The trace this context belongs to.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The current span.
    pub fn span_id(&self) -> SpanId {
        self.span_id
    }

    /// The span the current one was started under, when this side knows it.
    pub fn parent_id(&self) -> Option<SpanId> {
        self.parent_id
    }

    /// Whether the trace is sampled (recorded) upstream.
    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }

    /// The context as the wire carries it: trace id, span id (both big-endian), flags.
    pub fn to_wire(&self) -> [u8; WIRE_LEN] {
        let mut out = [0u8; WIRE_LEN];
        out[..16].copy_from_slice(&self.trace_id.0.to_be_bytes());
        out[16..24].copy_from_slice(&self.span_id.0.to_be_bytes());
        out[24] = self.flags;
        out
    }

    /// Reads what [`TraceContext::to_wire`] wrote; `None` for the wrong length or a zero id.
    pub fn from_wire(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != WIRE_LEN {
            return None;
        }
        let trace = u128::from_be_bytes(bytes[..16].try_into().ok()?);
        let span = u64::from_be_bytes(bytes[16..24].try_into().ok()?);
        Some(Self {
            trace_id: TraceId::new(trace)?,
            span_id: SpanId::new(span)?,
            parent_id: None,
            flags: bytes[24] & SAMPLED,
        })
    }
}

impl fmt::Display for TraceContext {
    /// The `traceparent` value naming this context's span.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{VERSION:02x}-{}-{}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

impl std::str::FromStr for TraceContext {
    type Err = TraceParseError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Self::parse(value)
    }
}

/// A lowercase hex field of exactly `len` digits.
fn hex_field(field: &str, len: usize) -> Option<u128> {
    if field.len() != len
        || !field
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    u128::from_str_radix(field, 16).ok()
}

/// A non-zero pseudo-random number: SipHash, keyed at random per process by the standard
/// library, over a counter. Ids need to be unique, not secret.
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static KEYS: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    let keys = KEYS.get_or_init(std::collections::hash_map::RandomState::new);
    loop {
        let mut hasher = keys.build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        let value = hasher.finish();
        if value != 0 {
            return value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_round_trips_through_text_and_wire() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let ctx = TraceContext::parse(text).expect("valid");
        assert_eq!(ctx.to_string(), text);
        assert!(ctx.sampled());
        assert_eq!(TraceContext::from_wire(&ctx.to_wire()), Some(ctx));
        assert_eq!(
            ctx.trace_id().get(),
            0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736
        );
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(TraceContext::parse(bad).is_err(), "accepted `{bad}`");
        }
    }

    #[test]
    fn a_later_version_is_read_as_far_as_version_zero_goes() {
        let ctx = TraceContext::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-x")
            .expect("future versions may add fields");
        assert!(!ctx.sampled());
    }

    #[test]
    fn fresh_ids_differ_and_a_wire_context_with_a_zero_id_is_refused() {
        let a = TraceContext::new_root();
        let b = TraceContext::new_root();
        assert_ne!(a.trace_id(), b.trace_id());
        assert_ne!(a.span_id(), a.child().span_id());
        assert_eq!(TraceContext::from_wire(&[0u8; WIRE_LEN]), None);
        assert_eq!(TraceContext::from_wire(&[1u8; 3]), None);
    }
}
