//! Pools: several members of one process type behind one typed client.
//!
//! A call picks one member (by [`Strategy`], or by key on a consistent-hash ring), waits in
//! a fair queue when every member is at its in-flight limit, and is retried once on another
//! member when it is `#[public(idempotent)]` and its member died with it in flight. Members
//! that die leave rotation at once and come back under the restart policy; a member that
//! fails for good is replaced. The size changes at runtime ([`Pool::resize`], autoscaling),
//! and [`Pool::reload`] and recycling replace members one at a time without failing a call.

mod breaker;
mod dispatch;
mod maintain;
mod member;
mod membership;
mod options;
mod report;
mod ring;
mod strategy;

use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pm_core::trace::TraceContext;
use pm_core::wire::Frame;
use pm_core::{Error, MethodInfo, ProcessId, RemoteErrorKind};
use tokio::sync::broadcast;
use tracing::Instrument;

pub use options::{Autoscale, CircuitBreaker, PoolOptions, Recycle, Strategy};

use crate::call_stats::CallStats;
use crate::caller::{Caller, Invoke};
use crate::events::{PoolEvent, ProcessEvent};
use crate::managed::Managed;
use crate::process::{BoxFuture, ClientStub, Process};
use breaker::{Admission, Breaker, Transition};
use dispatch::State;
use member::Member;

pub(crate) use options::check_size;
pub(crate) use ring::StableHasher;

/// How long a call waits for a member to come back while none is running.
const ALL_DOWN_WAIT: Duration = Duration::from_secs(10);

/// What a pool needs from its manager: new members, and forgetting old ones.
pub(crate) trait MemberHost: Send + Sync + 'static {
    /// Spawns one member, ready to take calls.
    fn spawn_member(&self) -> BoxFuture<'static, Result<Arc<Managed>, Error>>;
    /// Takes a stopped member off the manager's list.
    fn unlist(&self, id: ProcessId);
    /// How long a member's graceful stop may take.
    fn grace(&self) -> Duration;
}

/// Everything a pool is, shared by its handles, its keyed clients and its tasks.
pub(crate) struct PoolCore {
    pub(crate) id: ProcessId,
    pub(crate) name: String,
    pub(crate) version: &'static str,
    methods: &'static [MethodInfo],
    strategy: Strategy,
    /// Calls one member takes at once: `limits.max_in_flight`.
    capacity: usize,
    max_queue: usize,
    max_frame: usize,
    default_timeout: Option<Duration>,
    /// Carry the caller's trace context with each call.
    tracing: bool,
    /// `SpawnOptions::optional` of its members: its failing degrades the manager's health.
    pub(crate) optional: bool,
    pub(crate) autoscale: Option<Autoscale>,
    pub(crate) recycle: Recycle,
    pub(crate) state: Mutex<State>,
    /// Waiting calls, readable without the lock.
    queued: AtomicUsize,
    turn: AtomicUsize,
    pub(crate) stats: CallStats,
    breaker: Option<Mutex<Breaker>>,
    events: broadcast::Sender<ProcessEvent>,
    pub(crate) host: Box<dyn MemberHost>,
    /// Wakes replacements waiting out their backoff when the pool stops.
    pub(crate) stopping: tokio::sync::Notify,
    /// One rolling replacement (reload, recycling) or resize at a time.
    pub(crate) changing: tokio::sync::Mutex<()>,
    /// Replacements of members that failed for good, under the restart policy.
    pub(crate) replacements: Mutex<crate::restart_policy::RestartTracker>,
    pub(crate) created: Instant,
}

