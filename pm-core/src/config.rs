//! Configuration of the manager, its processes and its pools.
//!
//! Every struct is `Default` with public fields, so `..Default::default()` fills in what a
//! caller leaves out. Durations are [`std::time::Duration`]; sizes are bytes.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::wire::{DEFAULT_MAX_FRAME, DEFAULT_MAX_IN_FLIGHT};

/// Where a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Isolation {
    /// In the caller's runtime, on its threads: for tests. A panic is still caught per call.
    None,
    /// On a dedicated OS thread with its own tokio runtime. The default: fast, and a crash in
    /// one call cannot stall the caller's runtime, but the process shares the caller's memory.
    #[default]
    Worker,
    /// As a separate OS process running the process binary: full isolation, restartable,
    /// measurable on its own.
    Child,
}

/// How the manager talks to a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TransportKind {
    /// The fastest local link: an inherited socketpair for a child, in-memory channels for a
    /// worker or an in-process instance. The default.
    #[default]
    Ipc,
    /// A unix domain socket in a private directory.
    Unix,
    /// A TCP socket, loopback by default.
    Tcp,
    /// WebSocket over HTTP/1.1.
    Http,
}

/// How restart delays grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BackoffKind {
    /// `initial * attempt`.
    Linear,
    /// `initial * 2^(attempt - 1)`. The default.
    #[default]
    Exponential,
}

/// The delay before each restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Backoff {
    /// How the delay grows from one attempt to the next. Default: exponential.
    pub kind: BackoffKind,
    /// The delay before the first restart. Default: 100 ms.
    pub initial: Duration,
    /// The cap on any delay. Default: 10 s.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            kind: BackoffKind::Exponential,
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
        }
    }
}

/// Which unrequested exits lead to a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RestartOn {
    /// Every exit that was not asked for, clean or not. The default: a service that ends on
    /// its own has stopped serving either way.
    #[default]
    Always,
    /// Only failures: a non-zero exit code, a signal, or a lost connection. A child that
    /// exits with code 0 is marked stopped.
    OnFailure,
}

/// When and how often a crashed process is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RestartPolicy {
    /// Restart processes that crash. Default: `true`. A process stopped with `stop` or `kill`
    /// is never restarted.
    pub enabled: bool,
    /// More than this many restarts within `window` mark the process failed for good.
    /// Default: 5.
    pub max_restarts: u32,
    /// The sliding window `max_restarts` counts within. Default: 60 s.
    pub window: Duration,
    /// The delay before each restart. Default: exponential from 100 ms, capped at 10 s.
    pub backoff: Backoff,
    /// Which exits restart. Default: [`RestartOn::Always`].
    pub restart_on: RestartOn,
    /// How long an incarnation must stay up for the backoff to start over from
    /// `backoff.initial` at its next crash. `None` (the default) means twice `backoff.max`,
    /// and at least 1 s: long enough that a process crashing at the capped pace never counts
    /// as stable. Zero is refused at spawn: every incarnation would count as stable and the
    /// backoff would never grow.
    pub stable_after: Option<Duration>,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            max_restarts: 5,
            window: Duration::from_secs(60),
            backoff: Backoff::default(),
            restart_on: RestartOn::Always,
            stable_after: None,
        }
    }
}

/// Limits on what a process may use.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Resources {
    /// Restart a child whose resident memory (its process tree: the child and its descendants)
    /// exceeds this many bytes (checked every 500 ms;
    /// the crash event's reason names the limit). Applies to `Isolation::Child` only: a
    /// worker shares the manager's memory, so there is nothing of its own to measure.
    /// Default: no limit.
    pub max_memory: Option<u64>,
    /// A CPU budget in percent of one core. Reported, not enforced: when the process hosting
    /// it goes over, the manager logs a warning and emits `ProcessEvent::Unhealthy` with the
    /// reading (once per crossing); it does not throttle or restart. Default: no budget.
    pub max_cpu: Option<f64>,
    /// The default deadline of every call. Default: none (a call waits until the process
    /// answers or dies).
    pub timeout: Option<Duration>,
}

/// How health checks are polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HealthCheckConfig {
    /// Poll each process's `#[health_check]`. Default: `true`.
    pub enabled: bool,
    /// Time between two polls. Default: 10 s.
    pub interval: Duration,
    /// A poll that takes longer counts as a failure. Default: 5 s.
    pub timeout: Duration,
    /// Consecutive failures after which the process is unhealthy. Default: 3.
    pub failure_threshold: u32,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            failure_threshold: 3,
        }
    }
}

