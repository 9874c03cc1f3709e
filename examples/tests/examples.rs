//! Every runnable example runs to completion (exit code 0) and prints what it claims to show.
//! `cargo test` builds the examples and the process binaries beside this test; each example
//! is run as a user would run it, as its own program. (A filtered run, `cargo test --test
//! examples`, does not rebuild the examples: build them first with `cargo build --examples`.)

use std::path::PathBuf;
use std::process::Command;

/// The built example `name`, beside this test's target directory.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    profile.join("examples").join(name)
}

/// Runs an example; its standard output, after checking that it succeeded.
fn run(name: &str) -> String {
    let path = example(name);
    let output = Command::new(&path)
        .output()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", path.display()));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{name} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn line_with<'a>(out: &'a str, needle: &str) -> &'a str {
    out.lines()
        .find(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{out}"))
}

#[test]
fn simple_service_spawns_a_child_and_gets_its_work_back() {
    let out = run("simple_service");
    let spawned = line_with(&out, "spawned `simple-service`");
    assert!(
        spawned.contains(&format!("version {}", env!("CARGO_PKG_VERSION"))),
        "{spawned}"
    );
    assert!(
        out.contains(r#"-> 4 words, "HELLO FROM THE MANAGER""#),
        "{out}"
    );
    assert!(out.trim_end().ends_with("shut down"), "{out}");
}

#[test]
fn worker_pool_gets_the_same_answer_from_pools_of_one_and_two() {
    let out = run("worker_pool");
    let primes = |line: &str| -> u64 {
        line.split_whitespace()
            .nth(3)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count in {line:?}"))
    };
    let one = primes(line_with(&out, "pool of 1:"));
    let two = primes(line_with(&out, "pool of 2:"));
    // The primes below 320 000.
    assert_eq!(one, 27_608, "{out}");
    assert_eq!(two, one, "{out}");
    line_with(&out, "speed-up with 2 members:");
}

#[test]
fn testing_runs_the_process_in_process() {
    let out = run("testing");
    assert!(
        out.contains(r#"in-process (Isolation::None): do_work -> 3 words, "TESTED IN PROCESS""#),
        "{out}"
    );
}

#[test]
fn supervision_restarts_the_database_then_the_api_and_stops_them_in_reverse() {
    let out = run("supervision");
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    let at = |needle: &str| {
        lines
            .iter()
            .position(|line| line.starts_with(needle))
            .unwrap_or_else(|| panic!("no line starting {needle:?} in:\n{out}"))
    };
    // Rest-for-one: the API (started after the store) stops, the store restarts, then the API.
    let crashed = at("app/db: crashed");
    let api_stopped = at("app/api: stopped");
    let db_started = at("app/db: started");
    let api_started = at("app/api: started");
    assert!(crashed < api_stopped && api_stopped < db_started && db_started < api_started);
    assert!(out.contains(r#"get("greeting") -> None"#), "{out}");
    assert!(
        out.contains(r#"api.handle("/users") -> 200 OK /users"#),
        "{out}"
    );
    // Stopped in reverse start order.
    let tail: Vec<&str> = lines.iter().rev().take(3).rev().copied().collect();
    assert_eq!(
        tail,
        [
            "app/api: stopped",
            "app/db: stopped",
            "app: supervisor stopped"
        ],
        "{out}"
    );
    let pids = |line: &str| -> Vec<String> {
        line.split_whitespace()
            .filter(|w| w.trim_end_matches(',').parse::<u32>().is_ok())
            .map(|w| w.trim_end_matches(',').to_owned())
            .collect()
    };
    let before = pids(line_with(&out, "started app/db as pid"));
    let after = pids(line_with(&out, "after the restart"));
    assert_eq!(before.len(), 2, "{out}");
    assert_eq!(after.len(), 2, "{out}");
    assert!(
        before[0] != after[0] && before[1] != after[1],
        "both are new processes: {out}"
    );
}

#[test]
fn database_service_opens_sqlite_in_init_and_answers_queries() {
    let out = run("database_service");
    line_with(&out, "database-service opened");
    assert!(out.contains("add_user(\"adele\") -> id 3"), "{out}");
    assert!(
        out.contains(
            r#"find_users("ad") -> [User { id: 1, name: "ada" }, User { id: 3, name: "adele" }]"#
        ),
        "{out}"
    );
    assert!(
        out.contains(r#"scalar("SELECT count(*) FROM users") -> 3"#),
        "{out}"
    );
    assert!(
        line_with(&out, "a bad query ->").contains("no such column: nope"),
        "{out}"
    );
    line_with(&out, "file on disk after shutdown:");
}

#[test]
fn health_and_metrics_shows_checks_a_restart_the_table_and_prometheus_text() {
    let out = run("health_and_metrics");
    assert!(out.contains("health: Healthy"), "{out}");
    assert!(out.contains("check arithmetic: Pass"), "{out}");
    assert!(line_with(&out, "crashed:").contains("SIGKILL"), "{out}");
    let ready = line_with(&out, "ready again: pid");
    let pids: Vec<&str> = ready
        .split_whitespace()
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(pids.len(), 2, "{ready}");
    assert_ne!(pids[0], pids[1], "{ready}");
    assert!(out.contains("state Running, restarts 1"), "{out}");
    // 20 adds, one div, one pid before the crash; one add after: 23 calls, 1 error.
    let header = out
        .lines()
        .position(|l| l.starts_with("| requests"))
        .expect("table");
    let row = out.lines().nth(header + 2).expect("row");
    assert!(row.starts_with("| 23 | 1 |"), "{row}");
    assert!(
        out.contains(r#"titan_pm_calls_total{process="calculator",id="1",method="add"} 21"#),
        "{out}"
    );
    assert!(
        out.contains(r#"titan_pm_restarts_total{process="calculator",id="1"} 1"#),
        "{out}"
    );
}

#[test]
fn microservice_runs_its_own_http_endpoint_and_background_task() {
    let out = run("microservice");
    line_with(
        &out,
        "the application's own HTTP endpoint: http://127.0.0.1:",
    );
    assert!(
        out.contains(r#"order "2 x coffee" accepted as #1"#),
        "{out}"
    );
    assert!(out.contains(r#"order "1 x tea" accepted as #2"#), "{out}");
    assert!(
        line_with(&out, "GET http://").contains("http_requests=1"),
        "{out}"
    );
    assert!(
        out.contains("stats over RPC: handled 2, http requests 1, background ticks > 0: true"),
        "{out}"
    );
    assert!(
        out.contains("after shutdown: endpoint closed: true"),
        "{out}"
    );
}

#[test]
fn microservices_create_a_user_issue_a_signed_token_and_place_an_order() {
    let out = run("microservices");
    for service in ["auth", "users", "orders"] {
        line_with(&out, &format!("service {service}"));
    }
    assert!(
        out.contains(r#"-> ShopUser { id: 1, name: "ada" }"#),
        "{out}"
    );
    let token = line_with(&out, "auth.generate_token -> ");
    let signature = token.rsplit('.').next().unwrap_or_default();
    assert_eq!(signature.len(), 64, "an HMAC-SHA256 in hex: {token}");
    assert!(
        out.contains(
            r#"orders.create_order -> Order { id: 1, user: 1, items: ["keyboard", "mouse"] }"#
        ),
        "{out}"
    );
    assert!(
        out.contains("a forged token -> refused: Some(BadSignature)"),
        "{out}"
    );
}

#[test]
fn sidecars_follow_the_main_service_by_its_id_across_a_restart() {
    let out = run("sidecar");
    assert!(
        out.contains("metrics sidecar: 6 requests, 1 errors"),
        "{out}"
    );
    let restarted = line_with(&out, "main service restarted: pid");
    let pids: Vec<&str> = restarted
        .split_whitespace()
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(pids.len(), 2, "{restarted}");
    let log: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("logging sidecar:"))
        .skip(1)
        .map(str::trim)
        .collect();
    assert_eq!(
        log.first().copied(),
        Some(format!("process 1: running pid {}", pids[0]).as_str()),
        "{out}"
    );
    assert_eq!(
        log.last().copied(),
        Some(format!("process 1: running pid {}", pids[1]).as_str()),
        "{out}"
    );
}
