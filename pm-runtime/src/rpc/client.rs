//! The client side of one connection: ids, multiplexing, deadlines, cancellation.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use pm_core::trace::TraceContext;
use pm_core::wire::{self, Frame, FrameKind, Incoming};
use pm_core::{Error, RemoteError, RemoteErrorKind};
use pm_transport::{Connection, FrameReceiver, FrameSender};
use tokio::sync::{watch, Semaphore};

use super::reply_slots::{Reply, ReplySlots, SlotKey};
use crate::spawn::ExitReceiver;

/// The internal method name of the health check.
pub(crate) const HEALTH_METHOD: &str = "$health";

/// How long the reader waits for the process's exit status after the connection closes, so
/// the error of calls in flight can say how the process ended.
const EXIT_REASON_WAIT: Duration = Duration::from_millis(300);

/// State shared by the callers and the reader task.
struct Shared {
    process: String,
    /// The calls in flight, each waiting in a slot named by its id, and the closing error:
    /// once it is set, new calls fail with it.
    replies: ReplySlots,
    /// Raised the moment the reader sees the connection end, before it waits to learn how
    /// the process ended, and by an abort: from then on nobody picks this connection for a
    /// new call. Every call checks it, so it is an atomic rather than the slots' lock.
    ended: std::sync::atomic::AtomicBool,
    closed_signal: watch::Sender<bool>,
}

/// A multiplexed RPC connection to one process incarnation.
pub(crate) struct RpcConnection {
    shared: Arc<Shared>,
    /// Dropped by [`RpcConnection::abort`], so an aborted connection closes at once (the
    /// peer sees end-of-stream) even while callers or supervision still hold this value.
    sender: Mutex<Option<FrameSender>>,
    permits: Semaphore,
    max_frame: usize,
    /// The OS pid the process reported, for logs.
    pid: u32,
}

