//! The seed's Testing section: the same process type, run in-process under
//! `Isolation::None`, called exactly as a child would be. No binary and no OS process: what a
//! unit test wants. The `tests` module below is such a unit test
//! (`cargo test -p pm-examples --example testing`).
//!
//! Run it with `cargo run -p pm-examples --example testing`.

#![allow(clippy::print_stdout)] // an example prints what it shows

use pm_examples::patterns::{SimpleService, WorkResult};
use pm_runtime::prelude::*;

/// Spawns the service in-process and calls it once.
async fn call_in_process() -> Result<WorkResult, pm_runtime::Error> {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::None,
        ..Default::default()
    });
    // Under `Isolation::None` the linked type runs: there is no binary to name.
    let service = pm
        .spawn_linked::<SimpleService>(SpawnOptions::default())
        .await?;
    let result = service.do_work("tested in process".into()).await;
    pm.shutdown().await?;
    result
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let result = call_in_process().await?;
    println!(
        "in-process (Isolation::None): do_work -> {} words, {:?}",
        result.words, result.shouted
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_service_counts_and_shouts_in_process() {
        let result = call_in_process().await.expect("calls");
        assert_eq!(
            result,
            WorkResult {
                words: 3,
                shouted: "TESTED IN PROCESS".into()
            }
        );
    }
}
