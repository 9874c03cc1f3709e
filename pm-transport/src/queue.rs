//! The outgoing queue of a connection, and its backlog: the bytes queued but not yet
//! written, by which a sender that outpaces its peer learns to wait.
//!
//! Queuing never blocks, so a reply or a cancel can always be sent. A peer that stops
//! reading (a stopped or hung process, a hostile client) would make the queue grow without
//! bound, so the parts that produce frames on their own initiative (a client's new calls, a
//! server reading more calls) wait for [`FrameSender::writable`] first: the queue then holds
//! at most [`BACKLOG_LIMIT`] bytes plus what was already in flight.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use pm_core::wire::Frame;
use tokio::sync::{mpsc, Notify};

/// Queued bytes beyond which [`FrameSender::is_backlogged`] says to wait.
pub const BACKLOG_LIMIT: usize = 4 << 20;

/// The bytes queued on one connection but not yet written (or, for an in-memory
/// connection, not yet received).
#[derive(Debug, Default)]
struct Backlog {
    bytes: AtomicUsize,
    /// Woken when the backlog falls back to [`BACKLOG_LIMIT`] or under.
    drained: Notify,
}

impl Backlog {
    fn queued(&self, bytes: usize) {
        self.bytes.fetch_add(bytes, Ordering::AcqRel);
    }

    fn written(&self, bytes: usize) {
        let before = self.bytes.fetch_sub(bytes, Ordering::AcqRel);
        if before > BACKLOG_LIMIT && before.saturating_sub(bytes) <= BACKLOG_LIMIT {
            self.drained.notify_waiters();
        }
    }

    fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }
}

/// A new outgoing queue: the sending half for the connection's users, the receiving half
/// for whatever writes (or delivers) its frames.
pub(crate) fn frame_queue() -> (FrameSender, FrameQueue) {
    let (tx, rx) = mpsc::unbounded_channel();
    let backlog = Arc::new(Backlog::default());
    (
        FrameSender {
            queue: tx,
            backlog: backlog.clone(),
        },
        FrameQueue { queue: rx, backlog },
    )
}

/// The sending half of a connection. Clones send on the same connection; frames from one
/// clone keep their order. Sending never blocks: frames queue until the writer takes them.
/// A sender that could flood a peer that has stopped reading waits for
/// [`FrameSender::writable`] before it sends.
#[derive(Debug, Clone)]
pub struct FrameSender {
    queue: mpsc::UnboundedSender<Frame>,
    backlog: Arc<Backlog>,
}

impl FrameSender {
    /// Queues a frame. Fails with [`TransportError::Closed`](crate::TransportError::Closed)
    /// once the connection is gone.
    pub fn send(&self, frame: Frame) -> Result<(), crate::TransportError> {
        let len = frame.wire().len();
        self.backlog.queued(len);
        self.queue.send(frame).map_err(|_| {
            self.backlog.written(len);
            crate::TransportError::Closed
        })
    }

    /// Bytes queued on this connection and not yet written.
    pub fn backlog(&self) -> usize {
        self.backlog.bytes()
    }

    /// Whether more than [`BACKLOG_LIMIT`] bytes are queued: the peer is not keeping up.
    pub fn is_backlogged(&self) -> bool {
        self.backlog.bytes() > BACKLOG_LIMIT
    }

    /// Completes once at most [`BACKLOG_LIMIT`] bytes are queued, or once the connection can
    /// no longer send (the next [`FrameSender::send`] then fails). Never completes while the
    /// peer stops reading: bound the wait with a deadline where one applies.
    pub async fn writable(&self) {
        loop {
            let drained = self.backlog.drained.notified();
            tokio::pin!(drained);
            // Registered before the check, so a drain between the check and the wait wakes it.
            drained.as_mut().enable();
            if !self.is_backlogged() || self.queue.is_closed() {
                return;
            }
            tokio::select! {
                () = drained => {}
                () = self.queue.closed() => return,
            }
        }
    }

    /// Whether the connection can no longer send.
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// Completes when the connection can no longer send.
    pub async fn closed(&self) {
        self.queue.closed().await
    }
}

/// The receiving half of an outgoing queue, held by the connection's writer.
#[derive(Debug)]
pub(crate) struct FrameQueue {
    queue: mpsc::UnboundedReceiver<Frame>,
    backlog: Arc<Backlog>,
}

impl FrameQueue {
    /// The next queued frame, or `None` once every sender is dropped and the queue is empty.
    /// The frame still counts in the backlog until [`FrameQueue::written`] says otherwise.
    pub(crate) async fn recv(&mut self) -> Option<Frame> {
        self.queue.recv().await
    }

    /// The next queued frame if there is one.
    pub(crate) fn try_recv(&mut self) -> Option<Frame> {
        self.queue.try_recv().ok()
    }

    /// `bytes` of taken frames have left the process (or reached the peer's receiver).
    pub(crate) fn written(&self, bytes: usize) {
        self.backlog.written(bytes);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use pm_core::wire::encode_call;

    use super::*;

    fn frame_of(bytes: usize) -> Frame {
        encode_call(1, "m", None, &(vec![0u8; bytes],), usize::MAX).expect("fits")
    }

    #[tokio::test]
    async fn the_backlog_counts_queued_bytes_until_they_are_written() {
        let (sender, mut queue) = frame_queue();
        let frame = frame_of(100);
        let len = frame.wire().len();
        sender.send(frame).expect("open");
        assert_eq!(sender.backlog(), len);
        let taken = queue.recv().await.expect("queued");
        assert_eq!(sender.backlog(), len, "taken is not yet written");
        queue.written(taken.wire().len());
        assert_eq!(sender.backlog(), 0);
    }

    #[tokio::test]
    async fn writable_waits_while_backlogged_and_wakes_once_drained() {
        let (sender, mut queue) = frame_queue();
        sender.send(frame_of(BACKLOG_LIMIT)).expect("open");
        assert!(sender.is_backlogged());
        let waiting = tokio::spawn({
            let sender = sender.clone();
            async move { sender.writable().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "writable while backlogged");
        let taken = queue.recv().await.expect("queued");
        queue.written(taken.wire().len());
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("woken once drained")
            .expect("no panic");
    }

    #[tokio::test]
    async fn writable_completes_once_the_queue_is_gone() {
        let (sender, queue) = frame_queue();
        let big = frame_of(BACKLOG_LIMIT);
        let queued = big.wire().len();
        sender.send(big).expect("open");
        let waiting = tokio::spawn({
            let sender = sender.clone();
            async move { sender.writable().await }
        });
        tokio::task::yield_now().await;
        drop(queue);
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("woken by the close")
            .expect("no panic");
        assert!(sender.send(frame_of(1)).is_err());
        assert_eq!(sender.backlog(), queued, "a refused frame is not counted");
    }
}
