//! Connections over byte streams: socketpairs, unix and tcp sockets.

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter};

use crate::codec::FrameReader;
use crate::connection::{Connection, FrameReceiver};
use crate::queue::{frame_queue, FrameQueue};

const WRITE_BUFFER: usize = 64 * 1024;
/// Frames queued this soon after the previous write are taken for a burst (a round trip
/// between processes takes longer than this).
const BURST: std::time::Duration = std::time::Duration::from_micros(5);

/// A connection over a byte stream's read and write halves, accepting frame bodies up to
/// `max_frame` bytes.
///
/// Spawns the writer task on the current tokio runtime (so it panics outside one, like
/// `tokio::spawn`). The writer batches queued frames into as few writes as it can, and shuts
/// the write half down once every [`FrameSender`](crate::FrameSender) is dropped, so the peer sees end-of-stream.
pub fn from_stream<R, W>(
    read: R,
    write: W,
    max_frame: usize,
    description: &'static str,
) -> Connection
where
    R: AsyncRead + Send + 'static,
    W: AsyncWrite + Send + 'static,
{
    let (sender, queue) = frame_queue();
    let writer = tokio::spawn(write_frames(Box::pin(write), queue, description));
    Connection {
        sender,
        receiver: FrameReceiver::stream(FrameReader::new(Box::pin(read), max_frame)),
        description,
        writer: Some(writer),
    }
}

/// A connection over a connected unix stream (a socketpair end or an accepted socket).
pub fn from_unix_stream(
    stream: tokio::net::UnixStream,
    max_frame: usize,
    description: &'static str,
) -> Connection {
    let (read, write) = stream.into_split();
    from_stream(read, write, max_frame, description)
}

async fn write_frames(
    io: std::pin::Pin<Box<dyn AsyncWrite + Send>>,
    mut queue: FrameQueue,
    description: &'static str,
) {
    let mut out = BufWriter::with_capacity(WRITE_BUFFER, io);
    // When the previous write ended: a frame queued within `BURST` of it is part of a burst.
    let mut last_write = std::time::Instant::now();
    while let Some(frame) = queue.recv().await {
        // The bytes of this batch: they leave the backlog once flushed.
        let mut batch = frame.wire().len();
        if let Err(err) = out.write_all(frame.wire()).await {
            tracing::debug!(%err, transport = description, "write failed; closing connection");
            return;
        }
        // Take whatever else is queued before paying for a flush. In a burst, when nothing
        // else is queued yet, let the tasks that are ready run first: on a multi-thread
        // runtime the task that queued this frame wakes the writer into the scheduler's next
        // slot, so without this turn every reply of a burst would go out in a write of its
        // own. A frame that follows the previous write by more than `BURST` (one call at a
        // time: a whole round trip apart) is written at once, without the extra turn.
        let mut yielded = last_write.elapsed() > BURST;
        loop {
            match queue.try_recv() {
                Some(frame) => {
                    batch += frame.wire().len();
                    if let Err(err) = out.write_all(frame.wire()).await {
                        tracing::debug!(%err, transport = description, "write failed; closing connection");
                        return;
                    }
                }
                None if !yielded => {
                    yielded = true;
                    tokio::task::yield_now().await;
                }
                None => break,
            }
        }
        if let Err(err) = out.flush().await {
            tracing::debug!(%err, transport = description, "flush failed; closing connection");
            return;
        }
        queue.written(batch);
        last_write = std::time::Instant::now();
    }
    let _ = out.shutdown().await;
}

#[cfg(test)]
mod tests {
    use bytes::BufMut;
    use pm_core::wire::{encode_call, Incoming, WireError};
    use tokio::io::AsyncWriteExt;

    use super::*;
    use crate::TransportError;

    fn pair(max: usize) -> (Connection, Connection) {
        let (a, b) = tokio::net::UnixStream::pair().expect("socketpair");
        (
            from_unix_stream(a, max, "test"),
            from_unix_stream(b, max, "test"),
        )
    }

    #[tokio::test]
    async fn many_frames_cross_a_socketpair_in_order() {
        let (a, mut b) = pair(1024);
        for id in 0..100u64 {
            let frame = encode_call(id, "m", None, &(id,), 1024).expect("fits");
            a.sender.send(frame).expect("open");
        }
        for id in 0..100u64 {
            match b.receiver.recv().await {
                Some(Ok(Incoming::Frame(frame))) => assert_eq!(frame.id(), id),
                other => panic!("unexpected {other:?}"),
            }
        }
        drop(a);
        assert!(b.receiver.recv().await.is_none());
    }

