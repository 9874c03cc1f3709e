//! # Titan PM
//!
//! A process manager and typed RPC framework. Annotate an `impl` block with `#[process]`,
//! build one binary per process, and the [`ProcessManager`] spawns, supervises and measures
//! those processes while you call them through generated, typed clients.
//!
//! ```no_run
//! use pm_runtime::prelude::*;
//!
//! #[derive(Default)]
//! pub struct Calculator;
//!
//! #[process(name = "calculator", version = "1.0.0")]
//! impl Calculator {
//!     /// Adds two numbers.
//!     #[public]
//!     pub async fn add(&self, a: i64, b: i64) -> i64 {
//!         a + b
//!     }
//! }
//!
//! # async fn demo() -> Result<(), pm_runtime::Error> {
//! let pm = ProcessManager::new(ProcessManagerConfig::default());
//! let calc = pm.spawn::<Calculator>("target/debug/calculator", SpawnOptions::default()).await?;
//! assert_eq!(calc.add(5, 3).await?, 8);
//! pm.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! ## Isolation
//! The same `spawn` call works under [`Isolation::Child`] (the binary runs as a child OS
//! process, connected by an inherited socketpair), [`Isolation::Worker`] (the default: a
//! dedicated thread with its own runtime, connected by in-memory channels) and
//! [`Isolation::None`] (on the caller's runtime, for tests). Every call, under every
//! isolation, goes through the same encoding and dispatch, so what passes in tests passes in
//! production.
//!
//! ## Errors
//! Every client method returns `Result<T, Error>`. A method returning `Result<T, E>` delivers
//! `E` as [`Error::Remote`]; [`Error::remote_payload`] decodes it back. A panic in a method is
//! an [`Error::Remote`] too, and the process keeps serving. A call in flight when its process
//! dies ends with [`Error::ProcessExited`]; arguments too large for the frame limit fail with
//! [`Error::Protocol`] before anything is sent.
//!
//! ## Cancellation and deadlines
//! Dropping a call's future sends a cancel that aborts the method in the process. A deadline
//! (`resources.timeout`, [`SpawnOptions::timeout`]) travels with the call: the caller gets
//! [`Error::Timeout`] and the process aborts the work.

// Lets the crate's own tests use `#[process]`, whose expansion names `::pm_runtime`.
#[cfg(test)]
extern crate self as pm_runtime;

mod bootstrap;
mod call_stats;
mod caller;
mod catch;
mod events;
mod exposition;
mod handle;
pub mod host;
mod http_api;
mod logging;
mod managed;
mod manager;
mod metrics;
mod options;
mod pool;
mod process;
mod restart_policy;
mod rpc;
mod spawn;
mod status;
pub mod supervision;
mod token;
pub mod trace;

mod private;

/// Items the `#[process]` expansion names. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::private::*;
}

pub use events::{PoolEvent, ProcessEvent};
pub use host::HostOptions;
pub use manager::{ProcessHandle, ProcessManager};
pub use options::SpawnOptions;
pub use pm_core::{
    Address, AddressError, Backoff, BackoffKind, CheckResult, CheckStatus, CrashReason, Error,
    HealthCheckConfig, HealthState, HealthStatus, Identity, Isolation, LatencySummary, Limits,
    MethodInfo, MethodMetrics, Monitoring, ProcessId, ProcessInfo, ProcessManagerConfig,
    ProcessMetrics, ProcessState, RemoteError, RemoteErrorKind, Resources, RestartOn,
    RestartPolicy, Retention, ToAddress, TransportKind,
};
pub use pm_macros::{health_check, on_shutdown, process, public};
pub use pool::{Autoscale, CircuitBreaker, Pool, PoolOptions, Recycle, Strategy};
pub use process::{ClientStub, Process};
pub use status::{StatusOptions, StatusServer};
pub use supervision::{
    ChildRestart, ChildSpec, RestartStrategy, Supervisor, SupervisorEvent, SupervisorSpec,
    SupervisorState,
};

/// The items most programs need: `use pm_runtime::prelude::*;`.
pub mod prelude {
    pub use crate::{
        health_check, on_shutdown, process, public, Backoff, BackoffKind, CheckResult, CheckStatus,
        CrashReason, HealthCheckConfig, HealthState, HealthStatus, Isolation, Limits, Monitoring,
        Pool, PoolOptions, ProcessEvent, ProcessHandle, ProcessId, ProcessInfo, ProcessManager,
        ProcessManagerConfig, ProcessMetrics, ProcessState, Resources, RestartOn, RestartPolicy,
        Retention, SpawnOptions, Strategy, TransportKind,
    };
}

/// The whole `main` of a process binary: `pm_runtime::process_main!(my_crate::Calculator);`
///
/// The binary serves the manager that started it and exits when that manager asks it to shut
/// down or goes away. Run by hand (without a manager) it prints what it is and exits with
/// code 2.
#[macro_export]
macro_rules! process_main {
    ($process:ty) => {
        fn main() -> ::std::process::ExitCode {
            $crate::__private::run_process_main::<$process>()
        }
    };
}
