//! The process side of a connection: handshake, `init`, and the calls, each polled once where
//! it is read and, if it waits for something, run on by a runner task.

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
    /// Users besides this process's own (and root) that may connect over a unix socket.
    pub(crate) peer_uids: Vec<u32>,
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
    async fn next(&mut self, max_frame: usize, peer_uids: &[u32]) -> std::io::Result<Connection> {
        match self {
            Accepting::Socket(listener) => listener.accept_from(max_frame, peer_uids).await,
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
            pm_transport::HttpLimits::default(),
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
            accepted = accepting.next(opts.max_frame, &opts.peer_uids) => match accepted {
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
            CallLoop::<P>::new(cell, conn.sender.clone(), opts)
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
    let mut welcome = Welcome {
        protocol: PROTOCOL_VERSION,
        identity: expected_identity::<P>(),
        pid: std::process::id(),
        schema: crate::process::schema_of::<P>().bytes.clone(),
    };
    let encode = |welcome: &Welcome| {
        let mut builder = wire::FrameBuilder::new(FrameKind::Welcome, 0, opts.max_frame);
        builder.named(welcome)?;
        builder.finish()
    };
    // The schema only explains a mismatch: one too large for the frame limit is left out.
    let frame = match encode(&welcome) {
        Ok(frame) => frame,
        Err(_) => {
            welcome.schema = None;
            encode(&welcome).map_err(|e| e.to_string())?
        }
    };
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

mod calls;
mod first_poll;
mod runners;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned registry only means a panic elsewhere; its map is still consistent.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) use calls::run_hooks;
use calls::CallLoop;

#[cfg(test)]
mod tests;
