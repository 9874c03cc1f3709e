//! Health reports, as a `#[health_check]` method returns them.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The overall state of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum HealthState {
    /// Everything works.
    #[default]
    Healthy,
    /// It works, with reduced capacity or a failing non-essential check.
    Degraded,
    /// It does not work; after enough consecutive reports like this the manager restarts it.
    Unhealthy,
}

/// The outcome of one named check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum CheckStatus {
    /// The check passed.
    #[default]
    Pass,
    /// The check passed with a warning.
    Warn,
    /// The check failed.
    Fail,
}

/// One named check inside a [`HealthStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct CheckResult {
    /// What was checked, e.g. `"database"`.
    pub name: String,
    /// How it went.
    pub status: CheckStatus,
    /// Details for people.
    pub message: Option<String>,
}

/// A health report.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct HealthStatus {
    /// The overall state.
    pub status: HealthState,
    /// The individual checks behind it.
    pub checks: Vec<CheckResult>,
    /// When the report was made, in milliseconds since the Unix epoch.
    pub timestamp: u64,
}

/// Milliseconds since the Unix epoch, or 0 if the clock is before it.
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl HealthStatus {
    /// A healthy report with no checks, stamped now.
    pub fn healthy() -> Self {
        Self::with_state(HealthState::Healthy)
    }

    /// A degraded report with no checks, stamped now.
    pub fn degraded() -> Self {
        Self::with_state(HealthState::Degraded)
    }

    /// An unhealthy report with no checks, stamped now.
    pub fn unhealthy() -> Self {
        Self::with_state(HealthState::Unhealthy)
    }

    fn with_state(status: HealthState) -> Self {
        Self {
            status,
            checks: Vec::new(),
            timestamp: now_millis(),
        }
    }

    /// Adds a named check.
    pub fn with_check(
        mut self,
        name: impl Into<String>,
        status: CheckStatus,
        message: Option<String>,
    ) -> Self {
        self.checks.push(CheckResult {
            name: name.into(),
            status,
            message,
        });
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_is_stamped_with_the_current_time() {
        let before = now_millis();
        let report = HealthStatus::healthy();
        assert_eq!(report.status, HealthState::Healthy);
        assert!(report.timestamp >= before && report.timestamp <= now_millis());
    }

    #[test]
    fn health_status_round_trips_through_messagepack() {
        let report =
            HealthStatus::degraded().with_check("db", CheckStatus::Warn, Some("slow".into()));
        let bytes = rmp_serde::to_vec(&report).expect("encodes");
        let back: HealthStatus = rmp_serde::from_slice(&bytes).expect("decodes");
        assert_eq!(back, report);
    }
}
