//! What the manager announces about its processes.

use std::time::Duration;

use pm_core::ProcessId;

/// A change in a managed process's life, from [`ProcessManager::subscribe`].
///
/// [`ProcessManager::subscribe`]: crate::ProcessManager::subscribe
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessEvent {
    /// An incarnation was started (before its handshake).
    Spawned {
        /// The process.
        id: ProcessId,
        /// Its name.
        name: String,
    },
    /// An incarnation finished its handshake and `init` and takes calls.
    Ready {
        /// The process.
        id: ProcessId,
        /// The OS pid hosting it.
        pid: u32,
    },
    /// An incarnation died without being asked to.
    Crashed {
        /// The process.
        id: ProcessId,
        /// How it died: exit code, signal, or connection loss.
        reason: String,
    },
    /// A restart is scheduled.
    Restarting {
        /// The process.
        id: ProcessId,
        /// Which restart, from 1.
        attempt: u32,
        /// The backoff delay before it.
        delay: Duration,
    },
    /// Its health checks failed often enough to call it unhealthy.
    Unhealthy {
        /// The process.
        id: ProcessId,
        /// The last failure.
        reason: String,
    },
    /// It was stopped on request.
    Stopped {
        /// The process.
        id: ProcessId,
    },
    /// It was given up on.
    Failed {
        /// The process.
        id: ProcessId,
        /// Why.
        reason: String,
    },
}
