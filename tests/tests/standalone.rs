//! A process binary hosted standalone (as under an orchestrator), attached to by a manager
//! with `connect`, and called with plain HTTP as the README shows.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pm_examples::Calculator;
use pm_runtime::prelude::*;
use pm_runtime::Error;

const CALCULATOR: &str = env!("CARGO_BIN_EXE_test-calculator");
const TOKEN: &str = "0123456789abcdef-test-token";

/// A standalone calculator, killed when dropped.
struct Standalone {
    child: Child,
    port: u16,
}

impl Standalone {
    fn start(scheme: &str) -> Self {
        Self::start_with(scheme, &[], Stdio::inherit())
    }

    /// Starts with extra environment variables and `stderr` as its standard error, then
    /// waits until it listens.
    fn start_with(scheme: &str, env: &[(&str, &str)], stderr: Stdio) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(CALCULATOR)
            .env("TITAN_PM_LISTEN", format!("{scheme}127.0.0.1:{port}"))
            .env("TITAN_PM_TOKEN", TOKEN)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the standalone process never listened"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port }
    }

    fn terminate(mut self) -> Option<i32> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().expect("wait");
        status.code()
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The README's request, byte for byte what `curl -H 'Authorization: Bearer …' -d '[5,3]'`
/// sends, over a plain socket.
fn http_request(port: u16, method: &str, path: &str, token: &str, body: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("write");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

#[test]
fn the_readme_http_call_and_health_requests_work() {
    let host = Standalone::start("http://");
    let (status, body) = http_request(host.port, "POST", "/call/add", TOKEN, "[5,3]");
    assert_eq!((status, body.trim()), (200, "8"));
    let (status, body) = http_request(host.port, "GET", "/health", TOKEN, "");
    assert_eq!(status, 200);
    assert!(body.contains("Healthy"), "{body}");
    let (status, body) = http_request(host.port, "POST", "/call/div", TOKEN, "[1,0]");
    assert_eq!(status, 422);
    assert!(body.contains("cannot divide 1 by zero"), "{body}");
    let (status, _) = http_request(host.port, "POST", "/call/add", "wrong-token-wrong", "[5,3]");
    assert_eq!(status, 401);
    let (status, _) = http_request(host.port, "POST", "/call/nope", TOKEN, "[]");
    assert_eq!(status, 404);
    let (status, _) = http_request(host.port, "POST", "/call/add", TOKEN, "[\"x\",3]");
    assert_eq!(status, 400);
}

#[test]
fn curl_against_the_http_transport_works_as_the_readme_shows() {
    // curl is required (`.ci/run` installs it): the README's command, run as written.
    let host = Standalone::start("http://");
    let output = Command::new("curl")
        .args([
            "-sS",
            "-H",
            &format!("Authorization: Bearer {TOKEN}"),
            "-d",
            "[5,3]",
            &format!("http://127.0.0.1:{}/call/add", host.port),
        ])
        .output()
        .expect("curl runs");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "8");
}

#[test]
fn sigterm_ends_a_standalone_process_cleanly() {
    let host = Standalone::start("tcp:");
    assert_eq!(host.terminate(), Some(0));
}

#[tokio::test]
async fn a_manager_attaches_to_a_standalone_process_over_tcp_and_http() {
    for scheme in ["tcp:", "http://"] {
        let host = Standalone::start(scheme);
        let pm = ProcessManager::new(ProcessManagerConfig::default());
        let address = format!("{scheme}127.0.0.1:{}", host.port);
        let calc = pm
            .connect::<Calculator>(&address, TOKEN, SpawnOptions::default())
            .await
            .expect("attaches");
        assert_eq!(calc.add(5, 3).await.expect("add"), 8);
        assert_eq!(calc.pid().await.expect("pid"), host.child.id());
        let health = pm.get_health(calc.id()).await.expect("health");
        assert_eq!(health.status, HealthState::Healthy);

        let err = pm
            .connect::<Calculator>(&address, "a-wrong-token-of-length", SpawnOptions::default())
            .await
            .expect_err("wrong token");
        assert!(matches!(err, Error::Spawn { .. }), "{err:?}");

        // Detaching leaves the process running.
        pm.shutdown().await.expect("shutdown");
        assert!(std::net::TcpStream::connect(("127.0.0.1", host.port)).is_ok());
        assert_eq!(host.terminate(), Some(0));
    }
}

