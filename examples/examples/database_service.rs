//! Pattern 2, a service with dependencies: the manager sends the database's location to the
//! process's `init`, which opens a real embedded SQLite database there; the manager then
//! queries it over RPC. The database lives in a temporary directory, removed at the end.
//!
//! Run it with `cargo run -p pm-examples --example database_service`.

#![allow(clippy::print_stdout)] // an example prints what it shows

use pm_examples::built_binary;
use pm_examples::patterns::{DatabaseConfig, DatabaseService, DbError};
use pm_runtime::prelude::*;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("pm-database-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("users.sqlite3");
    let outcome = run(&path).await;
    std::fs::remove_dir_all(&dir)?;
    outcome
}

async fn run(path: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        ..Default::default()
    });
    let config = DatabaseConfig {
        path: path.display().to_string(),
    };
    let db = pm
        .spawn::<DatabaseService>(
            built_binary("database-service")?,
            SpawnOptions::default().dependencies(config),
        )
        .await?;
    println!("database-service opened {} in its init", path.display());
    for name in ["ada", "grace", "adele"] {
        let id = db.add_user(name.into()).await?;
        println!("add_user({name:?}) -> id {id}");
    }
    let found = db.find_users("ad".into()).await?;
    println!("find_users(\"ad\") -> {found:?}");
    println!(
        "scalar(\"SELECT count(*) FROM users\") -> {}",
        db.scalar("SELECT count(*) FROM users".into()).await?
    );
    match db.scalar("SELECT nope FROM users".into()).await {
        Err(err) => println!(
            "a bad query -> {err} (typed: {:?})",
            err.remote_payload::<DbError>()
        ),
        Ok(value) => println!("a bad query -> unexpectedly {value}"),
    }
    pm.shutdown().await?;
    println!(
        "file on disk after shutdown: {} bytes",
        std::fs::metadata(path)?.len()
    );
    Ok(())
}
