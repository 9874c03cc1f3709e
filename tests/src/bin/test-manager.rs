//! A manager in its own OS process, for the test that kills a manager with SIGKILL: spawns
//! the lifecycle binary given as the first argument as a child, prints the child's pid, then
//! waits to be killed.

#![allow(clippy::print_stdout)] // the pid on stdout is this helper's whole output

use std::io::Write;

use pm_runtime::prelude::*;
use pm_tests::Lifecycle;

#[tokio::main]
async fn main() {
    let Some(binary) = std::env::args().nth(1) else {
        std::process::exit(2);
    };
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
    let pid = child.pid().await.unwrap_or(0);
    println!("{pid}");
    let _ = std::io::stdout().flush();
    tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
}
