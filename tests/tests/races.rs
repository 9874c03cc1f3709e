//! Regression tests for races between supervision and stop/kill, deadlines while waiting
//! for a call slot, and listeners outliving a killed in-process instance.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use pm_runtime::prelude::*;
use pm_runtime::Error;

fn polled(isolation: Isolation, timeout: Duration) -> ProcessManagerConfig {
    ProcessManagerConfig {
        isolation,
        monitoring: Monitoring {
            health_check: HealthCheckConfig {
                enabled: true,
                interval: Duration::from_millis(100),
                timeout,
                failure_threshold: 1,
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

static SLOW_INITS: AtomicU32 = AtomicU32::new(0);
static SLOW_SICK: AtomicBool = AtomicBool::new(false);

/// Healthy until told otherwise; every incarnation after the first takes 1.5 s to `init`.
pub struct SlowRestart;

#[process(name = "slow-restart", version = "1.0.0")]
impl SlowRestart {
    /// Slow after the first time.
    pub async fn init() -> Self {
        if SLOW_INITS.fetch_add(1, Ordering::SeqCst) >= 1 {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            SLOW_SICK.store(false, Ordering::SeqCst);
        }
        SlowRestart
    }

    /// Answers 7.
    #[public]
    pub async fn ping(&self) -> u32 {
        7
    }

    /// Unhealthy while `SLOW_SICK`.
    #[health_check]
    pub async fn health(&self) -> HealthStatus {
        if SLOW_SICK.load(Ordering::SeqCst) {
            HealthStatus::unhealthy()
        } else {
            HealthStatus::healthy()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_during_a_restarts_handshake_is_not_undone_by_it() {
    let pm = ProcessManager::new(polled(Isolation::None, Duration::from_secs(1)));
    let handle = pm
        .spawn::<SlowRestart>("", SpawnOptions::default())
        .await
        .expect("spawn");
    SLOW_SICK.store(true, Ordering::SeqCst);
    let started = Instant::now();
    while !(matches!(
        pm.info(handle.id()).expect("info").state,
        ProcessState::Starting { .. }
    ) && SLOW_INITS.load(Ordering::SeqCst) >= 2)
    {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "never restarted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    pm.stop(handle.id()).await.expect("stop");
    // Deliberate absence window: longer than the 1.5 s init, whose end must not undo the stop.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(matches!(
        pm.info(handle.id()).expect("info").state,
        ProcessState::Stopped { .. }
    ));
    let call = ProcessHandle::with_timeout(&handle, Duration::from_secs(1))
        .ping()
        .await;
    assert!(matches!(call, Err(Error::Unavailable { .. })), "{call:?}");
    pm.shutdown().await.expect("shutdown");
}

/// `Blocker::nap` calls running now (in-process instances share this OS process).
static NAPPING: AtomicU32 = AtomicU32::new(0);

/// Calls that block their thread.
#[derive(Default)]
pub struct Blocker;

#[process(name = "blocker", version = "1.0.0")]
impl Blocker {
    /// Blocks the thread for `millis`.
    #[public]
    pub async fn block(&self, millis: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(millis));
        millis
    }

    /// Sleeps without blocking for `millis`.
    #[public]
    pub async fn nap(&self, millis: u64) -> u64 {
        struct Running;
        impl Drop for Running {
            fn drop(&mut self) {
                NAPPING.fetch_sub(1, Ordering::SeqCst);
            }
        }
        NAPPING.fetch_add(1, Ordering::SeqCst);
        let _running = Running;
        tokio::time::sleep(Duration::from_millis(millis)).await;
        millis
    }

    /// Healthy (when it gets to answer).
    #[health_check]
    pub async fn health(&self) -> HealthStatus {
        HealthStatus::healthy()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_supervision_ends_a_hung_worker_leaves_it_stopped_with_no_later_events() {
    let pm = ProcessManager::new(polled(Isolation::Worker, Duration::from_millis(300)));
    let mut events = pm.subscribe();
    let handle = pm
        .spawn::<Blocker>("", SpawnOptions::default())
        .await
        .expect("spawn");
    let busy = handle.clone();
    let blocked = tokio::spawn(async move { busy.block(2_500).await });
    loop {
        let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("an event")
            .expect("open");
        if matches!(event, ProcessEvent::Unhealthy { .. }) {
            break;
        }
    }
    // Supervision has begun ending the hung worker once it failed the call the worker hangs in
    // (long before the 2.5 s block could end it).
    let blocked = tokio::time::timeout(Duration::from_secs(10), blocked)
        .await
        .expect("supervision ended the hung call")
        .expect("task");
    assert!(blocked.is_err(), "the hung call was not ended: {blocked:?}");
    pm.stop(handle.id()).await.expect("stop");
    // Deliberate absence window: outlasts the 2.5 s block, after which a late verdict on the
    // hung worker would show as Crashed or Restarting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(matches!(
        pm.info(handle.id()).expect("info").state,
        ProcessState::Stopped { .. }
    ));
    let mut after_stop = Vec::new();
    let mut stopped = false;
    while let Ok(event) = events.try_recv() {
        if stopped {
            after_stop.push(event.clone());
        }
        stopped |= matches!(event, ProcessEvent::Stopped { .. });
    }
    assert!(stopped);
    assert!(
        !after_stop.iter().any(|e| matches!(
            e,
            ProcessEvent::Crashed { .. } | ProcessEvent::Restarting { .. }
        )),
        "{after_stop:?}"
    );
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_also_covers_waiting_for_a_free_call_slot() {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::None,
        limits: Limits {
            max_in_flight: 1,
            ..Default::default()
        },
        ..Default::default()
    });
    let handle = pm
        .spawn::<Blocker>("", SpawnOptions::default())
        .await
        .expect("spawn");
    let busy = handle.clone();
    let napping = NAPPING.load(Ordering::SeqCst);
    let first = tokio::spawn(async move { busy.nap(2_000).await });
    // The first call holds the one slot while it runs in the process.
    let deadline = Instant::now() + Duration::from_secs(10);
    while NAPPING.load(Ordering::SeqCst) == napping {
        assert!(Instant::now() < deadline, "the first call never ran");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    let err = ProcessHandle::with_timeout(&handle, Duration::from_millis(200))
        .nap(1)
        .await
        .expect_err("no slot within the deadline");
    assert!(
        matches!(err, Error::Timeout { after, .. } if after == Duration::from_millis(200)),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(first.await.expect("task").expect("nap"), 2_000);
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_in_process_http_instance_closes_its_listener() {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::None,
        transport: TransportKind::Http,
        ..Default::default()
    });
    let handle = pm
        .spawn::<Blocker>("", SpawnOptions::default())
        .await
        .expect("spawn");
    let endpoint = pm
        .info(handle.id())
        .and_then(|i| i.endpoint)
        .expect("endpoint");
    let addr = endpoint.socket_addr().expect("an http address");
    pm.kill(handle.id()).await.expect("kill");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(&addr).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "{addr} still accepts connections 10 s after kill"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_default_policy_with_a_five_second_window_is_accepted() {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::None,
        restart_policy: RestartPolicy {
            window: Duration::from_secs(5),
            ..Default::default()
        },
        ..Default::default()
    });
    let handle = pm
        .spawn::<Blocker>("", SpawnOptions::default())
        .await
        .expect("0.1 + 0.2 + 0.4 + 0.8 + 1.6 s of backoff fits in 5 s");
    pm.kill(handle.id()).await.expect("kill");
}
