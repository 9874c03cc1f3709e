//! The status endpoint: `/metrics`, `/status` and the page, served on loopback, guarded by a
//! token when it has one, and rendered by a real browser.

use std::net::SocketAddr;

use pm_runtime::prelude::*;
use pm_runtime::{Error, StatusOptions, StatusServer};
use pm_tests::http::{request, Reply};
use pm_tests::PoolWorker;

const WORKER: &str = env!("CARGO_BIN_EXE_test-pool-worker");

async fn get(server: &StatusServer, target: &str) -> Reply {
    request(server.local_addr(), "GET", target, server.token()).await
}

fn manager() -> ProcessManager {
    ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Worker,
        ..Default::default()
    })
}

#[tokio::test]
async fn the_endpoint_serves_prometheus_text_and_a_json_status_of_every_process_and_pool() {
    let pm = manager();
    let worker = pm
        .spawn::<PoolWorker>(WORKER, SpawnOptions::default().name("solo"))
        .await
        .expect("spawn");
    let pool = pm_tests::pool_of::<PoolWorker>(&pm, WORKER, 2).await;
    for _ in 0..3 {
        worker.who().await.expect("call");
        pool.who().await.expect("call");
    }
    let server = pm
        .serve_status(StatusOptions::default())
        .await
        .expect("serve");
    assert!(server.local_addr().ip().is_loopback());
    assert_eq!(server.token(), None);

    let metrics = get(&server, "/metrics").await;
    assert_eq!(metrics.status, 200, "{metrics:?}");
    assert!(
        metrics.head.contains("openmetrics-text"),
        "{}",
        metrics.head
    );
    let scrape = prometheus_parse::Scrape::parse(metrics.body.lines().map(|l| Ok(l.to_owned())))
        .expect("the exposition parses");
    let calls = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "titan_pm_calls_total"
                && s.labels.get("id") == Some(worker.id().to_string().as_str())
        })
        .map(|s| s.value.clone());
    assert!(
        matches!(
            calls,
            Some(prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v)) if v == 3.0
        ),
        "{calls:?}"
    );

    let status = get(&server, "/status").await;
    assert_eq!(status.status, 200, "{status:?}");
    assert!(status.head.contains("application/json"), "{}", status.head);
    let json: serde_json::Value = serde_json::from_str(&status.body).expect("JSON");
    let processes = json["processes"].as_array().expect("processes");
    assert_eq!(processes.len(), 3, "the solo process and two members");
    let solo = processes
        .iter()
        .find(|p| p["name"] == "solo")
        .expect("the solo process");
    assert_eq!(solo["state"], "running");
    assert_eq!(solo["requests"], 3);
    assert_eq!(solo["methods"]["who"]["requests"], 3);
    assert!(solo["memory"].as_u64().unwrap_or(0) > 0);
    let pools = json["pools"].as_array().expect("pools");
    assert_eq!(pools.len(), 1);
    assert_eq!(pools[0]["requests"], 3);
    assert_eq!(pools[0]["members"].as_array().map(Vec::len), Some(2));
    let members = processes
        .iter()
        .filter(|p| p["pool"] == pools[0]["id"])
        .count();
    assert_eq!(members, 2);

    let page = get(&server, "/").await;
    assert_eq!(page.status, 200);
    assert!(page.head.contains("text/html"), "{}", page.head);
    assert!(page
        .head
        .to_ascii_lowercase()
        .contains("content-security-policy"));
    assert!(
        !page.body.contains("http://") && !page.body.contains("https://"),
        "external assets"
    );

    assert_eq!(get(&server, "/nothing").await.status, 404);
    let post = request(server.local_addr(), "POST", "/status", None).await;
    assert_eq!(post.status, 405);
    server.shutdown().await;
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn with_a_token_every_request_must_present_it_in_the_header_or_the_query() {
    let pm = manager();
    let token = "a-status-token-of-some-length";
    let server = pm
        .serve_status(StatusOptions {
            token: Some(token.to_owned()),
            ..Default::default()
        })
        .await
        .expect("serve");
    let address = server.local_addr();
    for target in ["/", "/status", "/metrics"] {
        let refused = request(address, "GET", target, None).await;
        assert_eq!(refused.status, 401, "{target}: {refused:?}");
        assert!(!refused.body.contains("titan_pm"), "{refused:?}");
        let wrong = request(
            address,
            "GET",
            target,
            Some("a-status-token-of-some-lengtH"),
        )
        .await;
        assert_eq!(wrong.status, 401, "{target}");
        assert_eq!(
            request(address, "GET", target, Some(token)).await.status,
            200
        );
    }
    let by_query = request(address, "GET", &format!("/status?token={token}"), None).await;
    assert_eq!(by_query.status, 200);
    assert_eq!(server.url(), format!("http://{address}/?token={token}"));
    let short = pm
        .serve_status(StatusOptions {
            token: Some("short".into()),
            ..Default::default()
        })
        .await;
    assert!(matches!(short, Err(Error::Config(_))), "{short:?}");
    server.shutdown().await;
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn bound_beyond_loopback_the_endpoint_always_has_a_token() {
    let pm = manager();
    let server = pm
        .serve_status(StatusOptions {
            address: "0.0.0.0:0".parse().expect("address"),
            token: None,
        })
        .await
        .expect("serve");
    let token = server.token().expect("a generated token").to_owned();
    assert!(token.len() >= 32);
    let address = SocketAddr::from(([127, 0, 0, 1], server.local_addr().port()));
    assert_eq!(request(address, "GET", "/status", None).await.status, 401);
    assert_eq!(
        request(address, "GET", "/status", Some(&token))
            .await
            .status,
        200
    );
    server.shutdown().await;
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn once_the_manager_is_gone_the_endpoint_answers_unavailable_and_stops_when_shut_down() {
    let pm = manager();
    let server = pm
        .serve_status(StatusOptions::default())
        .await
        .expect("serve");
    let address = server.local_addr();
    pm.shutdown().await.expect("shutdown");
    drop(pm);
    assert_eq!(request(address, "GET", "/status", None).await.status, 503);
    server.shutdown().await;
    let refused = tokio::task::spawn_blocking(move || std::net::TcpStream::connect(address))
        .await
        .expect("ran");
    assert!(refused.is_err(), "still listening after shutdown");
}

/// A headless Chromium: `$CHROMIUM`, or the first of the usual names on `PATH`. When none is
/// there and this runs as root with `apt-get` (a fresh CI machine), Debian's package is
/// installed first; otherwise the test fails saying what to install.
fn chromium() -> std::path::PathBuf {
    let on_path = |name: &str| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|candidate| candidate.is_file())
        })
    };
    let find = || {
        std::env::var_os("CHROMIUM")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                ["chromium", "chromium-browser", "google-chrome"]
                    .into_iter()
                    .find_map(on_path)
            })
    };
    if let Some(found) = find() {
        return found;
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root && on_path("apt-get").is_some() {
        let installed = std::process::Command::new("sh")
            .args(["-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium"])
            .status();
        assert!(
            matches!(installed, Ok(status) if status.success()),
            "installing chromium failed: {installed:?}"
        );
    }
    find().expect(
        "the status page test needs a headless Chromium: install Debian's `chromium` package \
         (`.ci/run` does) or point $CHROMIUM at one",
    )
}

