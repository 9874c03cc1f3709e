//! A manager in its own OS process, for the tests that kill a manager with SIGKILL: spawns
//! the lifecycle binary given as the first argument as a child and prints the child's pid,
//! then waits to be killed. With `tree` as the second argument it also runs a pool of 4 and
//! a supervisor with a nested supervisor, and prints the pids of every child it runs, on one
//! line.

#![allow(clippy::print_stdout)] // the pids on stdout are this helper's whole output

use std::io::Write;

use pm_runtime::prelude::*;
use pm_runtime::{ChildSpec, SupervisorSpec};
use pm_tests::Lifecycle;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let Some(binary) = args.next() else {
        std::process::exit(2);
    };
    let tree = args.next().as_deref() == Some("tree");
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        ..Default::default()
    });
    let child = match pm
        .spawn::<Lifecycle>(&binary, SpawnOptions::default())
        .await
    {
        Ok(child) => child,
        Err(_) => std::process::exit(3),
    };
    if !tree {
        let pid = child.pid().await.unwrap_or(0);
        println!("{pid}");
    } else {
        let pool = PoolOptions {
            size: 4,
            ..Default::default()
        };
        if pm.pool::<Lifecycle>(&binary, pool).await.is_err() {
            std::process::exit(4);
        }
        let spec = SupervisorSpec::new("app")
            .child(ChildSpec::process::<Lifecycle>(
                "db",
                &binary,
                SpawnOptions::default(),
            ))
            .child(ChildSpec::supervisor(SupervisorSpec::new("web").child(
                ChildSpec::process::<Lifecycle>("api", &binary, SpawnOptions::default()),
            )));
        let Ok(app) = pm.supervise(spec).await else {
            std::process::exit(5);
        };
        let own = std::process::id();
        let pids: Vec<String> = pm
            .list()
            .iter()
            .filter_map(|p| p.pid)
            .filter(|pid| *pid != own)
            .map(|pid| pid.to_string())
            .collect();
        println!("{}", pids.join(" "));
        std::mem::forget(app);
    }
    let _ = std::io::stdout().flush();
    tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
}
