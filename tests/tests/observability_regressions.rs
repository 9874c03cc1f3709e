//! Regressions found by the adversarial review of the observability work: trace context on
//! the wire and across calls, child logging, resource sampling and exported health.
//!
//! Tests named in the review report as failing reproduce a bug; the others guard subtle
//! behaviour that was checked and found right.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pm_core::wire::{self, FrameBuilder, FrameKind};
use pm_runtime::prelude::*;
use pm_runtime::trace::{self, TraceContext};
use pm_runtime::Error;
use pm_tests::capture::captured;
use pm_tests::{Lifecycle, PoolWorker, Tracer};

const LIFECYCLE: &str = env!("CARGO_BIN_EXE_test-lifecycle");
const TRACER: &str = env!("CARGO_BIN_EXE_test-tracer");
const WORKER: &str = env!("CARGO_BIN_EXE_test-pool-worker");

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// The value of label `label` on the sample of `family` whose `key` label is `value`.
fn label_of(text: &str, family: &str, key: &str, value: &str, label: &str) -> Option<String> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("the exposition parses");
    scrape
        .samples
        .iter()
        .find(|s| s.metric == family && s.labels.get(key) == Some(value))
        .and_then(|s| s.labels.get(label).map(str::to_owned))
}

fn no_health_polling() -> Monitoring {
    Monitoring {
        health_check: HealthCheckConfig {
            enabled: false,
            ..Default::default()
        },
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------
// 1. Trace context
// ---------------------------------------------------------------------------------------

/// A tiny deterministic generator for the fuzz loop.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn call_frame_with_payload(payload: &[u8]) -> wire::Frame {
    let mut builder = FrameBuilder::new(FrameKind::Call, 1, 1 << 20);
    builder.raw(payload).expect("fits");
    builder.finish().expect("fits")
}

/// Guard: `decode_call` answers every malformed call frame with an error, never a panic: every
/// cut of a traced call, every bin8 header length after the deadline, and random tails.
#[test]
fn decode_call_never_panics_on_a_malformed_or_truncated_call_frame() {
    let trace = TraceContext::new_root();
    let args = wire::encode_value(&(5i64, 3i64), 1024).expect("fits");
    let traced = wire::encode_call_raw(
        7,
        "add",
        Some(Duration::from_millis(250)),
        Some(&trace),
        &args,
        1024,
    )
    .expect("fits");
    let payload = traced.wire()[wire::HEADER_LEN..].to_vec();
    for cut in 0..=payload.len() {
        let _ = wire::decode_call(&call_frame_with_payload(&payload[..cut]));
    }
    let frame = call_frame_with_payload(&payload);
    let whole = wire::decode_call(&frame).expect("decodes");
    assert_eq!(whole.trace, Some(trace));
    assert_eq!(whole.deadline, Some(Duration::from_millis(250)));

    // A one-letter method name: fixstr of length 1.
    let method = vec![0xa1, b'm'];
    for deadline in [&[0xc0u8][..], &[0x05], &[0xcd, 0x01, 0x00]] {
        for len in 0..=255u8 {
            for have in [0usize, 1, 24, 25, 26, 40] {
                let mut body = method.clone();
                body.extend_from_slice(deadline);
                body.extend_from_slice(&[0xc4, len]);
                body.extend(std::iter::repeat_n(0xab, have));
                let _ = wire::decode_call(&call_frame_with_payload(&body));
            }
        }
    }
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..50_000 {
        let mut body = method.clone();
        let len = (rng.next() % 48) as usize;
        body.extend((0..len).map(|_| (rng.next() & 0xff) as u8));
        // Bias towards the interesting markers.
        if len > 0 && rng.next() % 2 == 0 {
            body[method.len()] = [0xc0, 0xc4, 0xcc, 0xcf][(rng.next() % 4) as usize];
        }
        let _ = wire::decode_call(&call_frame_with_payload(&body));
    }
}

/// W3C Trace Context, trace-flags: "The behavior of other flags ... is not defined and is
/// reserved for future use. Vendors MUST set those to zero." A context received with
/// undefined flag bits must not propagate them to the next hop.
#[test]
fn a_propagated_context_sets_the_undefined_trace_flags_to_zero() {
    let incoming = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff")
        .expect("valid traceparent");
    let next_hop = incoming.child().to_string();
    let flags = next_hop.rsplit('-').next().unwrap_or_default().to_owned();
    // 01: sampled; 03: sampled + Level 2's random-trace-id.
    assert!(
        flags == "01" || flags == "03",
        "undefined flag bits propagated: {next_hop}"
    );
    let wire_hop = TraceContext::from_wire(&incoming.child().to_wire()).expect("round trip");
    assert!(wire_hop.sampled());
}

fn tracing_manager(isolation: Isolation) -> ProcessManager {
    ProcessManager::new(ProcessManagerConfig {
        isolation,
        monitoring: Monitoring {
            tracing: true,
            ..Default::default()
        },
        ..Default::default()
    })
}

/// Guard: a traced call keeps its deadline (the process aborts the method) and the scope
/// of one call never leaks into the next or into a concurrent one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traced_call_keeps_its_deadline_and_its_context_stays_its_own() {
    let pm = tracing_manager(Isolation::Child);
    let slow = pm
        .spawn::<Lifecycle>(LIFECYCLE, SpawnOptions::default())
        .await
        .expect("spawn");
    let caller = TraceContext::new_root();
    let short = ProcessHandle::with_timeout(&slow, Duration::from_millis(200));
    let started = Instant::now();
    let result = trace::scope(caller, short.slow(10_000)).await;
    assert!(matches!(result, Err(Error::Timeout { .. })), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let aborted = pm_tests::eventually(Duration::from_secs(5), async || {
        slow.aborted().await.unwrap_or(0) == 1
    })
    .await;
    assert!(aborted, "the traced call kept running in the process");

    let tracer = pm
        .spawn::<Tracer>(TRACER, SpawnOptions::default())
        .await
        .expect("spawn");
    let (a, b) = (TraceContext::new_root(), TraceContext::new_root());
    let (seen_a, seen_b) = tokio::join!(
        trace::scope(a, tracer.seen()),
        trace::scope(b, tracer.seen())
    );
    let seen_a = seen_a.expect("call").expect("context");
    let seen_b = seen_b.expect("call").expect("context");
    assert_eq!(seen_a.trace_id, a.trace_id().to_string());
    assert_eq!(seen_b.trace_id, b.trace_id().to_string());
    let after = tracer.seen().await.expect("call").expect("context");
    assert_ne!(after.trace_id, a.trace_id().to_string());
    assert_ne!(after.trace_id, b.trace_id().to_string());
    assert_eq!(trace::current(), None);
    pm.shutdown().await.expect("shutdown");
}

/// Guard: a keyed pool client carries the caller's context like the pool's own client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_pool_client_carries_the_callers_context() {
    let pm = tracing_manager(Isolation::Worker);
    let pool = pm_tests::pool_of::<Tracer>(&pm, TRACER, 2).await;
    let keyed = Pool::with_key(&pool, "some key");
    let caller = TraceContext::new_root();
    let seen = trace::scope(caller, keyed.seen())
        .await
        .expect("call")
        .expect("context");
    assert_eq!(seen.trace_id, caller.trace_id().to_string());
    assert_eq!(seen.parent_id, Some(caller.span_id().to_string()));
    pm.shutdown().await.expect("shutdown");
}