#[test]
fn a_standalone_process_refuses_to_start_without_a_token() {
    let output = Command::new(CALCULATOR)
        .env("TITAN_PM_LISTEN", "tcp:127.0.0.1:0")
        .env_remove("TITAN_PM_TOKEN")
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("TITAN_PM_TOKEN"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_calls_over_the_in_flight_bound_are_answered_503_and_the_bound_frees_up_after() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let address = pm_runtime::Address::Http(([127, 0, 0, 1], port).into());
    let mut options = pm_runtime::host::HostOptions::new(address.clone(), TOKEN);
    options.limits.max_in_flight = 2;
    let hosting = tokio::spawn(pm_runtime::host::host::<pm_tests::Lifecycle>(options));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the host never listened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A typed handle over the WebSocket, which the JSON bound does not cover, watches how
    // many calls run at once.
    let pm = ProcessManager::new(ProcessManagerConfig::default());
    let watcher = pm
        .connect::<pm_tests::Lifecycle>(&address, TOKEN, SpawnOptions::default())
        .await
        .expect("connect");
    let json_probe = |millis: u64| {
        tokio::task::spawn_blocking(move || {
            http_request(port, "POST", "/call/probe", TOKEN, &format!("[{millis}]"))
        })
    };
    let (first, second) = (json_probe(3000), json_probe(3000));
    // Both JSON calls run once the watcher's own probe sees three at once.
    let deadline = Instant::now() + Duration::from_secs(2);
    while watcher.probe(0).await.expect("watch") < 3 {
        assert!(Instant::now() < deadline, "the two JSON calls never ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, body) = json_probe(0).await.expect("third");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("too many calls in flight"), "{body}");
    for call in [first, second] {
        let (status, body) = call.await.expect("a JSON call");
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = json_probe(0).await.expect("after");
    assert_eq!(status, 200, "{body}");
    pm.shutdown().await.expect("detach");
    hosting.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_503_once_the_process_reports_itself_unhealthy() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let address = pm_runtime::Address::Http(([127, 0, 0, 1], port).into());
    let hosting = tokio::spawn(pm_runtime::host::host::<pm_tests::Lifecycle>(
        pm_runtime::host::HostOptions::new(address, TOKEN),
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the host never listened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let request = move |method: &'static str, path: &'static str| {
        tokio::task::spawn_blocking(move || http_request(port, method, path, TOKEN, "[]"))
    };
    let (status, body) = request("GET", "/health").await.expect("health");
    assert_eq!(status, 200, "{body}");
    let (status, body) = request("POST", "/call/fall_ill").await.expect("fall ill");
    assert_eq!(status, 200, "{body}");
    // A probe acts on the status code: unhealthy is 503, with the report still in the body.
    let (status, body) = request("GET", "/health").await.expect("health");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("Unhealthy") && body.contains("ill"), "{body}");
    hosting.abort();
}

#[test]
fn a_standalone_process_logs_to_stderr_at_the_level_titan_pm_log_sets() {
    let mut host = Standalone::start_with("tcp:", &[("TITAN_PM_LOG", "info")], Stdio::piped());
    let pipe = host.child.stderr.take();
    assert_eq!(host.terminate(), Some(0));
    let mut stderr = String::new();
    if let Some(mut pipe) = pipe {
        pipe.read_to_string(&mut stderr).expect("stderr");
    }
    assert!(stderr.contains("hosting standalone"), "{stderr}");
    assert!(stderr.contains("shutting down on signal"), "{stderr}");
}
