//! A supervision tree: a key-value store (the "database") and the API that depends on it,
//! under rest-for-one. The store is killed with SIGKILL; the supervisor stops the API, starts
//! a fresh store, then a fresh API, in that order; the handles keep working.
//!
//! Run it with `cargo run -p pm-examples --example supervision`.

#![allow(clippy::print_stdout)] // an example prints what it shows

use std::time::Duration;

use pm_examples::built_binary;
use pm_examples::patterns::{Api, KvStore};
use pm_runtime::prelude::*;
use pm_runtime::{ChildSpec, RestartStrategy, SupervisorEvent, SupervisorSpec};

/// Prints the tree's events until `last` has been seen (at most 30 s).
async fn follow(
    events: &mut tokio::sync::broadcast::Receiver<ProcessEvent>,
    last: (&str, fn(&SupervisorEvent) -> bool),
) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv()).await??;
        if let ProcessEvent::Supervisor { path, event } = event {
            let what = match &event {
                SupervisorEvent::ChildCrashed { reason } => format!("crashed ({reason})"),
                SupervisorEvent::ChildStopped => "stopped".into(),
                SupervisorEvent::ChildRestarting { delay, .. } => {
                    format!("restarting after {delay:?}")
                }
                SupervisorEvent::ChildStarted { pid } => {
                    format!("started as pid {}", pid.unwrap_or_default())
                }
                SupervisorEvent::Stopped => "supervisor stopped".into(),
                other => format!("{other:?}"),
            };
            println!("  {path}: {what}");
            if path == last.0 && (last.1)(&event) {
                return Ok(());
            }
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        ..Default::default()
    });
    let spec = SupervisorSpec::new("app")
        .strategy(RestartStrategy::RestForOne)
        .restart_budget(3, Duration::from_secs(10))
        .child(ChildSpec::process::<KvStore>(
            "db",
            built_binary("kv-store")?,
            SpawnOptions::default(),
        ))
        .child(ChildSpec::process::<Api>(
            "api",
            built_binary("api")?,
            SpawnOptions::default(),
        ));
    let app = pm.supervise(spec).await?;
    let db = app.process::<KvStore>("db")?;
    let api = app.process::<Api>("api")?;
    db.put("greeting".into(), "hello".into()).await?;
    let (db_pid, api_pid) = (db.pid().await?, api.pid().await?);
    println!("started app/db as pid {db_pid}, then app/api as pid {api_pid}");
    for entry in pm.list() {
        println!(
            "  listed: {:<8} {:?}",
            entry.supervisor.unwrap_or_default(),
            entry.state
        );
    }

    let mut events = pm.subscribe();
    println!("kill -9 {db_pid} (app/db)");
    std::process::Command::new("kill")
        .args(["-9", &db_pid.to_string()])
        .status()?;
    follow(
        &mut events,
        ("app/api", |e| {
            matches!(e, SupervisorEvent::ChildStarted { .. })
        }),
    )
    .await?;
    let (new_db, new_api) = (db.pid().await?, api.pid().await?);
    println!("after the restart: app/db is pid {new_db}, app/api is pid {new_api}");
    println!(
        "the store starts empty again: get(\"greeting\") -> {:?}",
        db.get("greeting".into()).await?
    );
    println!(
        "api.handle(\"/users\") -> {}",
        api.handle("/users".into()).await?
    );

    println!("stopping the tree");
    app.stop().await;
    follow(
        &mut events,
        ("app", |e| matches!(e, SupervisorEvent::Stopped)),
    )
    .await?;
    pm.shutdown().await?;
    Ok(())
}
