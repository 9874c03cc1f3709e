//! What an adversarial review of backpressure and the HTTP limits probed: the two bugs it
//! found (kept as regression tests) and the behaviours it confirmed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pm_core::wire::{encode_call, FrameBuilder, FrameKind};
use pm_runtime::prelude::*;
use pm_runtime::Error;
use pm_tests::standalone::{next_frame, Host};
use pm_tests::{within, Lifecycle, Stopped};
use pm_transport::{Connection, HealthReport, HttpApi, HttpError, HttpLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIFECYCLE: &str = env!("CARGO_BIN_EXE_test-lifecycle");
const TOKEN: &str = "0123456789abcdef-review-token";

/// The highest growth of the host's memory over `window`, stopping early once it passes
/// `limit`.
async fn highest_growth(host: &Host, before: u64, window: Duration, limit: u64) -> u64 {
    let started = Instant::now();
    let mut highest = 0;
    while started.elapsed() < window {
        highest = highest.max(host.rss().saturating_sub(before));
        if highest > limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    highest
}

// ---------------------------------------------------------------------------------------
// Regression: once a connection had asked for a shutdown, the process refused every further
// call with an error reply, reading as fast as the client sent and ignoring the backlog: a
// client that flooded calls and read nothing made the reply queue grow without bound for the
// whole grace period (133 MiB in 8 s). The refusals now stop while backlogged.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_during_a_shutdown_are_held_to_the_backlog_limit() {
    let host = Host::start(LIFECYCLE, "unix:", TOKEN);
    let greedy = host.handshaken(TOKEN).await;
    let before = host.rss();
    // A call that keeps the drain waiting, then a shutdown with a long grace.
    let slow = encode_call(50, "slow", None, &(60_000u64,), 1 << 20).expect("encodes");
    greedy.sender.send(slow).expect("open");
    let mut shutdown = FrameBuilder::new(FrameKind::Shutdown, 51, 1 << 20);
    shutdown.value(&60_000u64).expect("grace");
    greedy
        .sender
        .send(shutdown.finish().expect("fits"))
        .expect("open");
    // 1.5 million tiny calls, ~30 MB offered; every refusal is a larger frame.
    for id in 0..1_500_000u64 {
        let call = encode_call(100 + id, "pid", None, &(), 1 << 20).expect("encodes");
        greedy.sender.send(call).expect("open");
    }
    let grown = highest_growth(&host, before, Duration::from_secs(8), 96 << 20).await;
    assert!(
        grown < 96 << 20,
        "the host grew by {} MiB of refusals queued for a client that reads nothing",
        grown >> 20
    );
    drop(greedy);
}

// ---------------------------------------------------------------------------------------
// Regression: the 4 MiB bound on a stuck client's replies held only for small replies.
// Reading stopped once the queue was backlogged, but every call already read still ran and
// queued its reply: up to max_in_flight (1,024) replies of up to the frame limit (the host
// grew by 365-903 MiB here). A call read before the backlog formed now waits to run until it
// drains.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_client_of_large_replies_is_held_near_the_backlog_limit() {
    let host = Host::start(LIFECYCLE, "unix:", TOKEN);
    let mut bystander = host.handshaken(TOKEN).await;
    let greedy = host.handshaken(TOKEN).await;
    let before = host.rss();
    // 1,000 calls (under max_in_flight) of a 1 MiB reply each, never read.
    for id in 0..1000u64 {
        let call =
            encode_call(100 + id, "payload", None, &(1u64 << 20,), 1 << 20).expect("encodes");
        greedy.sender.send(call).expect("open");
    }
    // Sampled over the whole window, to report the real figure.
    let grown = highest_growth(&host, before, Duration::from_secs(3), u64::MAX).await;
    // The host still serves others.
    let call = encode_call(10, "pid", None, &(), 1 << 20).expect("encodes");
    bystander.sender.send(call).expect("open");
    let reply = next_frame(&mut bystander.receiver).await;
    assert_eq!(reply.kind(), FrameKind::ReplyOk, "{reply:?}");
    assert!(
        grown < 64 << 20,
        "the host grew by {} MiB for a client that reads nothing (BACKLOG_LIMIT is 4 MiB)",
        grown >> 20
    );
    drop(greedy);
}

