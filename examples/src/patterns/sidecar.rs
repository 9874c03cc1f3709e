//! The sidecar example's two sidecars. Each is told the main service's process id and where
//! the manager's status endpoint is, and watches the service from there: the logging sidecar
//! records every change of its state and pid, the metrics sidecar its latest call counts.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pm_runtime::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Fetches the manager's status snapshot (`GET /status`) from `address` (`host:port`).
async fn snapshot(address: &str) -> Option<serde_json::Value> {
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
        let request =
            format!("GET /status HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let response = String::from_utf8(response).ok()?;
        let (_, body) = response.split_once("\r\n\r\n")?;
        serde_json::from_str(body).ok()
    };
    tokio::time::timeout(Duration::from_secs(2), fetch)
        .await
        .ok()
        .flatten()
}

/// The status row of process `target`, if the snapshot has it.
fn row_of(snapshot: &serde_json::Value, target: ProcessId) -> Option<serde_json::Value> {
    let id = target.to_string();
    snapshot
        .get("processes")?
        .as_array()?
        .iter()
        .find(|row| row.get("id").and_then(|v| v.as_str()) == Some(id.as_str()))
        .cloned()
}

/// Polls the status of `target` every 50 ms, handing each row to `seen`, until the sidecar
/// stops.
fn watch(
    target: ProcessId,
    status: String,
    mut seen: impl FnMut(&serde_json::Value) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(50));
        loop {
            every.tick().await;
            if let Some(row) = snapshot(&status).await.and_then(|s| row_of(&s, target)) {
                seen(&row);
            }
        }
    })
}

/// Records each change of the main service's state and pid, as a log would.
#[derive(Debug, Default)]
pub struct LoggingSidecar {
    log: Arc<Mutex<Vec<String>>>,
    watcher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[process(name = "logging-sidecar", version = "1.0.0")]
impl LoggingSidecar {
    /// Starts watching process `target` through the status endpoint at `status`.
    #[public]
    pub async fn configure(&self, target: ProcessId, status: String) {
        let log = self.log.clone();
        let mut last = String::new();
        let task = watch(target, status, move |row| {
            let line = format!(
                "process {target}: {} pid {}",
                row.get("state").and_then(|v| v.as_str()).unwrap_or("?"),
                row.get("pid").map(|v| v.to_string()).unwrap_or_default()
            );
            if line != last {
                last = line.clone();
                if let Ok(mut log) = log.lock() {
                    log.push(line);
                }
            }
        });
        if let Ok(mut watcher) = self.watcher.lock() {
            if let Some(old) = watcher.replace(task) {
                old.abort();
            }
        }
    }

    /// What it logged so far.
    #[public]
    pub async fn log(&self) -> Vec<String> {
        self.log.lock().map(|log| log.clone()).unwrap_or_default()
    }

    /// Stops watching.
    #[on_shutdown]
    pub async fn stop_watching(&self) {
        if let Some(task) = self.watcher.lock().ok().and_then(|mut w| w.take()) {
            task.abort();
        }
    }
}

/// Keeps the main service's latest call counts.
#[derive(Debug, Default)]
pub struct MetricsSidecar {
    latest: Arc<Mutex<Option<(u64, u64)>>>,
    watcher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[process(name = "metrics-sidecar", version = "1.0.0")]
impl MetricsSidecar {
    /// Starts watching process `target` through the status endpoint at `status`.
    #[public]
    pub async fn monitor(&self, target: ProcessId, status: String) {
        let latest = self.latest.clone();
        let task = watch(target, status, move |row| {
            let count = |key: &str| row.get(key).and_then(|v| v.as_u64()).unwrap_or(0);
            if let Ok(mut latest) = latest.lock() {
                *latest = Some((count("requests"), count("errors")));
            }
        });
        if let Ok(mut watcher) = self.watcher.lock() {
            if let Some(old) = watcher.replace(task) {
                old.abort();
            }
        }
    }

    /// The latest (requests, errors) seen, if any yet.
    #[public]
    pub async fn latest(&self) -> Option<(u64, u64)> {
        self.latest.lock().ok().and_then(|latest| *latest)
    }

    /// Stops watching.
    #[on_shutdown]
    pub async fn stop_watching(&self) {
        if let Some(task) = self.watcher.lock().ok().and_then(|mut w| w.take()) {
            task.abort();
        }
    }
}
