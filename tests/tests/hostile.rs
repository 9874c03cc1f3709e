//! Hostile and stuck peers against a process listening on unix and tcp sockets: after a
//! proper handshake a peer sends unknown methods, wrong argument types, unknown frame kinds,
//! replies and cancels for calls that do not exist, a second hello, a truncated frame; other
//! peers never say hello, or open a thousand connections at once without a token. The process
//! never crashes, never dispatches what it must not, keeps serving everyone else, and its
//! resident memory stays bounded (measured before and after).

use std::time::{Duration, Instant};

use bytes::BytesMut;
use pm_core::wire::{encode_call, FrameBuilder, FrameDecoder, FrameKind, Incoming};
use pm_core::RemoteErrorKind;
use pm_tests::resources::raise_fd_limit;
use pm_tests::standalone::Host;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const CALCULATOR: &str = env!("CARGO_BIN_EXE_test-calculator");
const TOKEN: &str = "0123456789abcdef-hostile-token";

/// A raw frame peer of `host`, that has not said hello yet.
async fn connect(host: &Host) -> Peer {
    let stream: Box<dyn Stream> = if host.is_unix() {
        Box::new(
            tokio::net::UnixStream::connect(host.endpoint())
                .await
                .expect("connect"),
        )
    } else {
        Box::new(
            tokio::net::TcpStream::connect(host.endpoint())
                .await
                .expect("connect"),
        )
    };
    Peer {
        stream,
        decoder: FrameDecoder::new(1 << 20),
        buffer: BytesMut::new(),
    }
}

