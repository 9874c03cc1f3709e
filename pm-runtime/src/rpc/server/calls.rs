//! One connection's calls after the handshake: each polled once where it is read, then (if it
//! has something to wait for) run by a runner task, bounded, cancellable; each ending in
//! exactly one reply.

use super::first_poll::{FirstOutcome, FirstPoll, Placement};
use super::runners::{InFlight, Job, Runners};
use super::*;

/// How many health checks may run at once on one connection. They do not take call slots
/// (a process busy with long calls is busy, not unhealthy), so they get a bound of their own.
const HEALTH_CHECKS_IN_FLIGHT: usize = 2;

pub(super) struct CallLoop<P: Process> {
    cell: ProcessCell<P>,
    sender: FrameSender,
    in_flight: InFlight,
    permits: Arc<Semaphore>,
    health_permits: Arc<Semaphore>,
    runners: Runners,
    first_poll: Arc<FirstPoll>,
    opts: ServeOptions,
}

impl<P: Process> Drop for CallLoop<P> {
    /// However serving ends (even by being aborted, as an in-process instance is when it is
    /// killed), no call's task outlives it.
    fn drop(&mut self) {
        self.abort_all();
        self.runners.close();
    }
}

/// Whether `frame` calls the health check (which bypasses the call slots). Reads only the
/// method name: the call is decoded once, when it starts.
fn is_health_call(frame: &Frame) -> bool {
    wire::calls_method(frame, HEALTH_METHOD)
}

impl<P: Process> CallLoop<P> {
    /// The calls of one accepted connection to `cell`, replying through `sender`.
    pub(super) fn new(cell: ProcessCell<P>, sender: FrameSender, opts: ServeOptions) -> Self {
        let in_flight: InFlight = Arc::new(Mutex::new(Default::default()));
        let first_poll = Arc::new(FirstPoll::new());
        Self {
            runners: Runners::new(
                sender.clone(),
                in_flight.clone(),
                first_poll.clone(),
                opts.max_frame,
            ),
            cell,
            sender,
            in_flight,
            permits: Arc::new(Semaphore::new(opts.max_in_flight)),
            health_permits: Arc::new(Semaphore::new(HEALTH_CHECKS_IN_FLIGHT)),
            first_poll,
            opts,
        }
    }

    pub(super) async fn run(self, mut conn: Connection) -> ServeEnd {
        // Calls that arrived while every slot was taken, oldest first. Reading goes on while
        // they wait, so cancels and a shutdown still get through at full capacity; once as
        // many calls wait as may run, reading stops and the transport pushes back.
        let mut waiting: std::collections::VecDeque<Frame> = std::collections::VecDeque::new();
        loop {
            // A client that does not read its replies is not read from either: its replies
            // stay bounded, and its socket pushes back on it.
            let backlogged = self.sender.is_backlogged();
            let can_read = waiting.len() < self.opts.max_in_flight && !backlogged;
            // In this order: calls waiting for a slot start before more are read.
            let incoming = tokio::select! {
                biased;
                permit = self.permits.clone().acquire_owned(), if !waiting.is_empty() && !backlogged => {
                    let (Ok(permit), Some(frame)) = (permit, waiting.pop_front()) else {
                        continue;
                    };
                    self.start_call(&frame, permit);
                    continue;
                }
                () = self.sender.writable(), if backlogged => {
                    if self.sender.is_closed() {
                        // The writer is gone: the client will never read another reply.
                        self.abort_all();
                        return ServeEnd::Disconnected;
                    }
                    continue;
                }
                incoming = conn.receiver.recv(), if can_read => incoming,
            };
            let incoming = match incoming {
                None => {
                    self.abort_all();
                    return ServeEnd::Disconnected;
                }
                Some(Err(err)) => {
                    if !matches!(err, TransportError::Closed) {
                        tracing::warn!(process = P::NAME, %err, "connection failed");
                    }
                    self.abort_all();
                    return ServeEnd::Disconnected;
                }
                Some(Ok(incoming)) => incoming,
            };
            let frame = match incoming {
                Incoming::Frame(frame) => frame,
                Incoming::Oversize { kind, id, len } => {
                    tracing::warn!(process = P::NAME, len, id, "refused an oversized frame");
                    if kind == FrameKind::Call as u8 {
                        let error = RemoteError::new(
                            RemoteErrorKind::TooLarge,
                            format!(
                                "call of {len} bytes exceeds the process's frame limit of {} bytes",
                                self.opts.max_frame
                            ),
                        );
                        self.send(encode_error(id, &error, self.opts.max_frame));
                    }
                    continue;
                }
            };
            match frame.kind() {
                FrameKind::Call if is_health_call(&frame) => {
                    match self.health_permits.clone().try_acquire_owned() {
                        Ok(permit) => self.start_call(&frame, permit),
                        Err(_) => {
                            let error = RemoteError::new(
                                RemoteErrorKind::Internal,
                                format!(
                                    "{HEALTH_CHECKS_IN_FLIGHT} health checks are already running"
                                ),
                            );
                            self.send(encode_error(frame.id(), &error, self.opts.max_frame));
                        }
                    }
                }
                FrameKind::Call => match self.permits.clone().try_acquire_owned() {
                    Ok(permit) if waiting.is_empty() => self.start_call(&frame, permit),
                    _ => waiting.push_back(frame),
                },
                FrameKind::Cancel => {
                    let id = frame.id();
                    let queued = waiting.len();
                    waiting.retain(|call| call.id() != id);
                    if waiting.len() == queued {
                        self.cancel(id);
                    }
                }
                FrameKind::Shutdown => {
                    for call in waiting.drain(..) {
                        let error = RemoteError::new(
                            RemoteErrorKind::ShuttingDown,
                            format!("process `{}` is shutting down", P::NAME),
                        );
                        self.send(encode_error(call.id(), &error, self.opts.max_frame));
                    }
                    let grace = frame
                        .decode::<u64>()
                        .map(Duration::from_millis)
                        .unwrap_or_default();
                    self.shutdown(&mut conn, frame.id(), grace).await;
                    return ServeEnd::Shutdown;
                }
                other => {
                    tracing::warn!(process = P::NAME, kind = ?other, "ignored an unexpected frame");
                }
            }
        }
    }

