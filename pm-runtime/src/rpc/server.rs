//! The process side of a connection: handshake, `init`, and one task per call.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pm_core::wire::{
    self, decode_call, encode_error, Frame, FrameKind, Hello, Incoming, Welcome, PROTOCOL_VERSION,
};
use pm_core::{RemoteError, RemoteErrorKind};
use pm_transport::{Connection, FrameSender, TransportError};
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;

use crate::catch::{panic_message, CatchUnwind};
use crate::process::{expected_identity, DispatchResult, Process, ProcessCell, ReplyTo};
use crate::rpc::client::HEALTH_METHOD;
use crate::token::Token;

/// How long a client may take to say hello before the connection is dropped.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of one served connection.
#[derive(Debug, Clone)]
pub(crate) struct ServeOptions {
    pub(crate) token: Token,
    pub(crate) max_frame: usize,
    pub(crate) max_in_flight: usize,
}

/// How a served connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ServeEnd {
    /// The client asked for a shutdown and it completed.
    Shutdown,
    /// The client went away (end of stream or I/O error).
    Disconnected,
    /// The handshake or `init` failed; nothing was served.
    Refused(String),
}

/// The instance shared by every connection of one process: built by the first `init`.
pub(crate) type SharedInstance<P> = Arc<tokio::sync::OnceCell<ProcessCell<P>>>;

/// Serves one connection for process type `P`, from handshake to shutdown or disconnect.
pub(crate) async fn serve<P: Process>(conn: Connection, opts: ServeOptions) -> ServeEnd {
    serve_with::<P>(conn, opts, Arc::new(tokio::sync::OnceCell::new()))
        .await
        .0
}

/// Serves connections accepted from `listener`, all sharing one instance. Ends when the
/// connection that built the instance (the manager's) ends, with that connection's end.
/// Connections that fail the handshake are refused and logged; the listener goes on.
/// Where a listening process gets its connections from.
enum Accepting {
    Socket(pm_transport::Listener),
    Http(tokio::sync::mpsc::Receiver<Connection>),
}

impl Accepting {
    async fn next(&mut self, max_frame: usize) -> std::io::Result<Connection> {
        match self {
            Accepting::Socket(listener) => listener.accept(max_frame).await,
            Accepting::Http(incoming) => match incoming.recv().await {
                Some(conn) => Ok(conn),
                None => std::future::pending().await,
            },
        }
    }
}

/// Serves connections accepted from `listener` (a unix or tcp socket; with `http`, a tcp
/// socket speaking HTTP and WebSocket), all sharing one instance. Ends when the connection
/// that built the instance (the manager's) ends, with that connection's end. Connections that
/// fail the handshake are refused and logged; the listener goes on.
pub(crate) async fn serve_listener<P: Process>(
    listener: pm_transport::StdListener,
    http: bool,
    opts: ServeOptions,
) -> ServeEnd {
    serve_listener_with::<P>(listener, http, opts, Arc::new(tokio::sync::OnceCell::new())).await
}

