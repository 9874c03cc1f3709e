//! HTTP/1.1 and WebSocket: a JSON API for people and scripts, and frame connections for
//! clients that can only speak HTTP.
//!
//! [`serve_http`] answers, for requests carrying `Authorization: Bearer <token>`:
//!
//! - `GET /ws` with a WebSocket upgrade: the socket becomes a frame [`Connection`] in which
//!   every binary message carries exactly one [`Frame`] in wire form (length prefix
//!   included); [`connect_http`] is the matching client;
//! - `POST /call/{method}` with a JSON array of arguments: [`HttpApi::call`];
//! - `GET /health`: [`HttpApi::health`].
//!
//! Built on hyper (HTTP/1.1 only, no TLS) and tokio-tungstenite.

use std::future::Future;
use std::pin::Pin;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use pm_core::wire::{Frame, WireError, HEADER_LEN, LEN_PREFIX};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::connection::{Connection, FrameReceiver};
use crate::queue::{frame_queue, FrameQueue};

mod client;
mod limits;
mod server;

pub use client::connect_http;
pub use limits::HttpLimits;
pub use server::serve_http;

/// What a connection made over HTTP calls itself in logs.
const DESCRIPTION: &str = "http";

/// What the HTTP side of a process answers. Implemented by the runtime.
pub trait HttpApi: Send + Sync + 'static {
    /// `POST /call/{method}` with a JSON array of arguments. `Ok(json)` answers 200 with the
    /// JSON body; `Err(HttpError)` answers that status with the body `{"error": message}`.
    fn call(
        &self,
        method: String,
        args: serde_json::Value,
    ) -> Pin<Box<dyn Future<Output = Result<serde_json::Value, HttpError>> + Send + '_>>;

    /// `GET /health`: answered with this report's JSON, 200 while the process can serve and
    /// 503 once it says it is unhealthy, so that a load balancer's or an orchestrator's probe
    /// acts on the status code alone.
    fn health(&self) -> Pin<Box<dyn Future<Output = HealthReport> + Send + '_>>;
}

/// What `GET /health` answers: the process's report, and whether it can serve.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthReport {
    /// `false` answers 503 Service Unavailable instead of 200 OK.
    pub serving: bool,
    /// The report, as JSON.
    pub body: serde_json::Value,
}

/// A failed HTTP call: the status to answer and the message to put in `{"error": message}`.
///
/// A status outside 400..=599 is answered as 500, so a failure never looks like a success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong, for the caller.
    pub message: String,
}

impl HttpError {
    /// An error with this status and message.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}: {}", self.status, self.message)
    }
}

impl std::error::Error for HttpError {}

/// The WebSocket limits for a connection accepting frame bodies up to `max_frame` bytes:
/// tungstenite refuses a larger message (or message frame) before allocating for it.
fn ws_config(max_frame: usize) -> WebSocketConfig {
    let limit = max_frame.saturating_add(HEADER_LEN);
    WebSocketConfig::default()
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit))
}

/// Why the reading task stopped, told to the writing task so it can end the socket.
#[derive(Debug)]
enum ReaderEnd {
    /// The peer sent a Close: flush tungstenite's reply and end.
    PeerClosed,
    /// The peer broke the protocol: send this Close and end.
    Refused(CloseFrame),
    /// The socket failed: nothing more can be written.
    Failed,
}

/// Frames read ahead of the consumer before the reader stops reading.
const INCOMING_BUFFER: usize = 64;

/// Wraps an established WebSocket as a frame [`Connection`]: one task turns binary
/// messages into frames, another writes queued frames as binary messages.
fn ws_connection<S>(ws: WebSocketStream<S>, max_frame: usize) -> Connection
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, stream) = ws.split();
    // Bounded: a reader that outpaces the consumer waits, so the socket pushes back on the
    // peer instead of frames piling up in memory.
    let (in_tx, in_rx) = mpsc::channel(INCOMING_BUFFER);
    let (sender, out_rx) = frame_queue();
    let (end_tx, end_rx) = oneshot::channel();
    tokio::spawn(read_messages(stream, in_tx, max_frame, end_tx));
    let writer = tokio::spawn(write_messages(sink, out_rx, end_rx));
    Connection {
        sender,
        receiver: FrameReceiver::bounded(in_rx),
        description: DESCRIPTION,
        writer: Some(writer),
    }
}

