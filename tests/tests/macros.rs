//! What `#[process]` promises, end to end under Child and Worker: serialised `&mut self`,
//! `init` with dependencies, shutdown hooks, health without a check, and the handshake's
//! schema check.

use pm_examples::{Calculator, Counter, DatabaseConfig, DatabaseService};
use pm_runtime::prelude::*;
use pm_runtime::Error;
use pm_tests::HookRecorder;

const CALCULATOR: &str = env!("CARGO_BIN_EXE_test-calculator");
const COUNTER: &str = env!("CARGO_BIN_EXE_test-counter");
const DATABASE: &str = env!("CARGO_BIN_EXE_test-database");
const HOOKS: &str = env!("CARGO_BIN_EXE_test-hooks");

fn manager(isolation: Isolation) -> ProcessManager {
    ProcessManager::new(ProcessManagerConfig {
        isolation,
        ..Default::default()
    })
}

/// A temporary file path, removed when dropped.
struct TempPath(std::path::PathBuf);

impl TempPath {
    fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        Self(std::env::temp_dir().join(format!("pm-test-{tag}-{}-{nanos}", std::process::id())))
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

macro_rules! macro_suite {
    ($suite:ident, $isolation:expr) => {
        mod $suite {
            use super::*;

            #[tokio::test]
            async fn two_hundred_concurrent_exclusive_increments_end_at_exactly_two_hundred() {
                let pm = manager($isolation);
                let counter = pm
                    .spawn::<Counter>(COUNTER, SpawnOptions::default())
                    .await
                    .expect("spawn");
                let mut tasks = tokio::task::JoinSet::new();
                for _ in 0..200 {
                    let counter = counter.clone();
                    tasks.spawn(async move { counter.increment().await });
                }
                let mut results = Vec::new();
                while let Some(joined) = tasks.join_next().await {
                    results.push(joined.expect("task").expect("increment"));
                }
                results.sort_unstable();
                assert_eq!(results, (1..=200).collect::<Vec<u64>>());
                assert_eq!(counter.get().await.expect("get"), 200);
                pm.shutdown().await.expect("shutdown");
            }

            #[tokio::test]
            async fn init_receives_the_dependencies() {
                let pm = manager($isolation);
                let config = DatabaseConfig {
                    host: "db.internal".into(),
                    port: 5432,
                };
                let db = pm
                    .spawn::<DatabaseService>(
                        DATABASE,
                        SpawnOptions::default().dependencies(config.clone()),
                    )
                    .await
                    .expect("spawn");
                assert_eq!(db.config().await.expect("config"), config);
                assert_eq!(
                    db.query("select 1".into()).await.expect("query"),
                    "db.internal:5432 <- select 1"
                );
                pm.shutdown().await.expect("shutdown");
            }

            #[tokio::test]
            async fn an_init_error_fails_the_spawn_with_its_message_and_leaves_nothing() {
                let pm = manager($isolation);
                let config = DatabaseConfig {
                    host: String::new(),
                    port: 5432,
                };
                let err = pm
                    .spawn::<DatabaseService>(
                        DATABASE,
                        SpawnOptions::default().dependencies(config),
                    )
                    .await
                    .expect_err("init fails");
                assert!(matches!(err, Error::Spawn { .. }), "{err:?}");
                assert!(
                    err.to_string()
                        .contains("cannot connect to database at `:5432`"),
                    "{err}"
                );
                assert!(pm.list().is_empty());
            }

            #[tokio::test]
            async fn dependencies_of_the_wrong_type_fail_the_spawn_clearly() {
                let pm = manager($isolation);
                let err = pm
                    .spawn::<DatabaseService>(DATABASE, SpawnOptions::default().dependencies(42u8))
                    .await
                    .expect_err("wrong type");
                assert!(
                    err.to_string().contains("dependencies do not match"),
                    "{err}"
                );
            }

            #[tokio::test]
            async fn dependencies_for_a_process_without_init_are_refused() {
                let pm = manager($isolation);
                let err = pm
                    .spawn::<Calculator>(CALCULATOR, SpawnOptions::default().dependencies("x"))
                    .await
                    .expect_err("no init");
                assert!(err.to_string().contains("has no `init`"), "{err}");
            }

            #[tokio::test]
            async fn every_on_shutdown_hook_runs_before_the_process_ends() {
                let pm = manager($isolation);
                let file = TempPath::new("hooks");
                let recorder = pm
                    .spawn::<HookRecorder>(
                        HOOKS,
                        SpawnOptions::default().dependencies(file.0.to_string_lossy().into_owned()),
                    )
                    .await
                    .expect("spawn");
                let pid = recorder.pid().await.expect("pid");
                assert!(!file.0.exists(), "hooks ran early");
                pm.shutdown().await.expect("shutdown");
                let written = std::fs::read_to_string(&file.0).expect("the hooks wrote the file");
                assert!(written.contains(&format!("flush pid={pid}")), "{written}");
                assert!(written.contains(&format!("close pid={pid}")), "{written}");
            }

            #[tokio::test]
            async fn stop_runs_the_hooks_of_that_process_only() {
                let pm = manager($isolation);
                let (a, b) = (TempPath::new("a"), TempPath::new("b"));
                let first = pm
                    .spawn::<HookRecorder>(
                        HOOKS,
                        SpawnOptions::default().dependencies(a.0.to_string_lossy().into_owned()),
                    )
                    .await
                    .expect("spawn");
                let _second = pm
                    .spawn::<HookRecorder>(
                        HOOKS,
                        SpawnOptions::default().dependencies(b.0.to_string_lossy().into_owned()),
                    )
                    .await
                    .expect("spawn");
                pm.stop(first.id()).await.expect("stop");
                assert!(a.0.exists());
                assert!(!b.0.exists());
                pm.shutdown().await.expect("shutdown");
                assert!(b.0.exists());
            }

            #[tokio::test]
            async fn a_process_without_a_health_check_reports_healthy() {
                let pm = manager($isolation);
                let counter = pm
                    .spawn::<Counter>(COUNTER, SpawnOptions::default())
                    .await
                    .expect("spawn");
                let health = pm.get_health(counter.id()).await.expect("health");
                assert_eq!(health.status, HealthState::Healthy);
                assert!(health.checks.is_empty());
                pm.shutdown().await.expect("shutdown");
            }
        }
    };
}

macro_suite!(child, Isolation::Child);
macro_suite!(worker, Isolation::Worker);
macro_suite!(in_process, Isolation::None);

/// A client for version 2 of the calculator.
#[derive(Default)]
pub struct CalculatorV2;

#[process(name = "calculator", version = "2.0.0")]
impl CalculatorV2 {
    /// Adds two numbers.
    #[public]
    pub async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }
}

