//! What the manager reports of its processes: health, metrics, the Prometheus text.

use super::*;

impl ProcessManager {
    /// Asks the process's `#[health_check]` (healthy when it has none).
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown id, [`Error::Unavailable`] when it is not running,
    /// [`Error::Timeout`] when the check (with the wait for another caller's check: one runs at a
    /// time per process, beside the manager's own polling) takes longer than the health check
    /// timeout.
    pub async fn get_health(&self, id: ProcessId) -> Result<HealthStatus, Error> {
        let timeout = self.inner.config.monitoring.health_check.timeout;
        match self.find(id)? {
            Target::Process(managed) => managed.health(timeout).await,
            Target::Pool(pool) => pool.health(timeout).await,
        }
    }

    /// The health of everything this manager runs, as one report (the seed's "PM aggregates
    /// health"): one check per process spawned on its own and one per pool (pool members are
    /// covered by their pool's check). Processes stopped on request are left out.
    ///
    /// The status is `Healthy` when every check passes, `Unhealthy` when any process or pool
    /// is unhealthy, unreachable or failed for good (a pool counts as unhealthy only when none
    /// of its members is healthy), and `Degraded` otherwise (a degraded process, a pool with
    /// some members unhealthy, or an [optional](SpawnOptions::optional) part that is
    /// unhealthy, unreachable or failed). With nothing running it is `Healthy`, with no checks.
    ///
    /// # Errors
    /// None today; the `Result` leaves room for failures of the manager itself.
    pub async fn health(&self) -> Result<HealthStatus, Error> {
        use pm_core::{CheckResult, CheckStatus, HealthState};
        let timeout = self.inner.config.monitoring.health_check.timeout;
        let processes: Vec<Arc<Managed>> = self
            .processes()
            .iter()
            .filter(|m| {
                m.pool.is_none() && !matches!(m.info().state, pm_core::ProcessState::Stopped {})
            })
            .cloned()
            .collect();
        let pools: Vec<Arc<PoolCore>> = self
            .pools()
            .iter()
            .filter(|p| !p.is_stopping())
            .cloned()
            .collect();
        let process_checks = processes.iter().map(|m| async move {
            (
                format!("{} ({})", m.name, m.id),
                m.optional,
                m.health(timeout).await,
            )
        });
        let pool_checks = pools.iter().map(|p| async move {
            (
                format!("pool {} ({})", p.name, p.id),
                p.optional,
                p.health(timeout).await,
            )
        });
        let (process_reports, pool_reports) = futures_util::future::join(
            futures_util::future::join_all(process_checks),
            futures_util::future::join_all(pool_checks),
        )
        .await;
        let mut report = HealthStatus::healthy();
        for (name, optional, outcome) in process_reports.into_iter().chain(pool_reports) {
            let (status, message) = match outcome {
                Ok(status) => match status.status {
                    HealthState::Healthy => (CheckStatus::Pass, None),
                    HealthState::Degraded => (CheckStatus::Warn, Some("degraded".to_owned())),
                    HealthState::Unhealthy => (CheckStatus::Fail, Some("unhealthy".to_owned())),
                },
                Err(err) => (CheckStatus::Fail, Some(err.to_string())),
            };
            // An optional part failing degrades the whole; it does not fail it.
            let (status, message) = match (status, optional) {
                (CheckStatus::Fail, true) => (
                    CheckStatus::Warn,
                    message.map(|m| format!("{m} (an optional part)")),
                ),
                (status, _) => (status, message),
            };
            report.status = match (report.status, status) {
                (_, CheckStatus::Fail) | (HealthState::Unhealthy, _) => HealthState::Unhealthy,
                (_, CheckStatus::Warn) | (HealthState::Degraded, _) => HealthState::Degraded,
                _ => HealthState::Healthy,
            };
            report.checks.push(CheckResult {
                name,
                status,
                message,
            });
        }
        Ok(report)
    }

    /// Every process and pool in the Prometheus text exposition format (OpenMetrics text, as
    /// the `prometheus-client` crate encodes it), ready to serve on a `/metrics` endpoint:
    /// calls and errors per method (`titan_pm_calls_total`, `titan_pm_call_errors_total`), call
    /// duration (`titan_pm_call_duration_seconds`, a histogram since the start), CPU, resident
    /// memory, restarts and state; the same call families for pools
    /// (`titan_pm_pool_…`) and their member count; health (`titan_pm_health`,
    /// `titan_pm_pool_health`: 1 for the `status` of the latest health check, `unknown` before
    /// the first). Labels: `process` (the name), `id`,
    /// `method`, and `pool` for pool members and pools. Call figures are empty when
    /// `Monitoring::metrics` is off.
    pub fn metrics_text(&self) -> String {
        use crate::exposition::{Exposition, PoolRow, ProcessRow};
        // Copied out first: no lock is held while `/proc` is read.
        let listed: Vec<Arc<Managed>> = self.processes().clone();
        let processes = listed
            .iter()
            .map(|managed| {
                let (cpu, memory) = managed
                    .local_pid()
                    .and_then(|pid| managed.sampler.sample(pid))
                    .unwrap_or((0.0, 0));
                ProcessRow {
                    info: managed.info(),
                    cpu,
                    memory,
                    totals: managed.stats.totals(),
                    health: managed.last_health(),
                }
            })
            .collect();
        let pools: Vec<Arc<PoolCore>> = self.pools().clone();
        let pools = pools
            .iter()
            .map(|pool| PoolRow {
                info: pool.info(),
                members: pool.members().len(),
                totals: pool.stats.totals(),
                health: pool.last_health(),
            })
            .collect();
        Exposition { processes, pools }.render()
    }

    /// What the manager measured of the process: calls, errors and latency from its side of
    /// each call, in all and per method (counts since the start, latency percentiles over the
    /// last 30 to 60 seconds; nothing when `Monitoring::metrics` is off); CPU and resident
    /// memory of the OS process hosting it (for a `Child`, memory counts its descendants too;
    /// for `Worker` and `None`, both are the manager's own process).
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown id.
    pub async fn get_metrics(&self, id: ProcessId) -> Result<ProcessMetrics, Error> {
        Ok(match self.find(id)? {
            Target::Process(managed) => managed.metrics(),
            Target::Pool(pool) => pool.metrics(),
        })
    }
}
