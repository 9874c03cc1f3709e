//! Example processes for Titan PM, used by the demos, the benchmarks and the end-to-end tests.
//!
//! Each type here has a binary in `src/bin/` whose whole `main` is
//! `pm_runtime::process_main!(Type)`.

pub mod patterns;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pm_runtime::prelude::*;
use serde::{Deserialize, Serialize};

/// An arithmetic error, returned as a typed application error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MathError {
    /// The divisor was zero.
    DivisionByZero {
        /// The dividend.
        dividend: i64,
    },
    /// The result does not fit in an `i64`.
    Overflow,
}

impl std::fmt::Display for MathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MathError::DivisionByZero { dividend } => write!(f, "cannot divide {dividend} by zero"),
            MathError::Overflow => f.write_str("the result overflows an i64"),
        }
    }
}

/// A calculator: the quickstart's process.
#[derive(Debug, Default)]
pub struct Calculator {
    calls: AtomicU64,
}

#[process(name = "calculator", version = "1.0.0")]
impl Calculator {
    /// Adds two numbers.
    #[public]
    pub async fn add(&self, a: i64, b: i64) -> i64 {
        self.calls.fetch_add(1, Ordering::Relaxed);
        a + b
    }

    /// Divides `a` by `b`, failing with a typed [`MathError`] when `b` is zero.
    #[public]
    pub async fn div(&self, a: i64, b: i64) -> Result<i64, MathError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if b == 0 {
            return Err(MathError::DivisionByZero { dividend: a });
        }
        a.checked_div(b).ok_or(MathError::Overflow)
    }

    /// The OS pid of the process serving the call.
    #[public]
    pub async fn pid(&self) -> u32 {
        std::process::id()
    }

    /// Panics with `message`, to show that a panic becomes an error and the process goes on.
    #[public]
    pub async fn panic(&self, message: String) -> i64 {
        panic!("{message}")
    }

    /// Sleeps for `millis` milliseconds, then answers `millis`.
    #[public]
    pub async fn sleep(&self, millis: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        millis
    }

    /// Echoes bytes back (for payload-size tests and benchmarks).
    #[public]
    pub async fn echo(&self, data: Vec<u8>) -> usize {
        data.len()
    }

    /// Sends `data` back as it came (MessagePack `bin` both ways, for payload benchmarks).
    #[public]
    pub async fn echo_bytes(&self, data: bytes::Bytes) -> bytes::Bytes {
        data
    }

    /// How many `add` and `div` calls this instance served.
    #[public]
    pub async fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Healthy while it can count.
    #[health_check]
    pub async fn health(&self) -> HealthStatus {
        HealthStatus::healthy().with_check("arithmetic", CheckStatus::Pass, None)
    }
}

/// Finds a binary built next to the running executable (in the same target directory), as
/// demos do to find the process binaries they spawn.
pub fn sibling_binary(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let mut dir = exe.parent()?.to_path_buf();
    // Examples, tests and benches run from `target/<profile>/{examples,deps}`.
    if matches!(
        dir.file_name().and_then(|n| n.to_str()),
        Some("examples" | "deps")
    ) {
        dir.pop();
    }
    let candidate = dir.join(name);
    candidate.is_file().then_some(candidate)
}

/// A binary of this package built next to the running executable; when it has not been
/// built yet (`cargo run` builds only the binary it runs), builds it first with the same cargo
/// and profile.
///
/// # Errors
/// A message saying what is missing when there is no cargo to build with, or the build fails.
pub fn built_binary(name: &str) -> Result<PathBuf, String> {
    if let Some(path) = sibling_binary(name) {
        return Ok(path);
    }
    let cargo = std::env::var("CARGO").map_err(|_| {
        format!("the `{name}` binary is missing: build it with `cargo build -p pm-examples --bins`")
    })?;
    let release = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.ends_with("release")))
        .unwrap_or(false);
    let mut build = std::process::Command::new(cargo);
    build.args(["build", "-q", "-p", "pm-examples", "--bin", name]);
    if release {
        build.arg("--release");
    }
    let status = build
        .status()
        .map_err(|err| format!("could not run cargo: {err}"))?;
    if !status.success() {
        return Err(format!("building `{name}` failed: {status}"));
    }
    sibling_binary(name).ok_or_else(|| format!("the `{name}` binary is still missing"))
}

