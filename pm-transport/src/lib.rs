//! Framed, bounded byte connections between a manager and its processes.
//!
//! A [`Connection`] is a [`FrameSender`] and a [`FrameReceiver`]. It carries
//! [`pm_core::wire::Frame`]s either over a byte stream (a socketpair or unix socket, with a
//! writer task that batches frames into few syscalls and a decoder that refuses oversized
//! frames before allocating for them) or over in-memory channels (between threads of one OS
//! process, where frames move without being copied).
//!
//! Every sender checks the frame limit when the frame is built (see
//! [`pm_core::wire::FrameBuilder`]); every stream receiver enforces it again on the bytes it
//! reads, because the peer may not be trusted.

mod channel;
mod codec;
mod connection;
mod http;
mod net;
mod queue;
mod stream;
mod write_deadline;

pub use channel::channel_pair;
pub use connection::{Connection, FrameReceiver, FrameSender, TransportError};
pub use http::{connect_http, serve_http, HealthReport, HttpApi, HttpError, HttpLimits};
pub use net::{connect, Address, Listener, SocketDir, StdListener};
pub use queue::BACKLOG_LIMIT;
pub use stream::{from_stream, from_unix_stream};
pub use write_deadline::WriteDeadline;