/// [`serve_listener`] over an instance that may already be built (standalone hosting builds
/// it before listening, so no connection is primary and serving goes on until cancelled).
pub(crate) async fn serve_listener_with<P: Process>(
    listener: pm_transport::StdListener,
    http: bool,
    opts: ServeOptions,
    instance: SharedInstance<P>,
) -> ServeEnd {
    let mut http_server = None;
    let accepting = if http {
        let pm_transport::StdListener::Tcp(std_listener) = listener else {
            return ServeEnd::Refused("http needs a tcp listener".into());
        };
        let tcp = std_listener
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpListener::from_std(std_listener));
        let tcp = match tcp {
            Ok(tcp) => tcp,
            Err(err) => return ServeEnd::Refused(format!("cannot listen: {err}")),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let api = Arc::new(crate::http_api::ProcessApi::<P>::new(
            instance.clone(),
            opts.max_frame,
            opts.max_in_flight,
        ));
        http_server = Some(tokio::spawn(pm_transport::serve_http(
            tcp,
            opts.token.as_str().to_owned(),
            opts.max_frame,
            api,
            tx,
        )));
        Accepting::Http(rx)
    } else {
        match pm_transport::Listener::from_std(listener) {
            Ok(listener) => Accepting::Socket(listener),
            Err(err) => return ServeEnd::Refused(format!("cannot listen: {err}")),
        }
    };
    // Aborted on drop, so the HTTP server never outlives its listener's serving, even when
    // the serving itself is aborted (an in-process instance that is killed).
    let _http_server = http_server.map(AbortOnDrop);
    accept_loop::<P>(accepting, opts, instance).await
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn accept_loop<P: Process>(
    mut accepting: Accepting,
    opts: ServeOptions,
    instance: SharedInstance<P>,
) -> ServeEnd {
    let (primary_tx, mut primary_rx) = tokio::sync::mpsc::channel::<ServeEnd>(1);
    let mut connections = tokio::task::JoinSet::new();
    let end = loop {
        tokio::select! {
            accepted = accepting.next(opts.max_frame) => match accepted {
                Ok(conn) => {
                    let (opts, instance, primary_tx) = (opts.clone(), instance.clone(), primary_tx.clone());
                    connections.spawn(async move {
                        let (end, built) = serve_with::<P>(conn, opts, instance).await;
                        if built {
                            let _ = primary_tx.send(end).await;
                        }
                    });
                }
                Err(err) => {
                    tracing::warn!(process = P::NAME, %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(end) = primary_rx.recv() => break end,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    };
    connections.shutdown().await;
    end
}

/// Serves one connection; also says whether this connection's `init` built the instance.
pub(crate) async fn serve_with<P: Process>(
    mut conn: Connection,
    opts: ServeOptions,
    instance: SharedInstance<P>,
) -> (ServeEnd, bool) {
    let writer = conn.writer.take();
    let mut built = false;
    let end = match accept::<P>(&mut conn, &opts, &instance, &mut built).await {
        Ok(cell) => {
            CallLoop::<P> {
                cell,
                sender: conn.sender.clone(),
                in_flight: Arc::new(Mutex::new(HashMap::new())),
                permits: Arc::new(Semaphore::new(opts.max_in_flight)),
                health_permits: Arc::new(Semaphore::new(HEALTH_CHECKS_IN_FLIGHT)),
                opts,
            }
            .run(conn)
            .await
        }
        Err(reason) => {
            tracing::warn!(process = P::NAME, %reason, "connection refused");
            drop(conn);
            ServeEnd::Refused(reason)
        }
    };
    // Every sender is gone (aborted calls drop theirs as they unwind): let the writer put the
    // last replies on the wire before the caller exits.
    if let Some(writer) = writer {
        let _ = tokio::time::timeout(WRITER_DRAIN, writer).await;
    }
    (end, built)
}

/// How long a finished connection waits for its last frames to be written.
const WRITER_DRAIN: Duration = Duration::from_secs(2);

fn reject(sender: &FrameSender, reason: &str) {
    let mut builder = wire::FrameBuilder::new(FrameKind::Reject, 0, usize::MAX);
    if builder.str(reason).is_ok() {
        if let Ok(frame) = builder.finish() {
            let _ = sender.send(frame);
        }
    }
}

/// Handshake and `init`: returns the built instance, or why the connection was refused.
async fn accept<P: Process>(
    conn: &mut Connection,
    opts: &ServeOptions,
    instance: &SharedInstance<P>,
    built: &mut bool,
) -> Result<ProcessCell<P>, String> {
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, conn.receiver.recv()).await {
        Err(_) => return Err("no hello within 10 s".into()),
        Ok(None) => return Err("client closed before the handshake".into()),
        Ok(Some(Err(err))) => return Err(format!("unreadable handshake: {err}")),
        Ok(Some(Ok(Incoming::Oversize { len, .. }))) => {
            return Err(format!(
                "oversized frame ({len} bytes) before the handshake"
            ))
        }
        Ok(Some(Ok(Incoming::Frame(frame)))) => frame,
    };
    if hello.kind() != FrameKind::Hello {
        let reason = format!("expected a hello, got a {:?} frame", hello.kind());
        reject(&conn.sender, &reason);
        return Err(reason);
    }
    let hello: Hello = match hello.decode() {
        Ok(hello) => hello,
        Err(err) => {
            let reason = format!("malformed hello: {err}");
            reject(&conn.sender, &reason);
            return Err(reason);
        }
    };
    if hello.protocol != PROTOCOL_VERSION {
        let reason = format!(
            "protocol version {} is not supported (this process speaks {PROTOCOL_VERSION})",
            hello.protocol
        );
        reject(&conn.sender, &reason);
        return Err(reason);
    }
    if !opts.token.matches(&hello.token) {
        let reason = "wrong or missing token".to_owned();
        reject(&conn.sender, &reason);
        return Err(reason);
    }
    let welcome = Welcome {
        protocol: PROTOCOL_VERSION,
        identity: expected_identity::<P>(),
        pid: std::process::id(),
    };
    let mut builder = wire::FrameBuilder::new(FrameKind::Welcome, 0, opts.max_frame);
    builder.named(&welcome).map_err(|e| e.to_string())?;
    let frame = builder.finish().map_err(|e| e.to_string())?;
    conn.sender.send(frame).map_err(|e| e.to_string())?;

    let init = match conn.receiver.recv().await {
        Some(Ok(Incoming::Frame(frame))) if frame.kind() == FrameKind::Init => frame,
        Some(Ok(Incoming::Frame(frame))) => {
            return Err(format!("expected init, got a {:?} frame", frame.kind()))
        }
        Some(Ok(Incoming::Oversize { len, .. })) => {
            let error = RemoteError::new(
                RemoteErrorKind::TooLarge,
                format!("dependencies of {len} bytes exceed the frame limit"),
            );
            let _ = conn.sender.send(encode_error(0, &error, opts.max_frame));
            return Err(error.message);
        }
        Some(Err(err)) => return Err(format!("unreadable init: {err}")),
        None => return Err("client closed before init".into()),
    };
    let result = instance
        .get_or_try_init(|| async {
            *built = true;
            build_instance::<P>(init.payload()).await
        })
        .await;
    match result {
        Ok(cell) => {
            let ok =
                wire::encode_reply(init.id(), &(), opts.max_frame).map_err(|e| e.to_string())?;
            conn.sender.send(ok).map_err(|e| e.to_string())?;
            Ok(cell.clone())
        }
        Err(message) => {
            let error = RemoteError::new(RemoteErrorKind::InitFailed, message.clone());
            let _ = conn
                .sender
                .send(encode_error(init.id(), &error, opts.max_frame));
            Err(format!("init failed: {message}"))
        }
    }
}

/// Runs `P`'s `init` (or `Default`) on the dependencies, turning a panic into an error.
pub(crate) async fn build_instance<P: Process>(
    dependencies: bytes::Bytes,
) -> Result<ProcessCell<P>, String> {
    let started = std::panic::catch_unwind(AssertUnwindSafe(|| P::__init(dependencies)));
    let result = match started {
        Ok(fut) => CatchUnwind(fut)
            .await
            .unwrap_or_else(|panic| Err(format!("init panicked: {panic}"))),
        Err(payload) => Err(format!(
            "init panicked: {}",
            panic_message(payload.as_ref())
        )),
    };
    result.map(|instance| Arc::new(tokio::sync::RwLock::new(instance)))
}

type InFlight = Arc<Mutex<HashMap<u64, AbortHandle>>>;

/// How many health checks may run at once on one connection. They do not take call slots
/// (a process busy with long calls is busy, not unhealthy), so they get a bound of their own.
const HEALTH_CHECKS_IN_FLIGHT: usize = 2;

struct CallLoop<P: Process> {
    cell: ProcessCell<P>,
    sender: FrameSender,
    in_flight: InFlight,
    permits: Arc<Semaphore>,
    health_permits: Arc<Semaphore>,
    opts: ServeOptions,
}

impl<P: Process> Drop for CallLoop<P> {
    /// However serving ends (even by being aborted, as an in-process instance is when it is
    /// killed), no call's task outlives it.
    fn drop(&mut self) {
        self.abort_all();
    }
}

/// Whether `frame` calls the health check (which bypasses the call slots). Reads only the
/// method name: the call is decoded once, when it starts.
fn is_health_call(frame: &Frame) -> bool {
    wire::call_method(frame) == Some(HEALTH_METHOD)
}

impl<P: Process> CallLoop<P> {
    async fn run(self, mut conn: Connection) -> ServeEnd {
        // Calls that arrived while every slot was taken, oldest first. Reading goes on while
        // they wait, so cancels and a shutdown still get through at full capacity; once as
        // many calls wait as may run, reading stops and the transport pushes back.
        let mut waiting: std::collections::VecDeque<Frame> = std::collections::VecDeque::new();
        loop {
            let can_read = waiting.len() < self.opts.max_in_flight;
            let incoming = tokio::select! {
                permit = self.permits.clone().acquire_owned(), if !waiting.is_empty() => {
                    let (Ok(permit), Some(frame)) = (permit, waiting.pop_front()) else {
                        continue;
                    };
                    self.start_call(&frame, permit);
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
        let future = match call.method {
            HEALTH_METHOD => {
                let health = P::__health(&self.cell);
                Some(Box::pin(async move {
                    let status = health.await;
                    wire::encode_reply(reply.id, &status, reply.max_frame)
                        .map_err(|e| RemoteError::new(RemoteErrorKind::Internal, e.to_string()))
                })
                    as crate::process::BoxFuture<'static, DispatchResult>)
            }
            method => {
                match std::panic::catch_unwind(AssertUnwindSafe(|| {
                    P::__dispatch(&self.cell, method, call.args.clone(), reply)
                })) {
                    Ok(future) => future,
                    Err(payload) => {
                        let error = RemoteError::new(
                            RemoteErrorKind::Panic,
                            panic_message(payload.as_ref()),
                        );
                        self.send(encode_error(id, &error, self.opts.max_frame));
                        return;
                    }
                }
            }
        };
        let Some(future) = future else {
            let error = RemoteError::new(
                RemoteErrorKind::UnknownMethod,
                format!("process `{}` has no method `{}`", P::NAME, call.method),
            );
            self.send(encode_error(id, &error, self.opts.max_frame));
            return;
        };
        let future = match call.trace {
            Some(caller) => Box::pin(crate::trace::serve_in(P::NAME, call.method, caller, future)),
            None => future,
        };
        let deadline = call.deadline;
        let sender = self.sender.clone();
        let in_flight = self.in_flight.clone();
        let max_frame = self.opts.max_frame;
        let mut registry = lock(&self.in_flight);
        let task = tokio::spawn(async move {
            let _permit = permit;
            let outcome = match deadline {
                Some(limit) => match tokio::time::timeout(limit, CatchUnwind(future)).await {
                    Ok(outcome) => outcome,
                    Err(_) => Ok(Err(RemoteError::new(
                        RemoteErrorKind::DeadlineExceeded,
                        format!("the call's deadline of {limit:?} passed; the process aborted it"),
                    ))),
                },
                None => CatchUnwind(future).await,
            };
            let frame = match outcome {
                Ok(Ok(frame)) => frame,
                Ok(Err(error)) => encode_error(id, &error, max_frame),
                Err(panic) => encode_error(
                    id,
                    &RemoteError::new(RemoteErrorKind::Panic, panic),
                    max_frame,
                ),
            };
            lock(&in_flight).remove(&id);
            let _ = sender.send(frame);
        });
        // Registered under the lock the task needs to deregister, so it cannot finish first.
        registry.insert(id, task.abort_handle());
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
            while let Some(Ok(incoming)) = conn.receiver.recv().await {
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

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned registry only means a panic elsewhere; its map is still consistent.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use pm_core::wire::{decode_error, encode_call, FrameBuilder, Incoming};
    use pm_transport::{from_unix_stream, Connection};

    use super::*;

    #[derive(Default)]
    struct Echo;

    #[crate::process(name = "echo", version = "0.1.0")]
    impl Echo {
        #[public]
        async fn twice(&self, n: u32) -> u32 {
            n * 2
        }
    }

    fn options(token: &str) -> ServeOptions {
        ServeOptions {
            token: Token::from_string(token.into()),
            max_frame: 4096,
            max_in_flight: 8,
        }
    }

    async fn next(conn: &mut Connection) -> Frame {
        match tokio::time::timeout(Duration::from_secs(5), conn.receiver.recv()).await {
            Ok(Some(Ok(Incoming::Frame(frame)))) => frame,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// Says hello with the right token and inits with no dependencies.
    async fn greet(client: &mut Connection) {
        let mut hello = FrameBuilder::new(FrameKind::Hello, 0, 4096);
        hello
            .named(&Hello {
                protocol: PROTOCOL_VERSION,
                token: "secret".into(),
            })
            .expect("fits");
        client
            .sender
            .send(hello.finish().expect("fits"))
            .expect("open");
        assert_eq!(next(client).await.kind(), FrameKind::Welcome);
        let mut init = FrameBuilder::new(FrameKind::Init, 1, 4096);
        init.raw(&[0xc0]).expect("fits");
        client
            .sender
            .send(init.finish().expect("fits"))
            .expect("open");
        assert_eq!(next(client).await.kind(), FrameKind::ReplyOk);
    }

    /// A served connection after a good handshake and init, over a real socketpair.
    async fn connected() -> (Connection, tokio::task::JoinHandle<ServeEnd>) {
        let (a, b) = tokio::net::UnixStream::pair().expect("socketpair");
        let (mut client, server) = (
            from_unix_stream(a, 4096, "t"),
            from_unix_stream(b, 4096, "t"),
        );
        let served = tokio::spawn(serve::<Echo>(server, options("secret")));
        greet(&mut client).await;
        (client, served)
    }

    #[tokio::test]
    async fn unknown_methods_and_undecodable_arguments_get_error_replies_and_the_connection_lives()
    {
        let (mut client, _served) = connected().await;
        client
            .sender
            .send(encode_call(2, "nope", None, &(1u32,), 4096).expect("fits"))
            .expect("open");
        let reply = next(&mut client).await;
        assert_eq!((reply.kind(), reply.id()), (FrameKind::ReplyErr, 2));
        assert_eq!(decode_error(&reply).kind, RemoteErrorKind::UnknownMethod);

        client
            .sender
            .send(encode_call(3, "twice", None, &("not a number",), 4096).expect("fits"))
            .expect("open");
        let reply = next(&mut client).await;
        assert_eq!(decode_error(&reply).kind, RemoteErrorKind::InvalidArguments);

        let mut malformed = FrameBuilder::new(FrameKind::Call, 4, 4096);
        malformed.raw(&[0xc1, 0xc1]).expect("fits");
        client
            .sender
            .send(malformed.finish().expect("fits"))
            .expect("open");
        let reply = next(&mut client).await;
        assert_eq!(
            (reply.id(), decode_error(&reply).kind),
            (4, RemoteErrorKind::InvalidArguments)
        );

        client
            .sender
            .send(encode_call(5, "twice", None, &(21u32,), 4096).expect("fits"))
            .expect("open");
        let reply = next(&mut client).await;
        assert_eq!(reply.kind(), FrameKind::ReplyOk);
        assert_eq!(reply.decode::<u32>().expect("u32"), 42);
    }

    #[tokio::test]
    async fn an_oversized_call_gets_an_error_reply_for_its_id_and_the_next_call_works() {
        let (mut client, _served) = connected().await;
        let big = encode_call(7, "twice", None, &(vec![0u8; 10_000],), 1 << 20).expect("fits");
        client.sender.send(big).expect("open");
        let reply = next(&mut client).await;
        assert_eq!((reply.kind(), reply.id()), (FrameKind::ReplyErr, 7));
        assert_eq!(decode_error(&reply).kind, RemoteErrorKind::TooLarge);
        client
            .sender
            .send(encode_call(8, "twice", None, &(1u32,), 4096).expect("fits"))
            .expect("open");
        assert_eq!(next(&mut client).await.decode::<u32>().expect("u32"), 2);
    }

    /// A process whose calls wait for a release it is told about.
    #[derive(Default)]
    struct Gate;

    #[crate::process(name = "gate", version = "0.1.0")]
    impl Gate {
        #[public]
        async fn wait(&self, millis: u64) -> u64 {
            tokio::time::sleep(Duration::from_millis(millis)).await;
            millis
        }
    }

    #[tokio::test]
    async fn at_full_capacity_cancels_and_shutdown_still_get_through() {
        let (mut client, server) = pm_transport::channel_pair();
        let opts = ServeOptions {
            token: Token::from_string("secret".into()),
            max_frame: 4096,
            max_in_flight: 2,
        };
        let served = tokio::spawn(serve::<Gate>(server, opts));
        greet(&mut client).await;
        // Two long calls fill both slots; a third waits.
        for id in [10, 11, 12] {
            client
                .sender
                .send(encode_call(id, "wait", None, &(60_000u64,), 4096).expect("fits"))
                .expect("open");
        }
        // Cancelling a running call frees its slot for the waiting one.
        client
            .sender
            .send(Frame::empty(FrameKind::Cancel, 10))
            .expect("open");
        // A shutdown is read and answered although the process is busy.
        let mut shutdown = FrameBuilder::new(FrameKind::Shutdown, 20, 4096);
        shutdown.value(&50u64).expect("fits");
        client
            .sender
            .send(shutdown.finish().expect("fits"))
            .expect("open");
        let mut replies = Vec::new();
        while let Ok(Some(Ok(Incoming::Frame(frame)))) =
            tokio::time::timeout(Duration::from_secs(5), client.receiver.recv()).await
        {
            replies.push((frame.id(), frame.kind()));
        }
        assert!(replies.contains(&(20, FrameKind::ReplyOk)), "{replies:?}");
        assert!(replies.contains(&(11, FrameKind::ReplyErr)), "{replies:?}");
        assert!(replies.contains(&(12, FrameKind::ReplyErr)), "{replies:?}");
        assert_eq!(served.await.expect("task"), ServeEnd::Shutdown);
    }

    /// A served `Gate` over channels, with `max_in_flight` call slots.
    async fn gate(max_in_flight: usize) -> (Connection, tokio::task::JoinHandle<ServeEnd>) {
        let (mut client, server) = pm_transport::channel_pair();
        let opts = ServeOptions {
            token: Token::from_string("secret".into()),
            max_frame: 4096,
            max_in_flight,
        };
        let served = tokio::spawn(serve::<Gate>(server, opts));
        greet(&mut client).await;
        (client, served)
    }

    #[tokio::test]
    async fn a_health_check_is_answered_while_every_call_slot_is_taken() {
        let (mut client, _served) = gate(1).await;
        client
            .sender
            .send(encode_call(10, "wait", None, &(60_000u64,), 4096).expect("fits"))
            .expect("open");
        client
            .sender
            .send(encode_call(11, HEALTH_METHOD, None, &(), 4096).expect("fits"))
            .expect("open");
        let reply = next(&mut client).await;
        assert_eq!((reply.id(), reply.kind()), (11, FrameKind::ReplyOk));
        let status: pm_core::HealthStatus = reply.decode().expect("a health status");
        assert_eq!(status.status, pm_core::HealthState::Healthy);
    }

    #[tokio::test]
    async fn a_second_call_with_an_id_in_flight_is_refused_and_the_first_still_answers() {
        let (mut client, _served) = gate(8).await;
        for millis in [200u64, 0] {
            client
                .sender
                .send(encode_call(10, "wait", None, &(millis,), 4096).expect("fits"))
                .expect("open");
        }
        let refused = next(&mut client).await;
        assert_eq!((refused.id(), refused.kind()), (10, FrameKind::ReplyErr));
        let error = decode_error(&refused);
        assert_eq!(error.kind, RemoteErrorKind::InvalidArguments);
        assert!(error.message.contains("already in flight"), "{error:?}");
        let first = next(&mut client).await;
        assert_eq!((first.id(), first.kind()), (10, FrameKind::ReplyOk));
        assert_eq!(first.decode::<u64>().expect("u64"), 200);
    }

    #[tokio::test]
    async fn an_oversized_call_during_a_shutdown_gets_a_shutting_down_reply() {
        let (a, b) = tokio::net::UnixStream::pair().expect("socketpair");
        let (mut client, server) = (
            from_unix_stream(a, 1 << 20, "t"),
            from_unix_stream(b, 4096, "t"),
        );
        let opts = ServeOptions {
            token: Token::from_string("secret".into()),
            max_frame: 4096,
            max_in_flight: 8,
        };
        let _served = tokio::spawn(serve::<Gate>(server, opts));
        greet(&mut client).await;
        // A running call keeps the shutdown draining for a while.
        client
            .sender
            .send(encode_call(10, "wait", None, &(500u64,), 4096).expect("fits"))
            .expect("open");
        let mut shutdown = FrameBuilder::new(FrameKind::Shutdown, 20, 4096);
        shutdown.value(&2_000u64).expect("fits");
        client
            .sender
            .send(shutdown.finish().expect("fits"))
            .expect("open");
        let big = encode_call(30, "wait", None, &(vec![0u8; 10_000],), 1 << 20).expect("fits");
        client.sender.send(big).expect("open");
        let refused = next(&mut client).await;
        assert_eq!((refused.id(), refused.kind()), (30, FrameKind::ReplyErr));
        assert_eq!(decode_error(&refused).kind, RemoteErrorKind::ShuttingDown);
    }

    #[tokio::test]
    async fn a_wrong_token_is_rejected_before_anything_is_dispatched() {
        let (mut client, server) = pm_transport::channel_pair();
        let served = tokio::spawn(serve::<Echo>(server, options("secret")));
        let mut hello = FrameBuilder::new(FrameKind::Hello, 0, 4096);
        hello
            .named(&Hello {
                protocol: PROTOCOL_VERSION,
                token: "guess".into(),
            })
            .expect("fits");
        client
            .sender
            .send(hello.finish().expect("fits"))
            .expect("open");
        client
            .sender
            .send(encode_call(2, "twice", None, &(1u32,), 4096).expect("fits"))
            .expect("open");
        let reply = next(&mut client).await;
        assert_eq!(reply.kind(), FrameKind::Reject);
        assert!(
            matches!(served.await.expect("task"), ServeEnd::Refused(reason) if reason.contains("token"))
        );
        assert!(
            client.receiver.recv().await.is_none(),
            "the connection was closed"
        );
    }

    #[test]
    fn the_generated_method_table_lists_names_and_types() {
        assert_eq!(Echo::METHODS.len(), 1);
        assert_eq!(Echo::METHODS[0].name, "twice");
        assert_eq!(Echo::METHODS[0].args, &["u32"]);
        assert_eq!(Echo::METHODS[0].ret, "u32");
    }
}
