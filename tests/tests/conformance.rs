//! One conformance suite, run for every isolation × transport pair: the same behaviour over
//! the socketpair/channels, unix sockets and TCP.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use pm_core::wire::FrameKind;
use pm_examples::{Calculator, MathError};
use pm_runtime::prelude::*;
use pm_runtime::{Address, Error, RemoteErrorKind};
use pm_tests::start_call;

const CALCULATOR: &str = env!("CARGO_BIN_EXE_test-calculator");

fn manager(isolation: Isolation, transport: TransportKind) -> ProcessManager {
    ProcessManager::new(ProcessManagerConfig {
        isolation,
        transport,
        ..Default::default()
    })
}

async fn spawn(pm: &ProcessManager) -> ProcessHandle<Calculator> {
    pm.spawn::<Calculator>(CALCULATOR, SpawnOptions::default())
        .await
        .expect("the calculator spawns")
}

/// A blocking raw connection to a process's endpoint, speaking bytes, not the client.
enum Raw {
    Unix(std::os::unix::net::UnixStream),
    Tcp(std::net::TcpStream),
}

impl Raw {
    fn connect(endpoint: &Address) -> Self {
        let raw = match endpoint {
            Address::Unix(path) => {
                Raw::Unix(std::os::unix::net::UnixStream::connect(path).expect("connect"))
            }
            Address::Tcp(addr) | Address::Http(addr) => {
                Raw::Tcp(std::net::TcpStream::connect(addr).expect("connect"))
            }
        };
        let timeout = Some(Duration::from_secs(5));
        match &raw {
            Raw::Unix(s) => s.set_read_timeout(timeout).expect("timeout"),
            Raw::Tcp(s) => s.set_read_timeout(timeout).expect("timeout"),
        }
        raw
    }

    fn write(&mut self, bytes: &[u8]) {
        // The peer may already have closed: that is an acceptable answer to garbage.
        let _ = match self {
            Raw::Unix(s) => s.write_all(bytes),
            Raw::Tcp(s) => s.write_all(bytes),
        };
    }

    /// Reads until end of stream (or the read timeout); returns what arrived.
    fn read_to_end(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = match self {
            Raw::Unix(s) => s.read_to_end(&mut out),
            Raw::Tcp(s) => s.read_to_end(&mut out),
        };
        out
    }
}

macro_rules! conformance {
    ($suite:ident, $isolation:expr, $transport:expr) => {
        mod $suite {
            use super::*;

            #[tokio::test]
            async fn round_trip() {
                let pm = manager($isolation, $transport);
                let calc = spawn(&pm).await;
                assert_eq!(calc.add(5, 3).await.expect("add"), 8);
                let info = pm.info(calc.id()).expect("info");
                assert_eq!(info.endpoint.is_some(), $transport != TransportKind::Ipc);
                pm.shutdown().await.expect("shutdown");
            }

            #[tokio::test]
            async fn a_thousand_concurrent_calls_with_replies_out_of_order() {
                let pm = manager($isolation, $transport);
                let calc = spawn(&pm).await;
                let mut tasks = tokio::task::JoinSet::new();
                for i in 0..1000u64 {
                    let calc = calc.clone();
                    // Later calls sleep less, so replies overtake earlier ones.
                    tasks.spawn(async move { (i, calc.sleep((999 - i) / 100).await) });
                }
                let mut order = Vec::new();
                while let Some(joined) = tasks.join_next().await {
                    let (i, result) = joined.expect("task");
                    assert_eq!(result.expect("sleep"), (999 - i) / 100);
                    order.push(i);
                }
                assert_eq!(order.len(), 1000);
                pm.shutdown().await.expect("shutdown");
            }

            #[tokio::test]
            async fn typed_errors_and_panics() {
                let pm = manager($isolation, $transport);
                let calc = spawn(&pm).await;
                let err = calc.div(1, 0).await.expect_err("fails");
                assert_eq!(
                    err.remote_payload::<MathError>(),
                    Some(MathError::DivisionByZero { dividend: 1 })
                );
                let err = calc.panic("conformance".into()).await.expect_err("panics");
                assert_eq!(err.remote_kind(), Some(RemoteErrorKind::Panic));
                assert_eq!(calc.add(1, 2).await.expect("serving"), 3);
                pm.shutdown().await.expect("shutdown");
            }

            #[tokio::test]
            async fn eight_mib_is_accepted_and_twenty_mib_refused_while_the_connection_stays_usable(
            ) {
                let pm = manager($isolation, $transport);
                let calc = spawn(&pm).await;
                let eight = vec![1u8; 8 * 1024 * 1024];
                assert_eq!(calc.echo(eight).await.expect("fits"), 8 * 1024 * 1024);
                let twenty = vec![1u8; 20 * 1024 * 1024];
                let err = calc.echo(twenty).await.expect_err("too large");
                assert!(matches!(err, Error::Protocol(_)), "{err:?}");
                assert_eq!(calc.add(2, 2).await.expect("usable"), 4);
                pm.shutdown().await.expect("shutdown");
            }

            #[tokio::test]
            async fn losing_the_process_ends_calls_in_flight_at_once() {
                let pm = manager($isolation, $transport);
                let calc = spawn(&pm).await;
                let pending = {
                    let calc = calc.clone();
                    start_call(async move { calc.sleep(30_000).await }).await
                };
                // Calls on one connection arrive in order: once a later one is answered, the
                // process has the slow one.
                let pid = calc.pid().await.expect("pid");
                let started = Instant::now();
                if $isolation == Isolation::Child {
                    // SAFETY: signalling our own child.
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                } else {
                    pm.kill(calc.id()).await.expect("kill");
                }
                let err = tokio::time::timeout(Duration::from_secs(5), pending)
                    .await
                    .expect("the call ended")
                    .expect("task")
                    .expect_err("the call failed");
                assert!(started.elapsed() < Duration::from_secs(3));
                assert!(
                    matches!(err, Error::ProcessExited { .. } | Error::Unavailable { .. }),
                    "{err:?}"
                );
                pm.shutdown().await.expect("shutdown");
            }
        }
    };
}

