//! Options of a pool, and their validation.

use std::time::Duration;

use pm_core::Error;

use crate::options::SpawnOptions;

/// How a pool picks the member for each call that carries no key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Strategy {
    /// Each member in turn. Even when calls cost the same; blind to a member that is slow.
    RoundRobin,
    /// The member with the fewest calls in flight (ties: the first in the pool's order).
    /// Best for calls of very uneven cost.
    LeastLoaded,
    /// A member chosen uniformly at random.
    Random,
    /// The default: two members chosen at random, the one with fewer calls in flight (the
    /// first of the two on a tie). An
    /// idle member is always preferred, so concurrent calls spread over idle members before
    /// any member takes a second one. Close to least-loaded at a constant cost per call.
    #[default]
    PowerOfTwo,
    /// The member with the lowest peak-EWMA cost: its recent latency (a slow reply counts at
    /// once, a fast one blends in, and the estimate decays with a 500 ms time constant, so a
    /// member that was slow once is tried again soon) times its calls in flight plus one.
    /// Best when members can become slow (a noisy neighbour, a GC pause, a cold cache).
    LeastLatency,
}

/// Growing and shrinking a pool with its load, within `[min, max]`.
///
/// The load is sampled every `sample_every`: the calls in flight (and waiting in the queue)
/// per member. When every sample over `scale_up_after` is above `scale_up_at`, the pool grows
/// by one member; when every sample over `idle_for` is below half of `scale_up_at`, it
/// shrinks by one (the removed member finishes its calls first). After any change the pool
/// waits `cooldown` before the next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Autoscale {
    /// The fewest members. Default: 1.
    pub min: usize,
    /// The most members. Default: 8.
    pub max: usize,
    /// Calls in flight per member above which the pool grows. Default: 1.0 (every member
    /// busy).
    pub scale_up_at: f64,
    /// How long the load must stay above `scale_up_at` before the pool grows. Default: 2 s.
    pub scale_up_after: Duration,
    /// How long the load must stay under half of `scale_up_at` before the pool shrinks.
    /// Default: 30 s.
    pub idle_for: Duration,
    /// The pause after a change before the next. Default: 5 s.
    pub cooldown: Duration,
    /// How often the load is sampled. Default: 250 ms.
    pub sample_every: Duration,
}

impl Default for Autoscale {
    fn default() -> Self {
        Self {
            min: 1,
            max: 8,
            scale_up_at: 1.0,
            scale_up_after: Duration::from_secs(2),
            idle_for: Duration::from_secs(30),
            cooldown: Duration::from_secs(5),
            sample_every: Duration::from_millis(250),
        }
    }
}

/// When a member is replaced by a fresh one, with the same rolling replacement as
/// [`Pool::reload`](crate::Pool::reload): the new member is ready before the old one stops
/// taking calls, and the old one finishes its calls before it stops. All `None` by default
/// (members are never recycled). Checked every 250 ms, one member at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Recycle {
    /// Replace a member after it has been routed this many calls.
    pub after_calls: Option<u64>,
    /// Replace a member that has been a member this long.
    pub max_lifetime: Option<Duration>,
    /// Replace a member whose OS process's resident memory exceeds this many bytes (`Child`
    /// members only: others share the manager's memory).
    pub max_memory: Option<u64>,
}

/// Failing calls fast while a pool keeps failing.
///
/// After `failure_threshold` consecutive failed calls the breaker opens: calls fail at once
/// with [`Error::CircuitOpen`] for `open_for`. Then it is half-open: up to `probes` calls
/// go through; a success closes it, a failure opens it again. A failure is any error except
/// those that say nothing about the members' health: an application error the method
/// returned, unknown methods, undecodable arguments, the pool's own `Overloaded`, and a
/// deadline that passed while the call still waited in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CircuitBreaker {
    /// Consecutive failures that open the breaker. Default: 5.
    pub failure_threshold: u32,
    /// How long it stays open. Default: 10 s.
    pub open_for: Duration,
    /// Calls let through at once while half-open. Default: 1.
    pub probes: u32,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(10),
            probes: 1,
        }
    }
}

/// Options of [`ProcessManager::pool`](crate::ProcessManager::pool). `Default` throughout:
///
/// ```
/// use pm_runtime::prelude::*;
///
/// let options = PoolOptions { size: 2, strategy: Strategy::LeastLoaded, ..Default::default() };
/// ```
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// How many members. Default: 4. With `autoscale`, the starting size.
    pub size: usize,
    /// How calls without a key are spread. Default: [`Strategy::PowerOfTwo`].
    pub strategy: Strategy,
    /// How every member is spawned (isolation, transport, dependencies, default deadline).
    /// Its `name` names the pool (default: the process type's name).
    pub spawn: SpawnOptions,
    /// How many calls may wait when every member is at `limits.max_in_flight`; past that a
    /// call fails at once with [`Error::Overloaded`]. Waiting calls are served in arrival
    /// order. Default: 1024.
    pub max_queue: usize,
    /// Grow and shrink with the load. Default: `None` (the size changes only with
    /// [`Pool::resize`](crate::Pool::resize)).
    pub autoscale: Option<Autoscale>,
    /// When members are replaced by fresh ones. Default: never.
    pub recycle: Recycle,
    /// Fail calls fast while the pool keeps failing. Default: `None`.
    pub circuit_breaker: Option<CircuitBreaker>,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            size: 4,
            strategy: Strategy::PowerOfTwo,
            spawn: SpawnOptions::default(),
            max_queue: 1024,
            autoscale: None,
            recycle: Recycle::default(),
            circuit_breaker: None,
        }
    }
}

