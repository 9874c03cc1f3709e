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
        /// How it died: exit code, signal, the manager's verdict (memory, health checks), or
        /// connection loss.
        reason: pm_core::CrashReason,
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
    /// Something happened to a pool as a whole. Its members' own events (spawned, ready,
    /// crashed, ...) are announced as for any process, under their own ids;
    /// [`ProcessInfo::pool`](pm_core::ProcessInfo::pool) says which pool a member is in.
    Pool {
        /// The pool's id.
        pool: ProcessId,
        /// What happened.
        event: PoolEvent,
    },
    /// Something happened in a supervision tree. A child process's own events (spawned,
    /// ready, crashed, ...) are announced as for any process, under its own id.
    Supervisor {
        /// The path of the child (`app/db`) or supervisor (`app`) concerned.
        path: String,
        /// What happened.
        event: crate::supervision::SupervisorEvent,
    },
}

/// What happened to a pool, in [`ProcessEvent::Pool`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PoolEvent {
    /// A member joined: at start, by a resize, or replacing another.
    MemberAdded {
        /// The new member.
        member: ProcessId,
    },
    /// A member left the pool.
    MemberRemoved {
        /// The member.
        member: ProcessId,
        /// Why: resized down, replaced by a reload or recycling, or failed for good.
        reason: String,
    },
    /// The pool's size changed.
    Resized {
        /// The size before.
        from: usize,
        /// The size now.
        to: usize,
    },
    /// A failed member could not be replaced: the pool stays smaller.
    ReplacementFailed {
        /// Why.
        reason: String,
    },
    /// A rolling reload began.
    ReloadStarted,
    /// A rolling reload replaced every member.
    ReloadFinished,
    /// The circuit breaker opened: calls fail fast.
    CircuitOpened,
    /// The circuit breaker lets probe calls through.
    CircuitHalfOpen,
    /// The circuit breaker closed again.
    CircuitClosed,
    /// The pool stopped: every member is stopped.
    Stopped,
}
