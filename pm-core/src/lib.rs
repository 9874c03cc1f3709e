//! Core types of Titan PM: the wire protocol, configuration, health and metrics types, the
//! process schema, and the one [`Error`] every call returns.
//!
//! This crate has no async runtime. It is shared by the transports (`pm-transport`), the
//! runtime (`pm-runtime`) and the code the `#[process]` macro generates. Users reach all of it
//! through `pm_runtime`, and rarely need to name this crate.

pub mod address;
pub mod config;
pub mod crash;
pub mod error;
pub mod health;
pub mod metrics;
pub mod process;
pub mod schema;
pub mod trace;
pub mod wire;

pub use address::{Address, AddressError, ToAddress};
pub use config::{
    Backoff, BackoffKind, HealthCheckConfig, Isolation, Limits, Monitoring, ProcessManagerConfig,
    Resources, RestartOn, RestartPolicy, Retention, TransportKind,
};
pub use crash::CrashReason;
pub use error::{Error, RemoteError, RemoteErrorKind};
pub use health::{CheckResult, CheckStatus, HealthState, HealthStatus};
pub use metrics::{LatencySummary, MethodMetrics, ProcessMetrics};
pub use process::{ProcessId, ProcessInfo, ProcessState};
pub use schema::{Identity, MethodInfo, Receiver};
