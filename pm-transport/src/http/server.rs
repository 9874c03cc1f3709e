//! The HTTP server: bearer-token check, JSON API and WebSocket upgrade.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{
    HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE,
    SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use subtle::ConstantTimeEq;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use super::{ws_config, ws_connection, HttpApi, HttpError, HttpLimits};
use crate::connection::Connection;
use crate::WriteDeadline;

type Body = Full<Bytes>;

/// What every connection of one server shares.
struct Shared {
    token: String,
    max_frame: usize,
    limits: HttpLimits,
    api: Arc<dyn HttpApi>,
    connections: mpsc::Sender<Connection>,
}

/// Serves HTTP/1.1 on `listener` until the returned future is dropped (dropping it also ends
/// the HTTP connections it accepted; WebSocket connections already handed out live on).
///
/// Every request must carry `Authorization: Bearer <token>`, compared in constant time;
/// otherwise it is answered 401, logged with `tracing::warn`, and nothing is dispatched. An
/// empty `token` refuses every request.
///
/// - `GET /ws` with a WebSocket upgrade becomes a frame [`Connection`] (each binary message
///   carries exactly one frame in wire form, length prefix included, with a body of at most
///   `max_frame` bytes) that is sent into `connections`.
/// - `POST /call/{method}` with a JSON array body of at most `max_frame` bytes (else 413)
///   goes to [`HttpApi::call`]; a body that is not a JSON array is answered 400.
/// - `GET /health` goes to [`HttpApi::health`].
/// - Anything else is answered 404.
///
/// Slow and idle clients are bounded by `limits` (see [`HttpLimits`]): headers and bodies
/// that take too long end their connection, and connections beyond the cap are closed as
/// soon as they are accepted.
pub async fn serve_http(
    listener: TcpListener,
    token: String,
    max_frame: usize,
    limits: HttpLimits,
    api: Arc<dyn HttpApi>,
    connections: mpsc::Sender<Connection>,
) {
    if token.is_empty() {
        tracing::warn!("the HTTP bearer token is empty: every request will be refused");
    }
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let shared = Arc::new(Shared {
        token,
        max_frame,
        limits,
        api,
        connections,
    });
    let mut tasks = JoinSet::new();
    let mut turned_away: u64 = 0;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        tasks.spawn(serve_connection(stream, peer, shared.clone(), slot));
                    }
                    Err(_) => {
                        drop(stream);
                        turned_away += 1;
                        // One warning for the first and then one per thousand: a flood of
                        // connections must not become a flood of log lines.
                        if turned_away % 1000 == 1 {
                            tracing::warn!(
                                %peer,
                                turned_away,
                                max_connections = shared.limits.max_connections,
                                "HTTP connection closed at once: the server is at its connection limit"
                            );
                        }
                    }
                },
                Err(err) => {
                    // Usually out of file descriptors: give the process a moment.
                    tracing::warn!(%err, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
}

/// Serves one HTTP connection; `_slot` is its place under the connection limit, given back
/// when the connection ends or is upgraded.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    _slot: OwnedSemaphorePermit,
) {
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(%err, %peer, "could not disable Nagle's algorithm");
    }
    let header_timeout = shared.limits.header_timeout;
    let write_timeout = shared.limits.write_timeout;
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(req, peer, shared).await) }
    });
    let result = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(
            TokioIo::new(WriteDeadline::new(stream, write_timeout)),
            service,
        )
        .with_upgrades()
        .await;
    if let Err(err) = result {
        tracing::debug!(%err, %peer, "HTTP connection ended with an error");
    }
}

