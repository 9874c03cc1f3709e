//! In-memory connections between threads of one OS process.

use crate::connection::{Connection, FrameReceiver};
use crate::queue::frame_queue;

/// Two connected ends of an in-memory connection. Frames move between them without being
/// copied or re-checked; the frame limit is enforced when a frame is built. Dropping every
/// sender of one end makes the other end's receiver return `None`.
pub fn channel_pair() -> (Connection, Connection) {
    let (a_tx, b_rx) = frame_queue();
    let (b_tx, a_rx) = frame_queue();
    let a = Connection {
        sender: a_tx,
        receiver: FrameReceiver::channel(a_rx),
        description: "channel",
        writer: None,
    };
    let b = Connection {
        sender: b_tx,
        receiver: FrameReceiver::channel(b_rx),
        description: "channel",
        writer: None,
    };
    (a, b)
}

#[cfg(test)]
mod tests {
    use pm_core::wire::{Frame, FrameKind, Incoming};

    use super::*;

    #[tokio::test]
    async fn frames_cross_a_channel_pair_and_close_ends_the_peer() {
        let (a, mut b) = channel_pair();
        a.sender
            .send(Frame::empty(FrameKind::Cancel, 4))
            .expect("open");
        match b.receiver.recv().await {
            Some(Ok(Incoming::Frame(frame))) => assert_eq!(frame.id(), 4),
            other => panic!("unexpected {other:?}"),
        }
        drop(a);
        assert!(b.receiver.recv().await.is_none());
        assert!(b.sender.is_closed());
    }
}