/// A party that connects to a process's socket with the wrong token is refused before
/// anything is dispatched. Only for the socket transports: a socketpair or an in-memory
/// channel has no other party that could connect.
macro_rules! wrong_token {
    ($name:ident, $isolation:expr, $transport:expr) => {
    #[tokio::test]
    async fn $name() {
        let pm = manager($isolation, $transport);
        let calc = spawn(&pm).await;
        let endpoint = pm
            .info(calc.id())
            .and_then(|i| i.endpoint)
            .expect("endpoint");
        let before = calc.calls().await.expect("calls");
        if $transport == TransportKind::Http {
            let request = b"POST /call/add HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer not-the-token\r\nContent-Type: application/json\r\nContent-Length: 5\r\nConnection: close\r\n\r\n[1,1]".to_vec();
            let answer = send_raw(&endpoint, request).await;
            let answer = String::from_utf8_lossy(&answer);
            assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
            assert_eq!(calc.calls().await.expect("calls"), before);
            pm.shutdown().await.expect("shutdown");
            return;
        }
        // Blocking I/O off the runtime: an in-process instance serves on this runtime.
        let answer = tokio::task::spawn_blocking(move || {
            let mut raw = Raw::connect(&endpoint);
            raw.write(pm_tests::hello_frame("not-the-token").wire());
            // A call right behind the bad hello must not run.
            let call =
                pm_core::wire::encode_call(5, "add", None, &(1i64, 1i64), 1 << 20)
                    .expect("encodes");
            raw.write(call.wire());
            raw.read_to_end()
        })
        .await
        .expect("raw client");
        assert!(
            answer.len() >= 13,
            "expected a reject frame, got {answer:?}"
        );
        assert_eq!(answer[4], FrameKind::Reject as u8);
        let reason = String::from_utf8_lossy(&answer);
        assert!(reason.contains("token"), "{reason}");
        assert_eq!(calc.calls().await.expect("calls"), before);
        pm.shutdown().await.expect("shutdown");
    }
    };
}

mod a_wrong_token_is_refused_and_nothing_is_dispatched {
    use super::*;

    wrong_token!(child_unix, Isolation::Child, TransportKind::Unix);
    wrong_token!(child_tcp, Isolation::Child, TransportKind::Tcp);
    wrong_token!(child_http, Isolation::Child, TransportKind::Http);
    wrong_token!(worker_unix, Isolation::Worker, TransportKind::Unix);
    wrong_token!(worker_tcp, Isolation::Worker, TransportKind::Tcp);
    wrong_token!(worker_http, Isolation::Worker, TransportKind::Http);
    wrong_token!(none_unix, Isolation::None, TransportKind::Unix);
    wrong_token!(none_tcp, Isolation::None, TransportKind::Tcp);
    wrong_token!(none_http, Isolation::None, TransportKind::Http);
}

