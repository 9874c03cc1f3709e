//! Typed calls under every isolation: results, concurrency, typed errors, panics, pids,
//! frame limits, spawn failures and clean shutdown.

use std::time::{Duration, Instant};

use pm_examples::{Calculator, MathError};
use pm_runtime::prelude::*;
use pm_runtime::{Error, RemoteErrorKind};
use pm_tests::{pid_exists, wait_dead};

const CALCULATOR: &str = env!("CARGO_BIN_EXE_test-calculator");

fn manager(isolation: Isolation) -> ProcessManager {
    ProcessManager::new(ProcessManagerConfig {
        isolation,
        ..Default::default()
    })
}

async fn spawn(pm: &ProcessManager) -> ProcessHandle<Calculator> {
    pm.spawn::<Calculator>(CALCULATOR, SpawnOptions::default())
        .await
        .expect("the calculator spawns")
}

macro_rules! isolation_suite {
    ($suite:ident, $isolation:expr) => {
        mod $suite {
            use super::*;

            #[tokio::test]
            async fn add_five_and_three_is_eight() {
                let pm = manager($isolation);
                let calc = spawn(&pm).await;
                assert_eq!(calc.add(5, 3).await.expect("add"), 8);
                pm.shutdown().await.expect("shutdown");
            }

            #[tokio::test]
            async fn a_thousand_concurrent_calls_on_one_handle_all_return_their_own_result() {
                let pm = manager($isolation);
                let calc = spawn(&pm).await;
                let mut tasks = tokio::task::JoinSet::new();
                for i in 0..1000i64 {
                    let calc = calc.clone();
                    tasks.spawn(async move {
                        // Mixed sleeps make replies come back out of order.
                        if i % 10 == 0 {
                            calc.sleep((i % 7) as u64).await.expect("sleep");
                        }
                        (i, calc.add(i, i * 1000).await)
                    });
                }
                let mut seen = 0;
                while let Some(joined) = tasks.join_next().await {
                    let (i, result) = joined.expect("task");
                    assert_eq!(result.expect("add"), i + i * 1000);
                    seen += 1;
                }
                assert_eq!(seen, 1000);
                pm.shutdown().await.expect("shutdown");
            }

            #[tokio::test]
            async fn a_typed_error_arrives_as_remote_with_its_display_and_payload() {
                let pm = manager($isolation);
                let calc = spawn(&pm).await;
                let err = calc.div(7, 0).await.expect_err("division by zero fails");
                assert!(matches!(err, Error::Remote { .. }), "{err:?}");
                assert!(err.to_string().contains("cannot divide 7 by zero"), "{err}");
                assert_eq!(err.remote_kind(), Some(RemoteErrorKind::Application));
                assert_eq!(
                    err.remote_payload::<MathError>(),
                    Some(MathError::DivisionByZero { dividend: 7 })
                );
                assert_eq!(calc.div(7, 2).await.expect("div"), 3);
                pm.shutdown().await.expect("shutdown");
            }

            #[tokio::test]
            async fn a_panicking_method_returns_an_error_and_the_next_call_succeeds() {
                let pm = manager($isolation);
                let calc = spawn(&pm).await;
                let err = calc.panic("deliberate".into()).await.expect_err("panics");
                assert_eq!(err.remote_kind(), Some(RemoteErrorKind::Panic), "{err:?}");
                assert!(err.to_string().contains("deliberate"), "{err}");
                assert_eq!(calc.add(1, 1).await.expect("still serving"), 2);
                pm.shutdown().await.expect("shutdown");
            }

            #[tokio::test]
            async fn an_oversized_argument_is_refused_before_sending_and_the_handle_still_works() {
                let pm = manager($isolation);
                let calc = spawn(&pm).await;
                let eight_mib = vec![7u8; 8 * 1024 * 1024];
                assert_eq!(
                    calc.echo(eight_mib).await.expect("8 MiB fits"),
                    8 * 1024 * 1024
                );
                let twenty_mib = vec![7u8; 20 * 1024 * 1024];
                let err = calc.echo(twenty_mib).await.expect_err("20 MiB is refused");
                assert!(matches!(err, Error::Protocol(_)), "{err:?}");
                assert_eq!(calc.add(2, 3).await.expect("still usable"), 5);
                pm.shutdown().await.expect("shutdown");
            }

            #[tokio::test]
            async fn health_and_metrics_are_reported() {
                let pm = manager($isolation);
                let calc = spawn(&pm).await;
                for i in 0..10 {
                    calc.add(i, 1).await.expect("add");
                }
                let _ = calc.div(1, 0).await;
                let health = pm.get_health(calc.id()).await.expect("health");
                assert_eq!(health.status, HealthState::Healthy);
                assert_eq!(health.checks[0].name, "arithmetic");
                let metrics = pm.get_metrics(calc.id()).await.expect("metrics");
                assert_eq!(metrics.requests, 11);
                assert_eq!(metrics.errors, 1);
                assert!(metrics.memory > 0);
                assert!(metrics.latency.p50 > Duration::ZERO);
                assert!(metrics.latency.p99 >= metrics.latency.p50);
                pm.shutdown().await.expect("shutdown");
            }

            #[tokio::test]
            async fn calls_after_shutdown_fail_as_unavailable() {
                let pm = manager($isolation);
                let calc = spawn(&pm).await;
                pm.shutdown().await.expect("shutdown");
                let err = calc.add(1, 2).await.expect_err("stopped");
                assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
                assert!(matches!(
                    pm.info(calc.id()).map(|i| i.state),
                    Some(ProcessState::Stopped { .. })
                ));
            }
        }
    };
}

