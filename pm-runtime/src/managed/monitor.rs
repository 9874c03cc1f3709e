//! Health checks and resource limits of a running incarnation, and the readings behind
//! `get_health` and `get_metrics`.

use super::*;

impl Managed {
    /// Runs the process's health check for a user, within `timeout` (waiting for another
    /// user's check included).
    pub(crate) async fn health(&self, timeout: Duration) -> Result<pm_core::HealthStatus, Error> {
        let status = self.check_health(timeout).await;
        self.note_health(match &status {
            Ok(status) => status.status,
            Err(_) => pm_core::HealthState::Unhealthy,
        });
        status
    }

    async fn check_health(&self, timeout: Duration) -> Result<pm_core::HealthStatus, Error> {
        let conn = self.current()?;
        let timed_out = || Error::Timeout {
            method: crate::rpc::client::HEALTH_METHOD.to_owned(),
            after: timeout,
        };
        let started = Instant::now();
        let _turn = tokio::time::timeout(timeout, self.user_health.acquire())
            .await
            .map_err(|_| timed_out())?
            .map_err(|_| self.unavailable("it is gone"))?;
        let args = pm_core::wire::encode_value(&(), conn.max_frame())?;
        let remaining = timeout.saturating_sub(started.elapsed());
        let frame = conn
            .call(
                crate::rpc::client::HEALTH_METHOD,
                &args,
                Some(remaining),
                None,
            )
            .await
            .map_err(|err| match err {
                Error::Timeout { method, .. } => Error::Timeout {
                    method,
                    after: timeout,
                },
                other => other,
            });
        Ok(frame?.decode::<pm_core::HealthStatus>()?)
    }

    /// What the manager measured of this process: its call statistics, and a fresh reading
    /// of CPU and memory (zero when it has no local OS process).
    pub(crate) fn metrics(&self) -> pm_core::ProcessMetrics {
        let (cpu, memory) = self
            .local_pid()
            .and_then(|pid| self.sampler.sample(pid))
            .unwrap_or((0.0, 0));
        pm_core::ProcessMetrics {
            cpu,
            memory,
            requests: self.stats.requests(),
            errors: self.stats.errors(),
            latency: self.stats.latency(),
            methods: self.stats.methods(),
            members: Vec::new(),
        }
    }

    /// Remembers the outcome of the latest health check, for the metrics exposition.
    pub(super) fn note_health(&self, state: pm_core::HealthState) {
        let code = match state {
            pm_core::HealthState::Healthy => 1,
            pm_core::HealthState::Degraded => 2,
            pm_core::HealthState::Unhealthy => 3,
        };
        self.last_health.store(code, Ordering::Relaxed);
    }

    /// The outcome of the latest health check (the manager's polling or a user's), or `None`
    /// before the first.
    pub(crate) fn last_health(&self) -> Option<pm_core::HealthState> {
        match self.last_health.load(Ordering::Relaxed) {
            1 => Some(pm_core::HealthState::Healthy),
            2 => Some(pm_core::HealthState::Degraded),
            3 => Some(pm_core::HealthState::Unhealthy),
            _ => None,
        }
    }

