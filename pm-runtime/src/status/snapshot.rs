//! The JSON document `GET /status` serves: every process and pool with state, health and
//! metrics, and the manager's health from the latest checks.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pm_core::{HealthState, LatencySummary, MethodMetrics, ProcessInfo, ProcessMetrics};
use serde::Serialize;

use crate::exposition::{health_name, state_name};
use crate::ProcessManager;

/// The whole document.
#[derive(Debug, Serialize)]
pub(crate) struct Snapshot {
    /// Milliseconds since the epoch when it was taken.
    pub(crate) taken_ms: u64,
    /// `healthy`, `degraded`, `unhealthy`, or `unknown` before any check ran.
    pub(crate) health: &'static str,
    pub(crate) processes: Vec<ProcessRow>,
    pub(crate) pools: Vec<PoolRow>,
}

/// One process (pool members included, with their pool's id).
#[derive(Debug, Serialize)]
pub(crate) struct ProcessRow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) state: &'static str,
    /// Why it crashed, is restarting or failed, when it did.
    pub(crate) reason: Option<String>,
    pub(crate) pid: Option<u32>,
    pub(crate) restarts: u32,
    pub(crate) uptime_ms: u64,
    pub(crate) pool: Option<String>,
    pub(crate) optional: bool,
    pub(crate) health: &'static str,
    #[serde(flatten)]
    pub(crate) metrics: Figures,
}

/// One pool.
#[derive(Debug, Serialize)]
pub(crate) struct PoolRow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) state: &'static str,
    pub(crate) members: Vec<String>,
    pub(crate) restarts: u32,
    pub(crate) uptime_ms: u64,
    pub(crate) optional: bool,
    pub(crate) health: &'static str,
    #[serde(flatten)]
    pub(crate) metrics: Figures,
}

/// What was measured, with durations in milliseconds.
#[derive(Debug, Serialize)]
pub(crate) struct Figures {
    /// Percent of one core.
    pub(crate) cpu: f64,
    /// Resident bytes.
    pub(crate) memory: u64,
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) latency_ms: Percentiles,
    pub(crate) methods: BTreeMap<String, MethodFigures>,
}

/// p50, p95 and p99 in milliseconds.
#[derive(Debug, Serialize)]
pub(crate) struct Percentiles {
    pub(crate) p50: f64,
    pub(crate) p95: f64,
    pub(crate) p99: f64,
}

/// One method's figures.
#[derive(Debug, Serialize)]
pub(crate) struct MethodFigures {
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) latency_ms: Percentiles,
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

impl From<LatencySummary> for Percentiles {
    fn from(latency: LatencySummary) -> Self {
        Self {
            p50: millis(latency.p50),
            p95: millis(latency.p95),
            p99: millis(latency.p99),
        }
    }
}

impl From<MethodMetrics> for MethodFigures {
    fn from(method: MethodMetrics) -> Self {
        Self {
            requests: method.requests,
            errors: method.errors,
            latency_ms: method.latency.into(),
        }
    }
}

impl From<ProcessMetrics> for Figures {
    fn from(metrics: ProcessMetrics) -> Self {
        Self {
            cpu: metrics.cpu,
            memory: metrics.memory,
            requests: metrics.requests,
            errors: metrics.errors,
            latency_ms: metrics.latency.into(),
            methods: metrics
                .methods
                .into_iter()
                .map(|(name, method)| (name, method.into()))
                .collect(),
        }
    }
}

fn reason(info: &ProcessInfo) -> Option<String> {
    match &info.state {
        pm_core::ProcessState::Crashed { reason } => Some(reason.to_string()),
        pm_core::ProcessState::Failed { reason } => Some(reason.clone()),
        pm_core::ProcessState::Restarting { attempt, delay } => {
            Some(format!("restart {attempt} in {delay:?}"))
        }
        _ => None,
    }
}

/// A part's weight in the manager's health: its latest check, made `Degraded` at worst for
/// an optional part, and `Unhealthy` for a part that failed for good.
fn weigh(info: &ProcessInfo, health: Option<HealthState>, optional: bool) -> Option<HealthState> {
    let health = if matches!(info.state, pm_core::ProcessState::Failed { .. }) {
        Some(HealthState::Unhealthy)
    } else {
        health
    };
    match health {
        Some(HealthState::Unhealthy) if optional => Some(HealthState::Degraded),
        other => other,
    }
}

/// The manager's health from the parts' latest checks: the worst of them; `unknown` while
/// parts run but none has been checked.
fn overall(parts: &[Option<HealthState>]) -> &'static str {
    let worst = parts.iter().flatten().max_by_key(|state| match state {
        HealthState::Healthy => 0,
        HealthState::Degraded => 1,
        HealthState::Unhealthy => 2,
    });
    match worst {
        Some(state) => health_name(Some(*state)),
        None if parts.is_empty() => "healthy",
        None => "unknown",
    }
}

impl Snapshot {
    /// Takes one of `pm`: reads every process's metrics (a fresh CPU and memory reading) and
    /// the outcome of the latest health checks; calls no process.
    pub(crate) fn take(pm: &ProcessManager) -> Self {
        let listed = pm.processes().clone();
        let pools = pm.pools().clone();
        let mut parts = Vec::new();
        let processes = listed
            .iter()
            .map(|managed| {
                let info = managed.info();
                let health = managed.last_health();
                if info.pool.is_none() && !matches!(info.state, pm_core::ProcessState::Stopped {}) {
                    parts.push(weigh(&info, health, managed.optional));
                }
                ProcessRow {
                    id: info.id.to_string(),
                    state: state_name(&info.state),
                    reason: reason(&info),
                    pid: info.pid,
                    restarts: info.restarts,
                    uptime_ms: info.uptime.as_millis() as u64,
                    pool: info.pool.map(|id| id.to_string()),
                    optional: managed.optional,
                    health: health_name(health),
                    metrics: managed.metrics().into(),
                    name: info.name,
                    version: info.version,
                }
            })
            .collect();
        let pools = pools
            .iter()
            .map(|pool| {
                let info = pool.info();
                let health = pool.last_health();
                if !pool.is_stopping() {
                    parts.push(weigh(&info, health, pool.optional));
                }
                let metrics = pool.metrics();
                PoolRow {
                    id: info.id.to_string(),
                    state: state_name(&info.state),
                    members: metrics.members.iter().map(|id| id.to_string()).collect(),
                    restarts: info.restarts,
                    uptime_ms: info.uptime.as_millis() as u64,
                    optional: pool.optional,
                    health: health_name(health),
                    metrics: metrics.into(),
                    name: info.name,
                    version: info.version,
                }
            })
            .collect();
        Self {
            taken_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            health: overall(&parts),
            processes,
            pools,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whole_is_as_healthy_as_its_worst_checked_part() {
        use HealthState::*;
        assert_eq!(overall(&[]), "healthy");
        assert_eq!(overall(&[None, None]), "unknown");
        assert_eq!(overall(&[Some(Healthy), None]), "healthy");
        assert_eq!(overall(&[Some(Healthy), Some(Degraded)]), "degraded");
        assert_eq!(overall(&[Some(Unhealthy), Some(Degraded)]), "unhealthy");
    }
}
