//! The two halves of a connection.

use std::io;

use pm_core::wire::{Frame, Incoming, WireError};
use tokio::sync::mpsc;

use crate::codec::FrameReader;
use crate::queue::FrameQueue;
pub use crate::queue::FrameSender;

/// A connection failure.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The peer closed the connection, or the connection was shut down locally.
    #[error("connection closed")]
    Closed,
    /// Reading or writing failed.
    #[error("connection I/O failed: {0}")]
    Io(#[from] io::Error),
    /// The peer sent bytes that are not a valid frame; the connection cannot continue.
    #[error("peer violated the wire protocol: {0}")]
    Wire(#[from] WireError),
}

/// The receiving half of a connection.
#[derive(Debug)]
pub struct FrameReceiver {
    inner: ReceiverInner,
}

#[derive(Debug)]
enum ReceiverInner {
    Channel(FrameQueue),
    Bounded(mpsc::Receiver<Frame>),
    Stream(FrameReader),
}

impl FrameReceiver {
    pub(crate) fn channel(rx: FrameQueue) -> Self {
        Self {
            inner: ReceiverInner::Channel(rx),
        }
    }

    pub(crate) fn bounded(rx: mpsc::Receiver<Frame>) -> Self {
        Self {
            inner: ReceiverInner::Bounded(rx),
        }
    }

    pub(crate) fn stream(reader: FrameReader) -> Self {
        Self {
            inner: ReceiverInner::Stream(reader),
        }
    }

    /// The next frame, or an oversized frame's header, or `None` once the peer has closed.
    /// After an error the connection is unusable and further calls return `None`.
    pub async fn recv(&mut self) -> Option<Result<Incoming, TransportError>> {
        match &mut self.inner {
            ReceiverInner::Channel(queue) => {
                let frame = queue.recv().await?;
                // Received is written, for an in-memory connection.
                queue.written(frame.wire().len());
                Some(Ok(Incoming::Frame(frame)))
            }
            ReceiverInner::Bounded(rx) => rx.recv().await.map(|frame| Ok(Incoming::Frame(frame))),
            ReceiverInner::Stream(reader) => reader.next().await,
        }
    }
}

/// A bidirectional frame connection.
#[derive(Debug)]
pub struct Connection {
    /// Sends frames to the peer.
    pub sender: FrameSender,
    /// Receives frames from the peer.
    pub receiver: FrameReceiver,
    /// What the connection is, for logs (e.g. `"socketpair"`, `"channel"`).
    pub description: &'static str,
    /// The writer task of a stream connection. It ends once every sender is dropped and the
    /// queued frames are written; await it before exiting so the last replies are not lost.
    pub writer: Option<tokio::task::JoinHandle<()>>,
}