impl std::fmt::Debug for PoolCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolCore")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The parts of a new pool the manager decides.
pub(crate) struct PoolSpec {
    pub(crate) id: ProcessId,
    pub(crate) name: String,
    pub(crate) version: &'static str,
    pub(crate) methods: &'static [MethodInfo],
    pub(crate) options: PoolOptions,
    pub(crate) capacity: usize,
    pub(crate) max_frame: usize,
    pub(crate) default_timeout: Option<Duration>,
    pub(crate) events: broadcast::Sender<ProcessEvent>,
    pub(crate) host: Box<dyn MemberHost>,
    pub(crate) restart_policy: pm_core::RestartPolicy,
    /// `Monitoring::metrics`: keep per-call statistics.
    pub(crate) metrics: bool,
    /// `Monitoring::tracing`: carry the caller's trace context with each call.
    pub(crate) tracing: bool,
}

impl PoolCore {
    pub(crate) fn new(spec: PoolSpec) -> Arc<Self> {
        Arc::new(Self {
            id: spec.id,
            name: spec.name,
            version: spec.version,
            methods: spec.methods,
            strategy: spec.options.strategy,
            capacity: spec.capacity,
            max_queue: spec.options.max_queue,
            max_frame: spec.max_frame,
            default_timeout: spec.default_timeout,
            tracing: spec.tracing,
            optional: spec.options.spawn.optional,
            autoscale: spec.options.autoscale,
            recycle: spec.options.recycle,
            state: Mutex::new(State::new()),
            queued: AtomicUsize::new(0),
            turn: AtomicUsize::new(0),
            stats: CallStats::new(spec.metrics),
            breaker: spec
                .options
                .circuit_breaker
                .map(|b| Mutex::new(Breaker::new(b))),
            events: spec.events,
            host: spec.host,
            stopping: tokio::sync::Notify::new(),
            changing: tokio::sync::Mutex::new(()),
            // Replacing keeps the pool at its size even when members are not restarted in
            // place (`enabled: false`); the policy's budget and backoff still bound it.
            replacements: Mutex::new(crate::restart_policy::RestartTracker::new(
                pm_core::RestartPolicy {
                    enabled: true,
                    ..spec.restart_policy
                },
            )),
            created: Instant::now(),
        })
    }

    pub(crate) fn unavailable(&self, reason: impl Into<String>) -> Error {
        Error::Unavailable {
            process: self.name.clone(),
            reason: reason.into(),
        }
    }

    pub(crate) fn emit(&self, event: PoolEvent) {
        let _ = self.events.send(ProcessEvent::Pool {
            pool: self.id,
            event,
        });
    }

    /// The members in rotation, in slot order.
    pub(crate) fn members(&self) -> Vec<Arc<Member>> {
        lock(&self.state).members.clone()
    }

    fn is_idempotent(&self, method: &str) -> bool {
        self.methods
            .iter()
            .any(|m| m.name == method && m.idempotent)
    }

    fn breaker_admit(&self) -> Result<Option<Admission>, Error> {
        let Some(breaker) = &self.breaker else {
            return Ok(None);
        };
        let (admitted, transition) = lock(breaker).admit(Instant::now());
        self.announce(transition);
        match admitted {
            Ok(admission) => Ok(Some(admission)),
            Err(retry_in) => Err(Error::CircuitOpen {
                pool: self.name.clone(),
                retry_in,
            }),
        }
    }

    fn announce(&self, transition: Option<Transition>) {
        let event = match transition {
            None => return,
            Some(Transition::Opened) => {
                tracing::warn!(pool = %self.name, id = %self.id, "circuit breaker opened");
                PoolEvent::CircuitOpened
            }
            Some(Transition::HalfOpened) => PoolEvent::CircuitHalfOpen,
            Some(Transition::Closed) => {
                tracing::info!(pool = %self.name, id = %self.id, "circuit breaker closed");
                PoolEvent::CircuitClosed
            }
        };
        self.emit(event);
    }