isolation_suite!(child, Isolation::Child);
isolation_suite!(worker, Isolation::Worker);
isolation_suite!(in_process, Isolation::None);

#[tokio::test]
async fn under_child_the_method_runs_in_another_pid_and_shutdown_reaps_it() {
    let pm = manager(Isolation::Child);
    let calc = spawn(&pm).await;
    let child_pid = calc.pid().await.expect("pid");
    assert_ne!(child_pid, std::process::id());
    assert_eq!(pm.info(calc.id()).and_then(|i| i.pid), Some(child_pid));
    assert!(pid_exists(child_pid));
    pm.shutdown().await.expect("shutdown");
    assert!(
        !pid_exists(child_pid),
        "child {child_pid} is still there after shutdown"
    );
}

#[tokio::test]
async fn shutdown_leaves_no_child_of_several_behind() {
    let pm = manager(Isolation::Child);
    let mut pids = Vec::new();
    for _ in 0..3 {
        let calc = spawn(&pm).await;
        pids.push(calc.pid().await.expect("pid"));
    }
    pm.shutdown().await.expect("shutdown");
    for pid in pids {
        assert!(!pid_exists(pid), "child {pid} survived shutdown");
    }
}

#[tokio::test]
async fn under_worker_and_none_the_method_runs_in_the_callers_pid() {
    for isolation in [Isolation::Worker, Isolation::None] {
        let pm = manager(isolation);
        let calc = spawn(&pm).await;
        assert_eq!(calc.pid().await.expect("pid"), std::process::id());
        pm.shutdown().await.expect("shutdown");
    }
}

#[tokio::test]
async fn a_missing_binary_is_a_spawn_error_at_once() {
    let pm = manager(Isolation::Child);
    let started = Instant::now();
    let err = pm
        .spawn::<Calculator>("/nonexistent/calculator", SpawnOptions::default())
        .await
        .expect_err("missing binary");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(matches!(err, Error::Spawn { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/calculator"), "{err}");
    assert!(pm.list().is_empty());
}

#[tokio::test]
async fn a_binary_that_is_not_a_process_is_a_spawn_error_and_leaves_nothing_running() {
    let pm = manager(Isolation::Child);
    let err = pm
        .spawn::<Calculator>("/bin/true", SpawnOptions::default())
        .await
        .expect_err("not a process binary");
    assert!(matches!(err, Error::Spawn { .. }), "{err:?}");
    assert!(err.to_string().contains("exited with code 0"), "{err}");
}

#[tokio::test]
async fn a_dropped_manager_kills_its_children() {
    let pm = manager(Isolation::Child);
    let calc = spawn(&pm).await;
    let pid = calc.pid().await.expect("pid");
    drop(pm);
    assert!(
        wait_dead(pid, Duration::from_secs(5)).await,
        "child {pid} outlived its manager"
    );
    let err = calc.add(1, 1).await.expect_err("manager gone");
    assert!(
        matches!(err, Error::Unavailable { .. } | Error::ProcessExited { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_process_binary_run_by_hand_explains_itself() {
    let output = std::process::Command::new(CALCULATOR)
        .env_remove("TITAN_PM_BOOTSTRAP")
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ProcessManager"), "{stderr}");
}

#[tokio::test]
async fn spawn_linked_runs_the_linked_type_without_a_binary_and_refuses_child_isolation() {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Worker,
        ..Default::default()
    });
    let calc = pm
        .spawn_linked::<Calculator>(SpawnOptions::default())
        .await
        .expect("a worker needs no binary");
    assert_eq!(calc.add(2, 3).await.expect("add"), 5);
    let inline = pm
        .spawn_linked::<Calculator>(SpawnOptions::default().isolation(Isolation::None))
        .await
        .expect("in process");
    assert_eq!(inline.add(1, 1).await.expect("add"), 2);
    let refused = pm
        .spawn_linked::<Calculator>(SpawnOptions::default().isolation(Isolation::Child))
        .await
        .expect_err("a child runs a binary");
    assert!(
        matches!(&refused, Error::Config(reason) if reason.contains("use `spawn(binary, options)`")),
        "{refused:?}"
    );
    pm.shutdown().await.expect("shutdown");
}
