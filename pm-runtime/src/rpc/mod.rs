//! The RPC layer: the multiplexing client connection and the process-side server.

pub(crate) mod call_ids;
pub(crate) mod client;
pub(crate) mod handshake;
pub(crate) mod reply_slots;
pub(crate) mod server;