async fn handle(req: Request<Incoming>, peer: SocketAddr, shared: Arc<Shared>) -> Response<Body> {
    if !authorized(req.headers(), &shared.token) {
        tracing::warn!(
            %peer,
            method = %req.method(),
            path = req.uri().path(),
            "HTTP request without a valid bearer token refused"
        );
        let mut response = error_response(StatusCode::UNAUTHORIZED, "unauthorized");
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    let path = req.uri().path();
    if req.method() == Method::GET && path == "/health" {
        let health = shared.api.health().await;
        let status = if health.serving {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        return json_response(status, &health.body);
    }
    if req.method() == Method::GET && path == "/ws" {
        return upgrade(req, peer, shared);
    }
    if req.method() == Method::POST {
        if let Some(method) = path.strip_prefix("/call/") {
            if !method.is_empty() && !method.contains('/') {
                let method = method.to_owned();
                return call(req, method, &shared).await;
            }
        }
    }
    error_response(StatusCode::NOT_FOUND, "not found")
}

/// Whether the request carries exactly one `Authorization: Bearer <token>` with the right
/// token. The token is compared in constant time.
fn authorized(headers: &HeaderMap, token: &str) -> bool {
    const SCHEME: &[u8] = b"bearer ";
    if token.is_empty() {
        return false;
    }
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    let value = value.as_bytes();
    if value.len() < SCHEME.len() || !value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        return false;
    }
    let given = value[SCHEME.len()..].trim_ascii();
    given.ct_eq(token.as_bytes()).into()
}

async fn call(req: Request<Incoming>, method: String, shared: &Shared) -> Response<Body> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > shared.max_frame as u64) {
        return too_large(shared.max_frame);
    }
    let collected = tokio::time::timeout(
        shared.limits.body_timeout,
        Limited::new(req.into_body(), shared.max_frame).collect(),
    )
    .await;
    let body = match collected {
        Err(_) => {
            let mut response = error_response(
                StatusCode::REQUEST_TIMEOUT,
                &format!(
                    "the body did not arrive within {:?}",
                    shared.limits.body_timeout
                ),
            );
            // The rest of a body that is still on its way cannot be told from a next request.
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            return response;
        }
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => {
            return too_large(shared.max_frame)
        }
        Ok(Err(err)) => {
            tracing::debug!(%err, "could not read an HTTP request body");
            return error_response(StatusCode::BAD_REQUEST, "could not read the request body");
        }
    };
    let args = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(args) if args.is_array() => args,
        Ok(_) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "the body must be a JSON array of arguments",
            )
        }
        Err(err) => {
            return error_response(StatusCode::BAD_REQUEST, &format!("invalid JSON: {err}"))
        }
    };
    match shared.api.call(method, args).await {
        Ok(value) => json_response(StatusCode::OK, &value),
        Err(HttpError { status, message }) => {
            let status = StatusCode::from_u16(status)
                .ok()
                .filter(|s| s.is_client_error() || s.is_server_error())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            error_response(status, &message)
        }
    }
}

fn too_large(max_frame: usize) -> Response<Body> {
    error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("the body exceeds the limit of {max_frame} bytes"),
    )
}

/// Answers a WebSocket upgrade with 101 and hands the upgraded socket, once hyper lets go
/// of it, to a task that wraps it as a frame connection.
fn upgrade(mut req: Request<Incoming>, peer: SocketAddr, shared: Arc<Shared>) -> Response<Body> {
    let headers = req.headers();
    if !has_token(headers, &CONNECTION, "upgrade") || !has_token(headers, &UPGRADE, "websocket") {
        let mut response = error_response(
            StatusCode::UPGRADE_REQUIRED,
            "GET /ws needs a WebSocket upgrade",
        );
        response
            .headers_mut()
            .insert(UPGRADE, HeaderValue::from_static("websocket"));
        return response;
    }
    if headers
        .get(SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        let mut response = error_response(
            StatusCode::UPGRADE_REQUIRED,
            "only WebSocket version 13 is supported",
        );
        response
            .headers_mut()
            .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        return response;
    }
    let Some(key) = headers.get(SEC_WEBSOCKET_KEY).filter(|k| !k.is_empty()) else {
        return error_response(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
    };
    let accept = derive_accept_key(key.as_bytes());
    let Ok(accept) = HeaderValue::from_str(&accept) else {
        return error_response(StatusCode::INTERNAL_SERVER_ERROR, "bad accept key");
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(err) => {
                tracing::debug!(%err, %peer, "WebSocket upgrade failed");
                return;
            }
        };
        let ws = WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            Some(ws_config(shared.max_frame)),
        )
        .await;
        let connection = ws_connection(ws, shared.max_frame);
        tracing::debug!(%peer, "WebSocket frame connection accepted");
        if shared.connections.send(connection).await.is_err() {
            tracing::debug!(%peer, "nobody takes connections any more; dropping it");
        }
    });
    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    response
}

/// Whether a comma-separated header lists `token` (case-insensitively).
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let (status, body) = match serde_json::to_vec(value) {
        Ok(body) => (status, body),
        Err(err) => {
            tracing::warn!(%err, "could not encode a JSON response");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                br#"{"error":"could not encode the response"}"#.to_vec(),
            )
        }
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn error_response(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &serde_json::json!({ "error": message }))
}