conformance!(child_ipc, Isolation::Child, TransportKind::Ipc);
conformance!(child_unix, Isolation::Child, TransportKind::Unix);
conformance!(child_tcp, Isolation::Child, TransportKind::Tcp);
conformance!(worker_ipc, Isolation::Worker, TransportKind::Ipc);
conformance!(worker_unix, Isolation::Worker, TransportKind::Unix);
conformance!(worker_tcp, Isolation::Worker, TransportKind::Tcp);
conformance!(none_ipc, Isolation::None, TransportKind::Ipc);
conformance!(none_unix, Isolation::None, TransportKind::Unix);
conformance!(none_tcp, Isolation::None, TransportKind::Tcp);
conformance!(child_http, Isolation::Child, TransportKind::Http);
conformance!(worker_http, Isolation::Worker, TransportKind::Http);
conformance!(none_http, Isolation::None, TransportKind::Http);

async fn rss(pm: &ProcessManager, id: ProcessId) -> u64 {
    pm.get_metrics(id).await.expect("metrics").memory
}

/// Sends `bytes` on a fresh raw connection and returns what came back before the close.
async fn send_raw(endpoint: &Address, bytes: Vec<u8>) -> Vec<u8> {
    let endpoint = endpoint.clone();
    tokio::task::spawn_blocking(move || {
        let mut raw = Raw::connect(&endpoint);
        raw.write(&bytes);
        raw.read_to_end()
    })
    .await
    .expect("raw client")
}

macro_rules! hostile_clients {
    ($suite:ident, $transport:expr) => {
        mod $suite {
            use super::*;

            #[tokio::test]
            async fn garbage_huge_prefixes_and_malformed_hellos_are_refused_without_harm() {
                let pm = manager(Isolation::Child, $transport);
                let calc = spawn(&pm).await;
                let endpoint = pm
                    .info(calc.id())
                    .and_then(|i| i.endpoint)
                    .expect("endpoint");
                let before = rss(&pm, calc.id()).await;

                let http = $transport == TransportKind::Http;
                // Plain garbage (an HTTP request line reads as a ~1.2 GB length prefix; to an
                // http process it is a request without a token).
                let answer =
                    send_raw(&endpoint, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()).await;
                if http {
                    let answer = String::from_utf8_lossy(&answer);
                    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
                } else {
                    assert!(answer.is_empty(), "garbage got an answer: {answer:?}");
                }

                // A 4 GiB length prefix: refused before any allocation of that size.
                let mut huge = Vec::new();
                huge.extend_from_slice(&u32::MAX.to_be_bytes());
                huge.push(FrameKind::Hello as u8);
                huge.extend_from_slice(&0u64.to_be_bytes());
                huge.extend_from_slice(&[0u8; 4096]);
                for _ in 0..5 {
                    let answer = send_raw(&endpoint, huge.clone()).await;
                    if http {
                        // Not HTTP at all: refused with a 400 or a plain close.
                        let answer = String::from_utf8_lossy(&answer);
                        assert!(
                            answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
                            "{answer}"
                        );
                    } else {
                        assert!(answer.is_empty(), "a huge prefix got an answer: {answer:?}");
                    }
                }

                // A well-framed hello whose MessagePack is malformed.
                let mut malformed = Vec::new();
                malformed.extend_from_slice(&10u32.to_be_bytes());
                malformed.push(FrameKind::Hello as u8);
                malformed.extend_from_slice(&0u64.to_be_bytes());
                malformed.push(0xc1); // a byte MessagePack never uses
                let answer = send_raw(&endpoint, malformed).await;
                if !http {
                    assert_eq!(answer.get(4).copied(), Some(FrameKind::Reject as u8));
                    assert!(String::from_utf8_lossy(&answer).contains("malformed hello"));
                }

                // The process is unharmed and did not grow.
                assert_eq!(calc.add(20, 22).await.expect("still serving"), 42);
                let after = rss(&pm, calc.id()).await;
                assert!(
                    after < before + 16 * 1024 * 1024,
                    "resident memory grew from {before} to {after} bytes"
                );
                pm.shutdown().await.expect("shutdown");
            }
        }
    };
}

hostile_clients!(hostile_unix, TransportKind::Unix);
hostile_clients!(hostile_tcp, TransportKind::Tcp);
hostile_clients!(hostile_http, TransportKind::Http);

