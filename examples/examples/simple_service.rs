//! Pattern 1, a simple service: one process type, one public method, spawned as a child OS
//! process and called through its typed handle.
//!
//! Run it with `cargo run -p pm-examples --example simple_service`.

#![allow(clippy::print_stdout)] // an example prints what it shows

use pm_examples::built_binary;
use pm_examples::patterns::SimpleService;
use pm_runtime::prelude::*;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let binary = built_binary("simple-service")?;
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        ..Default::default()
    });
    let service = pm
        .spawn::<SimpleService>(&binary, SpawnOptions::default())
        .await?;
    let info = pm.info(service.id()).ok_or("the service is not listed")?;
    println!(
        "spawned `{}` (version {}, its crate's) as child pid {}",
        info.name,
        info.version,
        info.pid.unwrap_or_default()
    );
    let result = service.do_work("hello from the manager".into()).await?;
    println!(
        "do_work(\"hello from the manager\") -> {} words, {:?}",
        result.words, result.shouted
    );
    pm.shutdown().await?;
    println!("shut down");
    Ok(())
}