    fn send(&self, frame: Frame) {
        // A send fails only when the connection is gone, which the read loop notices.
        let _ = self.sender.send(frame);
    }

    fn start_call(&self, frame: &Frame, permit: tokio::sync::OwnedSemaphorePermit) {
        let id = frame.id();
        if lock(&self.in_flight).contains_key(&id) {
            // Replacing the registered call would leave it running where no cancel, abort or
            // drain could reach it.
            let error = RemoteError::new(
                RemoteErrorKind::InvalidArguments,
                format!("a call with id {id} is already in flight on this connection"),
            );
            self.send(encode_error(id, &error, self.opts.max_frame));
            return;
        }
        let reply = ReplyTo {
            id,
            max_frame: self.opts.max_frame,
        };
        let call = match decode_call(frame) {
            Ok(call) => call,
            Err(err) => {
                let error = RemoteError::new(RemoteErrorKind::InvalidArguments, err.to_string());
                self.send(encode_error(id, &error, self.opts.max_frame));
                return;
            }
        };
        let method = call.method;
        let mut future = match call_future::<P>(&self.cell, method, call.args, call.trace, reply) {
            Ok(future) => future,
            Err(error) => {
                self.send(encode_error(id, &error, self.opts.max_frame));
                return;
            }
        };
        // A call read while its client's replies are backed up waits for them to drain on
        // its runner; a call of a method seen to be quick may finish here (see `first_poll`).
        let placement = if self.sender.is_backlogged() {
            Placement::Runner
        } else {
            self.first_poll.place(method)
        };
        let mut first_poll = None;
        if let Placement::Loop(ticket) = placement {
            match self.first_poll.poll(ticket, &mut future) {
                FirstOutcome::Done(result) => {
                    drop(future);
                    self.send(
                        result
                            .unwrap_or_else(|error| encode_error(id, &error, self.opts.max_frame)),
                    );
                    drop(permit);
                    return;
                }
                FirstOutcome::Waiting { took } => first_poll = Some(took),
            }
        }
        let job = Job {
            id,
            permit,
            future,
            deadline: call.deadline,
            first_poll,
            probe: match placement {
                Placement::Probe(ticket) => Some(ticket),
                Placement::Loop(_) | Placement::Runner => None,
            },
        };
        // Registered under the lock the runner needs to deregister, so it cannot finish first.
        let mut registry = lock(&self.in_flight);
        self.runners.start(job, &mut registry);
    }

    fn cancel(&self, id: u64) {
        if let Some(task) = lock(&self.in_flight).remove(&id) {
            task.abort();
            tracing::debug!(process = P::NAME, id, "call cancelled by the client");
        }
    }

    fn abort_all(&self) {
        for (_, task) in lock(&self.in_flight).drain() {
            task.abort();
        }
    }

