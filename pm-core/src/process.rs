//! Identity and state of a managed process.

use std::fmt;
use std::time::Duration;

/// A process's id, unique within one manager.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ProcessId(u64);

impl ProcessId {
    /// The id with this number.
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The id's number.
    pub const fn as_raw(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ProcessId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where a process is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessState {
    /// Being started: spawned, handshaking or running `init`.
    Starting {},
    /// Serving calls.
    Running {},
    /// Being stopped: shutdown hooks and in-flight calls are finishing.
    Stopping {},
    /// Stopped on request; never restarted.
    Stopped {},
    /// Died on its own; a restart may follow.
    Crashed {
        /// How it died.
        reason: crate::CrashReason,
    },
    /// Waiting out a backoff delay before the next start.
    Restarting {
        /// Which restart this is, from 1.
        attempt: u32,
        /// The delay before it.
        delay: Duration,
    },
    /// Given up on: it crashed more often than the restart policy allows, or could not start.
    Failed {
        /// Why.
        reason: String,
    },
}

impl ProcessState {
    /// Whether the process has ended for good (stopped or failed).
    pub fn is_terminal(&self) -> bool {
        matches!(self, ProcessState::Stopped {} | ProcessState::Failed { .. })
    }
}

/// A snapshot of one managed process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// The manager's id for it.
    pub id: ProcessId,
    /// Its name (the spawn's `name` option, or the process type's name).
    pub name: String,
    /// The version it reported.
    pub version: String,
    /// The OS pid of the process hosting it (the manager's own for worker and in-process; a
    /// child's from its launch on). `None` while nothing runs: stopped, failed, restarting.
    pub pid: Option<u32>,
    /// Its state.
    pub state: ProcessState,
    /// How often it has been restarted.
    pub restarts: u32,
    /// How long the current incarnation has been running.
    pub uptime: Duration,
    /// Where the current incarnation listens, for the socket transports (`unix:/path`,
    /// `tcp:127.0.0.1:port` or `http://127.0.0.1:port` as text); `None` for `Ipc`.
    pub endpoint: Option<crate::Address>,
    /// The pool this process is a member of, or `None` for a process spawned on its own (and
    /// for a pool's own snapshot).
    pub pool: Option<ProcessId>,
    /// Where it sits in a supervision tree, as a path of names from the root supervisor
    /// (`app/db`; a supervisor's own entry is its path, `app`), or `None` outside any tree.
    pub supervisor: Option<String>,
}