/// Checks that a binary message is exactly one frame within the limit.
fn frame_from_message(data: Bytes, max_frame: usize) -> Result<Frame, WireError> {
    let frame = Frame::from_wire(data)?;
    let body = frame.wire().len() - LEN_PREFIX;
    if body > max_frame {
        return Err(WireError::TooLarge {
            len: body,
            max: max_frame,
        });
    }
    Ok(frame)
}

fn refuse(code: CloseCode, reason: &'static str) -> ReaderEnd {
    ReaderEnd::Refused(CloseFrame {
        code,
        reason: reason.into(),
    })
}

/// Reads messages until the peer closes or breaks the protocol, or the [`FrameReceiver`] is
/// dropped. Dropping `frames` on the way out ends the receiver's stream.
async fn read_messages<S>(
    mut stream: SplitStream<WebSocketStream<S>>,
    frames: mpsc::Sender<Frame>,
    max_frame: usize,
    ended: oneshot::Sender<ReaderEnd>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let end = loop {
        let message = tokio::select! {
            message = stream.next() => message,
            // Nobody reads any more: stop reading, but let the writer go on sending.
            () = frames.closed() => return,
        };
        match message {
            Some(Ok(Message::Binary(data))) => match frame_from_message(data, max_frame) {
                Ok(frame) => {
                    if frames.send(frame).await.is_err() {
                        return;
                    }
                }
                Err(err) => {
                    tracing::warn!(%err, transport = DESCRIPTION, "peer sent an invalid frame; closing connection");
                    break match err {
                        WireError::TooLarge { .. } => refuse(CloseCode::Size, "frame too large"),
                        _ => refuse(CloseCode::Protocol, "invalid frame"),
                    };
                }
            },
            Some(Ok(Message::Text(_))) => {
                tracing::warn!(
                    transport = DESCRIPTION,
                    "peer sent a text message; closing connection"
                );
                break refuse(CloseCode::Unsupported, "only binary frames are accepted");
            }
            // tungstenite answers pings itself.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Ok(Message::Close(_))) => break ReaderEnd::PeerClosed,
            Some(Err(WsError::Capacity(err))) => {
                tracing::warn!(%err, transport = DESCRIPTION, "peer sent an oversized message; closing connection");
                break match err {
                    CapacityError::MessageTooLong { .. } => {
                        refuse(CloseCode::Size, "frame too large")
                    }
                    _ => refuse(CloseCode::Protocol, "invalid message"),
                };
            }
            Some(Err(WsError::Protocol(err))) => {
                tracing::debug!(%err, transport = DESCRIPTION, "WebSocket protocol error; closing connection");
                break refuse(CloseCode::Protocol, "protocol error");
            }
            Some(Err(err)) => {
                tracing::debug!(%err, transport = DESCRIPTION, "read failed; closing connection");
                break ReaderEnd::Failed;
            }
            None => break ReaderEnd::Failed,
        }
    };
    drop(frames);
    let _ = ended.send(end);
}

