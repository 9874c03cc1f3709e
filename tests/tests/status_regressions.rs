//! Regressions found by the adversarial review of the status endpoint: stalled clients,
//! token encodings and schemes, HEAD, idle and shut-down connections.
//!
//! Tests named in the review report as failing reproduce a bug; the others guard subtle
//! behaviour that was checked and found right.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pm_runtime::prelude::*;
use pm_runtime::{StatusOptions, StatusServer};
use pm_tests::http::{exchange, Reply};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// `GET target` with `Connection: close` and extra header lines.
async fn get_with(address: SocketAddr, target: &str, headers: &str) -> Reply {
    exchange(
        address,
        format!("GET {target} HTTP/1.1\r\nHost: {address}\r\n{headers}Connection: close\r\n\r\n"),
        Duration::from_secs(30),
    )
    .await
}

/// What `encodeURIComponent` leaves unescaped.
fn encode_uri_component(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// What `new URLSearchParams(query).get(name)` returns: form decoding (`+` is a space).
fn url_search_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| {
            let bytes = value.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                match bytes[i] {
                    b'+' => out.push(b' '),
                    b'%' if i + 2 < bytes.len() => {
                        let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
                        match u8::from_str_radix(hex, 16) {
                            Ok(b) => {
                                out.push(b);
                                i += 2;
                            }
                            Err(_) => out.push(b'%'),
                        }
                    }
                    b => out.push(b),
                }
                i += 1;
            }
            String::from_utf8_lossy(&out).into_owned()
        })
    })
}

// ---------------------------------------------------------------------------------------
// The status endpoint
// ---------------------------------------------------------------------------------------

fn status_manager() -> ProcessManager {
    ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Worker,
        ..Default::default()
    })
}

/// The page reads its token with `URLSearchParams` (which form-decodes: `+` is a space) and
/// sends it back with `encodeURIComponent`; the server compares the raw query text without
/// percent-decoding, and `StatusServer::url` does not percent-encode the token. A token
/// with `/`, `+` or `=` (base64, say) opens a page that can never read `/status`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_can_read_the_status_with_a_token_that_needs_percent_encoding() {
    let pm = status_manager();
    let token = "c2VjcmV0+c3RhdHVz/dG9rZW4=";
    let server = pm
        .serve_status(StatusOptions {
            token: Some(token.to_owned()),
            ..Default::default()
        })
        .await
        .expect("serve");
    let address = server.local_addr();
    // The header form works.
    let by_header = get_with(
        address,
        "/status",
        &format!("Authorization: Bearer {token}\r\n"),
    )
    .await;
    assert_eq!(by_header.status, 200);
    // What the page at `server.url()` sends.
    let url = server.url();
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let page_token = url_search_param(query, "token").unwrap_or_default();
    let page_request = format!("/status?token={}", encode_uri_component(&page_token));
    let by_page = get_with(address, &page_request, "").await;
    // And a correctly percent-encoded token, whatever the page does.
    let encoded = format!("/status?token={}", encode_uri_component(token));
    let by_encoded_query = get_with(address, &encoded, "").await;
    server.shutdown().await;
    pm.shutdown().await.expect("shutdown");
    assert_eq!(
        by_encoded_query.status, 200,
        "a percent-encoded token was refused ({encoded})"
    );
    assert_eq!(
        by_page.status, 200,
        "the page opened at {url} asks {page_request} and is refused"
    );
}

/// RFC 9110 §11.1: the authentication scheme is case-insensitive; `bearer <token>` is as
/// valid as `Bearer <token>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_matched_case_insensitively() {
    let pm = status_manager();
    let token = "a-status-token-of-some-length";
    let server = pm
        .serve_status(StatusOptions {
            token: Some(token.to_owned()),
            ..Default::default()
        })
        .await
        .expect("serve");
    let reply = get_with(
        server.local_addr(),
        "/status",
        &format!("Authorization: bearer {token}\r\n"),
    )
    .await;
    server.shutdown().await;
    pm.shutdown().await.expect("shutdown");
    assert_eq!(reply.status, 200, "{reply:?}");
}

/// Guard: HEAD gets the headers of GET and no body; an unauthenticated HEAD is refused too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_is_answered_without_a_body_and_needs_the_token_too() {
    let pm = status_manager();
    let token = "a-status-token-of-some-length";
    let server = pm
        .serve_status(StatusOptions {
            token: Some(token.to_owned()),
            ..Default::default()
        })
        .await
        .expect("serve");
    let address = server.local_addr();
    let head = |auth: String| {
        exchange(
            address,
            format!("HEAD /metrics HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"),
            Duration::from_secs(30),
        )
    };
    let refused = head(String::new()).await;
    let served = head(format!("Authorization: Bearer {token}\r\n")).await;
    server.shutdown().await;
    pm.shutdown().await.expect("shutdown");
    assert_eq!(refused.status, 401);
    assert_eq!(served.status, 200, "{served:?}");
    assert!(served.body.is_empty(), "{served:?}");
    assert!(
        served
            .head
            .to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{served:?}"
    );
}