    /// One call through the pool: admission, a member, and at most one retry elsewhere.
    async fn call(
        &self,
        key: Option<u64>,
        method: &'static str,
        args: &[u8],
        timeout: Option<Duration>,
        trace: Option<TraceContext>,
    ) -> Result<Frame, Error> {
        let started = Instant::now();
        let timeout = timeout.or(self.default_timeout);
        let due = timeout.and_then(|limit| started.checked_add(limit));
        let admission = match self.breaker_admit() {
            Ok(admission) => admission,
            Err(err) => {
                // A stopped pool says so rather than blaming the breaker.
                let err = if self.is_stopping() {
                    self.unavailable("the pool is stopping or stopped")
                } else {
                    err
                };
                let now = Instant::now();
                self.stats.record(method, now - started, false, now);
                return Err(err);
            }
        };
        let mut outcome = BreakerOutcome {
            core: self,
            admission,
            failed: None,
        };
        let mut avoid = None;
        let mut retried = false;
        // A call that timed out before any member took it says the pool is busy, not that
        // members fail: the breaker does not count it (as it does not count `Overloaded`).
        let mut timed_out_waiting = false;
        let result = loop {
            // When the call is sent: at once on the first attempt's fast path (no second
            // clock read), after the wait otherwise.
            let (reserved, sent) = match self.admit_call(key, avoid) {
                Ok(dispatch::Admitted::Ready(reserved)) if avoid.is_none() => (reserved, started),
                Ok(dispatch::Admitted::Ready(reserved)) => (reserved, Instant::now()),
                // Boxed: the wait's state stays out of the common path's future.
                Ok(dispatch::Admitted::Queued(turn)) => {
                    match Box::pin(self.wait_turn(turn, method, due, timeout)).await {
                        Ok(reserved) => (reserved, Instant::now()),
                        Err(err) => {
                            timed_out_waiting = matches!(err, Error::Timeout { .. });
                            break Err(err);
                        }
                    }
                }
                Err(err) => break Err(err),
            };
            let guard = Release {
                core: self,
                reserved,
            };
            let remaining = due.map(|due| due.saturating_duration_since(sent));
            let result = guard
                .reserved
                .conn
                .call(method, args, remaining, trace.as_ref())
                .await;
            let done = Instant::now();
            let latency = done - sent;
            let member = &guard.reserved.member;
            member
                .managed
                .stats
                .record(method, latency, result.is_ok(), done);
            if self.strategy == Strategy::LeastLatency
                && !matches!(result, Err(Error::ProcessExited { .. }))
            {
                member.observe(latency, done);
            }
            let member_id = member.id();
            drop(guard);
            match result {
                Err(Error::ProcessExited { .. } | Error::Transport(_))
                    if !retried && self.is_idempotent(method) =>
                {
                    tracing::debug!(pool = %self.name, method, member = %member_id, "retrying an idempotent call on another member");
                    retried = true;
                    avoid = Some(member_id);
                }
                result => break result,
            }
        };
        outcome.failed = Some(if timed_out_waiting {
            None
        } else {
            counts_as_failure(&result)
        });
        drop(outcome);
        self.stats.conclude(method, started, timeout, result)
    }
}

/// Whether an outcome says something about the pool's health (for the breaker): `None` when
/// it does not (the method's own error, a call the process could not take as written, the
/// pool's own overload).
fn counts_as_failure(result: &Result<Frame, Error>) -> Option<bool> {
    match result {
        Ok(_) => Some(false),
        // `Protocol`: a call the member refused as malformed (an unknown method, undecodable
        // or oversized arguments, which the client reports as `Protocol`), or arguments too
        // large to send: the call's fault, not the member's.
        Err(Error::Overloaded { .. } | Error::CircuitOpen { .. } | Error::Protocol(_)) => None,
        Err(err) => match err.remote_kind() {
            Some(
                RemoteErrorKind::Application
                | RemoteErrorKind::UnknownMethod
                | RemoteErrorKind::InvalidArguments
                | RemoteErrorKind::Cancelled,
            ) => None,
            _ => Some(true),
        },
    }
}

/// Gives a member's slot back when the call ends, however it ends.
struct Release<'a> {
    core: &'a PoolCore,
    reserved: dispatch::Reserved,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.core.release(&self.reserved);
    }
}

