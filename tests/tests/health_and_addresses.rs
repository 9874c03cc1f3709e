//! Typed crash reasons agree across the event, the state and the error of calls in flight;
//! typed addresses parse and print as documented; `GET /health` answers with a status a probe
//! can act on, also when the health check panics or hangs; the JSON API maps `[]` to `()`
//! only for methods without parameters; a standalone process keeps its token to itself.

use std::time::{Duration, Instant};

use pm_runtime::host::HostOptions;
use pm_runtime::prelude::*;
use pm_runtime::{Address, Error};
use pm_tests::Lifecycle;

const LIFECYCLE: &str = env!("CARGO_BIN_EXE_test-lifecycle");
const CALCULATOR: &str = env!("CARGO_BIN_EXE_test-calculator");
const TOKEN: &str = "0123456789abcdef-review-token";

// ---------------------------------------------------------------------------------------
// A process type whose health check misbehaves as its dependencies say.
// ---------------------------------------------------------------------------------------

/// A parameter that is a unit struct.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Marker;

/// Health as its `mode` says: `healthy`, `degraded`, `unhealthy`, `panic` or `hang`.
#[derive(Debug)]
pub struct Checked {
    mode: String,
}

#[process(name = "review-checked", version = "1.0.0")]
impl Checked {
    /// Takes the mode.
    pub async fn init(mode: String) -> Self {
        Self { mode }
    }

    /// No arguments.
    #[public]
    pub async fn none(&self) -> String {
        "none".to_owned()
    }

    /// One argument that is a sequence.
    #[public]
    pub async fn count(&self, items: Vec<u32>) -> usize {
        items.len()
    }

    /// One argument that may be nil.
    #[public]
    pub async fn maybe(&self, value: Option<u32>) -> u32 {
        value.unwrap_or(7)
    }

    /// One argument that is a unit struct.
    #[public]
    pub async fn marker(&self, marker: Marker) -> bool {
        let Marker = marker;
        true
    }