/// The page's DOM after its script ran, as Chromium renders it: two refreshes' worth of
/// virtual time, so calls per second have a previous reading to compare with.
async fn rendered(url: String) -> String {
    tokio::task::spawn_blocking(move || {
        let profile =
            std::env::temp_dir().join(format!("pm-status-chromium-{}", std::process::id()));
        let output = std::process::Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--virtual-time-budget=5000",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("--dump-dom")
            .arg(&url)
            .output()
            .expect("chromium runs");
        let _ = std::fs::remove_dir_all(&profile);
        assert!(
            output.status.success(),
            "chromium failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    })
    .await
    .expect("the browser ran")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_headless_browser_renders_the_status_page_with_every_process_and_pool() {
    let pm = manager();
    let worker = pm
        .spawn::<PoolWorker>(WORKER, SpawnOptions::default().name("page-solo"))
        .await
        .expect("spawn");
    let pool = pm
        .pool::<PoolWorker>(
            WORKER,
            PoolOptions {
                size: 2,
                spawn: SpawnOptions::default().name("page-pool"),
                ..Default::default()
            },
        )
        .await
        .expect("pool");
    for _ in 0..5 {
        worker.who().await.expect("call");
        pool.who().await.expect("call");
    }
    pm.get_health(worker.id()).await.expect("health");
    let server = pm
        .serve_status(StatusOptions {
            token: Some("token-for-the-browser-test".into()),
            ..Default::default()
        })
        .await
        .expect("serve");
    let dom = rendered(server.url()).await;
    assert!(
        dom.contains(r#"data-loaded="true""#),
        "the page never rendered a reading:\n{dom}"
    );
    let row_of = |id: &str| {
        let start = dom
            .find(&format!(r#"<tr data-id="{id}""#))
            .unwrap_or_else(|| panic!("no row for {id}:\n{dom}"));
        let end = dom[start..].find("</tr>").map_or(dom.len(), |e| start + e);
        dom[start..end].to_owned()
    };
    let solo = row_of(&worker.id().to_string());
    assert!(solo.contains("page-solo"), "{solo}");
    assert!(solo.contains(">running<"), "{solo}");
    assert!(solo.contains(">healthy<"), "{solo}");
    assert!(solo.contains(" MiB<"), "memory shown: {solo}");
    let pool_row = row_of(&pool.id().to_string());
    assert!(pool_row.contains("page-pool"), "{pool_row}");
    assert!(
        pool_row.contains(r#"<td class="num">2</td>"#),
        "two members: {pool_row}"
    );
    let member_rows = dom.matches(r#"class="member""#).count();
    assert_eq!(member_rows, 2, "{dom}");
    assert!(
        dom.contains(r#"<span id="overall" class="healthy">healthy</span>"#),
        "the manager's health badge: {dom}"
    );
    assert!(
        dom.contains(r#"<div id="error"></div>"#),
        "the page reported an error: {dom}"
    );
    server.shutdown().await;
    pm.shutdown().await.expect("shutdown");
}