/// A counter whose increments take `&mut self`: calls to it are serialised, so concurrent
/// increments are never lost even though each one yields in the middle.
#[derive(Debug, Default)]
pub struct Counter {
    count: u64,
}

#[process(name = "counter", version = "1.0.0")]
impl Counter {
    /// Adds one and returns the new count. Reads, yields to other tasks, then writes: without
    /// serialisation concurrent calls would lose updates.
    #[public]
    pub async fn increment(&mut self) -> u64 {
        let before = self.count;
        tokio::task::yield_now().await;
        self.count = before + 1;
        self.count
    }

    /// The current count.
    #[public]
    pub async fn get(&self) -> u64 {
        self.count
    }
}

/// How many bytes [`Hasher::digest`] hashes per round: 1 MiB.
pub const HASHER_BUFFER_LEN: usize = 1 << 20;

/// A CPU-bound process for the pool benchmark: each call hashes a 1 MiB buffer, allocated once
/// when the process starts, with 64-bit FNV-1a.
pub struct Hasher {
    buffer: Vec<u8>,
}

impl Default for Hasher {
    fn default() -> Self {
        // The same bytes in every process, built at start so the hash cannot be folded away.
        let buffer = (0..HASHER_BUFFER_LEN)
            .map(|i| (i.wrapping_mul(31) ^ (i >> 7)) as u8)
            .collect();
        Self { buffer }
    }
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("buffer_len", &self.buffer.len())
            .finish()
    }
}

impl Hasher {
    fn hash_rounds(&self, rounds: u32) -> u64 {
        let mut hash = 0xcbf2_9ce4_8422_2325;
        for _ in 0..rounds {
            hash = fnv1a(hash, std::hint::black_box(&self.buffer));
        }
        std::hint::black_box(hash)
    }
}

/// 64-bit FNV-1a over `bytes`, continuing from `hash`.
fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[process(name = "hasher", version = "1.0.0")]
impl Hasher {
    /// Hashes the 1 MiB buffer `rounds` times in a row (each round continues from the last
    /// one's hash) with 64-bit FNV-1a, on the thread serving the call, and returns the hash.
    /// About 1.6 ms of one core per round on the reference machine. Takes `&self`, so one
    /// process runs concurrent calls in parallel on its runtime's worker threads.
    #[public]
    pub async fn digest(&self, rounds: u32) -> u64 {
        self.hash_rounds(rounds)
    }

    /// The same work as [`digest`](Self::digest), but taking `&mut self`: one process runs
    /// these calls one at a time, so only more processes use more cores.
    #[public]
    pub async fn digest_exclusive(&mut self, rounds: u32) -> u64 {
        self.hash_rounds(rounds)
    }
}

/// Where the database service connects (seed pattern 2: a service with dependencies).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseConfig {
    /// Host name.
    pub host: String,
    /// Port.
    pub port: u16,
}

/// A service built from its dependencies by `init`.
#[derive(Debug)]
pub struct DatabaseService {
    config: DatabaseConfig,
}

#[process(name = "database-service", version = "1.0.0")]
impl DatabaseService {
    /// Builds the service; refuses an empty host or port 0, as a real connect would fail.
    pub async fn init(config: DatabaseConfig) -> Result<Self, String> {
        if config.host.is_empty() || config.port == 0 {
            return Err(format!(
                "cannot connect to database at `{}:{}`",
                config.host, config.port
            ));
        }
        Ok(Self { config })
    }

    /// Runs a query (here: describes where it would run).
    #[public]
    pub async fn query(&self, sql: String) -> String {
        format!("{}:{} <- {sql}", self.config.host, self.config.port)
    }

    /// The configuration `init` received.
    #[public]
    pub async fn config(&self) -> DatabaseConfig {
        self.config.clone()
    }
}