/// The most members a pool may have.
pub(crate) const MAX_SIZE: usize = 1024;

fn refuse(message: String) -> Result<(), Error> {
    Err(Error::Config(message))
}

impl PoolOptions {
    /// Checks the options can work.
    pub(crate) fn check(&self) -> Result<(), Error> {
        check_size(self.size, self.autoscale.as_ref(), "size")?;
        if let Some(scale) = &self.autoscale {
            if scale.min == 0 {
                return refuse("autoscale.min must be at least 1, not 0".into());
            }
            if scale.min > scale.max {
                return refuse(format!(
                    "autoscale.min ({}) must not exceed autoscale.max ({})",
                    scale.min, scale.max
                ));
            }
            if scale.max > MAX_SIZE {
                return refuse(format!(
                    "autoscale.max must be at most {MAX_SIZE}, not {}",
                    scale.max
                ));
            }
            if !(scale.scale_up_at.is_finite() && scale.scale_up_at > 0.0) {
                return refuse(format!(
                    "autoscale.scale_up_at must be a positive number, not {}",
                    scale.scale_up_at
                ));
            }
            if scale.sample_every.is_zero() {
                return refuse("autoscale.sample_every must be longer than zero".into());
            }
        }
        if let Some(breaker) = &self.circuit_breaker {
            if breaker.failure_threshold == 0 {
                return refuse("circuit_breaker.failure_threshold must be at least 1".into());
            }
            if breaker.open_for.is_zero() {
                return refuse("circuit_breaker.open_for must be longer than zero".into());
            }
            if breaker.probes == 0 {
                return refuse("circuit_breaker.probes must be at least 1".into());
            }
        }
        if self.recycle.after_calls == Some(0) {
            return refuse("recycle.after_calls must be at least 1".into());
        }
        if self.recycle.max_lifetime.is_some_and(|d| d.is_zero()) {
            return refuse("recycle.max_lifetime must be longer than zero".into());
        }
        Ok(())
    }
}

/// Checks a pool size (`field` names it in the error) against the autoscale bounds.
pub(crate) fn check_size(size: usize, scale: Option<&Autoscale>, field: &str) -> Result<(), Error> {
    if size == 0 {
        return refuse(format!("{field} must be at least 1, not 0"));
    }
    if size > MAX_SIZE {
        return refuse(format!("{field} must be at most {MAX_SIZE}, not {size}"));
    }
    if let Some(scale) = scale {
        if size < scale.min || size > scale.max {
            return refuse(format!(
                "{field} ({size}) must be within autoscale.min..=autoscale.max ({}..={})",
                scale.min, scale.max
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(options: PoolOptions) -> String {
        match options.check() {
            Err(Error::Config(message)) => message,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn the_defaults_are_valid_and_power_of_two() {
        let options = PoolOptions::default();
        assert!(options.check().is_ok());
        assert_eq!(options.strategy, Strategy::PowerOfTwo);
    }

    #[test]
    fn invalid_options_are_refused_naming_the_field() {
        assert!(refused(PoolOptions {
            size: 0,
            ..Default::default()
        })
        .contains("size"));
        let scale = Autoscale {
            min: 3,
            max: 2,
            ..Default::default()
        };
        assert!(refused(PoolOptions {
            size: 2,
            autoscale: Some(scale),
            ..Default::default()
        })
        .contains("autoscale.min"));
        let scale = Autoscale {
            min: 2,
            max: 4,
            ..Default::default()
        };
        let message = refused(PoolOptions {
            size: 5,
            autoscale: Some(scale),
            ..Default::default()
        });
        assert!(message.contains("size (5)"), "{message}");
        let breaker = CircuitBreaker {
            failure_threshold: 0,
            ..Default::default()
        };
        assert!(refused(PoolOptions {
            circuit_breaker: Some(breaker),
            ..Default::default()
        })
        .contains("circuit_breaker.failure_threshold"));
        let recycle = Recycle {
            after_calls: Some(0),
            ..Default::default()
        };
        assert!(refused(PoolOptions {
            recycle,
            ..Default::default()
        })
        .contains("recycle.after_calls"));
    }
}