/// Tells the breaker how an admitted call ended; a call given up on says nothing.
struct BreakerOutcome<'a> {
    core: &'a PoolCore,
    admission: Option<Admission>,
    failed: Option<Option<bool>>,
}

impl Drop for BreakerOutcome<'_> {
    fn drop(&mut self) {
        let (Some(admission), Some(breaker)) = (self.admission, &self.core.breaker) else {
            return;
        };
        let failed = self.failed.flatten();
        let transition = lock(breaker).record(admission, failed, Instant::now());
        self.core.announce(transition);
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a pool's clients call through: the pool, and the key every call carries (none for
/// the pool's own client, whose calls go by strategy).
struct Route {
    core: Arc<PoolCore>,
    key: Option<u64>,
}

impl Invoke for Route {
    fn invoke<'a>(
        &'a self,
        method: &'static str,
        args: &'a [u8],
        timeout: Option<Duration>,
    ) -> BoxFuture<'a, Result<Frame, Error>> {
        if self.core.tracing {
            let context = crate::trace::outgoing();
            let span = crate::trace::caller_span(&self.core.name, method, &context);
            return Box::pin(
                self.core
                    .call(self.key, method, args, timeout, Some(context))
                    .instrument(span),
            );
        }
        Box::pin(self.core.call(self.key, method, args, timeout, None))
    }

    fn max_frame(&self) -> usize {
        self.core.max_frame
    }
}

/// A pool of processes of type `P`, from [`ProcessManager::pool`](crate::ProcessManager::pool).
/// Derefs to the generated client: each call goes to one member.
///
/// ```no_run
/// # use pm_runtime::prelude::*;
/// # #[derive(Default)] pub struct Calculator;
/// # #[process(name = "calculator", version = "1.0.0")]
/// # impl Calculator { #[public] pub async fn add(&self, a: i64, b: i64) -> i64 { a + b } }
/// # async fn demo(pm: ProcessManager) -> Result<(), pm_runtime::Error> {
/// let pool = pm.pool::<Calculator>("target/debug/calculator", PoolOptions { size: 4, ..Default::default() }).await?;
/// assert_eq!(pool.add(1, 2).await?, 3);                 // one member, by strategy
/// Pool::with_key(&pool, "user-42").add(1, 2).await?;    // always the same member for this key
/// Pool::resize(&pool, 8).await?;
/// Pool::reload(&pool).await?;                           // rolling restart, no call fails
/// pm.stop(pool.id()).await?;
/// # Ok(()) }
/// ```
///
/// Its only method is [`Pool::id`]; every other operation is an associated function
/// (`Pool::resize(&pool, n)`), so no process method is ever shadowed. `Send + Sync`: share
/// it behind an `Arc`, or clone it (clones are the same pool).
pub struct Pool<P: Process> {
    core: Arc<PoolCore>,
    client: P::Client,
    /// The deadline set with [`Pool::with_timeout`], which keyed clients keep too.
    timeout: Option<Duration>,
    _process: PhantomData<fn() -> P>,
}

impl<P: Process> Pool<P> {
    /// The pool's shared core, for a supervisor holding the pool as a child.
    pub(crate) fn core_of(pool: &Self) -> Arc<PoolCore> {
        pool.core.clone()
    }

    pub(crate) fn new(core: Arc<PoolCore>) -> Self {
        Self {
            client: P::Client::__from_caller(Caller::new(Arc::new(Route {
                core: core.clone(),
                key: None,
            }))),
            core,
            timeout: None,
            _process: PhantomData,
        }
    }

    /// The pool's id, which `ProcessManager::{info, get_health, get_metrics, stop, kill}`
    /// take like a process's.
    pub fn id(&self) -> ProcessId {
        self.core.id
    }