    /// As the mode says.
    #[health_check]
    pub async fn health(&self) -> HealthStatus {
        match self.mode.as_str() {
            "degraded" => {
                HealthStatus::degraded().with_check("load", CheckStatus::Warn, Some("busy".into()))
            }
            "unhealthy" => {
                HealthStatus::unhealthy().with_check("mood", CheckStatus::Fail, Some("ill".into()))
            }
            "panic" => panic!("the health check panicked"),
            "hang" => std::future::pending::<HealthStatus>().await,
            _ => HealthStatus::healthy(),
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Hosts `Checked` in `mode` over HTTP in this process; aborted when dropped.
struct Hosted {
    port: u16,
    task: tokio::task::JoinHandle<Result<(), Error>>,
}

impl Drop for Hosted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn host_checked(mode: &str) -> Hosted {
    let port = free_port();
    let address = Address::Http(([127, 0, 0, 1], port).into());
    let options = HostOptions::new(address, TOKEN).dependencies(mode.to_owned());
    let task = tokio::spawn(pm_runtime::host::host::<Checked>(options));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the host never listened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Hosted { port, task }
}

/// One request on a fresh connection; status 0 when no status line came back within
/// `read_timeout` (or the connection closed first).
async fn http(
    port: u16,
    method: &'static str,
    path: &str,
    body: &str,
    read_timeout: Duration,
) -> (u16, String) {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let reply =
        pm_tests::http::exchange(([127, 0, 0, 1], port).into(), request, read_timeout).await;
    (reply.status, reply.body)
}

// ---------------------------------------------------------------------------------------
// GET /health
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_200_for_healthy_and_degraded_and_503_for_unhealthy() {
    for (mode, expected, word) in [
        ("healthy", 200, "Healthy"),
        ("degraded", 200, "Degraded"),
        ("unhealthy", 503, "Unhealthy"),
    ] {
        let host = host_checked(mode).await;
        let (status, body) = http(host.port, "GET", "/health", "", Duration::from_secs(5)).await;
        assert_eq!(status, expected, "{mode}: {body}");
        assert!(body.contains(word), "{mode}: {body}");
    }
}

/// The manager's poll counts a panicking check as unhealthy; `/health` should too, with a
/// 503 a probe can act on, not a connection closed without an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_503_when_the_health_check_panics() {
    let host = host_checked("panic").await;
    let (status, body) = http(host.port, "GET", "/health", "", Duration::from_secs(5)).await;
    assert_eq!(status, 503, "{body}");
    // The server still answers afterwards.
    let (status, body) = http(
        host.port,
        "POST",
        "/call/none",
        "[]",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!((status, body.trim()), (200, "\"none\""));
}

/// A check that never finishes must not hold `/health` forever: the manager's own poll gives
/// up after `HealthCheckConfig::timeout` (5 s by default) and counts it as unhealthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_does_not_hang_when_the_health_check_hangs() {
    let host = host_checked("hang").await;
    let started = Instant::now();
    let (status, body) = http(host.port, "GET", "/health", "", Duration::from_secs(10)).await;
    assert_eq!(
        status,
        503,
        "no answer after {:?}: {body:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------
// POST /call with `[]`
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_argument_list_is_unit_only_for_methods_without_parameters() {
    let host = host_checked("healthy").await;
    let call = |method: &'static str, body: &'static str| {
        let port = host.port;
        async move {
            let (status, body) = http(
                port,
                "POST",
                &format!("/call/{method}"),
                body,
                Duration::from_secs(5),
            )
            .await;
            (status, body.trim().to_owned())
        }
    };
    assert_eq!(call("none", "[]").await, (200, "\"none\"".to_owned()));
    assert_eq!(call("none", "[1]").await.0, 400);
    // One parameter that is a sequence: `[[]]` is an empty one, `[]` is a missing argument.
    assert_eq!(call("count", "[[]]").await, (200, "0".to_owned()));
    assert_eq!(call("count", "[[1,2,3]]").await, (200, "3".to_owned()));
    assert_eq!(call("count", "[]").await.0, 400);
    // One parameter that may be nil.
    assert_eq!(call("maybe", "[null]").await, (200, "7".to_owned()));
    assert_eq!(call("maybe", "[5]").await, (200, "5".to_owned()));
    assert_eq!(call("maybe", "[]").await.0, 400);
    // One parameter that is a unit struct.
    assert_eq!(call("marker", "[null]").await, (200, "true".to_owned()));
    assert_eq!(call("marker", "[]").await.0, 400);
    // Still serving.
    assert_eq!(call("none", "[]").await, (200, "\"none\"".to_owned()));
}

// ---------------------------------------------------------------------------------------
// Address
// ---------------------------------------------------------------------------------------

#[test]
fn edge_case_addresses_parse_and_round_trip() {
    for text in [
        "tcp:[fe80::1%2]:7000",
        "http://[::1]:8080",
        "unix:relative/dir/x.sock",
        "unix:/path with space/x.sock",
    ] {
        let address: Address = text.parse().expect(text);
        assert_eq!(address.to_string(), text);
        assert_eq!(address.to_string().parse::<Address>(), Ok(address));
    }
    // A trailing slash is dropped from the text form.
    let address: Address = "http://127.0.0.1:80/".parse().expect("trailing slash");
    assert_eq!(address.to_string(), "http://127.0.0.1:80");
    for bad in [
        "http://127.0.0.1",
        "http://localhost:80",
        "http://127.0.0.1:80/ws",
        "https://127.0.0.1:80",
        " tcp:127.0.0.1:1",
        "unix:",
        "",
    ] {
        assert!(bad.parse::<Address>().is_err(), "{bad:?} parsed");
    }
}

/// `Address`'s documentation promises that `Display` and `parse` round-trip; a unix path
/// that is not UTF-8 is written lossily and comes back as another path.
#[test]
fn a_unix_address_whose_path_is_not_utf8_is_written_lossily_as_documented() {
    use std::os::unix::ffi::OsStrExt;
    let path = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(b"/tmp/review-\xff.sock"));
    let address = Address::Unix(path);
    let text = address.to_string();
    assert_eq!(text, "unix:/tmp/review-\u{fffd}.sock");
    assert_ne!(text.parse::<Address>(), Ok(address));
}

#[tokio::test]
async fn connect_refuses_text_that_is_no_address_with_a_config_error() {
    let pm = ProcessManager::new(ProcessManagerConfig::default());
    for bad in ["tcp:localhost:1", "ftp://x", "unix:"] {
        let err = pm
            .connect::<Lifecycle>(bad, TOKEN, SpawnOptions::default())
            .await
            .expect_err(bad);
        assert!(matches!(err, Error::Config(_)), "{bad}: {err:?}");
    }
    pm.shutdown().await.expect("shutdown");
}

// ---------------------------------------------------------------------------------------
// HostOptions::from_env
// ---------------------------------------------------------------------------------------

#[test]
fn a_bad_listen_address_fails_without_printing_the_token() {
    let output = std::process::Command::new(CALCULATOR)
        .env("TITAN_PM_LISTEN", "tcp:localhost:1")
        .env("TITAN_PM_TOKEN", TOKEN)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("TITAN_PM_LISTEN"), "{stderr}");
    assert!(!stderr.contains(TOKEN), "{stderr}");
}

#[tokio::test]
async fn a_standalone_process_does_not_hand_its_token_to_what_it_starts() {
    let port = free_port();
    let mut child = std::process::Command::new(LIFECYCLE)
        .env("TITAN_PM_LISTEN", format!("tcp:127.0.0.1:{port}"))
        .env("TITAN_PM_TOKEN", TOKEN)
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "never listened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pm = ProcessManager::new(ProcessManagerConfig::default());
    let handle = pm
        .connect::<Lifecycle>(
            format!("tcp:127.0.0.1:{port}"),
            TOKEN,
            SpawnOptions::default(),
        )
        .await
        .expect("connect");
    let grandchild = handle.spawn_grandchild().await.expect("grandchild");
    assert_ne!(grandchild, 0);
    let environ = std::fs::read(format!("/proc/{grandchild}/environ")).expect("environ");
    let environ = String::from_utf8_lossy(&environ).into_owned();
    // SAFETY: signalling a process this test started (through its child).
    unsafe { libc::kill(grandchild as i32, libc::SIGKILL) };
    pm.shutdown().await.expect("shutdown");
    let _ = child.kill();
    let _ = child.wait();
    assert!(environ.contains("TITAN_PM_LISTEN="), "not its environment?");
    assert!(
        !environ.contains("TITAN_PM_TOKEN"),
        "the token was inherited"
    );
    assert!(!environ.contains(TOKEN), "the token was inherited");
}

// ---------------------------------------------------------------------------------------
// Crash reasons
// ---------------------------------------------------------------------------------------

fn policy() -> RestartPolicy {
    RestartPolicy {
        enabled: true,
        max_restarts: 5,
        window: Duration::from_secs(60),
        backoff: Backoff {
            kind: BackoffKind::Exponential,
            initial: Duration::from_millis(10),
            max: Duration::from_millis(50),
        },
        ..Default::default()
    }
}

async fn until_crash(
    events: &mut tokio::sync::broadcast::Receiver<ProcessEvent>,
    id: ProcessId,
    within: Duration,
) -> (Vec<ProcessEvent>, CrashReason) {
    let deadline = tokio::time::Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| panic!("no crash within {within:?}: {seen:#?}"))
            .expect("events");
        if let ProcessEvent::Crashed {
            id: crashed,
            reason,
        } = &event
        {
            if *crashed == id {
                let reason = reason.clone();
                seen.push(event);
                return (seen, reason);
            }
        }
        seen.push(event);
    }
}