fn start(unix: bool) -> Host {
    Host::start(CALCULATOR, if unix { "unix:" } else { "tcp:" }, TOKEN)
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A raw peer speaking frames.
struct Peer {
    stream: Box<dyn Stream>,
    decoder: FrameDecoder,
    buffer: BytesMut,
}

/// What came back.
#[derive(Debug)]
enum Answer {
    Frame(pm_core::wire::Frame),
    Closed,
    Silent,
}

impl Peer {
    async fn send(&mut self, bytes: &[u8]) {
        // The process may have closed on us: that is an answer too, read next.
        let _ = self.stream.write_all(bytes).await;
    }

    async fn next(&mut self, within: Duration) -> Answer {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match self.decoder.decode(&mut self.buffer) {
                Ok(Some(Incoming::Frame(frame))) => return Answer::Frame(frame),
                Ok(Some(Incoming::Oversize { .. })) | Err(_) => return Answer::Closed,
                Ok(None) => {}
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return Answer::Silent,
                Ok(Ok(0)) | Ok(Err(_)) => return Answer::Closed,
                Ok(Ok(n)) => self.buffer.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Hello with the right token, then `Init` without dependencies.
    async fn handshake(&mut self) {
        let hello = pm_tests::hello_frame(TOKEN);
        self.send(hello.wire()).await;
        let Answer::Frame(welcome) = self.next(Duration::from_secs(5)).await else {
            panic!("no welcome");
        };
        assert_eq!(welcome.kind(), FrameKind::Welcome);
        let mut init = FrameBuilder::new(FrameKind::Init, 1, 1 << 20);
        init.raw(&[0xc0]).expect("nil");
        self.send(init.finish().expect("fits").wire()).await;
        let Answer::Frame(ready) = self.next(Duration::from_secs(5)).await else {
            panic!("no init reply");
        };
        assert_eq!(ready.kind(), FrameKind::ReplyOk, "{ready:?}");
    }

    async fn call<A: serde::Serialize>(&mut self, id: u64, method: &str, args: &A) -> Answer {
        let frame = encode_call(id, method, None, args, 1 << 20).expect("encodes");
        self.send(frame.wire()).await;
        self.next(Duration::from_secs(5)).await
    }
}

fn error_kind(answer: &Answer) -> Option<RemoteErrorKind> {
    match answer {
        Answer::Frame(frame) if frame.kind() == FrameKind::ReplyErr => {
            Some(pm_core::wire::decode_error(frame).kind)
        }
        _ => None,
    }
}

fn added(answer: &Answer) -> Option<i64> {
    match answer {
        Answer::Frame(frame) if frame.kind() == FrameKind::ReplyOk => frame.decode().ok(),
        _ => None,
    }
}

macro_rules! hostile_peers {
    ($suite:ident, $unix:expr) => {
        mod $suite {
            use super::*;

            #[tokio::test]
            async fn a_handshaken_peer_sending_nonsense_gets_typed_errors_and_harms_no_one() {
                let mut host = start($unix);
                let mut bystander = connect(&host).await;
                bystander.handshake().await;
                let before = host.rss();

                let mut peer = connect(&host).await;
                peer.handshake().await;
                // An unknown method, and a known one with wrong types and arity.
                assert_eq!(
                    error_kind(&peer.call(2, "no_such_method", &(1,)).await),
                    Some(RemoteErrorKind::UnknownMethod)
                );
                assert_eq!(
                    error_kind(&peer.call(3, "add", &("x", "y")).await),
                    Some(RemoteErrorKind::InvalidArguments)
                );
                assert_eq!(
                    error_kind(&peer.call(4, "add", &(1i64,)).await),
                    Some(RemoteErrorKind::InvalidArguments)
                );
                // Replies and cancels for calls that do not exist, and a second hello: no
                // answer, and the connection keeps working.
                let reply = FrameBuilder::new(FrameKind::ReplyOk, 77, 1 << 20)
                    .finish()
                    .expect("fits");
                peer.send(reply.wire()).await;
                let cancel = pm_core::wire::Frame::empty(FrameKind::Cancel, 78);
                peer.send(cancel.wire()).await;
                let hello = pm_tests::hello_frame(TOKEN);
                peer.send(hello.wire()).await;
                assert_eq!(added(&peer.call(5, "add", &(2i64, 3i64)).await), Some(5));
                // A frame of a kind that does not exist ends this connection only.
                let mut unknown = Vec::new();
                unknown.extend_from_slice(&9u32.to_be_bytes());
                unknown.push(99);
                unknown.extend_from_slice(&6u64.to_be_bytes());
                peer.send(&unknown).await;
                assert!(matches!(
                    peer.next(Duration::from_secs(5)).await,
                    Answer::Closed
                ));

                // A truncated frame, then the peer goes away.
                let mut truncated = connect(&host).await;
                truncated.handshake().await;
                let call = encode_call(9, "add", None, &(1i64, 1i64), 1 << 20).expect("encodes");
                truncated.send(&call.wire()[..call.wire().len() - 3]).await;
                drop(truncated);

                // Everyone else is served, the process lives, and it did not grow.
                assert_eq!(
                    added(&bystander.call(10, "add", &(20i64, 22i64)).await),
                    Some(42)
                );
                assert!(host.alive());
                let after = host.rss();
                assert!(
                    after < before + 8 * 1024 * 1024,
                    "resident memory grew from {before} to {after} bytes"
                );
            }

            #[tokio::test]
            async fn a_peer_that_never_says_hello_is_closed_after_the_hello_timeout() {
                let host = start($unix);
                let mut silent = connect(&host).await;
                let started = Instant::now();
                // The timeout is 10 s; a generous bound beyond it, since time is the point
                // only loosely here.
                let answer = silent.next(Duration::from_secs(30)).await;
                assert!(matches!(answer, Answer::Closed), "{answer:?}");
                let waited = started.elapsed();
                assert!(
                    waited >= Duration::from_secs(9) && waited < Duration::from_secs(25),
                    "closed after {waited:?}"
                );
            }

            #[tokio::test]
            async fn a_thousand_connections_without_a_token_are_refused_and_the_process_serves_on()
            {
                raise_fd_limit();
                let mut host = start($unix);
                let before = host.rss();
                let mut peers = Vec::with_capacity(1000);
                for _ in 0..1000 {
                    peers.push(connect(&host).await);
                }
                // Each says hello with a wrong token; every one is rejected.
                let wrong = pm_tests::hello_frame("not-the-token-at-all");
                for peer in &mut peers {
                    peer.send(wrong.wire()).await;
                }
                let mut rejected = 0;
                for peer in &mut peers {
                    if let Answer::Frame(frame) = peer.next(Duration::from_secs(10)).await {
                        if frame.kind() == FrameKind::Reject {
                            rejected += 1;
                        }
                    }
                }
                assert_eq!(rejected, 1000);
                drop(peers);
                let mut peer = connect(&host).await;
                peer.handshake().await;
                assert_eq!(added(&peer.call(2, "add", &(1i64, 2i64)).await), Some(3));
                assert!(host.alive());
                let after = host.rss();
                assert!(
                    after < before + 32 * 1024 * 1024,
                    "resident memory grew from {before} to {after} bytes"
                );
            }
        }
    };
}

hostile_peers!(over_unix, true);
hostile_peers!(over_tcp, false);
