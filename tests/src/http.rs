//! Plain HTTP/1.1 exchanges with a server under test, over a fresh blocking connection.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

/// What a request brought back.
#[derive(Debug)]
pub struct Reply {
    /// The status code; 0 when nothing (or no status line) came back.
    pub status: u16,
    /// The status line and headers.
    pub head: String,
    /// Everything after the headers.
    pub body: String,
}

/// Sends `raw` on a fresh connection and reads the answer to the close (or `read_timeout`,
/// which leaves what was read so far).
///
/// # Panics
/// When the connection cannot be made or written to.
pub async fn exchange(address: SocketAddr, raw: String, read_timeout: Duration) -> Reply {
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(address).expect("connect");
        stream
            .set_read_timeout(Some(read_timeout))
            .expect("timeout");
        stream.write_all(raw.as_bytes()).expect("send");
        let mut bytes = Vec::new();
        let _ = stream.read_to_end(&mut bytes);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Reply {
            status,
            head: head.to_owned(),
            body: body.to_owned(),
        }
    })
    .await
    .expect("the request ran")
}

/// `method target` with `Connection: close`, a bearer token when given, read for up to 30 s.
pub async fn request(
    address: SocketAddr,
    method: &str,
    target: &str,
    token: Option<&str>,
) -> Reply {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    exchange(
        address,
        format!("{method} {target} HTTP/1.1\r\nHost: {address}\r\n{auth}Connection: close\r\n\r\n"),
        Duration::from_secs(30),
    )
    .await
}
