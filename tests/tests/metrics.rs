//! Per-method call statistics: exact counts, percentiles in the right buckets, a pool's
//! figures as its members' sum, and `Monitoring::metrics: false` keeping nothing.

use std::time::Duration;

use pm_runtime::prelude::*;
use pm_runtime::LatencySummary;
use pm_tests::PoolWorker;

const WORKER: &str = env!("CARGO_BIN_EXE_test-pool-worker");

fn manager(metrics: bool) -> ProcessManager {
    ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Worker,
        monitoring: Monitoring {
            metrics,
            ..Default::default()
        },
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_method_percentiles_fall_in_the_right_buckets_and_counts_are_exact() {
    let pm = manager(true);
    let worker = pm
        .spawn::<PoolWorker>(WORKER, SpawnOptions::default())
        .await
        .expect("spawn");
    // 1000 calls: 80% sleep 1 ms, 15% 10 ms, 5% 100 ms; in batches of 100 at once.
    let plan: Vec<u64> = (0..1000)
        .map(|i| match i % 20 {
            0 => 100,
            1..=3 => 10,
            _ => 1,
        })
        .collect();
    for batch in plan.chunks(100) {
        let calls: Vec<_> = batch
            .iter()
            .map(|&ms| {
                let worker = worker.clone();
                tokio::spawn(async move { worker.hold_once(ms).await })
            })
            .collect();
        for call in calls {
            call.await.expect("task").expect("call");
        }
    }
    for _ in 0..7 {
        assert!(worker.boom().await.is_err());
    }
    let metrics = pm.get_metrics(worker.id()).await.expect("metrics");
    let hold = metrics.methods["hold_once"];
    assert_eq!((hold.requests, hold.errors), (1000, 0));
    let boom = metrics.methods["boom"];
    assert_eq!((boom.requests, boom.errors), (7, 7));
    assert_eq!((metrics.requests, metrics.errors), (1007, 7));
    let ms = Duration::from_millis;
    let latency = hold.latency;
    assert!(latency.p50 >= ms(1) && latency.p50 < ms(8), "{latency:?}");
    assert!(latency.p95 >= ms(10) && latency.p95 < ms(60), "{latency:?}");
    assert!(
        latency.p99 >= ms(100) && latency.p99 < ms(400),
        "{latency:?}"
    );
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pools_figures_are_the_sum_of_its_members() {
    let pm = manager(true);
    let pool = pm
        .pool::<PoolWorker>(
            WORKER,
            PoolOptions {
                size: 2,
                strategy: Strategy::RoundRobin,
                ..Default::default()
            },
        )
        .await
        .expect("pool");
    for _ in 0..20 {
        pool.who().await.expect("call");
    }
    let of_pool = pm.get_metrics(pool.id()).await.expect("metrics");
    assert_eq!(of_pool.methods["who"].requests, 20);
    let mut summed = 0;
    for member in Pool::members(&pool) {
        let metrics = pm.get_metrics(member).await.expect("member metrics");
        assert_eq!(
            metrics.methods["who"].requests, 10,
            "round-robin gives each half"
        );
        summed += metrics.methods["who"].requests;
    }
    assert_eq!(summed, of_pool.methods["who"].requests);
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_off_keeps_no_call_statistics() {
    let pm = manager(false);
    let worker = pm
        .spawn::<PoolWorker>(WORKER, SpawnOptions::default())
        .await
        .expect("spawn");
    for _ in 0..10 {
        worker.who().await.expect("call");
    }
    let metrics = pm.get_metrics(worker.id()).await.expect("metrics");
    assert_eq!((metrics.requests, metrics.errors), (0, 0));
    assert!(metrics.methods.is_empty());
    assert_eq!(metrics.latency, LatencySummary::default());
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_managers_health_sums_every_process_and_pool() {
    let pm = manager(true);
    let lifecycle = pm
        .spawn::<pm_tests::Lifecycle>(
            env!("CARGO_BIN_EXE_test-lifecycle"),
            SpawnOptions::default(),
        )
        .await
        .expect("spawn");
    let pool = pm_tests::pool_of::<PoolWorker>(&pm, WORKER, 2).await;
    let health = pm.health().await.expect("health");
    assert_eq!(health.status, HealthState::Healthy, "{health:?}");
    assert_eq!(
        health.checks.len(),
        2,
        "one per process, one per pool: {health:?}"
    );
    lifecycle.fall_ill().await.expect("fall ill");
    let health = pm.health().await.expect("health");
    assert_eq!(health.status, HealthState::Unhealthy, "{health:?}");
    let failing: Vec<&CheckResult> = health
        .checks
        .iter()
        .filter(|c| c.status == CheckStatus::Fail)
        .collect();
    assert_eq!(failing.len(), 1, "{health:?}");
    assert!(failing[0].name.contains("lifecycle"), "{health:?}");
    // A process stopped on request is no longer part of the whole.
    pm.stop(lifecycle.id()).await.expect("stop");
    let health = pm.health().await.expect("health");
    assert_eq!(health.status, HealthState::Healthy, "{health:?}");
    assert_eq!(health.checks.len(), 1);
    assert!(health.checks[0].name.contains(&pool.id().to_string()));
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prometheus_text_parses_and_its_counters_equal_the_calls_made() {
    let pm = manager(true);
    let worker = pm
        .spawn::<PoolWorker>(WORKER, SpawnOptions::default())
        .await
        .expect("spawn");
    let pool = pm_tests::pool_of::<PoolWorker>(&pm, WORKER, 2).await;
    for _ in 0..5 {
        worker.who().await.expect("call");
    }
    for _ in 0..3 {
        assert!(worker.boom().await.is_err());
    }
    for _ in 0..4 {
        pool.who().await.expect("pool call");
    }
    let text = pm.metrics_text();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("the exposition parses");
    let value = |name: &str, labels: &[(&str, &str)]| -> Option<f64> {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
    };
    let id = worker.id().to_string();
    let of = |method: &'static str| [("id", id.as_str()), ("method", method)];
    assert_eq!(
        value("titan_pm_calls_total", &of("who")),
        Some(5.0),
        "{text}"
    );
    assert_eq!(
        value("titan_pm_calls_total", &of("boom")),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        value("titan_pm_call_errors_total", &of("boom")),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        value("titan_pm_call_errors_total", &of("who")),
        Some(0.0),
        "{text}"
    );
    let pool_id = pool.id().to_string();
    assert_eq!(
        value(
            "titan_pm_pool_calls_total",
            &[("pool", pool_id.as_str()), ("method", "who")]
        ),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        value("titan_pm_pool_members", &[("pool", pool_id.as_str())]),
        Some(2.0)
    );
    // Members carry their pool's id; their calls add up to the pool's.
    let member_calls: f64 = scrape
        .samples
        .iter()
        .filter(|s| {
            s.metric == "titan_pm_calls_total"
                && s.labels.get("pool") == Some(pool_id.as_str())
                && s.labels.get("method") == Some("who")
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum();
    assert_eq!(member_calls, 4.0, "{text}");
    assert_eq!(
        value(
            "titan_pm_state",
            &[("id", id.as_str()), ("state", "running")]
        ),
        Some(1.0)
    );
    assert!(value("titan_pm_resident_memory_bytes", &[("id", id.as_str())]).unwrap_or(0.0) > 0.0);
    // The duration histogram counts every call, in seconds.
    let histogram = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "titan_pm_call_duration_seconds"
                && s.labels.get("id") == Some(id.as_str())
                && s.labels.get("method") == Some("who")
        })
        .map(|s| s.value.clone());
    match histogram {
        Some(prometheus_parse::Value::Histogram(buckets)) => {
            let last = buckets.last().map(|b| b.count).unwrap_or(0.0);
            assert_eq!(last, 5.0, "{text}");
        }
        other => panic!("no duration histogram for who: {other:?}\n{text}"),
    }
    pm.shutdown().await.expect("shutdown");
}

/// The `status` label of the `family` sample for `id`, from a fresh scrape.
fn health_label(pm: &ProcessManager, family: &str, key: &str, id: &str) -> Option<String> {
    let text = pm.metrics_text();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("the exposition parses");
    scrape
        .samples
        .iter()
        .find(|s| s.metric == family && s.labels.get(key) == Some(id))
        .and_then(|s| s.labels.get("status").map(str::to_owned))
}

#[tokio::test]
async fn an_unhealthy_optional_part_degrades_the_whole_and_the_exposition_shows_each_health() {
    let pm = manager(true);
    let core = pm
        .spawn::<pm_tests::Lifecycle>(
            env!("CARGO_BIN_EXE_test-lifecycle"),
            SpawnOptions::default().name("core"),
        )
        .await
        .expect("spawn");
    let cache = pm
        .spawn::<pm_tests::Lifecycle>(
            env!("CARGO_BIN_EXE_test-lifecycle"),
            SpawnOptions::default().name("cache").optional(true),
        )
        .await
        .expect("spawn");
    let cache_id = cache.id().to_string();
    assert_eq!(
        health_label(&pm, "titan_pm_health", "id", &cache_id).as_deref(),
        Some("unknown"),
        "no check has run yet"
    );
    let health = pm.health().await.expect("health");
    assert_eq!(health.status, HealthState::Healthy, "{health:?}");
    assert_eq!(
        health_label(&pm, "titan_pm_health", "id", &cache_id).as_deref(),
        Some("healthy")
    );

    cache.fall_ill().await.expect("fall ill");
    let health = pm.health().await.expect("health");
    assert_eq!(health.status, HealthState::Degraded, "{health:?}");
    let cache_check = health
        .checks
        .iter()
        .find(|c| c.name.contains("cache"))
        .expect("a check for the cache");
    assert_eq!(cache_check.status, CheckStatus::Warn, "{health:?}");
    assert_eq!(
        health_label(&pm, "titan_pm_health", "id", &cache_id).as_deref(),
        Some("unhealthy")
    );

    // The part that is not optional still fails the whole.
    core.fall_ill().await.expect("fall ill");
    let health = pm.health().await.expect("health");
    assert_eq!(health.status, HealthState::Unhealthy, "{health:?}");
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_pools_health_in_the_exposition_follows_its_members_checks() {
    let pm = manager(true);
    let pool = pm_tests::pool_of::<PoolWorker>(&pm, WORKER, 2).await;
    let id = pool.id().to_string();
    assert_eq!(
        health_label(&pm, "titan_pm_pool_health", "pool", &id).as_deref(),
        Some("unknown")
    );
    pm.get_health(pool.id()).await.expect("health");
    assert_eq!(
        health_label(&pm, "titan_pm_pool_health", "pool", &id).as_deref(),
        Some("healthy")
    );
    pm.shutdown().await.expect("shutdown");
}