    /// A client whose calls all go to the member that owns `key` on the pool's
    /// consistent-hash ring: the same key reaches the same member for as long as the pool's
    /// size stays the same (a replaced or restarted member keeps its keys; a resize from n to
    /// n + 1 moves about 1/(n + 1) of them). While the owner is down, its calls go to the
    /// next member on the ring; while it is busy at its in-flight limit, they wait for it.
    /// A deadline set with [`Pool::with_timeout`] carries over to the keyed client.
    pub fn with_key<K: Hash>(pool: &Self, key: K) -> P::Client {
        let route = Route {
            core: pool.core.clone(),
            key: Some(ring::hash_key(&key)),
        };
        let caller = Caller::new(Arc::new(route));
        let caller = match pool.timeout {
            Some(timeout) => caller.with_timeout(timeout),
            None => caller,
        };
        P::Client::__from_caller(caller)
    }

    /// The same pool with every call's deadline set to `timeout` (waiting in the queue
    /// included), overriding the members' default deadline.
    pub fn with_timeout(pool: &Self, timeout: Duration) -> Self {
        Self {
            core: pool.core.clone(),
            client: P::Client::__from_caller(pool.client.__caller().with_timeout(timeout)),
            timeout: Some(timeout),
            _process: PhantomData,
        }
    }

    /// Grows or shrinks the pool to `size` members. New members are ready before this
    /// returns; a removed member leaves rotation at once, finishes its calls in flight
    /// (within the manager's grace period) and is stopped.
    ///
    /// # Errors
    /// [`Error::Config`] for a size of 0, over 1024, or outside the autoscale bounds;
    /// [`Error::Unavailable`] for a stopped pool; the spawn's error when a new member cannot
    /// start (members started before it stay).
    pub async fn resize(pool: &Self, size: usize) -> Result<(), Error> {
        pool.core.resize(size).await
    }

    /// A rolling restart: one member at a time, a fresh member is started and ready, takes
    /// the old one's place (and keys), and the old one finishes its calls and stops. No call
    /// fails because of it.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when another reload, a resize or a recycling is in progress, or
    /// the pool is stopped; the spawn's error when a fresh member cannot start (the members
    /// not yet replaced stay).
    pub async fn reload(pool: &Self) -> Result<(), Error> {
        pool.core.reload().await
    }

    /// The ids of the members in rotation, in slot order.
    pub fn members(pool: &Self) -> Vec<ProcessId> {
        pool.core.members().iter().map(|m| m.id()).collect()
    }

    /// Ends the pool gracefully: new calls are refused with [`Error::Unavailable`], calls
    /// in flight and already queued finish (within the manager's grace period), then every
    /// member is stopped. The same as `ProcessManager::stop(pool.id())`.
    ///
    /// # Errors
    /// None today (a member that overruns the grace period is killed); the `Result` matches
    /// `ProcessManager::stop`.
    pub async fn drain(pool: &Self) -> Result<(), Error> {
        pool.core.stop().await;
        Ok(())
    }

    /// Calls waiting in the pool's queue right now.
    pub fn queued(pool: &Self) -> usize {
        pool.core.queued.load(Ordering::SeqCst)
    }
}

impl<P: Process> Clone for Pool<P> {
    fn clone(&self) -> Self {
        Self {
            core: self.core.clone(),
            client: self.client.clone(),
            timeout: self.timeout,
            _process: PhantomData,
        }
    }
}

impl<P: Process> std::fmt::Debug for Pool<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("process", &P::NAME)
            .field("id", &self.core.id)
            .field("members", &Pool::members(self))
            .finish()
    }
}

impl<P: Process> std::ops::Deref for Pool<P> {
    type Target = P::Client;

    fn deref(&self) -> &P::Client {
        &self.client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_refused_as_malformed_say_nothing_about_a_members_health() {
        let refused = Err(Error::Protocol(
            "`calculator` refused the call to `nope`: unknown method".into(),
        ));
        assert_eq!(counts_as_failure(&refused), None);
        let gone = Err(Error::ProcessExited {
            process: "calculator".into(),
            reason: "killed by signal 9".into(),
        });
        assert_eq!(counts_as_failure(&gone), Some(true));
    }
}
