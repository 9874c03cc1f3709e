//! Why an incarnation of a process ended without being asked to.

use std::fmt;

/// Why a process crashed: what [`ProcessState::Crashed`](crate::ProcessState::Crashed), the
/// manager's `Crashed` event and a supervisor's `ChildCrashed` event carry.
///
/// Match on it to act on a cause (raise a memory limit, look at a failing health check);
/// print it (`Display`) for people. More causes may be added, so a `match` needs a `_` arm.
///
/// ```
/// use pm_core::CrashReason;
///
/// let reason = CrashReason::MemoryLimit { resident: 300 << 20, limit: 256 << 20 };
/// assert_eq!(
///     reason.to_string(),
///     "resident memory 314572800 bytes exceeded max_memory 268435456 bytes",
/// );
/// assert!(reason.is_managers_verdict());
/// assert!(!CrashReason::Exited { code: 3 }.is_managers_verdict());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CrashReason {
    /// The OS process exited on its own with this code. Code 0 is a crash only where the
    /// process was expected to keep running (a restart policy of `Always`, or a permanent
    /// child of a supervisor).
    Exited {
        /// The exit code.
        code: i32,
    },
    /// The OS process was ended by a signal it did not get from the manager.
    Signaled {
        /// The signal's number (9 for SIGKILL, 11 for SIGSEGV, ...).
        signal: i32,
    },
    /// The manager ended it: its resident memory went over `Resources::max_memory`.
    MemoryLimit {
        /// The resident memory measured, in bytes.
        resident: u64,
        /// The limit, in bytes.
        limit: u64,
    },
    /// The manager ended it: `failures` health checks in a row failed (the
    /// `failure_threshold` of its health-check config).
    HealthChecks {
        /// How many checks failed in a row.
        failures: u32,
        /// What the last failure said.
        last: String,
    },
    /// A worker thread's method, or its runtime, panicked.
    Panicked {
        /// The panic's message.
        message: String,
    },
    /// A restart of it could not start (a supervisor's child: the supervisor counts this as
    /// the child's next crash).
    StartFailed {
        /// The spawn's error.
        error: String,
    },
    /// A group it stands for ended for good: a pool that failed, or a nested supervisor that
    /// gave up (a supervisor's child).
    GroupFailed {
        /// Which group, and why it failed.
        detail: String,
    },
    /// The connection to the process ended with no exit status to tell why: a worker or
    /// in-process instance whose serving ended, or a child whose status could not be read.
    Disconnected {
        /// What was seen.
        detail: String,
    },
}

impl CrashReason {
    /// Whether the manager itself ended the process, after its memory limit or health
    /// checks, rather than the process dying on its own.
    pub fn is_managers_verdict(&self) -> bool {
        matches!(
            self,
            CrashReason::MemoryLimit { .. } | CrashReason::HealthChecks { .. }
        )
    }
}

/// The name of a signal that crashes commonly come from (the numbers are the same on Linux
/// and the BSDs), for messages.
fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        2 => "SIGINT",
        6 => "SIGABRT",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        15 => "SIGTERM",
        _ => return None,
    })
}

impl fmt::Display for CrashReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CrashReason::Exited { code } => write!(f, "exited with code {code}"),
            CrashReason::Signaled { signal } => match signal_name(*signal) {
                Some(name) => write!(f, "killed by signal {signal} ({name})"),
                None => write!(f, "killed by signal {signal}"),
            },
            CrashReason::MemoryLimit { resident, limit } => write!(
                f,
                "resident memory {resident} bytes exceeded max_memory {limit} bytes"
            ),
            CrashReason::HealthChecks { failures, last } => {
                write!(
                    f,
                    "{failures} consecutive health checks failed; last: {last}"
                )
            }
            CrashReason::Panicked { message } => write!(f, "panicked: {message}"),
            CrashReason::StartFailed { error } => write!(f, "its restart failed: {error}"),
            CrashReason::GroupFailed { detail } => f.write_str(detail),
            CrashReason::Disconnected { detail } => f.write_str(detail),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_is_named_where_it_has_a_common_name_and_numbered_always() {
        assert_eq!(
            CrashReason::Signaled { signal: 9 }.to_string(),
            "killed by signal 9 (SIGKILL)"
        );
        assert_eq!(
            CrashReason::Signaled { signal: 10 }.to_string(),
            "killed by signal 10"
        );
    }

    #[test]
    fn health_check_failures_say_how_many_and_the_last_one() {
        let reason = CrashReason::HealthChecks {
            failures: 3,
            last: "timed out".into(),
        };
        assert_eq!(
            reason.to_string(),
            "3 consecutive health checks failed; last: timed out"
        );
        assert!(reason.is_managers_verdict());
    }
}