// ---------------------------------------------------------------------------------------
// Confirmed (wake-up): a call with a long deadline that waits for a stopped process's backlog
// to drain proceeds once the process continues; a kill ends such a wait with an error.
// ---------------------------------------------------------------------------------------

/// Offers 256 KiB calls with a short deadline until one times out before it is sent
/// (the connection is backlogged): returns once the backlog is known to be full.
async fn fill_backlog(handle: &ProcessHandle<Lifecycle>) {
    let short = ProcessHandle::with_timeout(handle, Duration::from_millis(20));
    let argument = "a".repeat(256 << 10);
    // 4 MiB at 256 KiB a call is 16 calls; 64 is plenty.
    for _ in 0..64 {
        let _ = short.swallow(argument.clone()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_waiting_on_a_backlog_proceeds_once_the_process_continues_and_a_kill_ends_it() {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        ..Default::default()
    });
    let stuck = pm
        .spawn::<Lifecycle>(LIFECYCLE, SpawnOptions::default().name("stuck"))
        .await
        .expect("spawn");
    let pid = stuck.pid().await.expect("pid");
    let stopped = Stopped::stop(pid);
    fill_backlog(&stuck).await;
    let patient = ProcessHandle::with_timeout(&stuck, Duration::from_secs(60));
    let waiting = tokio::spawn(async move { patient.pid().await });
    // An absence window: it must be waiting, not answered.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "answered while the process is stopped"
    );
    drop(stopped);
    let answered = within("the waiting call", Duration::from_secs(30), waiting)
        .await
        .expect("task");
    assert_eq!(answered.expect("answered once continued"), pid);

    // Stopped and backlogged again: a kill ends the waiting call with an error.
    let stopped = Stopped::stop(pid);
    fill_backlog(&stuck).await;
    let patient = ProcessHandle::with_timeout(&stuck, Duration::from_secs(60));
    let waiting = tokio::spawn(async move { patient.pid().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "answered while the process is stopped"
    );
    within("the kill", Duration::from_secs(30), pm.kill(stuck.id()))
        .await
        .expect("kill");
    let ended = within(
        "the waiting call after a kill",
        Duration::from_secs(30),
        waiting,
    )
    .await
    .expect("task");
    assert!(
        matches!(
            ended,
            Err(Error::Unavailable { .. } | Error::ProcessExited { .. } | Error::Transport(_))
        ),
        "{ended:?}"
    );
    drop(stopped);
    within("shutdown", Duration::from_secs(30), pm.shutdown())
        .await
        .expect("shutdown");
}

// ---------------------------------------------------------------------------------------
// HTTP limits, at the transport, with short limits.
// ---------------------------------------------------------------------------------------

/// Echoes its arguments; panics on `boom`.
struct Api;

impl HttpApi for Api {
    fn call(
        &self,
        method: String,
        args: serde_json::Value,
    ) -> Pin<Box<dyn Future<Output = Result<serde_json::Value, HttpError>> + Send + '_>> {
        Box::pin(async move {
            assert!(method != "boom", "the API panicked");
            Ok(args)
        })
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

struct Server {
    addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
    connections: tokio::sync::mpsc::Receiver<Connection>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start(limits: HttpLimits) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, connections) = tokio::sync::mpsc::channel(16);
    let task = tokio::spawn(pm_transport::serve_http(
        listener,
        TOKEN.to_owned(),
        1 << 20,
        limits,
        Arc::new(Api),
        tx,
    ));
    Server {
        addr,
        task,
        connections,
    }
}

fn quick(max_connections: usize) -> HttpLimits {
    HttpLimits {
        header_timeout: Duration::from_millis(500),
        body_timeout: Duration::from_millis(500),
        write_timeout: Duration::from_millis(500),
        max_connections,
    }
}

/// Reads until the server closes, for at most `limit`: what it sent, and whether it closed.
async fn until_closed(stream: &mut tokio::net::TcpStream, limit: Duration) -> (String, bool) {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => return (String::from_utf8_lossy(&seen).into_owned(), false),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&seen).into_owned(), true),
            Ok(Ok(n)) => seen.extend_from_slice(&chunk[..n]),
        }
    }
}