/// Same name and version as the real calculator, different method table.
#[derive(Default)]
pub struct CalculatorRetyped;

#[process(name = "calculator", version = "1.0.0")]
impl CalculatorRetyped {
    /// Adds two small numbers.
    #[public]
    pub async fn add(&self, a: i32, b: i32) -> i32 {
        a + b
    }
}

#[tokio::test]
async fn a_client_for_version_two_is_refused_by_a_version_one_binary() {
    let pm = manager(Isolation::Child);
    let err = pm
        .spawn::<CalculatorV2>(CALCULATOR, SpawnOptions::default())
        .await
        .expect_err("version mismatch");
    let Error::VersionMismatch {
        expected, found, ..
    } = &err
    else {
        panic!("expected a version mismatch, got {err:?}");
    };
    assert_eq!(expected.version, "2.0.0");
    assert_eq!(found.version, "1.0.0");
    let message = err.to_string();
    assert!(
        message.contains("2.0.0") && message.contains("1.0.0"),
        "{message}"
    );
    assert!(pm.list().is_empty());
}

#[tokio::test]
async fn a_client_with_another_method_table_is_refused_even_at_the_same_version() {
    let pm = manager(Isolation::Child);
    let err = pm
        .spawn::<CalculatorRetyped>(CALCULATOR, SpawnOptions::default())
        .await
        .expect_err("schema mismatch");
    assert!(matches!(err, Error::VersionMismatch { .. }), "{err:?}");
}