/// A connection to `address` whose receive buffer is as small as the kernel allows, so the
/// server's replies back up after a few kilobytes.
fn small_window_connection(address: SocketAddr) -> std::net::TcpStream {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(v4) = address else {
        panic!("loopback v4 expected")
    };
    // SAFETY: plain socket calls on a descriptor this function owns; the sockaddr is a
    // fully initialised local of the right size.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let size: libc::c_int = 4096;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            std::ptr::from_ref(&size).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::connect(
            fd,
            std::ptr::from_ref(&sin).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert!(rc == 0, "connect: {}", std::io::Error::last_os_error());
        std::net::TcpStream::from_raw_fd(fd)
    }
}

/// Every one of the 64 connection slots can be held forever, without a token, by a client
/// that pipelines requests and never reads the replies: hyper has no write timeout, and the
/// header timeout only runs while it waits for a request head. Once 64 such connections
/// exist the accept loop stops accepting and the endpoint is dead to everyone (a scrape
/// waits in the backlog forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_cannot_hold_every_status_connection_forever() {
    let pm = status_manager();
    let server = pm
        .serve_status(StatusOptions {
            token: Some("a-status-token-of-some-length".into()),
            ..Default::default()
        })
        .await
        .expect("serve");
    let address = server.local_addr();
    let stalled = tokio::task::spawn_blocking(move || {
        // Unauthenticated: each answer is a 401.
        let batch = "GET /status HTTP/1.1\r\nHost: x\r\n\r\n".repeat(2000);
        (0..64)
            .map(|_| {
                let mut stream = small_window_connection(address);
                stream
                    .set_write_timeout(Some(Duration::from_millis(500)))
                    .expect("timeout");
                // The server stops reading once its replies back up: the write may stall.
                for _ in 0..20 {
                    if stream.write_all(batch.as_bytes()).is_err() {
                        break;
                    }
                }
                stream
            })
            .collect::<Vec<_>>()
    })
    .await
    .expect("connections");
    // Longer than the 10 s header timeout: the slots are not freed by it.
    let scrape = exchange(
        address,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a-status-token-of-some-length\r\nConnection: close\r\n\r\n"
            .to_owned(),
        Duration::from_secs(15),
    )
    .await;
    drop(stalled);
    server.shutdown().await;
    pm.shutdown().await.expect("shutdown");
    assert_eq!(
        scrape.status, 200,
        "64 clients that never read hold every slot: an authorised scrape got no answer in 15 s"
    );
}

/// Guard: a keep-alive connection left idle after a request is closed by the server (hyper
/// restarts the header timeout while it waits for the next request), so idle clients do not
/// hold one of the 64 slots forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_by_the_server() {
    let pm = status_manager();
    let server: StatusServer = pm
        .serve_status(StatusOptions::default())
        .await
        .expect("serve");
    let address = server.local_addr();
    let (answered, closed_after) = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(address).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        stream
            .write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("send");
        let started = Instant::now();
        let mut bytes = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
                Err(_) => return (false, None),
            }
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        (text.starts_with("HTTP/1.1 200"), Some(started.elapsed()))
    })
    .await
    .expect("ran");
    server.shutdown().await;
    pm.shutdown().await.expect("shutdown");
    assert!(answered);
    let closed_after = closed_after.expect("the server never closed the idle connection");
    assert!(closed_after < Duration::from_secs(20), "{closed_after:?}");
}

/// Guard: `StatusServer::shutdown` ends connections already open, not only the listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutting_the_status_server_down_ends_its_open_connections() {
    let pm = status_manager();
    let server = pm
        .serve_status(StatusOptions::default())
        .await
        .expect("serve");
    let address = server.local_addr();
    let mut stream = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(address).expect("connect");
        // Half a request head: the connection is open and being served.
        stream
            .write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n")
            .expect("send");
        stream
    })
    .await
    .expect("ran");
    // The connection has been accepted once a full request on another one is answered.
    let other = get_with(address, "/status", "").await;
    assert_eq!(other.status, 200);
    server.shutdown().await;
    let ended = tokio::task::spawn_blocking(move || {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut rest = Vec::new();
        // EOF or a reset, not a timeout.
        match stream.read_to_end(&mut rest) {
            Ok(_) => true,
            Err(err) => !matches!(
                err.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    })
    .await
    .expect("ran");
    pm.shutdown().await.expect("shutdown");
    assert!(ended, "a connection outlived the server's shutdown");
}