/// The call in flight when the manager recycles a child over its memory limit ends with the
/// reason the event carries, not the SIGKILL the manager sent.
#[tokio::test]
async fn a_call_in_flight_during_a_memory_recycle_ends_with_the_events_reason() {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        restart_policy: policy(),
        resources: Resources {
            max_memory: Some(96 * 1024 * 1024),
            ..Default::default()
        },
        ..Default::default()
    });
    let mut events = pm.subscribe();
    let handle = pm
        .spawn::<Lifecycle>(LIFECYCLE, SpawnOptions::default())
        .await
        .expect("spawn");
    let slow = {
        let handle = handle.clone();
        tokio::spawn(async move { handle.slow(20_000).await })
    };
    handle.pid().await.expect("pid");
    handle.allocate(160).await.expect("allocates");
    let (_, crash) = until_crash(&mut events, handle.id(), Duration::from_secs(10)).await;
    assert!(
        matches!(crash, CrashReason::MemoryLimit { .. }),
        "{crash:?}"
    );
    let err = slow.await.expect("joined").expect_err("the call was cut");
    match &err {
        Error::ProcessExited { reason, .. } => assert_eq!(*reason, crash.to_string()),
        other => panic!("{other:?}"),
    }
    pm.shutdown().await.expect("shutdown");
}

/// Health-check recycling of a worker: the Unhealthy event, the crash and the call in flight
/// agree on the reason, and the worker comes back.
#[tokio::test]
async fn a_worker_recycled_after_failed_health_checks_reports_one_reason_everywhere() {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Worker,
        restart_policy: policy(),
        monitoring: Monitoring {
            health_check: HealthCheckConfig {
                enabled: true,
                interval: Duration::from_millis(100),
                timeout: Duration::from_millis(500),
                failure_threshold: 2,
            },
            ..Default::default()
        },
        ..Default::default()
    });
    let mut events = pm.subscribe();
    let handle = pm
        .spawn_linked::<Lifecycle>(SpawnOptions::default())
        .await
        .expect("spawn");
    let slow = {
        let handle = handle.clone();
        tokio::spawn(async move { handle.slow(20_000).await })
    };
    handle.fall_ill().await.expect("fall ill");
    let (seen, crash) = until_crash(&mut events, handle.id(), Duration::from_secs(10)).await;
    assert!(
        matches!(&crash, CrashReason::HealthChecks { failures: 2, .. }),
        "{crash:?}"
    );
    let unhealthy = seen.iter().find_map(|e| match e {
        ProcessEvent::Unhealthy { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    assert_eq!(unhealthy, Some(crash.to_string()));
    let err = slow.await.expect("joined").expect_err("the call was cut");
    match &err {
        Error::ProcessExited { reason, .. } => assert_eq!(*reason, crash.to_string()),
        other => panic!("{other:?}"),
    }
    // It comes back (healthy again: a fresh instance).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(info) = pm.info(handle.id()) {
            if info.restarts >= 1 && info.state == (ProcessState::Running {}) {
                break;
            }
            assert!(Instant::now() < deadline, "not back: {info:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    handle.pid().await.expect("serves again");
    pm.shutdown().await.expect("shutdown");
}