    /// Refuse new calls, run the shutdown hooks, drain in-flight calls within `grace`, abort
    /// the rest with an error reply, then acknowledge.
    async fn shutdown(&self, conn: &mut Connection, id: u64, grace: Duration) {
        // The grace period comes off the wire: cap it rather than overflow the clock.
        let grace = grace.min(Duration::from_secs(24 * 60 * 60));
        let deadline = tokio::time::Instant::now() + grace;
        let hooks = run_hooks(P::__shutdown(&self.cell));
        let drain = async {
            // Every permit back means no call is in flight.
            let all = u32::try_from(self.opts.max_in_flight).unwrap_or(u32::MAX);
            let _ = self.permits.acquire_many(all).await;
        };
        let refuse_new = async {
            let shutting_down = || {
                RemoteError::new(
                    RemoteErrorKind::ShuttingDown,
                    format!("process `{}` is shutting down", P::NAME),
                )
            };
            loop {
                // Refusals are replies too: a client that reads none is not read from.
                if self.sender.is_backlogged() {
                    self.sender.writable().await;
                    if self.sender.is_closed() {
                        break;
                    }
                    continue;
                }
                let Some(Ok(incoming)) = conn.receiver.recv().await else {
                    break;
                };
                match incoming {
                    Incoming::Frame(frame) => match frame.kind() {
                        FrameKind::Call => {
                            self.send(encode_error(
                                frame.id(),
                                &shutting_down(),
                                self.opts.max_frame,
                            ));
                        }
                        FrameKind::Cancel => self.cancel(frame.id()),
                        _ => {}
                    },
                    Incoming::Oversize { kind, id, .. } if kind == FrameKind::Call as u8 => {
                        self.send(encode_error(id, &shutting_down(), self.opts.max_frame));
                    }
                    Incoming::Oversize { .. } => {}
                }
            }
            std::future::pending::<()>().await
        };
        let work = async {
            if tokio::time::timeout_at(deadline, hooks).await.is_err() {
                tracing::error!(
                    process = P::NAME,
                    "on_shutdown hooks did not finish within the grace period"
                );
            }
            let _ = tokio::time::timeout_at(deadline, drain).await;
        };
        tokio::select! {
            _ = work => {}
            _ = refuse_new => {}
        }
        let leftover: Vec<(u64, AbortHandle)> = lock(&self.in_flight).drain().collect();
        for (call, task) in leftover {
            task.abort();
            let error = RemoteError::new(
                RemoteErrorKind::ShuttingDown,
                format!("process `{}` shut down before the call finished", P::NAME),
            );
            self.send(encode_error(call, &error, self.opts.max_frame));
        }
        if let Ok(frame) = wire::encode_reply(id, &(), self.opts.max_frame) {
            self.send(frame);
        }
    }
}

/// The future of one call of `method`: the process's method (or its health check), run in
/// the caller's trace when one came; or the error to answer at once (no such method, or a
/// dispatch that panicked).
fn call_future<P: Process>(
    cell: &ProcessCell<P>,
    method: &str,
    args: bytes::Bytes,
    trace: Option<pm_core::trace::TraceContext>,
    reply: ReplyTo,
) -> Result<crate::process::BoxFuture<'static, DispatchResult>, RemoteError> {
    let future = match method {
        HEALTH_METHOD => {
            let health = P::__health(cell);
            Some(Box::pin(async move {
                let status = health.await;
                wire::encode_reply(reply.id, &status, reply.max_frame)
                    .map_err(|e| RemoteError::new(RemoteErrorKind::Internal, e.to_string()))
            })
                as crate::process::BoxFuture<'static, DispatchResult>)
        }
        method => std::panic::catch_unwind(AssertUnwindSafe(|| {
            P::__dispatch(cell, method, args, reply)
        }))
        .map_err(|payload| {
            RemoteError::new(RemoteErrorKind::Panic, panic_message(payload.as_ref()))
        })?,
    };
    let Some(future) = future else {
        return Err(RemoteError::new(
            RemoteErrorKind::UnknownMethod,
            format!("process `{}` has no method `{method}`", P::NAME),
        ));
    };
    Ok(match trace {
        Some(caller) => Box::pin(crate::trace::serve_in(P::NAME, method, caller, future)),
        None => future,
    })
}

/// Runs a call's future within its deadline, of which `spent` is gone already (a first poll
/// in the call loop); a panic becomes an error.
pub(super) async fn run_call<F>(
    future: F,
    deadline: Option<Duration>,
    spent: Duration,
) -> DispatchResult
where
    F: std::future::Future<Output = DispatchResult> + Unpin,
{
    let outcome = match deadline {
        Some(limit) => {
            match tokio::time::timeout(limit.saturating_sub(spent), CatchUnwind(future)).await {
                Ok(outcome) => outcome,
                Err(_) => Ok(Err(RemoteError::new(
                    RemoteErrorKind::DeadlineExceeded,
                    format!("the call's deadline of {limit:?} passed; the process aborted it"),
                ))),
            }
        }
        None => CatchUnwind(future).await,
    };
    outcome.unwrap_or_else(|panic| Err(RemoteError::new(RemoteErrorKind::Panic, panic)))
}

/// Runs shutdown hooks concurrently, so one that hangs or panics cannot hold up the others.
pub(crate) async fn run_hooks(hooks: Vec<crate::process::BoxFuture<'static, ()>>) {
    let tasks: Vec<_> = hooks
        .into_iter()
        .map(|hook| tokio::spawn(CatchUnwind(hook)))
        .collect();
    for task in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(panic)) => tracing::error!(%panic, "an on_shutdown hook panicked"),
            Err(err) => tracing::error!(%err, "an on_shutdown hook was lost"),
        }
    }
}