/// Writes queued frames as binary messages, batching whatever is queued into one flush.
/// Sends a Close once every [`FrameSender`](crate::FrameSender) is dropped, and ends early once the reader
/// has seen the connection end.
async fn write_messages<S>(
    mut sink: SplitSink<WebSocketStream<S>, Message>,
    mut queue: FrameQueue,
    mut reader_end: oneshot::Receiver<ReaderEnd>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut reader_running = true;
    loop {
        tokio::select! {
            frame = queue.recv() => {
                let Some(frame) = frame else {
                    if let Err(err) = sink.close().await {
                        tracing::debug!(%err, transport = DESCRIPTION, "close failed");
                    }
                    return;
                };
                let mut batch = frame.wire().len();
                if let Err(err) = sink.feed(Message::Binary(frame.wire().clone())).await {
                    tracing::debug!(%err, transport = DESCRIPTION, "write failed; closing connection");
                    return;
                }
                // Take whatever else is queued before paying for a flush.
                while let Some(frame) = queue.try_recv() {
                    batch += frame.wire().len();
                    if let Err(err) = sink.feed(Message::Binary(frame.wire().clone())).await {
                        tracing::debug!(%err, transport = DESCRIPTION, "write failed; closing connection");
                        return;
                    }
                }
                if let Err(err) = sink.flush().await {
                    tracing::debug!(%err, transport = DESCRIPTION, "flush failed; closing connection");
                    return;
                }
                queue.written(batch);
            }
            end = &mut reader_end, if reader_running => match end {
                // Flushes tungstenite's reply to the peer's Close.
                Ok(ReaderEnd::PeerClosed) => {
                    let _ = sink.close().await;
                    return;
                }
                Ok(ReaderEnd::Refused(frame)) => {
                    let _ = sink.send(Message::Close(Some(frame))).await;
                    return;
                }
                Ok(ReaderEnd::Failed) => return,
                // The receiver was dropped; sending goes on.
                Err(_) => reader_running = false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use http_body_util::{BodyExt, Full};
    use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
    use hyper::{Method, Request, StatusCode};
    use hyper_util::rt::TokioIo;
    use pm_core::wire::{encode_call, encode_reply, FrameKind, Incoming};
    use serde_json::{json, Value};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc::error::TryRecvError;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    use super::*;

    const TOKEN: &str = "s3cret-token";

    #[derive(Default)]
    struct TestApi {
        calls: AtomicUsize,
        healths: AtomicUsize,
    }

    impl TestApi {
        fn dispatched(&self) -> usize {
            self.calls.load(Ordering::SeqCst) + self.healths.load(Ordering::SeqCst)
        }
    }

    impl HttpApi for TestApi {
        fn call(
            &self,
            method: String,
            args: Value,
        ) -> Pin<Box<dyn Future<Output = Result<Value, HttpError>> + Send + '_>> {
            Box::pin(async move {
                self.calls.fetch_add(1, Ordering::SeqCst);
                match method.as_str() {
                    "add" => {
                        let numbers: Vec<i64> = serde_json::from_value(args)
                            .map_err(|e| HttpError::new(400, e.to_string()))?;
                        Ok(json!(numbers.iter().sum::<i64>()))
                    }
                    "fail" => Err(HttpError::new(409, "it failed")),
                    other => Err(HttpError::new(404, format!("no method {other}"))),
                }
            })
        }

        fn health(&self) -> Pin<Box<dyn Future<Output = HealthReport> + Send + '_>> {
            Box::pin(async move {
                let count = self.healths.fetch_add(1, Ordering::SeqCst);
                HealthReport {
                    // Every third check fails, for the status-code test.
                    serving: count % 3 != 2,
                    body: json!({ "status": "ok", "pid": 42 }),
                }
            })
        }
    }

    struct Server {
        addr: SocketAddr,
        api: Arc<TestApi>,
        connections: mpsc::Receiver<Connection>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    async fn start(max_frame: usize) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let api = Arc::new(TestApi::default());
        let (tx, connections) = mpsc::channel(4);
        let task = tokio::spawn(serve_http(
            listener,
            TOKEN.to_owned(),
            max_frame,
            HttpLimits::default(),
            api.clone(),
            tx,
        ));
        Server {
            addr,
            api,
            connections,
            task,
        }
    }

    async fn within<F: Future>(what: &str, fut: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(10), fut)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    }

    /// One plain HTTP/1.1 request with hyper's client; returns the status and the body.
    async fn request(
        addr: SocketAddr,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, Vec<u8>) {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, addr.to_string());
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let req = builder
            .body(Full::new(Bytes::from(body.to_owned())))
            .expect("request");
        let response = within("a response", sender.send_request(req))
            .await
            .expect("response");
        let status = response.status();
        let body = within("the body", response.into_body().collect())
            .await
            .expect("body")
            .to_bytes();
        (status, body.to_vec())
    }

    const AUTH: (&str, &str) = ("authorization", "Bearer s3cret-token");

    fn json_of(body: &[u8]) -> Value {
        serde_json::from_slice(body).expect("a JSON body")
    }

    async fn expect_frame(conn: &mut Connection) -> Frame {
        match within("a frame", conn.receiver.recv()).await {
            Some(Ok(Incoming::Frame(frame))) => frame,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn frames_cross_an_http_websocket_connection_both_ways() {
        let mut server = start(1024).await;
        let mut client = within("connect", connect_http(server.addr, TOKEN, 1024))
            .await
            .expect("connect");
        assert_eq!(client.description, "http");
        let mut accepted = within("accept", server.connections.recv())
            .await
            .expect("a connection");
        assert_eq!(accepted.description, "http");

        for id in 0..50u64 {
            let call = encode_call(id, "add", None, &(5i64, 3i64), 1024).expect("fits");
            client.sender.send(call).expect("open");
        }
        for id in 0..50u64 {
            let frame = expect_frame(&mut accepted).await;
            assert_eq!((frame.kind(), frame.id()), (FrameKind::Call, id));
            let call = pm_core::wire::decode_call(&frame).expect("a call");
            assert_eq!(call.method, "add");
        }

        let reply = encode_reply(7, &8i64, 1024).expect("fits");
        accepted.sender.send(reply.clone()).expect("open");
        let frame = expect_frame(&mut client).await;
        assert_eq!(frame, reply);
        assert_eq!(frame.decode::<i64>().expect("decodes"), 8);
        assert_eq!(server.api.dispatched(), 0);
    }

    #[tokio::test]
    async fn dropping_the_client_connection_ends_the_server_side_receiver() {
        let mut server = start(1024).await;
        let mut client = connect_http(server.addr, TOKEN, 1024)
            .await
            .expect("connect");
        let mut accepted = within("accept", server.connections.recv())
            .await
            .expect("a connection");
        client
            .sender
            .send(Frame::empty(FrameKind::Cancel, 3))
            .expect("open");
        let writer = client.writer.take().expect("a writer task");
        drop(client);
        within("the client writer", writer)
            .await
            .expect("writer finished");
        assert_eq!(expect_frame(&mut accepted).await.id(), 3);
        assert!(within("end of stream", accepted.receiver.recv())
            .await
            .is_none());
        within("the server side to close", accepted.sender.closed()).await;
    }

    #[tokio::test]
    async fn dropping_the_server_side_ends_the_client_receiver() {
        let mut server = start(1024).await;
        let mut client = connect_http(server.addr, TOKEN, 1024)
            .await
            .expect("connect");
        let mut accepted = within("accept", server.connections.recv())
            .await
            .expect("a connection");
        accepted
            .sender
            .send(Frame::empty(FrameKind::Cancel, 5))
            .expect("open");
        let writer = accepted.writer.take().expect("a writer task");
        drop(accepted);
        within("the server writer", writer)
            .await
            .expect("writer finished");
        // The last frame sent before the close still arrives.
        assert_eq!(expect_frame(&mut client).await.id(), 5);
        assert!(within("end of stream", client.receiver.recv())
            .await
            .is_none());
        within("the client side to close", client.sender.closed()).await;
    }

    #[tokio::test]
    async fn wrong_or_missing_tokens_are_refused_with_401_and_nothing_is_dispatched() {
        let mut server = start(1024).await;

        let err = connect_http(server.addr, "wrong-token", 1024)
            .await
            .expect_err("refused");
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
        let err = connect_http(server.addr, "", 1024)
            .await
            .expect_err("refused");
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");

        let upgrade = [
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        let (status, _) = request(server.addr, Method::GET, "/ws", &upgrade, "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        let cases: [&[(&str, &str)]; 5] = [
            &[],
            &[("authorization", "Bearer wrong-token")],
            &[("authorization", "Bearer s3cret-toke")],
            &[("authorization", "Basic s3cret-token")],
            &[("authorization", "s3cret-token")],
        ];
        for headers in cases {
            let (status, body) =
                request(server.addr, Method::POST, "/call/add", headers, "[5,3]").await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{headers:?}");
            assert_eq!(json_of(&body), json!({ "error": "unauthorized" }));
            let (status, _) = request(server.addr, Method::GET, "/health", headers, "").await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{headers:?}");
            let (status, _) = request(server.addr, Method::GET, "/nope", headers, "").await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{headers:?}");
        }

        assert_eq!(server.api.dispatched(), 0);
        assert!(matches!(
            server.connections.try_recv(),
            Err(TryRecvError::Empty)
        ));
    }

    #[tokio::test]
    async fn an_empty_server_token_refuses_everything() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let api = Arc::new(TestApi::default());
        let (tx, _rx) = mpsc::channel(1);
        let task = tokio::spawn(serve_http(
            listener,
            String::new(),
            1024,
            HttpLimits::default(),
            api.clone(),
            tx,
        ));
        let (status, _) = request(
            addr,
            Method::GET,
            "/health",
            &[("authorization", "Bearer ")],
            "",
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(api.dispatched(), 0);
        task.abort();
    }

    #[tokio::test]
    async fn a_call_returns_the_api_json() {
        let server = start(1024).await;
        let (status, body) = request(
            server.addr,
            Method::POST,
            "/call/add",
            &[AUTH, ("content-type", "application/json")],
            "[5,3]",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json_of(&body), json!(8));
        // The scheme is case-insensitive.
        let (status, body) = request(
            server.addr,
            Method::POST,
            "/call/add",
            &[("authorization", "bearer s3cret-token")],
            "[1,2,3]",
        )
        .await;
        assert_eq!((status, json_of(&body)), (StatusCode::OK, json!(6)));
        assert_eq!(server.api.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_api_error_is_answered_with_its_status_and_message() {
        let server = start(1024).await;
        let (status, body) = request(server.addr, Method::POST, "/call/fail", &[AUTH], "[]").await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(json_of(&body), json!({ "error": "it failed" }));
        let (status, body) =
            request(server.addr, Method::POST, "/call/missing", &[AUTH], "[]").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(json_of(&body), json!({ "error": "no method missing" }));
    }

    #[tokio::test]
    async fn health_returns_json() {
        let server = start(1024).await;
        let (status, body) = request(server.addr, Method::GET, "/health", &[AUTH], "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json_of(&body), json!({ "status": "ok", "pid": 42 }));
        assert_eq!(server.api.healths.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn health_answers_503_with_the_report_when_the_process_cannot_serve() {
        let server = start(1024).await;
        let mut statuses = Vec::new();
        for _ in 0..3 {
            let (status, body) = request(server.addr, Method::GET, "/health", &[AUTH], "").await;
            assert_eq!(json_of(&body), json!({ "status": "ok", "pid": 42 }));
            statuses.push(status);
        }
        assert_eq!(
            statuses,
            [
                StatusCode::OK,
                StatusCode::OK,
                StatusCode::SERVICE_UNAVAILABLE
            ]
        );
    }

    #[tokio::test]
    async fn a_body_that_is_not_a_json_array_gets_400() {
        let server = start(1024).await;
        for body in ["[5,", "not json", "{\"a\":1}", "5", ""] {
            let (status, response) =
                request(server.addr, Method::POST, "/call/add", &[AUTH], body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
            assert!(json_of(&response)["error"].is_string());
        }
        assert_eq!(server.api.dispatched(), 0);
    }

    #[tokio::test]
    async fn a_body_over_the_frame_limit_gets_413() {
        let server = start(64).await;
        let big = format!("[{}]", vec!["1"; 100].join(","));
        let (status, _) = request(server.addr, Method::POST, "/call/add", &[AUTH], &big).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(server.api.dispatched(), 0);
    }

    #[tokio::test]
    async fn unknown_paths_and_methods_get_404() {
        let server = start(1024).await;
        for (method, path) in [
            (Method::GET, "/nope"),
            (Method::GET, "/"),
            (Method::GET, "/call/add"),
            (Method::POST, "/call/"),
            (Method::POST, "/call/a/b"),
            (Method::POST, "/health"),
            (Method::POST, "/ws"),
        ] {
            let (status, body) = request(server.addr, method.clone(), path, &[AUTH], "[]").await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
            assert_eq!(json_of(&body), json!({ "error": "not found" }));
        }
        assert_eq!(server.api.dispatched(), 0);
    }

    #[tokio::test]
    async fn get_ws_without_an_upgrade_gets_426() {
        let server = start(1024).await;
        let (status, _) = request(server.addr, Method::GET, "/ws", &[AUTH], "").await;
        assert_eq!(status, StatusCode::UPGRADE_REQUIRED);
    }

    /// A raw WebSocket to `/ws`, for sending messages `connect_http` never would.
    async fn raw_ws(addr: SocketAddr) -> WebSocketStream<TcpStream> {
        let mut req = format!("ws://{addr}/ws")
            .into_client_request()
            .expect("request");
        req.headers_mut().insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {TOKEN}")).expect("header"),
        );
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (ws, _) = tokio_tungstenite::client_async(req, stream)
            .await
            .expect("handshake");
        ws
    }

    #[tokio::test]
    async fn invalid_messages_end_the_server_side_stream() {
        let max = 64;
        let mut server = start(max).await;
        let oversized_within_slack = {
            // Body max + 1: past the frame limit but within tungstenite's message limit.
            let mut builder = pm_core::wire::FrameBuilder::new(FrameKind::Call, 1, 4096);
            builder
                .raw(&vec![0u8; max + 1 - pm_core::wire::BODY_HEADER])
                .expect("fits");
            builder.finish().expect("fits")
        };
        assert_eq!(oversized_within_slack.wire().len(), max + 1 + LEN_PREFIX);
        let messages = [
            Message::Binary(Bytes::from_static(b"junk")),
            Message::Binary(oversized_within_slack.wire().clone()),
            Message::Binary(Bytes::from(vec![0u8; 10 * max])),
            Message::Text("hello".into()),
        ];
        for message in messages {
            let mut ws = raw_ws(server.addr).await;
            let mut accepted = within("accept", server.connections.recv())
                .await
                .expect("a connection");
            // A valid frame first, then the bad message.
            ws.send(Message::Binary(
                Frame::empty(FrameKind::Cancel, 1).wire().clone(),
            ))
            .await
            .expect("send");
            ws.send(message).await.expect("send");
            assert_eq!(expect_frame(&mut accepted).await.id(), 1);
            assert!(within("end of stream", accepted.receiver.recv())
                .await
                .is_none());
            // The server closes the socket: the raw client sees a Close or the end.
            loop {
                match within("the close", ws.next()).await {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                }
            }
            within("the server side to close", accepted.sender.closed()).await;
        }
    }

    #[tokio::test]
    async fn json_responses_say_they_are_json() {
        let server = start(1024).await;
        let stream = TcpStream::connect(server.addr).await.expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let req = Request::get("/health")
            .header(HOST, "localhost")
            .header(AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let response = sender.send_request(req).await.expect("response");
        assert_eq!(
            response
                .headers()
                .get(CONTENT_TYPE)
                .map(HeaderValue::as_bytes),
            Some(&b"application/json"[..])
        );
    }
}