impl std::fmt::Debug for RpcConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcConnection")
            .field("process", &self.shared.process)
            .field("pid", &self.pid)
            .finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl RpcConnection {
    /// Takes over a connection whose handshake is done and starts its reader task.
    ///
    /// `exit_reason` is told how the process ended (exit code or signal), when that is known.
    pub(crate) fn start(
        conn: Connection,
        process: &str,
        pid: u32,
        max_frame: usize,
        max_in_flight: usize,
        exit_reason: Option<ExitReceiver>,
    ) -> Arc<Self> {
        let (closed_signal, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            process: process.to_owned(),
            replies: ReplySlots::default(),
            ended: std::sync::atomic::AtomicBool::new(false),
            closed_signal,
        });
        tokio::spawn(read_replies(conn.receiver, shared.clone(), exit_reason));
        Arc::new(Self {
            shared,
            sender: Mutex::new(Some(conn.sender)),
            permits: Semaphore::new(max_in_flight),
            max_frame,
            pid,
        })
    }

    /// The frame limit of this connection.
    pub(crate) fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Whether the connection is gone (or has just ended and its calls are being failed).
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.ended.load(Ordering::Acquire)
    }

    /// Completes once the connection is gone.
    pub(crate) async fn closed(&self) {
        let mut signal = self.shared.closed_signal.subscribe();
        let _ = signal.wait_for(|closed| *closed).await;
    }

    /// Calls `method` with arguments already encoded; returns the `ReplyOk` frame.
    pub(crate) async fn call(
        &self,
        method: &str,
        args: &[u8],
        deadline: Option<Duration>,
        trace: Option<&TraceContext>,
    ) -> Result<Frame, Error> {
        // One deadline for the whole call: waiting for a free slot counts too. A deadline too
        // far away to represent is no deadline.
        // The clock is read only for a call with a deadline.
        let due = deadline.and_then(|limit| tokio::time::Instant::now().checked_add(limit));
        let timed_out = || Error::Timeout {
            method: method.to_owned(),
            after: deadline.unwrap_or_default(),
        };
        // Health checks do not queue behind calls: a process busy with `max_in_flight` long
        // calls is busy, not unhealthy (the process side gives them their own small bound).
        // The waits for a slot and for a backlog to drain are rare, and boxed: their futures
        // would otherwise make every call's future larger than the allocator's fast sizes.
        let _permit = if method == HEALTH_METHOD {
            None
        } else {
            Some(match self.permits.try_acquire() {
                Ok(permit) => permit,
                Err(tokio::sync::TryAcquireError::Closed) => {
                    return Err(Error::Transport("connection closed".into()))
                }
                Err(tokio::sync::TryAcquireError::NoPermits) => Box::pin(self.wait_for_slot(due))
                    .await
                    .ok_or_else(timed_out)??,
            })
        };
        // A process that stops reading (stopped, hung) must not make its callers' frames pile
        // up without bound: wait, within the deadline, while too much is queued for it.
        let backlogged = lock(&self.sender)
            .as_ref()
            .filter(|sender| sender.is_backlogged())
            .cloned();
        if let Some(sender) = backlogged {
            if !Box::pin(self.wait_writable(sender, due)).await {
                return Err(timed_out());
            }
        }
        let remaining = due.map(|due| due.saturating_duration_since(tokio::time::Instant::now()));
        let reply = self.send_request(true, |id| {
            Ok(wire::encode_call_raw(
                id,
                method,
                remaining,
                trace,
                args,
                self.max_frame,
            )?)
        })?;
        // A reply not awaited to the end (the deadline passed, the caller dropped the call)
        // gives its slot back and tells the process to cancel the call.
        let frame = match due {
            Some(due) => match tokio::time::timeout_at(due, reply).await {
                Ok(outcome) => outcome?,
                Err(_) => return Err(timed_out()),
            },
            None => reply.await?,
        };
        match frame.kind() {
            FrameKind::ReplyOk => Ok(frame),
            _ => Err(remote_to_error(
                &self.shared.process,
                method,
                wire::decode_error(&frame),
                deadline,
            )),
        }
    }

    /// A call slot, waited for until `due`: `None` when `due` passes first, an error when the
    /// connection closes.
    async fn wait_for_slot(
        &self,
        due: Option<tokio::time::Instant>,
    ) -> Option<Result<tokio::sync::SemaphorePermit<'_>, Error>> {
        let acquire = self.permits.acquire();
        let permit = match due {
            Some(due) => tokio::time::timeout_at(due, acquire).await.ok()?,
            None => acquire.await,
        };
        Some(permit.map_err(|_| Error::Transport("connection closed".into())))
    }

    /// Waits until `sender` may take frames again or the connection ends; `false` when `due`
    /// passes first. An abort ends the wait too: the clone of the sender held here must not
    /// keep the connection open.
    async fn wait_writable(&self, sender: FrameSender, due: Option<tokio::time::Instant>) -> bool {
        let writable = async {
            tokio::select! {
                () = sender.writable() => {}
                () = self.closed() => {}
            }
        };
        match due {
            Some(due) => tokio::time::timeout_at(due, writable).await.is_ok(),
            None => {
                writable.await;
                true
            }
        }
    }

    /// Takes a reply slot, builds the frame for its id and sends it. With `cancel_on_drop`,
    /// dropping the returned wait before its reply arrives sends the process a cancel.
    fn send_request(
        &self,
        cancel_on_drop: bool,
        frame: impl FnOnce(u64) -> Result<Frame, Error>,
    ) -> Result<AwaitReply<'_>, Error> {
        let key = self.shared.replies.take()?;
        let mut reply = AwaitReply {
            conn: self,
            key,
            cancel_on_drop: false,
            finished: false,
        };
        // Until the frame is out, a dropped wait only gives the slot back.
        if !self.send(frame(key.id())?) {
            return Err(self.closed_error());
        }
        reply.cancel_on_drop = cancel_on_drop;
        Ok(reply)
    }

    /// Queues a frame; `false` once the connection is closed or aborted.
    fn send(&self, frame: Frame) -> bool {
        lock(&self.sender)
            .as_ref()
            .is_some_and(|sender| sender.send(frame).is_ok())
    }

    fn closed_error(&self) -> Error {
        self.shared
            .replies
            .closed()
            .unwrap_or_else(|| Error::Transport("connection closed".into()))
    }

    /// Ends every call in flight with `error`, refuses new ones and closes the connection:
    /// frames already queued are still written, then the peer sees end-of-stream, and the
    /// reader stops (so a socket some other process still holds open is released too).
    pub(crate) fn abort(&self, error: Error) {
        self.shared.ended.store(true, Ordering::Release);
        self.shared.replies.close(&error);
        self.shared.closed_signal.send_replace(true);
        lock(&self.sender).take();
    }

    /// Asks the process to shut down gracefully within `grace`, and waits for its answer or
    /// for the connection to close.
    pub(crate) async fn shutdown(&self, grace: Duration) -> Result<(), Error> {
        let reply = self.send_request(false, |id| {
            let mut builder = wire::FrameBuilder::new(FrameKind::Shutdown, id, self.max_frame);
            builder.value(&u64::try_from(grace.as_millis()).unwrap_or(u64::MAX))?;
            Ok(builder.finish()?)
        })?;
        reply.await.map(|_| ())
    }
}