// ---------------------------------------------------------------------------------------
// 2. Child logging
// ---------------------------------------------------------------------------------------

/// A process served by this very test binary (see [`child_main_for_review`]): it logs what
/// it is told to.
#[derive(Debug, Default)]
pub struct Chatty;

#[process(name = "review-chatty", version = "1.0.0")]
impl Chatty {
    /// Logs `text` at INFO, as one event.
    #[public]
    pub async fn say(&self, text: String) {
        tracing::info!("{text}");
    }
}

const CHILD_ENV: &str = "PM_OBSERVABILITY_REVIEW_CHILD";

/// Not a test of its own: run by the wrapper script of [`chatty_binary`] as a managed child,
/// it serves [`Chatty`]; in an ordinary test run it returns at once.
#[test]
fn child_main_for_review() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let code = pm_runtime::host::run_process_main::<Chatty>();
    std::process::exit(if code == std::process::ExitCode::SUCCESS {
        0
    } else {
        1
    });
}

/// A script that runs this test binary as a `Chatty` child (the manager passes no
/// arguments, so the script supplies the test filter).
fn chatty_binary() -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let exe = std::env::current_exe().expect("the test binary");
    let path = std::env::temp_dir().join(format!(
        "pm-observability-review-chatty-{}.sh",
        std::process::id()
    ));
    let script = format!(
        "#!/bin/sh\n{CHILD_ENV}=1 exec '{}' --exact child_main_for_review --nocapture --test-threads=1\n",
        exe.display()
    );
    std::fs::write(&path, script).expect("write the script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// An event a child logs at INFO whose message spans two lines is forwarded as an INFO line
/// and a WARN line: `split_level` looks at each stderr line alone, so a continuation line
/// (no level prefix) is taken for plain stderr output. The same lets a child forge a line
/// at any level (`"...\nERROR ..."`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_line_of_a_multi_line_child_event_keeps_the_events_level() {
    let captured = captured();
    let script = chatty_binary();
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        ..Default::default()
    });
    let spawned = pm
        .spawn::<Chatty>(&script, SpawnOptions::default().name("review-chatty"))
        .await;
    let chatty = match spawned {
        Ok(chatty) => chatty,
        Err(err) => {
            let _ = std::fs::remove_file(&script);
            panic!("spawn: {err}");
        }
    };
    chatty
        .say("first line of the event\nsecond line of the event".into())
        .await
        .expect("call");
    let arrived = pm_tests::eventually(Duration::from_secs(10), async || {
        captured.text().contains("second line of the event")
    })
    .await;
    pm.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_file(&script);
    assert!(arrived, "the second line never arrived");
    let text = captured.text();
    let first = text
        .lines()
        .find(|l| l.contains("first line of the event"))
        .unwrap_or_default();
    assert!(first.contains(" INFO "), "{first}");
    let second = text
        .lines()
        .find(|l| l.contains("second line of the event"))
        .unwrap_or_default();
    assert!(
        second.contains(" INFO "),
        "the continuation of an INFO event was forwarded at another level: {second}"
    );
}

