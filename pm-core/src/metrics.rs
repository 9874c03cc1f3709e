//! Metrics of a process, measured on the manager's side of each call.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Call latency percentiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct LatencySummary {
    /// The median.
    pub p50: Duration,
    /// The 95th percentile.
    pub p95: Duration,
    /// The 99th percentile.
    pub p99: Duration,
}

/// What the manager measured of one method's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct MethodMetrics {
    /// Calls made since the process (or pool) started.
    pub requests: u64,
    /// Calls that did not return `Ok` (application errors included).
    pub errors: u64,
    /// Latency percentiles of the calls of the last 30 to 60 seconds.
    pub latency: LatencySummary,
}

/// What the manager measured of one process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ProcessMetrics {
    /// CPU use in percent of one core since the previous sample, of the OS process hosting
    /// it: the child's own for `Isolation::Child` (100 is one core busy); for `Worker` and
    /// `None`, the manager's whole process, which they share with everything else in it.
    pub cpu: f64,
    /// Resident memory in bytes. For `Isolation::Child`, of the child's process tree: the
    /// child and every descendant still running. For `Worker` and `None`, of the manager's
    /// own process alone (shared with everything else in it).
    pub memory: u64,
    /// Calls made.
    pub requests: u64,
    /// Calls that did not return `Ok` (application errors included).
    pub errors: u64,
    /// Latency percentiles of the calls of the last 30 to 60 seconds, every method together.
    pub latency: LatencySummary,
    /// The same figures per method, by method name. Empty, like every call figure here,
    /// when `Monitoring::metrics` is off.
    pub methods: BTreeMap<String, MethodMetrics>,
    /// For a pool, its members' ids (their CPU is summed, and their memory summed over the
    /// distinct OS processes hosting them); empty for a single process.
    pub members: Vec<crate::ProcessId>,
}
