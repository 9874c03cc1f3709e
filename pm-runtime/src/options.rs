//! Per-spawn options.

use std::time::Duration;

use bytes::Bytes;
use pm_core::{Isolation, TransportKind};
use serde::Serialize;

/// Options of one [`ProcessManager::spawn`](crate::ProcessManager::spawn), built fluently:
///
/// ```
/// use std::time::Duration;
/// use pm_runtime::prelude::*;
///
/// let opts = SpawnOptions::default()
///     .name("calc-1")
///     .isolation(Isolation::Child)
///     .timeout(Duration::from_secs(2))
///     .dependencies(("localhost", 5432));
/// ```
#[derive(Debug, Clone, Default)]
pub struct SpawnOptions {
    pub(crate) name: Option<String>,
    pub(crate) dependencies: Option<Result<Bytes, String>>,
    pub(crate) isolation: Option<Isolation>,
    pub(crate) transport: Option<TransportKind>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) optional: bool,
}

impl SpawnOptions {
    /// The name the manager shows for this process (default: the process type's name).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The value handed to the process's `init`. It is encoded now; a value that cannot be
    /// encoded makes the spawn fail with `Error::Spawn`.
    pub fn dependencies<T: Serialize>(mut self, dependencies: T) -> Self {
        self.dependencies = Some(
            rmp_serde::to_vec(&dependencies)
                .map(Bytes::from)
                .map_err(|err| err.to_string()),
        );
        self
    }

    /// Where this process runs, overriding the manager's configuration.
    pub fn isolation(mut self, isolation: Isolation) -> Self {
        self.isolation = Some(isolation);
        self
    }

    /// How the manager talks to it, overriding the manager's configuration.
    pub fn transport(mut self, transport: TransportKind) -> Self {
        self.transport = Some(transport);
        self
    }

    /// The default deadline of calls to this process, overriding `resources.timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Marks the process (or, in `PoolOptions::spawn`, the pool) as an optional part: while
    /// it is unhealthy, unreachable or failed, [`ProcessManager::health`] reports `Degraded`
    /// instead of `Unhealthy` (a cache the service can run without, say). Default: `false`.
    ///
    /// [`ProcessManager::health`]: crate::ProcessManager::health
    pub fn optional(mut self, optional: bool) -> Self {
        self.optional = optional;
        self
    }
}