// ---------------------------------------------------------------------------------------
// 3. Resource sampling
// ---------------------------------------------------------------------------------------

/// The CPU baseline (`ResourceSampler::last`) lives in the `Managed`, across incarnations:
/// after a restart the new process's ticks are compared with the old process's, the
/// difference saturates to zero, and a child busy on a core reports 0 %.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_a_busy_child_reports_its_cpu_rather_than_zero() {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        monitoring: no_health_polling(),
        ..Default::default()
    });
    let busy = pm
        .spawn::<Lifecycle>(LIFECYCLE, SpawnOptions::default())
        .await
        .expect("spawn");
    let first_pid = busy.pid().await.expect("pid");
    busy.spin(3000).await.expect("spin");
    // The baseline: the first incarnation's ~300 ticks.
    let before = pm.get_metrics(busy.id()).await.expect("metrics");
    assert!(before.cpu > 0.0, "{before:?}");
    busy.exit_soon(1).await.expect("call");
    let restarted = pm_tests::eventually(Duration::from_secs(10), async || {
        pm.info(busy.id()).is_some_and(|info| {
            matches!(info.state, ProcessState::Running {}) && info.pid != Some(first_pid)
        })
    })
    .await;
    assert!(restarted, "{:?}", pm.info(busy.id()));
    busy.spin(1500).await.expect("spin");
    let cpu = pm.get_metrics(busy.id()).await.expect("metrics").cpu;
    pm.shutdown().await.expect("shutdown");
    assert!(
        cpu >= 40.0,
        "a restarted child spinning for 1.5 s reported {cpu:.1}% cpu"
    );
}

// ---------------------------------------------------------------------------------------
// 4. Health
// ---------------------------------------------------------------------------------------

/// `Managed::health` returns early (`self.current()?`) when the process is down, without
/// `note_health`: the latest check failed (pm.health() says so), yet `titan_pm_health` (and
/// the status page's per-process health) keep saying `healthy` from the last check before
/// the crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_whose_latest_health_check_failed_is_not_exported_as_healthy() {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        restart_policy: RestartPolicy {
            enabled: false,
            ..Default::default()
        },
        monitoring: no_health_polling(),
        ..Default::default()
    });
    let doomed = pm
        .spawn::<Lifecycle>(LIFECYCLE, SpawnOptions::default())
        .await
        .expect("spawn");
    let id = doomed.id().to_string();
    let healthy = pm.get_health(doomed.id()).await.expect("health");
    assert_eq!(healthy.status, HealthState::Healthy);
    assert_eq!(
        label_of(&pm.metrics_text(), "titan_pm_health", "id", &id, "status").as_deref(),
        Some("healthy")
    );
    doomed.exit_soon(1).await.expect("call");
    let down = pm_tests::eventually(Duration::from_secs(10), async || {
        pm.info(doomed.id())
            .is_some_and(|info| !matches!(info.state, ProcessState::Running {}))
    })
    .await;
    assert!(down, "{:?}", pm.info(doomed.id()));
    let report = pm.health().await.expect("health");
    assert_eq!(report.status, HealthState::Unhealthy, "{report:?}");
    assert!(pm.get_health(doomed.id()).await.is_err());
    let exported = label_of(&pm.metrics_text(), "titan_pm_health", "id", &id, "status");
    pm.shutdown().await.expect("shutdown");
    assert_ne!(
        exported.as_deref(),
        Some("healthy"),
        "the latest check failed, the exposition still says healthy"
    );
}

/// `PoolCore::last_health` counts a member that was never checked (a new member after a
/// resize, a replacement) as not healthy: with one member checked healthy and the other not
/// checked yet, the pool is exported as `degraded` although no check failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_member_not_checked_yet_does_not_make_the_pool_degraded() {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Worker,
        monitoring: no_health_polling(),
        ..Default::default()
    });
    let pool = pm_tests::pool_of::<PoolWorker>(&pm, WORKER, 2).await;
    let members = Pool::members(&pool);
    assert_eq!(members.len(), 2);
    let checked = pm.get_health(members[0]).await.expect("health");
    assert_eq!(checked.status, HealthState::Healthy);
    let pool_id = pool.id().to_string();
    let exported = label_of(
        &pm.metrics_text(),
        "titan_pm_pool_health",
        "pool",
        &pool_id,
        "status",
    );
    pm.shutdown().await.expect("shutdown");
    assert!(
        !matches!(exported.as_deref(), Some("degraded" | "unhealthy")),
        "no check failed, yet the pool is exported as {exported:?}"
    );
}