    /// A frame larger than a read chunk, with a recognisable payload.
    fn large_frame(id: u64, len: usize) -> pm_core::wire::Frame {
        let payload = bytes::Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>());
        encode_call(id, "m", None, &(payload,), 4 << 20).expect("fits")
    }

    #[tokio::test]
    async fn a_large_frame_arriving_in_pieces_is_read_whole_and_the_frames_around_it_too() {
        let (raw, other) = tokio::net::UnixStream::pair().expect("socketpair");
        let mut conn = from_unix_stream(other, 4 << 20, "test");
        let (_, mut write) = raw.into_split();
        let small = encode_call(1, "m", None, &(1u8,), 1024).expect("fits");
        let large = large_frame(2, 300 * 1024);
        let after = encode_call(3, "m", None, &(3u8,), 1024).expect("fits");
        // One stream: the large frame starts in the same write as the frame before it and
        // ends in the same write as the frame after it, cut at odd places in between.
        let mut bytes = Vec::new();
        bytes.extend_from_slice(small.wire());
        bytes.extend_from_slice(large.wire());
        bytes.extend_from_slice(after.wire());
        let writer = tokio::spawn(async move {
            for piece in bytes.chunks(70_001) {
                write.write_all(piece).await.expect("write");
                tokio::task::yield_now().await;
            }
            write
        });
        for expected in [&small, &large, &after] {
            match conn.receiver.recv().await {
                Some(Ok(Incoming::Frame(frame))) => assert_eq!(&frame, expected),
                other => panic!("unexpected {other:?}"),
            }
        }
        drop(writer.await.expect("writer"));
        assert!(conn.receiver.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_read_abandoned_in_the_middle_of_a_large_frame_loses_no_bytes() {
        let (raw, other) = tokio::net::UnixStream::pair().expect("socketpair");
        let mut conn = from_unix_stream(other, 4 << 20, "test");
        let (_, mut write) = raw.into_split();
        // Small enough to sit in the socket's buffer while nothing reads it.
        let large = large_frame(7, 100 * 1024);
        let (head, tail) = large.wire().split_at(80 * 1024);
        write.write_all(head).await.expect("write");
        // The receive gives up (as a `select!` branch not taken does) with the frame half in.
        let abandoned =
            tokio::time::timeout(std::time::Duration::from_millis(50), conn.receiver.recv()).await;
        assert!(abandoned.is_err(), "the frame cannot be complete yet");
        write.write_all(tail).await.expect("write");
        match conn.receiver.recv().await {
            Some(Ok(Incoming::Frame(frame))) => assert_eq!(frame, large),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_stream_closed_in_the_middle_of_a_large_frame_ends_with_a_wire_error() {
        let (raw, other) = tokio::net::UnixStream::pair().expect("socketpair");
        let mut conn = from_unix_stream(other, 4 << 20, "test");
        let (_, mut write) = raw.into_split();
        let large = large_frame(7, 100 * 1024);
        write
            .write_all(&large.wire()[..80 * 1024])
            .await
            .expect("write");
        drop(write);
        match conn.receiver.recv().await {
            Some(Err(TransportError::Wire(WireError::Malformed(message)))) => {
                assert!(message.contains("middle of a frame"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(conn.receiver.recv().await.is_none());
    }

    #[tokio::test]
    async fn garbage_bytes_end_the_stream_with_a_wire_error() {
        let (raw, other) = tokio::net::UnixStream::pair().expect("socketpair");
        let mut conn = from_unix_stream(other, 1024, "test");
        let (_, mut write) = raw.into_split();
        let mut junk = Vec::new();
        junk.put_u32(2);
        junk.put_u16(0xffff);
        write.write_all(&junk).await.expect("write");
        match conn.receiver.recv().await {
            Some(Err(TransportError::Wire(_))) => {}
            other => panic!("unexpected {other:?}"),
        }
        assert!(conn.receiver.recv().await.is_none());
    }

    #[tokio::test]
    async fn an_oversized_frame_is_reported_and_the_next_frame_still_arrives() {
        let (a, mut b) = pair(64);
        let big = encode_call(1, "m", None, &(vec![1u8; 500],), 4096).expect("fits");
        let small = encode_call(2, "m", None, &(), 64).expect("fits");
        a.sender.send(big).expect("open");
        a.sender.send(small).expect("open");
        match b.receiver.recv().await {
            Some(Ok(Incoming::Oversize { id: 1, .. })) => {}
            other => panic!("unexpected {other:?}"),
        }
        match b.receiver.recv().await {
            Some(Ok(Incoming::Frame(frame))) => assert_eq!(frame.id(), 2),
            other => panic!("unexpected {other:?}"),
        }
    }
}
