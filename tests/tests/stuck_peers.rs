//! Peers that stop reading, so that their socket buffer fills.
//!
//! A process that stops (SIGSTOP) while its callers go on calling: their deadlines still
//! fire, the manager's API and its other processes still answer, and the frames meant for
//! the stopped process do not pile up in the manager's memory. Once it continues, it serves
//! again.
//!
//! A client of a standalone process that sends calls and never reads the replies, over unix,
//! tcp and WebSocket: the process stops reading from it (so its replies stay bounded and the
//! socket pushes back), serves everyone else, and once the client reads again, every reply
//! arrives.

use std::time::{Duration, Instant};

use pm_core::wire::{encode_call, FrameKind};
use pm_runtime::prelude::*;
use pm_runtime::Error;
use pm_tests::resources::rss;
use pm_tests::standalone::{next_frame, Host};
use pm_tests::{within, Lifecycle, Stopped};

const LIFECYCLE: &str = env!("CARGO_BIN_EXE_test-lifecycle");
const TOKEN: &str = "0123456789abcdef-stuck-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_process_times_its_callers_out_without_its_frames_piling_up_in_the_manager() {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        ..Default::default()
    });
    let stuck = pm
        .spawn::<Lifecycle>(LIFECYCLE, SpawnOptions::default().name("stuck"))
        .await
        .expect("spawn");
    let bystander = pm
        .spawn::<Lifecycle>(LIFECYCLE, SpawnOptions::default().name("bystander"))
        .await
        .expect("spawn");
    let pid = stuck.pid().await.expect("pid");
    let before = rss();
    let stopped = Stopped::stop(pid);

    // 8 callers, 80 calls each, a 256 KiB argument per call: 160 MiB offered to a process
    // that reads none of it. Every call ends with its deadline.
    let deadline = Duration::from_millis(50);
    let argument = "a".repeat(256 << 10);
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let handle = ProcessHandle::with_timeout(&stuck, deadline);
            let argument = argument.clone();
            tokio::spawn(async move {
                let mut slowest = Duration::ZERO;
                for _ in 0..80 {
                    let started = Instant::now();
                    match handle.swallow(argument.clone()).await {
                        Err(Error::Timeout { .. }) => {}
                        other => panic!("a call to a stopped process ended with {other:?}"),
                    }
                    slowest = slowest.max(started.elapsed());
                }
                slowest
            })
        })
        .collect();

    // Meanwhile the manager answers, and so does its other process.
    for _ in 0..20 {
        within("the manager's list", Duration::from_secs(5), async {
            assert_eq!(pm.list().len(), 2);
        })
        .await;
        let info = within("the manager's info", Duration::from_secs(5), async {
            pm.info(stuck.id()).expect("known")
        })
        .await;
        assert!(
            matches!(info.state, ProcessState::Running { .. }),
            "{:?}",
            info.state
        );
        within("the other process", Duration::from_secs(5), bystander.pid())
            .await
            .expect("the other process serves");
    }
    for caller in callers {
        let slowest = caller.await.expect("caller");
        assert!(
            slowest < deadline + Duration::from_secs(5),
            "a call took {slowest:?} for a deadline of {deadline:?}"
        );
    }
    let grown = rss().saturating_sub(before);
    assert!(
        grown < 64 << 20,
        "the manager grew by {} MiB while 160 MiB were offered to a stopped process",
        grown >> 20
    );

    // Continued, it serves again.
    drop(stopped);
    let answered = ProcessHandle::with_timeout(&stuck, Duration::from_secs(30))
        .pid()
        .await
        .expect("serves once continued");
    assert_eq!(answered, pid);
    pm.shutdown().await.expect("shutdown");
}

/// `calls` calls of `payload(reply)` sent without reading a reply; then, while the client
/// still reads nothing, the host's memory stays bounded and another client is served; then
/// the client reads, and every reply arrives.
async fn a_client_that_stops_reading(scheme: &str) {
    // 312 MiB of replies owed. What the host may hold is about what is queued before it stops
    // reading and running calls (4 MiB), plus the replies of calls that were already running.
    const CALLS: u64 = 20_000;
    const REPLY: u64 = 16 << 10;
    let host = Host::start(LIFECYCLE, scheme, TOKEN);
    let mut bystander = host.handshaken(TOKEN).await;
    let mut greedy = host.handshaken(TOKEN).await;
    let before = host.rss();
    for id in 0..CALLS {
        let call = encode_call(100 + id, "payload", None, &(REPLY,), 1 << 20).expect("encodes");
        greedy.sender.send(call).expect("open");
    }
    // An absence window: for 3 s the host's memory is sampled while the client reads
    // nothing, and it must not take the replies in.
    let mut highest = 0;
    let window = Instant::now();
    let mut served = 0;
    while window.elapsed() < Duration::from_secs(3) {
        highest = highest.max(host.rss());
        let call = encode_call(10 + served, "pid", None, &(), 1 << 20).expect("encodes");
        bystander.sender.send(call).expect("open");
        let reply = next_frame(&mut bystander.receiver).await;
        assert_eq!(reply.kind(), FrameKind::ReplyOk, "{reply:?}");
        served += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served > 0);
    let grown = highest.saturating_sub(before);
    assert!(
        grown < 48 << 20,
        "over {scheme} the host grew by {} MiB for replies nobody read",
        grown >> 20
    );
    // Reading again, the client gets every reply, in full.
    for _ in 0..CALLS {
        let reply = next_frame(&mut greedy.receiver).await;
        assert_eq!(reply.kind(), FrameKind::ReplyOk, "{reply:?}");
        let text: String = reply.decode().expect("a string");
        assert_eq!(text.len() as u64, REPLY);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_over_unix_is_pushed_back_on_and_loses_nothing() {
    a_client_that_stops_reading("unix:").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_over_tcp_is_pushed_back_on_and_loses_nothing() {
    a_client_that_stops_reading("tcp:").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_over_websocket_is_pushed_back_on_and_loses_nothing() {
    a_client_that_stops_reading("http://").await;
}
