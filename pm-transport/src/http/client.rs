//! The client side: a frame connection over a WebSocket opened with `GET /ws`.

use std::io;
use std::net::SocketAddr;

use hyper::header::{HeaderValue, AUTHORIZATION};
use hyper::StatusCode;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Error as WsError;

use super::{ws_config, ws_connection};
use crate::connection::Connection;

/// Connects to a process's HTTP endpoint at `addr`, upgrades `GET /ws` with
/// `Authorization: Bearer <token>`, and returns a frame [`Connection`] accepting frame bodies
/// up to `max_frame` bytes.
///
/// A refused token fails with [`io::ErrorKind::PermissionDenied`]; any other refusal of the
/// upgrade with [`io::ErrorKind::ConnectionRefused`]. Must be called inside a tokio runtime
/// (the connection's tasks are spawned on it).
pub async fn connect_http(
    addr: SocketAddr,
    token: &str,
    max_frame: usize,
) -> io::Result<Connection> {
    let mut request = format!("ws://{addr}/ws")
        .into_client_request()
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err.to_string()))?;
    let mut auth = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the token cannot be sent in an HTTP header",
        )
    })?;
    auth.set_sensitive(true);
    request.headers_mut().insert(AUTHORIZATION, auth);
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (ws, _response) =
        tokio_tungstenite::client_async_with_config(request, stream, Some(ws_config(max_frame)))
            .await
            .map_err(handshake_error)?;
    Ok(ws_connection(ws, max_frame))
}

fn handshake_error(err: WsError) -> io::Error {
    match err {
        WsError::Io(err) => err,
        WsError::Http(response) if response.status() == StatusCode::UNAUTHORIZED => io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the process refused the bearer token (HTTP 401)",
        ),
        WsError::Http(response) => io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!(
                "the WebSocket upgrade was refused with HTTP {}",
                response.status()
            ),
        ),
        other => io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the WebSocket handshake failed: {other}"),
        ),
    }
}