/// One request on a fresh connection, `Connection: close`: the whole answer.
async fn request(addr: std::net::SocketAddr, head: &str, body: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "{head} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    until_closed(&mut stream, Duration::from_secs(10)).await.0
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout_and_frees_its_slot() {
    let server = start(quick(1)).await;
    let mut silent = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let (_, closed) = until_closed(&mut silent, Duration::from_secs(10)).await;
    assert!(
        closed,
        "a connection that never sent a byte was held for 10 s"
    );
    let answer = request(server.addr, "GET /health", "").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
}

#[tokio::test]
async fn a_panicking_handler_gives_its_connection_slot_back() {
    let server = start(quick(2)).await;
    for _ in 0..5 {
        let answer = request(server.addr, "POST /call/boom", "[1]").await;
        assert!(!answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    }
    let answer = request(server.addr, "GET /health", "").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
}

#[tokio::test]
async fn a_408_closes_the_connection_without_serving_the_rest_of_the_body_as_a_request() {
    let server = start(quick(4)).await;
    let mut stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    // Headers, part of the body, then (after the body timeout) the rest of the body shaped
    // like a request of its own.
    let smuggled =
        format!("GET /health HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n\r\n");
    let head = format!(
        "POST /call/echo HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\ncontent-length: {}\r\n\r\n[",
        smuggled.len() + 1
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    let mut first = Vec::new();
    let mut chunk = [0u8; 4096];
    let got = within("the 408", Duration::from_secs(10), async {
        loop {
            let n = stream.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            first.extend_from_slice(&chunk[..n]);
            if first.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        String::from_utf8_lossy(&first).into_owned()
    })
    .await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got:?}");
    let _ = stream.write_all(smuggled.as_bytes()).await;
    let (rest, closed) = until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(closed, "the connection stayed open after a 408");
    assert!(!rest.contains("HTTP/1.1 200"), "{rest:?}");
}

#[tokio::test]
async fn websocket_connections_give_their_slot_back_and_an_idle_one_outlives_the_write_timeout() {
    let mut server = start(quick(2)).await;
    let address: pm_transport::Address =
        format!("http://{}", server.addr).parse().expect("address");
    let mut clients = Vec::new();
    let mut served = Vec::new();
    for _ in 0..4 {
        clients.push(
            pm_transport::connect(&address, TOKEN, 1 << 20)
                .await
                .expect("a WebSocket beyond the cap is accepted once upgraded"),
        );
        served.push(
            within(
                "the upgraded connection",
                Duration::from_secs(10),
                server.connections.recv(),
            )
            .await
            .expect("handed over"),
        );
    }
    let answer = request(server.addr, "GET /health", "").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    // Idle for more than the write timeout, then frames both ways.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for (client, served) in clients.iter_mut().zip(served.iter_mut()) {
        let call = encode_call(7, "m", None, &(), 1 << 20).expect("encodes");
        served.sender.send(call).expect("open");
        let frame = next_frame(&mut client.receiver).await;
        assert_eq!(frame.id(), 7);
        let call = encode_call(8, "m", None, &(), 1 << 20).expect("encodes");
        client.sender.send(call).expect("open");
        let frame = next_frame(&mut served.receiver).await;
        assert_eq!(frame.id(), 8);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_client_that_reads_slowly_but_steadily_is_not_dropped() {
    let mut server = start(quick(4)).await;
    let address: pm_transport::Address =
        format!("http://{}", server.addr).parse().expect("address");
    let mut client = pm_transport::connect(&address, TOKEN, 1 << 20)
        .await
        .expect("connect");
    let served = within(
        "the upgraded connection",
        Duration::from_secs(10),
        server.connections.recv(),
    )
    .await
    .expect("handed over");
    // 52 MiB queued at once. The client's transport reads 64 frames ahead, then the socket
    // fills; from then on the client takes a 512 KiB frame every 50 ms (10 MB/s), so no
    // write of the server waits anywhere near the 500 ms limit.
    let frame = encode_call(1, "m", None, &(vec![0u8; 512 << 10],), 1 << 20).expect("encodes");
    for _ in 0..104u64 {
        served.sender.send(frame.clone()).expect("open");
    }
    for _ in 0..104u64 {
        let frame = next_frame(&mut client.receiver).await;
        assert_eq!(frame.id(), 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(served);
}