/// Waits for the reply in one slot. Dropped before the reply is taken, it gives the slot
/// back, and, when the reply had not arrived and `cancel_on_drop` is set, sends the process a
/// cancel for the call.
struct AwaitReply<'a> {
    conn: &'a RpcConnection,
    key: SlotKey,
    cancel_on_drop: bool,
    finished: bool,
}

impl Future for AwaitReply<'_> {
    type Output = Reply;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Reply> {
        let this = self.get_mut();
        let reply = this.conn.shared.replies.poll_reply(this.key, cx);
        this.finished = reply.is_ready();
        reply
    }
}

impl Drop for AwaitReply<'_> {
    fn drop(&mut self) {
        if !self.finished && self.conn.shared.replies.abandon(self.key) && self.cancel_on_drop {
            self.conn
                .send(Frame::empty(FrameKind::Cancel, self.key.id()));
        }
    }
}

/// Maps a process's error reply to the caller's error.
fn remote_to_error(
    process: &str,
    method: &str,
    error: RemoteError,
    deadline: Option<Duration>,
) -> Error {
    match error.kind {
        RemoteErrorKind::UnknownMethod
        | RemoteErrorKind::InvalidArguments
        | RemoteErrorKind::TooLarge => Error::Protocol(format!(
            "`{process}` refused the call to `{method}`: {}",
            error.message
        )),
        RemoteErrorKind::DeadlineExceeded => Error::Timeout {
            method: method.to_owned(),
            after: deadline.unwrap_or_default(),
        },
        RemoteErrorKind::ShuttingDown => Error::Unavailable {
            process: process.to_owned(),
            reason: error.message,
        },
        RemoteErrorKind::InitFailed => Error::Spawn {
            process: process.to_owned(),
            reason: error.message,
        },
        RemoteErrorKind::Application
        | RemoteErrorKind::Panic
        | RemoteErrorKind::Cancelled
        | RemoteErrorKind::Internal => Error::Remote {
            method: method.to_owned(),
            error,
        },
    }
}

async fn read_replies(
    mut receiver: FrameReceiver,
    shared: Arc<Shared>,
    exit_reason: Option<ExitReceiver>,
) {
    let mut aborted = shared.closed_signal.subscribe();
    // One wait for the abort, polled on every turn (not a new one per frame received).
    let abort = aborted.wait_for(|closed| *closed);
    tokio::pin!(abort);
    let mut reason = loop {
        let received = tokio::select! {
            biased;
            // Aborted: the callers have their error; stop reading and release the socket.
            _ = &mut abort => return,
            received = receiver.recv() => received,
        };
        match received {
            Some(Ok(Incoming::Frame(frame))) => match frame.kind() {
                FrameKind::ReplyOk | FrameKind::ReplyErr => {
                    let id = frame.id();
                    shared.replies.complete(id, Ok(frame));
                }
                other => {
                    tracing::warn!(process = %shared.process, kind = ?other, "ignored an unexpected frame");
                }
            },
            Some(Ok(Incoming::Oversize { id, len, .. })) => {
                shared.replies.complete(
                    id,
                    Err(Error::Protocol(format!(
                        "the reply of {len} bytes exceeds the frame limit"
                    ))),
                );
            }
            Some(Err(err)) => break format!("connection failed: {err}"),
            None => break "connection closed".to_owned(),
        }
    };
    shared.ended.store(true, Ordering::Release);
    if let Some(mut exit) = exit_reason {
        if let Ok(Ok(status)) =
            tokio::time::timeout(EXIT_REASON_WAIT, exit.wait_for(Option::is_some)).await
        {
            if let Some(status) = status.as_ref() {
                reason = status.reason.to_string();
            }
        }
    }
    let error = Error::ProcessExited {
        process: shared.process.clone(),
        reason,
    };
    // An abort (stop, kill) may already have said why: the slots keep its word.
    shared.replies.close(&error);
    shared.closed_signal.send_replace(true);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_counts_as_closed_as_soon_as_it_ends_before_the_exit_status_is_known() {
        let (ours, theirs) = pm_transport::channel_pair();
        // An exit status that never arrives: the reader waits `EXIT_REASON_WAIT` for it.
        let (_exit_tx, exit_rx) = watch::channel(None);
        let rpc = RpcConnection::start(ours, "test", 1, 1 << 20, 8, Some(exit_rx));
        assert!(!rpc.is_closed());
        drop(theirs);
        let noticed = tokio::time::timeout(EXIT_REASON_WAIT / 2, async {
            while !rpc.is_closed() {
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(
            noticed.is_ok(),
            "still open for new calls while the exit status is awaited"
        );
    }
}