#[tokio::test]
async fn the_unix_socket_lives_in_a_private_directory_and_is_gone_after_stop() {
    use std::os::unix::fs::PermissionsExt;
    for isolation in [Isolation::Child, Isolation::Worker] {
        let pm = manager(isolation, TransportKind::Unix);
        let calc = spawn(&pm).await;
        let endpoint = pm
            .info(calc.id())
            .and_then(|i| i.endpoint)
            .expect("endpoint");
        let Address::Unix(path) = endpoint else {
            panic!("not a unix socket: {endpoint}")
        };
        let dir = path.parent().expect("dir").to_path_buf();
        let mode = std::fs::metadata(&dir)
            .expect("dir exists")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
        assert!(path.exists());
        pm.stop(calc.id()).await.expect("stop");
        assert!(!path.exists(), "socket {} left behind", path.display());
        assert!(!dir.exists(), "directory {} left behind", dir.display());
        pm.shutdown().await.expect("shutdown");
    }
}

#[tokio::test]
async fn tcp_and_http_listen_on_loopback_by_default() {
    for (isolation, transport) in [
        (Isolation::Child, TransportKind::Tcp),
        (Isolation::Worker, TransportKind::Tcp),
        (Isolation::Child, TransportKind::Http),
        (Isolation::Worker, TransportKind::Http),
    ] {
        let pm = manager(isolation, transport);
        let calc = spawn(&pm).await;
        let endpoint = pm
            .info(calc.id())
            .and_then(|i| i.endpoint)
            .expect("endpoint");
        let addr = endpoint.socket_addr().expect("tcp or http");
        assert!(addr.ip().is_loopback(), "{addr}");
        assert_ne!(addr.port(), 0);
        pm.shutdown().await.expect("shutdown");
    }
}

#[tokio::test]
async fn the_tcp_bind_address_is_configurable() {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Worker,
        transport: TransportKind::Tcp,
        bind_address: std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2)),
        ..Default::default()
    });
    let calc = spawn(&pm).await;
    let endpoint = pm
        .info(calc.id())
        .and_then(|i| i.endpoint)
        .expect("endpoint");
    assert!(
        matches!(endpoint, Address::Tcp(addr) if addr.ip() == std::net::Ipv4Addr::new(127, 0, 0, 2)),
        "{endpoint}"
    );
    assert_eq!(calc.add(1, 1).await.expect("add"), 2);
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn calls_in_flight_per_connection_are_bounded_by_max_in_flight() {
    for (isolation, transport) in [
        (Isolation::Child, TransportKind::Ipc),
        (Isolation::Worker, TransportKind::Tcp),
        (Isolation::Child, TransportKind::Http),
    ] {
        let pm = ProcessManager::new(ProcessManagerConfig {
            isolation,
            transport,
            limits: Limits {
                max_in_flight: 4,
                ..Default::default()
            },
            ..Default::default()
        });
        let handle = pm
            .spawn::<pm_tests::Lifecycle>(
                env!("CARGO_BIN_EXE_test-lifecycle"),
                SpawnOptions::default(),
            )
            .await
            .expect("spawn");
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..100 {
            let handle = handle.clone();
            tasks.spawn(async move { handle.probe(5).await });
        }
        let mut most = 0;
        while let Some(joined) = tasks.join_next().await {
            most = most.max(joined.expect("task").expect("probe"));
        }
        assert!(
            most <= 4,
            "{isolation:?}/{transport:?}: {most} calls ran at once"
        );
        assert!(
            most >= 2,
            "{isolation:?}/{transport:?}: calls did not overlap at all"
        );
        pm.shutdown().await.expect("shutdown");
    }
}

#[tokio::test]
async fn the_transport_can_be_chosen_per_spawn() {
    let pm = manager(Isolation::Worker, TransportKind::Ipc);
    let over_ipc = spawn(&pm).await;
    let over_unix = pm
        .spawn::<Calculator>(
            CALCULATOR,
            SpawnOptions::default().transport(TransportKind::Unix),
        )
        .await
        .expect("spawn");
    let over_tcp = pm
        .spawn::<Calculator>(
            CALCULATOR,
            SpawnOptions::default()
                .transport(TransportKind::Tcp)
                .isolation(Isolation::Child),
        )
        .await
        .expect("spawn");
    let endpoint = |id| pm.info(id).and_then(|i| i.endpoint);
    assert_eq!(endpoint(over_ipc.id()), None);
    assert!(matches!(endpoint(over_unix.id()), Some(Address::Unix(_))));
    assert!(matches!(endpoint(over_tcp.id()), Some(Address::Tcp(_))));
    assert_ne!(over_tcp.pid().await.expect("pid"), std::process::id());
    for calc in [&over_ipc, &over_unix, &over_tcp] {
        assert_eq!(calc.add(2, 3).await.expect("add"), 5);
    }
    pm.shutdown().await.expect("shutdown");
}
