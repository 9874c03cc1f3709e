//! What a pool reports as a whole: its snapshot, health and metrics, from its members'.

use std::time::Duration;

use pm_core::{
    CheckResult, CheckStatus, Error, HealthState, HealthStatus, ProcessInfo, ProcessMetrics,
    ProcessState,
};

use super::dispatch::Phase;
use super::{lock, PoolCore};

impl PoolCore {
    /// The pool's snapshot: running while any member runs; its restarts are its members'.
    pub(crate) fn info(&self) -> ProcessInfo {
        let (phase, members) = {
            let state = lock(&self.state);
            (state.phase.clone(), state.members.clone())
        };
        let infos: Vec<ProcessInfo> = members.iter().map(|m| m.managed.info()).collect();
        let state = match phase {
            Phase::Stopped => ProcessState::Stopped {},
            Phase::Stopping => ProcessState::Stopping {},
            Phase::Running
                if infos
                    .iter()
                    .any(|i| matches!(i.state, ProcessState::Running {})) =>
            {
                ProcessState::Running {}
            }
            Phase::Running if infos.is_empty() => ProcessState::Failed {
                reason: "every member failed and none could be replaced".into(),
            },
            Phase::Running => ProcessState::Starting {},
        };
        ProcessInfo {
            id: self.id,
            name: self.name.clone(),
            version: self.version.to_owned(),
            pid: None,
            state,
            restarts: infos.iter().map(|i| i.restarts).sum(),
            uptime: self.created.elapsed(),
            endpoint: None,
            pool: None,
            supervisor: None,
        }
    }

    /// The pool's status from its members' latest health checks, by the rule of
    /// [`PoolCore::health`] over the members checked so far: healthy when all are, unhealthy
    /// when none is, degraded between; `None` while no member has been checked.
    pub(crate) fn last_health(&self) -> Option<HealthState> {
        let states: Vec<HealthState> = self
            .members()
            .iter()
            .filter_map(|m| m.managed.last_health())
            .collect();
        if states.is_empty() {
            return None;
        }
        let healthy = states
            .iter()
            .filter(|s| **s == HealthState::Healthy)
            .count();
        Some(if healthy == states.len() {
            HealthState::Healthy
        } else if healthy == 0 {
            HealthState::Unhealthy
        } else {
            HealthState::Degraded
        })
    }

    /// Every member's health check: healthy when all pass, degraded when some do, unhealthy
    /// when none does. One check result per member, named by its id.
    pub(crate) async fn health(&self, timeout: Duration) -> Result<HealthStatus, Error> {
        let members = self.members();
        let checks = members.iter().map(|m| m.managed.health(timeout));
        let reports = futures_util::future::join_all(checks).await;
        let mut passing = 0;
        let checks: Vec<CheckResult> = members
            .iter()
            .zip(reports)
            .map(|(member, report)| {
                let name = format!("member {}", member.id());
                match report {
                    Ok(status) if status.status == HealthState::Healthy => {
                        passing += 1;
                        CheckResult {
                            name,
                            status: CheckStatus::Pass,
                            message: None,
                        }
                    }
                    Ok(status) => CheckResult {
                        name,
                        status: if status.status == HealthState::Degraded {
                            CheckStatus::Warn
                        } else {
                            CheckStatus::Fail
                        },
                        message: Some(format!("{:?}", status.status)),
                    },
                    Err(err) => CheckResult {
                        name,
                        status: CheckStatus::Fail,
                        message: Some(err.to_string()),
                    },
                }
            })
            .collect();
        let status = if !checks.is_empty() && passing == checks.len() {
            HealthState::Healthy
        } else if passing > 0 {
            HealthState::Degraded
        } else {
            HealthState::Unhealthy
        };
        let mut report = HealthStatus::healthy();
        report.status = status;
        report.checks = checks;
        Ok(report)
    }

    /// Calls, errors and latency as the pool's callers saw them (queueing and retries
    /// included); CPU summed over the members, memory summed over the distinct OS processes
    /// hosting them; the members listed.
    pub(crate) fn metrics(&self) -> ProcessMetrics {
        let members = self.members();
        let mut cpu = 0.0;
        let mut memory = 0;
        let mut seen_pids = Vec::new();
        for member in &members {
            let Some(pid) = member.managed.local_pid() else {
                continue;
            };
            if seen_pids.contains(&pid) {
                continue;
            }
            seen_pids.push(pid);
            if let Some((c, m)) = member.managed.sampler.sample(pid) {
                cpu += c;
                memory += m;
            }
        }
        ProcessMetrics {
            cpu,
            memory,
            requests: self.stats.requests(),
            errors: self.stats.errors(),
            latency: self.stats.latency(),
            methods: self.stats.methods(),
            members: members.iter().map(|m| m.id()).collect(),
        }
    }
}