/// What the manager observes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Monitoring {
    /// Health polling. Default: see [`HealthCheckConfig`].
    pub health_check: HealthCheckConfig,
    /// Keep per-call statistics (requests, errors, latency, per method). Default: `true`.
    /// With `false` nothing is recorded on a call's path and every call figure of
    /// `ProcessMetrics` stays zero; CPU and memory are still sampled.
    pub metrics: bool,
    /// Carry the caller's trace context (W3C `traceparent`) with every call, and run the call
    /// in the process under a `tracing` span that is its child and carries the trace id; see
    /// `pm_runtime::trace`. Default: `false` (calls carry no context and open no span).
    pub tracing: bool,
}

impl Default for Monitoring {
    fn default() -> Self {
        Self {
            health_check: HealthCheckConfig::default(),
            metrics: true,
            tracing: false,
        }
    }
}

/// How many ended (stopped or failed) processes the manager keeps listed, so that `info`
/// and `list` still answer for them, without growing for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Retention {
    /// The most ended processes kept; when one more ends, the one that was started first is
    /// forgotten (`info` answers `None` for it). Pools and supervision trees keep their own
    /// members. Default: 100.
    pub max_ended: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Self { max_ended: 100 }
    }
}

/// Bounds on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limits {
    /// The largest frame either side sends or accepts, in bytes. A call whose arguments exceed
    /// it fails with `Error::Protocol` before anything is sent. Default: 16 MiB.
    pub max_frame_size: usize,
    /// Calls in flight per connection; more wait for a free slot. Default: 1024.
    pub max_in_flight: usize,
}

impl Limits {
    /// The most calls in flight a connection may allow.
    pub const MAX_IN_FLIGHT: usize = 1 << 20;

    /// Checks the limits are usable: a frame size between 1 KiB and 4 GiB (the length prefix
    /// is 32 bits) and between 1 and [`Limits::MAX_IN_FLIGHT`] calls in flight.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) naming the field and the allowed range.
    pub fn check(&self) -> Result<(), crate::Error> {
        if self.max_frame_size < 1024 || self.max_frame_size > u32::MAX as usize {
            return Err(crate::Error::Config(format!(
                "limits.max_frame_size must be between 1 KiB and 4 GiB, not {}",
                self.max_frame_size
            )));
        }
        if self.max_in_flight == 0 || self.max_in_flight > Self::MAX_IN_FLIGHT {
            return Err(crate::Error::Config(format!(
                "limits.max_in_flight must be between 1 and {}, not {}",
                Self::MAX_IN_FLIGHT,
                self.max_in_flight
            )));
        }
        Ok(())
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_size: DEFAULT_MAX_FRAME,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }
}

/// Configuration of a `ProcessManager`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessManagerConfig {
    /// Where processes run unless a spawn says otherwise. Default: [`Isolation::Worker`].
    pub isolation: Isolation,
    /// How the manager talks to them unless a spawn says otherwise. Default:
    /// [`TransportKind::Ipc`].
    pub transport: TransportKind,
    /// What happens when a process crashes.
    pub restart_policy: RestartPolicy,
    /// Limits on each process.
    pub resources: Resources,
    /// Health polling and metrics.
    pub monitoring: Monitoring,
    /// Frame size and in-flight bounds.
    pub limits: Limits,
    /// How long a graceful stop waits for `#[on_shutdown]` hooks and calls in flight before
    /// a child gets SIGTERM (and SIGKILL 2 s later). Default: 5 s.
    pub grace_period: Duration,
    /// The address `Tcp` and `Http` processes listen on (on an ephemeral port). Default:
    /// `127.0.0.1`, reachable from this machine only; set it to another interface only
    /// behind a firewall, since every connection is still token-checked but unencrypted.
    pub bind_address: IpAddr,
    /// How many ended processes stay listed. Default: the last 100.
    pub retention: Retention,
}

impl Default for ProcessManagerConfig {
    fn default() -> Self {
        Self {
            isolation: Isolation::default(),
            transport: TransportKind::default(),
            restart_policy: RestartPolicy::default(),
            resources: Resources::default(),
            monitoring: Monitoring::default(),
            limits: Limits::default(),
            grace_period: Duration::from_secs(5),
            bind_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            retention: Retention::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_out_of_range_are_refused_naming_the_field() {
        assert!(Limits::default().check().is_ok());
        let cases = [
            (512, 8, "max_frame_size"),
            ((u32::MAX as usize) + 1, 8, "max_frame_size"),
            (4096, 0, "max_in_flight"),
            (4096, Limits::MAX_IN_FLIGHT + 1, "max_in_flight"),
        ];
        for (max_frame_size, max_in_flight, field) in cases {
            let limits = Limits {
                max_frame_size,
                max_in_flight,
            };
            match limits.check() {
                Err(crate::Error::Config(message)) => assert!(message.contains(field), "{message}"),
                other => panic!("{limits:?} gave {other:?}"),
            }
        }
        let largest = Limits {
            max_frame_size: u32::MAX as usize,
            max_in_flight: Limits::MAX_IN_FLIGHT,
        };
        assert!(largest.check().is_ok());
    }
}
