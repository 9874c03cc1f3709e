//! The processes of the runnable examples (`examples/`), one per pattern of the seed design.
//! Each has a binary in `src/bin/` whose whole `main` is `pm_runtime::process_main!(Type)`.

pub mod shop;
pub mod sidecar;

use std::collections::BTreeMap;
use std::sync::Mutex;

use pm_runtime::prelude::*;
use serde::{Deserialize, Serialize};

/// What [`SimpleService::do_work`] made of its input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkResult {
    /// How many words the input had.
    pub words: usize,
    /// The input, upper-cased.
    pub shouted: String,
}

/// Pattern 1, a simple service: no state, no dependencies, one public method. Its
/// `#[process]` names no version, as the seed's does: it takes this crate's.
#[derive(Debug, Default)]
pub struct SimpleService;

#[process(name = "simple-service")]
impl SimpleService {
    /// Does the work on `data`: counts its words and upper-cases it.
    #[public]
    pub async fn do_work(&self, data: String) -> WorkResult {
        WorkResult {
            words: data.split_whitespace().count(),
            shouted: data.to_uppercase(),
        }
    }
}

/// CPU-bound work for the worker-pool example: counting primes by trial division.
#[derive(Debug, Default)]
pub struct PrimeCounter;

#[process(name = "prime-counter", version = "1.0.0")]
impl PrimeCounter {
    /// How many primes lie in `from..to`, counted the slow way (on purpose: it is the work).
    #[public]
    pub async fn count_primes(&self, from: u64, to: u64) -> u64 {
        (from..to).filter(|n| is_prime(*n)).count() as u64
    }

    /// The OS process doing the work.
    #[public]
    pub async fn pid(&self) -> u32 {
        std::process::id()
    }
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 1;
    }
    true
}

/// A key-value store: the "database" of the supervision example.
#[derive(Debug, Default)]
pub struct KvStore {
    entries: Mutex<BTreeMap<String, String>>,
}

#[process(name = "kv-store", version = "1.0.0")]
impl KvStore {
    /// Stores `value` under `key`; returns the value it replaced.
    #[public]
    pub async fn put(&self, key: String, value: String) -> Option<String> {
        self.entries
            .lock()
            .map(|mut entries| entries.insert(key, value))
            .unwrap_or(None)
    }

    /// The value under `key`.
    #[public]
    pub async fn get(&self, key: String) -> Option<String> {
        self.entries
            .lock()
            .map(|entries| entries.get(&key).cloned())
            .unwrap_or(None)
    }

    /// The OS process serving.
    #[public]
    pub async fn pid(&self) -> u32 {
        std::process::id()
    }
}

/// The API in front of the store, in the supervision example: it is started after the store
/// and restarted after it.
#[derive(Debug, Default)]
pub struct Api;

#[process(name = "api", version = "1.0.0")]
impl Api {
    /// Answers a request for `path`.
    #[public]
    pub async fn handle(&self, path: String) -> String {
        format!("200 OK {path}")
    }

    /// The OS process serving.
    #[public]
    pub async fn pid(&self) -> u32 {
        std::process::id()
    }
}

/// Where [`DatabaseService`] keeps its data: its dependencies, sent by the manager to `init`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseConfig {
    /// The SQLite database file (created when missing).
    pub path: String,
}

/// A row of the `users` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Its id, given by the database.
    pub id: i64,
    /// Its name.
    pub name: String,
}

/// A database error, returned to the caller as a typed application error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbError(pub String);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "database error: {}", self.0)
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(err: rusqlite::Error) -> Self {
        DbError(err.to_string())
    }
}

/// Pattern 2, a service with dependencies: `init` receives the database's location from the
/// manager, opens a real embedded SQLite database there, and the methods query it.
#[derive(Debug)]
pub struct DatabaseService {
    db: Mutex<rusqlite::Connection>,
}

