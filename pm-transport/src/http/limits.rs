//! The limits that keep slow, idle or numerous HTTP clients from holding the server.

use std::time::Duration;

/// How long an HTTP client may take, and how many may be served at once, so that slow
/// clients (a slow-loris attack, or a stuck proxy) cannot hold the server's connections.
///
/// The defaults suit a process on a private network or behind a proxy. [`serve_http`]
/// applies the header and body timeouts and the connection cap to a connection until it is
/// upgraded to WebSocket (which takes the token); the write timeout applies after the upgrade
/// too.
///
/// [`serve_http`]: crate::serve_http
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// How long a client may take to send a request's headers: counted from when the
    /// connection opens, and again from when the previous response was sent, so an idle
    /// keep-alive connection is closed after it too. Default: 30 s.
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body once its headers are in; a
    /// slower body is answered 408 and the connection closed. Default: 30 s.
    pub body_timeout: Duration,
    /// How long a write may wait for the client to read: a client that stops reading its
    /// answers (or, after an upgrade, its WebSocket frames) is dropped after it. Default: 30 s.
    pub write_timeout: Duration,
    /// HTTP connections served at once. A connection accepted beyond it is closed at once
    /// (and counted in a warning); a connection stops counting once upgraded to WebSocket.
    /// Default: 1024.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::{serve_http, HealthReport, HttpApi, HttpError};

    const TOKEN: &str = "slow-client-token";

    struct Api;

    impl HttpApi for Api {
        fn call(
            &self,
            _method: String,
            args: serde_json::Value,
        ) -> Pin<Box<dyn Future<Output = Result<serde_json::Value, HttpError>> + Send + '_>>
        {
            Box::pin(async move { Ok(args) })
        }

        fn health(&self) -> Pin<Box<dyn Future<Output = HealthReport> + Send + '_>> {
            Box::pin(async {
                HealthReport {
                    serving: true,
                    body: serde_json::json!({ "status": "healthy" }),
                }
            })
        }
    }

    /// A server with `limits`, aborted when dropped.
    struct Server {
        addr: std::net::SocketAddr,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    async fn start(limits: HttpLimits) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (connections, _) = tokio::sync::mpsc::channel(1);
        let task = tokio::spawn(serve_http(
            listener,
            TOKEN.to_owned(),
            1 << 20,
            limits,
            Arc::new(Api),
            connections,
        ));
        Server { addr, task }
    }

    fn quick() -> HttpLimits {
        HttpLimits {
            header_timeout: Duration::from_millis(500),
            body_timeout: Duration::from_millis(500),
            write_timeout: Duration::from_millis(500),
            max_connections: 4,
        }
    }

    /// Reads until the server closes the connection, for at most 10 s; what it sent, and
    /// whether it closed.
    async fn until_closed(stream: &mut TcpStream) -> (String, bool) {
        let mut seen = Vec::new();
        let mut chunk = [0u8; 1024];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
                Err(_) => return (String::from_utf8_lossy(&seen).into_owned(), false),
                Ok(Ok(0)) | Ok(Err(_)) => {
                    return (String::from_utf8_lossy(&seen).into_owned(), true)
                }
                Ok(Ok(n)) => seen.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn health_request() -> String {
        format!("GET /health HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n\r\n")
    }

    #[tokio::test]
    async fn a_client_that_trickles_its_headers_is_closed_after_the_header_timeout() {
        let server = start(quick()).await;
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        let started = Instant::now();
        // One byte every 100 ms, never finishing the headers; the writes fail once closed.
        let trickle = async {
            for byte in health_request().bytes().cycle() {
                if stream.write_all(&[byte]).await.is_err() {
                    break;
                }
                let mut probe = [0u8; 1];
                match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut probe))
                    .await
                {
                    Err(_) => {}
                    Ok(_) => break,
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), trickle)
            .await
            .expect("the trickling connection was never closed");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(400),
            "closed after {waited:?}, before the header timeout"
        );
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
        let server = start(quick()).await;
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        stream
            .write_all(health_request().as_bytes())
            .await
            .expect("request");
        let (answer, closed) = until_closed(&mut stream).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(closed, "an idle keep-alive connection was held for 10 s");
    }

    #[tokio::test]
    async fn a_body_sent_slowly_is_answered_408_and_the_connection_closed() {
        let server = start(quick()).await;
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        let head = format!(
            "POST /call/echo HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\ncontent-length: 100\r\n\r\n["
        );
        stream.write_all(head.as_bytes()).await.expect("head");
        let mut answer = Vec::new();
        let trickle = async {
            let mut chunk = [0u8; 1024];
            loop {
                if stream.write_all(b"1,").await.is_err() {
                    break;
                }
                match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut chunk))
                    .await
                {
                    Err(_) => {}
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(n)) => answer.extend_from_slice(&chunk[..n]),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), trickle)
            .await
            .expect("the slow body was never cut off");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_its_answers_is_dropped_after_the_write_timeout() {
        let server = start(HttpLimits {
            header_timeout: Duration::from_secs(60),
            ..quick()
        })
        .await;
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("buffer size");
        let mut stream = socket.connect(server.addr).await.expect("connect");
        // Requests pipelined as fast as they go, answers never read: once the answers fill
        // the socket the server's writes stall, and it drops the connection, which makes
        // these writes fail.
        let requests = health_request().repeat(100);
        let pipelined = async { while stream.write_all(requests.as_bytes()).await.is_ok() {} };
        tokio::time::timeout(Duration::from_secs(20), pipelined)
            .await
            .expect("the server held a connection whose client reads nothing");
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_are_closed_at_once_and_a_freed_slot_serves_again() {
        let server = start(HttpLimits {
            header_timeout: Duration::from_secs(60),
            ..quick()
        })
        .await;
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(TcpStream::connect(server.addr).await.expect("connect"));
        }
        // Accepted, then closed without a byte, well before the header timeout.
        let mut extra = TcpStream::connect(server.addr).await.expect("connect");
        let (answer, closed) = until_closed(&mut extra).await;
        assert!(closed && answer.is_empty(), "{answer:?}, closed: {closed}");
        // One held connection goes; its slot serves a new client (once the server has seen
        // it go).
        drop(held.pop());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut stream = TcpStream::connect(server.addr).await.expect("connect");
            stream
                .write_all(health_request().as_bytes())
                .await
                .expect("request");
            let mut first = [0u8; 12];
            let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut first)).await;
            if let Ok(Ok(n)) = read {
                if n > 0 {
                    assert!(first[..n].starts_with(b"HTTP/1.1 200"));
                    break;
                }
            }
            assert!(Instant::now() < deadline, "the freed slot never served");
            tokio::task::yield_now().await;
        }
    }
}
