//! Hostile peers over the WebSocket transport, as `hostile.rs` has them over unix and tcp:
//! after a proper handshake a peer sends unknown methods, wrong argument types and counts,
//! replies and cancels for calls that do not exist and a second hello; another never says
//! hello; a thousand upgrade requests come without the token. The process answers each with
//! a typed error or a refusal, serves everyone else, and its memory stays bounded. (Messages
//! that are not exactly one valid frame are refused by the transport itself: see
//! pm-transport's `invalid_messages_end_the_server_side_stream`.)

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use pm_core::wire::{encode_call, Frame, FrameBuilder, FrameKind, Incoming};
use pm_core::RemoteErrorKind;
use pm_tests::resources::raise_fd_limit;
use pm_tests::standalone::Host;
use pm_transport::Connection;

const CALCULATOR: &str = env!("CARGO_BIN_EXE_test-calculator");
const TOKEN: &str = "0123456789abcdef-hostile-ws-token";

/// The next frame, or `None` once the connection closed; fails after 30 s of silence.
async fn next(conn: &mut Connection) -> Option<Frame> {
    match tokio::time::timeout(Duration::from_secs(30), conn.receiver.recv()).await {
        Ok(Some(Ok(Incoming::Frame(frame)))) => Some(frame),
        Ok(_) => None,
        Err(_) => panic!("the host said nothing for 30 s"),
    }
}

async fn call<A: serde::Serialize>(
    conn: &mut Connection,
    id: u64,
    method: &str,
    args: &A,
) -> Frame {
    let frame = encode_call(id, method, None, args, 1 << 20).expect("encodes");
    conn.sender.send(frame).expect("open");
    next(conn).await.expect("an answer")
}

fn error_kind(frame: &Frame) -> Option<RemoteErrorKind> {
    (frame.kind() == FrameKind::ReplyErr).then(|| pm_core::wire::decode_error(frame).kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshaken_websocket_peer_sending_nonsense_gets_typed_errors_and_harms_no_one() {
    let mut host = Host::start(CALCULATOR, "http://", TOKEN);
    let mut bystander = host.handshaken(TOKEN).await;
    let before = host.rss();

    let mut peer = host.handshaken(TOKEN).await;
    let unknown = call(&mut peer, 2, "no_such_method", &(1,)).await;
    assert_eq!(error_kind(&unknown), Some(RemoteErrorKind::UnknownMethod));
    let wrong_types = call(&mut peer, 3, "add", &("x", "y")).await;
    assert_eq!(
        error_kind(&wrong_types),
        Some(RemoteErrorKind::InvalidArguments)
    );
    let wrong_arity = call(&mut peer, 4, "add", &(1i64,)).await;
    assert_eq!(
        error_kind(&wrong_arity),
        Some(RemoteErrorKind::InvalidArguments)
    );
    // A reply and a cancel for calls that do not exist, and a second hello: ignored.
    let reply = FrameBuilder::new(FrameKind::ReplyOk, 77, 1 << 20)
        .finish()
        .expect("fits");
    peer.sender.send(reply).expect("open");
    peer.sender
        .send(Frame::empty(FrameKind::Cancel, 78))
        .expect("open");
    peer.sender
        .send(pm_tests::hello_frame(TOKEN))
        .expect("open");
    let sum = call(&mut peer, 5, "add", &(2i64, 3i64)).await;
    assert_eq!(sum.kind(), FrameKind::ReplyOk, "{sum:?}");
    assert_eq!(sum.decode::<i64>().expect("a number"), 5);

    // Everyone else is served, the process lives, and it did not grow.
    let other = call(&mut bystander, 10, "add", &(20i64, 22i64)).await;
    assert_eq!(other.decode::<i64>().expect("a number"), 42);
    assert!(host.alive());
    let after = host.rss();
    assert!(
        after < before + (8 << 20),
        "resident memory grew from {before} to {after} bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_peer_that_never_says_hello_is_closed_after_the_hello_timeout() {
    let host = Host::start(CALCULATOR, "http://", TOKEN);
    let mut silent = host.frames(TOKEN).await;
    let started = Instant::now();
    assert!(next(&mut silent).await.is_none(), "a frame without a hello");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(25),
        "closed after {waited:?}; the hello timeout is 10 s"
    );
}

#[test]
fn a_thousand_upgrades_without_the_token_are_refused_and_the_process_serves_on() {
    raise_fd_limit();
    let mut host = Host::start(CALCULATOR, "http://", TOKEN);
    let before = host.rss();
    let upgrade = "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                   Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                   Authorization: Bearer not-the-token-at-all\r\n\r\n";
    let mut peers: Vec<std::net::TcpStream> = (0..1000)
        .map(|_| std::net::TcpStream::connect(host.endpoint()).expect("connect"))
        .collect();
    for peer in &mut peers {
        peer.write_all(upgrade.as_bytes()).expect("request");
    }
    let mut refused = 0;
    for peer in &mut peers {
        peer.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut status = [0u8; 12];
        if peer.read_exact(&mut status).is_ok() && status.starts_with(b"HTTP/1.1 401") {
            refused += 1;
        }
    }
    assert_eq!(refused, 1000);
    drop(peers);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut peer = host.handshaken(TOKEN).await;
        let sum = call(&mut peer, 2, "add", &(1i64, 2i64)).await;
        assert_eq!(sum.decode::<i64>().expect("a number"), 3);
    });
    assert!(host.alive());
    let after = host.rss();
    assert!(
        after < before + (32 << 20),
        "resident memory grew from {before} to {after} bytes"
    );
}