    /// Watches one incarnation's health and resources until it ends. Holds only a weak
    /// reference to the connection, so it never keeps a dead incarnation's connection open.
    pub(super) async fn monitor(
        self: Arc<Self>,
        rpc: std::sync::Weak<RpcConnection>,
        child_pid: Option<u32>,
    ) {
        const RESOURCE_INTERVAL: Duration = Duration::from_millis(500);
        let health = self.monitoring.health_check;
        let watch_memory = child_pid.is_some() && self.resources.max_memory.is_some();
        let watch_cpu = self.resources.max_cpu.is_some();
        if !health.enabled && !watch_memory && !watch_cpu {
            return;
        }
        let sampler = ResourceSampler::default();
        let mut stopped = self.stop_signal.subscribe();
        let managed = Arc::downgrade(&self);
        drop(self);
        let mut failures = 0u32;
        let mut over_cpu = false;
        let mut next_health = tokio::time::Instant::now() + health.interval;
        let mut next_resources = tokio::time::Instant::now() + RESOURCE_INTERVAL;
        loop {
            let wake = match (health.enabled, watch_memory || watch_cpu) {
                (true, true) => next_health.min(next_resources),
                (true, false) => next_health,
                (false, _) => next_resources,
            };
            // Sleeping holds no strong reference: a stopped process is freed at once, not
            // when its next check falls due.
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = stopped.wait_for(|stopped| *stopped) => return,
            }
            let Some(this) = managed.upgrade() else {
                return;
            };
            let Some(conn) = rpc.upgrade() else { return };
            if conn.is_closed() || this.stopping.load(Ordering::SeqCst) {
                return;
            }
            let now = tokio::time::Instant::now();
            if (watch_memory || watch_cpu) && now >= next_resources {
                next_resources = now + RESOURCE_INTERVAL;
                let pid = child_pid.unwrap_or_else(std::process::id);
                if let Some((cpu, memory)) = sampler.sample(pid) {
                    if let (Some(limit), Some(_)) = (this.resources.max_memory, child_pid) {
                        if memory > limit {
                            this.recycle(
                                &conn,
                                pm_core::CrashReason::MemoryLimit {
                                    resident: memory,
                                    limit,
                                },
                            );
                            return;
                        }
                    }
                    if let Some(limit) = this.resources.max_cpu {
                        let over = cpu > limit;
                        if over && !over_cpu {
                            let reason = format!("cpu {cpu:.1}% is over max_cpu {limit:.1}%");
                            tracing::warn!(process = %this.name, id = %this.id, %reason, "cpu budget exceeded");
                            this.emit(ProcessEvent::Unhealthy {
                                id: this.id,
                                reason,
                            });
                        }
                        over_cpu = over;
                    }
                }
            }
            if health.enabled && now >= next_health {
                next_health = now + health.interval;
                let verdict = match pm_core::wire::encode_value(&(), conn.max_frame()) {
                    Ok(args) => match conn
                        .call(
                            crate::rpc::client::HEALTH_METHOD,
                            &args,
                            Some(health.timeout),
                            None,
                        )
                        .await
                    {
                        Ok(frame) => match frame.decode::<pm_core::HealthStatus>() {
                            Ok(status) if status.status != pm_core::HealthState::Unhealthy => {
                                Ok(status.status)
                            }
                            Ok(_) => Err("the health check reported unhealthy".to_owned()),
                            Err(err) => Err(format!("undecodable health report: {err}")),
                        },
                        Err(err) => Err(err.to_string()),
                    },
                    Err(err) => Err(err.to_string()),
                };
                this.note_health(match verdict {
                    Ok(state) => state,
                    Err(_) => pm_core::HealthState::Unhealthy,
                });
                match verdict {
                    Ok(_) => failures = 0,
                    Err(reason) => {
                        failures += 1;
                        tracing::warn!(process = %this.name, id = %this.id, failures, %reason, "health check failed");
                        if failures >= health.failure_threshold.max(1) {
                            let reason = pm_core::CrashReason::HealthChecks {
                                failures,
                                last: reason,
                            };
                            this.emit(ProcessEvent::Unhealthy {
                                id: this.id,
                                reason: reason.to_string(),
                            });
                            if this.restart_enabled {
                                this.recycle(&conn, reason);
                                return;
                            }
                            failures = 0;
                        }
                    }
                }
            }
        }
    }

    /// Asks the owner to end the incarnation of `conn` so that what oversees the process
    /// restarts it, with `reason`.
    pub(super) fn recycle(&self, conn: &Arc<RpcConnection>, reason: pm_core::CrashReason) {
        let _ = self.command(super::owner::Command::Recycle {
            rpc: Arc::downgrade(conn),
            reason,
        });
    }
}