#[process(name = "database-service", version = "1.0.0")]
impl DatabaseService {
    /// Opens (or creates) the database at `config.path` and its `users` table.
    pub async fn init(config: DatabaseConfig) -> Result<Self, DbError> {
        let db = rusqlite::Connection::open(&config.path)?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)",
        )?;
        Ok(Self { db: Mutex::new(db) })
    }

    /// Inserts a user; its new id.
    #[public]
    pub async fn add_user(&self, name: String) -> Result<i64, DbError> {
        let db = self.db.lock().map_err(|_| DbError("poisoned".into()))?;
        db.execute("INSERT INTO users (name) VALUES (?1)", [&name])?;
        Ok(db.last_insert_rowid())
    }

    /// Every user whose name contains `part`, by id.
    #[public]
    pub async fn find_users(&self, part: String) -> Result<Vec<User>, DbError> {
        let db = self.db.lock().map_err(|_| DbError("poisoned".into()))?;
        let mut query =
            db.prepare("SELECT id, name FROM users WHERE name LIKE '%' || ?1 || '%' ORDER BY id")?;
        let users = query
            .query_map([&part], |row| {
                Ok(User {
                    id: row.get(0)?,
                    name: row.get(1)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(users)
    }

    /// Runs one SQL statement that returns a single integer (`SELECT count(*) ...`).
    #[public]
    pub async fn scalar(&self, sql: String) -> Result<i64, DbError> {
        let db = self.db.lock().map_err(|_| DbError("poisoned".into()))?;
        Ok(db.query_row(&sql, [], |row| row.get(0))?)
    }
}

/// What [`Microservice`] reports of its own application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppStats {
    /// Ticks of its background task so far.
    pub ticks: u64,
    /// HTTP requests its own endpoint answered.
    pub http_requests: u64,
    /// Business calls it handled over RPC.
    pub handled: u64,
}

/// The shared state of [`Microservice`]'s application.
#[derive(Debug, Default)]
struct AppState {
    ticks: std::sync::atomic::AtomicU64,
    http_requests: std::sync::atomic::AtomicU64,
    handled: std::sync::atomic::AtomicU64,
}

/// Pattern 3, a full application inside a process: `init` starts its own HTTP endpoint and a
/// background task; `#[on_shutdown]` stops both before the process exits. The manager only
/// starts, calls and stops it; what the application does inside is its own business.
#[derive(Debug)]
pub struct Microservice {
    state: std::sync::Arc<AppState>,
    address: String,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

#[process(name = "microservice", version = "1.0.0")]
impl Microservice {
    /// Binds the HTTP endpoint on 127.0.0.1 (any free port) and starts the application's
    /// tasks: the endpoint's accept loop and a ticker.
    pub async fn init() -> Result<Self, String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|err| format!("cannot bind the HTTP endpoint: {err}"))?;
        let address = listener
            .local_addr()
            .map_err(|err| err.to_string())?
            .to_string();
        let state = std::sync::Arc::new(AppState::default());
        let http = tokio::spawn(serve_http(listener, state.clone()));
        let ticker = tokio::spawn({
            let state = state.clone();
            async move {
                let mut every = tokio::time::interval(std::time::Duration::from_millis(20));
                loop {
                    every.tick().await;
                    state
                        .ticks
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        Ok(Self {
            state,
            address,
            tasks: Mutex::new(vec![http, ticker]),
        })
    }

    /// Where the application's own HTTP endpoint listens (`127.0.0.1:port`).
    #[public]
    pub async fn address(&self) -> String {
        self.address.clone()
    }

    /// The business logic, called over RPC.
    #[public]
    pub async fn handle_business_logic(&self, order: String) -> String {
        let n = self
            .state
            .handled
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        format!("order {order:?} accepted as #{n}")
    }

    /// What the application has done so far.
    #[public]
    pub async fn stats(&self) -> AppStats {
        let load = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
        AppStats {
            ticks: load(&self.state.ticks),
            http_requests: load(&self.state.http_requests),
            handled: load(&self.state.handled),
        }
    }

    /// Stops the application: the endpoint closes and the ticker ends.
    #[on_shutdown]
    pub async fn cleanup(&self) {
        let tasks = self
            .tasks
            .lock()
            .map(|mut tasks| std::mem::take(&mut *tasks))
            .unwrap_or_default();
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
    }
}

/// A minimal HTTP/1.1 endpoint: every request gets the application's counters as text.
async fn serve_http(listener: tokio::net::TcpListener, state: std::sync::Arc<AppState>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    while let Ok((mut stream, _)) = listener.accept().await {
        let state = state.clone();
        tokio::spawn(async move {
            let mut request = [0u8; 1024];
            if stream.read(&mut request).await.is_err() {
                return;
            }
            let served = state
                .http_requests
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                + 1;
            let body = format!(
                "ticks={} http_requests={served}\n",
                state.ticks.load(std::sync::atomic::Ordering::Relaxed)
            );
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}
