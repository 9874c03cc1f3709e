//! One managed process: its incarnations, its link for callers, and its supervision.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use pm_core::trace::TraceContext;
use pm_core::wire::Frame;
use pm_core::{
    Error, Identity, Monitoring, ProcessId, ProcessInfo, ProcessState, Resources, RestartOn,
};
use tokio::sync::{broadcast, watch};
use tracing::Instrument;

use crate::call_stats::CallStats;
use crate::caller::Invoke;
use crate::events::ProcessEvent;
use crate::metrics::ResourceSampler;
use crate::process::BoxFuture;
use crate::rpc::client::RpcConnection;
use crate::rpc::handshake::handshake;
use crate::spawn::{child::signal_group, Control, ExitReceiver, LaunchSpec, Launched, Reach};
use crate::supervisor::{Decision, RestartTracker};

/// How long a process may take from start to the end of its `init`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting to a listening process may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a child has, after its shutdown reply or a SIGTERM, to exit by itself.
const EXIT_WAIT: Duration = Duration::from_secs(2);
/// How much longer than the grace period the manager waits for the shutdown answer.
const SHUTDOWN_SLACK: Duration = Duration::from_millis(500);

/// What callers see of a process right now.
#[derive(Debug, Clone)]
pub(crate) enum Link {
    /// Serving over this connection.
    Up(Arc<RpcConnection>),
    /// Starting or restarting: wait.
    Down,
    /// Ended for good: fail with this error.
    Gone(Error),
}

/// The running incarnation.
#[derive(Debug)]
struct Incarnation {
    rpc: Arc<RpcConnection>,
    exit: ExitReceiver,
    control: Control,
    /// The private socket directory of a unix transport, removed when this is dropped.
    _dir: Option<pm_transport::SocketDir>,
}

#[derive(Debug)]
struct Status {
    state: ProcessState,
    pid: Option<u32>,
    restarts: u32,
    up_since: Option<Instant>,
    endpoint: Option<String>,
}

/// Starts one incarnation of the process's type; `launch::<P>` for the spawned `P`.
pub(crate) type Launcher = fn(&LaunchSpec) -> Result<Launched, Error>;

/// Everything the manager keeps about one process.
pub(crate) struct Managed {
    pub(crate) id: ProcessId,
    pub(crate) name: String,
    pub(crate) identity: Identity,
    spec: LaunchSpec,
    launcher: Launcher,
    dependencies: Bytes,
    pub(crate) default_timeout: Option<Duration>,
    link: watch::Sender<Link>,
    status: Mutex<Status>,
    incarnation: tokio::sync::Mutex<Option<Incarnation>>,
    tracker: Mutex<RestartTracker>,
    stopping: AtomicBool,
    /// Becomes `true` on stop or kill; wakes a restart waiting out its backoff.
    stop_signal: watch::Sender<bool>,
    /// The pid of the running child (0 when none), readable without the incarnation lock so
    /// `kill` acts at once even while a graceful stop holds it.
    current_pid: std::sync::atomic::AtomicU32,
    events: broadcast::Sender<ProcessEvent>,
    pub(crate) stats: CallStats,
    pub(crate) sampler: ResourceSampler,
    monitoring: Monitoring,
    resources: Resources,
    restart_on: RestartOn,
    restart_enabled: bool,
    /// Why the manager itself ended the current incarnation (memory limit, failed health
    /// checks), reported instead of the bare exit status.
    recycle_reason: Mutex<Option<String>>,
    /// One health check asked for by users at a time, so the monitor's own poll always finds
    /// one of the two health slots a process keeps per connection.
    user_health: tokio::sync::Semaphore,
    /// The runtime the process was spawned on, where a dropped manager finishes its teardown.
    runtime: tokio::runtime::Handle,
    /// The pool this process is a member of.
    pub(crate) pool: Option<ProcessId>,
    /// Its failing makes the manager's aggregate health degraded, not unhealthy.
    pub(crate) optional: bool,
    /// The latest health check's outcome: 0 none yet, 1 healthy, 2 degraded, 3 unhealthy.
    last_health: std::sync::atomic::AtomicU8,
}

impl std::fmt::Debug for Managed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Managed")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Parameters of a new managed process.
pub(crate) struct ManagedSpec {
    pub(crate) id: ProcessId,
    pub(crate) identity: Identity,
    pub(crate) launch: LaunchSpec,
    pub(crate) launcher: Launcher,
    pub(crate) dependencies: Bytes,
    pub(crate) default_timeout: Option<Duration>,
    pub(crate) restart_policy: pm_core::RestartPolicy,
    pub(crate) events: broadcast::Sender<ProcessEvent>,
    pub(crate) monitoring: Monitoring,
    pub(crate) resources: Resources,
    pub(crate) pool: Option<ProcessId>,
    /// `SpawnOptions::optional`: its failing makes the manager's health degraded, no worse.
    pub(crate) optional: bool,
}

impl Managed {
    pub(crate) fn new(spec: ManagedSpec) -> Arc<Self> {
        let (link, _) = watch::channel(Link::Down);
        Arc::new(Self {
            id: spec.id,
            name: spec.launch.name.clone(),
            identity: spec.identity,
            spec: spec.launch,
            launcher: spec.launcher,
            dependencies: spec.dependencies,
            default_timeout: spec.default_timeout,
            link,
            status: Mutex::new(Status {
                state: ProcessState::Starting {},
                pid: None,
                restarts: 0,
                up_since: None,
                endpoint: None,
            }),
            incarnation: tokio::sync::Mutex::new(None),
            tracker: Mutex::new(RestartTracker::new(spec.restart_policy)),
            stopping: AtomicBool::new(false),
            stop_signal: watch::channel(false).0,
            current_pid: std::sync::atomic::AtomicU32::new(0),
            events: spec.events,
            stats: CallStats::new(spec.monitoring.metrics),
            sampler: ResourceSampler::default(),
            monitoring: spec.monitoring,
            resources: spec.resources,
            restart_on: spec.restart_policy.restart_on,
            restart_enabled: spec.restart_policy.enabled,
            recycle_reason: Mutex::new(None),
            user_health: tokio::sync::Semaphore::new(1),
            runtime: tokio::runtime::Handle::current(),
            pool: spec.pool,
            optional: spec.optional,
            last_health: std::sync::atomic::AtomicU8::new(0),
        })
    }

    /// Runs the process's health check for a user, within `timeout` (waiting for another
    /// user's check included).
    pub(crate) async fn health(&self, timeout: Duration) -> Result<pm_core::HealthStatus, Error> {
        let status = self.check_health(timeout).await;
        self.note_health(match &status {
            Ok(status) => status.status,
            Err(_) => pm_core::HealthState::Unhealthy,
        });
        status
    }

    async fn check_health(&self, timeout: Duration) -> Result<pm_core::HealthStatus, Error> {
        let conn = self.current()?;
        let timed_out = || Error::Timeout {
            method: crate::rpc::client::HEALTH_METHOD.to_owned(),
            after: timeout,
        };
        let started = Instant::now();
        let _turn = tokio::time::timeout(timeout, self.user_health.acquire())
            .await
            .map_err(|_| timed_out())?
            .map_err(|_| self.unavailable("it is gone"))?;
        let args = pm_core::wire::encode_value(&(), conn.max_frame())?;
        let remaining = timeout.saturating_sub(started.elapsed());
        let frame = conn
            .call(
                crate::rpc::client::HEALTH_METHOD,
                &args,
                Some(remaining),
                None,
            )
            .await
            .map_err(|err| match err {
                Error::Timeout { method, .. } => Error::Timeout {
                    method,
                    after: timeout,
                },
                other => other,
            });
        Ok(frame?.decode::<pm_core::HealthStatus>()?)
    }

    /// What the manager measured of this process: its call statistics, and a fresh reading
    /// of CPU and memory (zero when it has no local OS process).
    pub(crate) fn metrics(&self) -> pm_core::ProcessMetrics {
        let (cpu, memory) = self
            .local_pid()
            .and_then(|pid| self.sampler.sample(pid))
            .unwrap_or((0.0, 0));
        pm_core::ProcessMetrics {
            cpu,
            memory,
            requests: self.stats.requests(),
            errors: self.stats.errors(),
            latency: self.stats.latency(),
            methods: self.stats.methods(),
            members: Vec::new(),
        }
    }

    /// Remembers the outcome of the latest health check, for the metrics exposition.
    fn note_health(&self, state: pm_core::HealthState) {
        let code = match state {
            pm_core::HealthState::Healthy => 1,
            pm_core::HealthState::Degraded => 2,
            pm_core::HealthState::Unhealthy => 3,
        };
        self.last_health.store(code, Ordering::Relaxed);
    }

    /// The outcome of the latest health check (the manager's polling or a user's), or `None`
    /// before the first.
    pub(crate) fn last_health(&self) -> Option<pm_core::HealthState> {
        match self.last_health.load(Ordering::Relaxed) {
            1 => Some(pm_core::HealthState::Healthy),
            2 => Some(pm_core::HealthState::Degraded),
            3 => Some(pm_core::HealthState::Unhealthy),
            _ => None,
        }
    }

    /// The error of calls this process cannot take, with why.
    fn unavailable(&self, reason: impl Into<String>) -> Error {
        Error::Unavailable {
            process: self.name.clone(),
            reason: reason.into(),
        }
    }

    fn emit(&self, event: ProcessEvent) {
        // No subscribers is fine.
        let _ = self.events.send(event);
    }

    /// Publishes a state of the process's own course (starting, running, crashed,
    /// restarting, failed) with its event, unless a stop or kill has begun, whose `Stopping`
    /// and `Stopped` are never overwritten. Decided under the status lock, which the stop's own
    /// states also take after `stopping` is raised: a state published here comes before the
    /// stop's, or not at all. Returns whether it was published.
    fn publish_course(
        &self,
        state: ProcessState,
        event: Option<ProcessEvent>,
        update: impl FnOnce(&mut Status),
    ) -> bool {
        let mut status = lock(&self.status);
        if self.stopping.load(Ordering::SeqCst) {
            return false;
        }
        status.state = state;
        update(&mut status);
        if let Some(event) = event {
            self.emit(event);
        }
        true
    }

    /// Ends the link for callers with `why`, unless the process had already ended for good
    /// (the callers of a failed process keep learning why it failed).
    fn close_link(&self, why: &str) {
        let ended = Self::is_final(&lock(&self.status).state);
        if ended && matches!(&*self.link.borrow(), Link::Gone(_)) {
            return;
        }
        self.link.send_replace(Link::Gone(self.unavailable(why)));
    }

    /// Whether the process has ended for good (stopped or failed).
    fn is_final(state: &ProcessState) -> bool {
        matches!(
            state,
            ProcessState::Stopped { .. } | ProcessState::Failed { .. }
        )
    }

    /// A snapshot for `info` and `list`.
    pub(crate) fn info(&self) -> ProcessInfo {
        let status = lock(&self.status);
        ProcessInfo {
            id: self.id,
            name: self.name.clone(),
            version: self.identity.version.clone(),
            pid: status.pid,
            state: status.state.clone(),
            restarts: status.restarts,
            uptime: status.up_since.map(|t| t.elapsed()).unwrap_or_default(),
            endpoint: status.endpoint.clone(),
            pool: self.pool,
        }
    }

    /// The pid of the OS process hosting the current incarnation, when it runs on this
    /// machine (an attached process's pid belongs to another host).
    pub(crate) fn local_pid(&self) -> Option<u32> {
        if self.spec.attach_to.is_some() {
            return None;
        }
        lock(&self.status).pid
    }

    /// Watches what callers see of the process: up, down (starting or restarting) or gone.
    pub(crate) fn watch_link(&self) -> watch::Receiver<Link> {
        self.link.subscribe()
    }

    /// The pid of the running child, for `Isolation::Child` on this machine.
    pub(crate) fn child_pid(&self) -> Option<u32> {
        if self.spec.isolation != pm_core::Isolation::Child {
            return None;
        }
        self.local_pid()
    }

    /// The connection of the running incarnation, if there is one.
    pub(crate) fn current(&self) -> Result<Arc<RpcConnection>, Error> {
        match &*self.link.borrow() {
            Link::Up(conn) if !conn.is_closed() => Ok(conn.clone()),
            Link::Gone(err) => Err(err.clone()),
            _ => Err(self.unavailable("it is starting or restarting")),
        }
    }

    /// Starts an incarnation: launch, handshake, init. On failure nothing is left running.
    ///
    /// Boxed as `Send` explicitly: supervision restarts through this function and this function
    /// starts supervision, a cycle the compiler cannot see through otherwise.
    pub(crate) fn start_incarnation(self: &Arc<Self>) -> BoxFuture<'static, Result<(), Error>> {
        Box::pin(self.clone().start_incarnation_inner())
    }

    async fn start_incarnation_inner(self: Arc<Self>) -> Result<(), Error> {
        // Held for the whole start, so a `stop` or `kill` (which raise `stopping` and the stop
        // signal first, cutting the handshake short) returns only once this start has ended
        // what it launched: a `shutdown` racing a spawn leaves nothing running.
        let mut slot = self.incarnation.lock().await;
        if !self.publish_course(ProcessState::Starting {}, None, |_| {}) {
            return Err(self.unavailable("it was stopped"));
        }
        let Launched {
            reach,
            dir,
            mut exit,
            control,
        } = (self.launcher)(&self.spec)?;
        // A child's pid is the one the manager launched, never what the process says. It is
        // published at once, so a `kill` during the handshake reaches the child: `kill` raises
        // `stopping` and then reads the pid, this stores the pid and then reads `stopping`
        // (both sequentially consistent), so at least one of the two sees the other.
        let child_pid = match control {
            Control::Child { pid } => Some(pid),
            _ => None,
        };
        if let Some(pid) = child_pid {
            self.current_pid.store(pid, Ordering::SeqCst);
            lock(&self.status).pid = Some(pid);
        }
        self.emit(ProcessEvent::Spawned {
            id: self.id,
            name: self.name.clone(),
        });
        let endpoint = match &reach {
            Reach::Connected(_) => None,
            Reach::Listening(address) => Some(address.to_string()),
        };
        let mut stop_signal = self.stop_signal.subscribe();
        let established = tokio::select! {
            // A stop wins over a handshake that fails at the same time because of it.
            biased;
            _ = stop_signal.wait_for(|stopped| *stopped) => {
                Err((self.unavailable("it was stopped while starting"), false))
            }
            established = self.establish(reach) => established,
        };
        let (conn, greeting) = match established {
            Ok(established) => established,
            Err((err, explain_exit)) => {
                // A process that went away during the handshake has usually just exited: give
                // the reaper a moment so the error can say how.
                let ended = explain_exit && wait_exit(&mut exit, Duration::from_millis(300)).await;
                end_incarnation(control, &mut exit, Duration::ZERO).await;
                self.forget_pid(child_pid);
                lock(&self.status).pid = None;
                let err = match err {
                    Error::Spawn { process, reason } if ended => {
                        let how = exit
                            .borrow()
                            .as_ref()
                            .map(|e| e.description.clone())
                            .unwrap_or_default();
                        Error::Spawn {
                            process,
                            reason: format!("{reason}; the process {how}"),
                        }
                    }
                    other => other,
                };
                return Err(err);
            }
        };
        let pid = child_pid.unwrap_or(greeting.pid);
        let rpc = RpcConnection::start(
            conn,
            &self.name,
            pid,
            self.spec.limits.max_frame_size,
            self.spec.limits.max_in_flight,
            Some(exit.clone()),
        );
        // `stop` and `kill` raise the flag before taking the lock this start holds: checking it
        // here means a stop that came during the handshake is never undone by publishing.
        if self.stopping.load(Ordering::SeqCst) {
            let error = self.unavailable("it was stopped while starting");
            rpc.abort(error.clone());
            drop(rpc);
            end_incarnation(control, &mut exit, Duration::ZERO).await;
            self.forget_pid(child_pid);
            lock(&self.status).pid = None;
            return Err(error);
        }
        *slot = Some(Incarnation {
            rpc: rpc.clone(),
            exit: exit.clone(),
            control,
            _dir: dir,
        });
        // A reason the manager gave for ending an earlier incarnation is no reason for this one,
        // and its health checks say nothing of this one.
        lock(&self.recycle_reason).take();
        self.last_health.store(0, Ordering::Relaxed);
        // Skipped when a stop has just begun: it takes this incarnation once the lock is free.
        self.publish_course(
            ProcessState::Running {},
            Some(ProcessEvent::Ready { id: self.id, pid }),
            |status| {
                status.pid = Some(pid);
                status.up_since = Some(Instant::now());
                status.endpoint = endpoint;
            },
        );
        self.link.send_replace(Link::Up(rpc.clone()));
        drop(slot);
        tokio::spawn(self.clone().monitor(Arc::downgrade(&rpc), child_pid));
        tokio::spawn(self.clone().supervise(exit, rpc));
        Ok(())
    }

    /// Connects to a launched incarnation (when it listens) and runs the handshake. On
    /// failure, also says whether the process's own exit may explain it.
    async fn establish(
        &self,
        reach: Reach,
    ) -> Result<(pm_transport::Connection, crate::rpc::handshake::Greeting), (Error, bool)> {
        let mut conn = match reach {
            Reach::Connected(conn) => conn,
            Reach::Listening(address) => {
                let max = self.spec.limits.max_frame_size;
                let connecting = pm_transport::connect(&address, self.spec.token.as_str(), max);
                match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
                    Ok(Ok(conn)) => conn,
                    outcome => {
                        let reason = match outcome {
                            Ok(Err(err)) => format!("could not connect to {address}: {err}"),
                            _ => {
                                format!("could not connect to {address} within {CONNECT_TIMEOUT:?}")
                            }
                        };
                        let error = Error::Spawn {
                            process: self.name.clone(),
                            reason,
                        };
                        return Err((error, false));
                    }
                }
            }
        };
        let greeting = handshake(
            &mut conn,
            &self.identity,
            &self.spec.token,
            self.dependencies.clone(),
            self.spec.limits.max_frame_size,
            HANDSHAKE_TIMEOUT,
        )
        .await
        .map_err(|err| (err, true))?;
        Ok((conn, greeting))
    }

    /// Clears the published pid if it is still `pid` (a newer incarnation's stays).
    fn forget_pid(&self, pid: Option<u32>) {
        if let Some(pid) = pid {
            let _ = self
                .current_pid
                .compare_exchange(pid, 0, Ordering::SeqCst, Ordering::SeqCst);
        }
    }

    /// Watches one incarnation; on an unrequested end, restarts or gives up.
    async fn supervise(self: Arc<Self>, mut exit: ExitReceiver, rpc: Arc<RpcConnection>) {
        tokio::select! {
            _ = exit.wait_for(Option::is_some) => {}
            _ = rpc.closed() => {}
        }
        drop(rpc);
        let mut slot = self.incarnation.lock().await;
        if self.stopping.load(Ordering::SeqCst) {
            return; // a stop or kill owns the ending
        }
        let Some(Incarnation {
            rpc,
            mut exit,
            control,
            ..
        }) = slot.take()
        else {
            return;
        };
        self.link.send_replace(Link::Down);
        if self.stopping.load(Ordering::SeqCst) {
            // Raised just now by a manager dropped without a runtime to finish its work, which
            // published `Gone` before: keep callers from waiting on `Down`.
            self.link
                .send_replace(Link::Gone(self.unavailable("it was stopped")));
        }
        // Held until the incarnation has really ended, so a stop arriving now waits for it.
        end_incarnation(control, &mut exit, Duration::ZERO).await;
        self.current_pid.store(0, Ordering::SeqCst);
        lock(&self.status).pid = None;
        let ended = exit.borrow().clone();
        let recycled = lock(&self.recycle_reason).take();
        let clean = ended.as_ref().is_some_and(|e| e.clean) && recycled.is_none();
        let reason = match (recycled, ended.as_ref()) {
            (Some(why), Some(how)) => format!("{why}; then: {how}"),
            (Some(why), None) => why,
            (None, Some(how)) => how.description.clone(),
            (None, None) => "connection closed".to_owned(),
        };
        // Calls still waiting on the old connection end now, even if its socket stays open
        // (a descendant of the process may hold a copy of it).
        rpc.abort(Error::ProcessExited {
            process: self.name.clone(),
            reason: reason.clone(),
        });
        drop(rpc);
        drop(slot);
        if self.stopping.load(Ordering::SeqCst) {
            return;
        }
        if clean && self.restart_on == RestartOn::OnFailure {
            tracing::info!(process = %self.name, id = %self.id, %reason, "process exited cleanly; not restarting");
            self.link.send_replace(Link::Gone(
                self.unavailable(format!("it exited cleanly ({reason})")),
            ));
            self.mark_stopped();
            return;
        }
        let uptime = lock(&self.status)
            .up_since
            .map(|t| t.elapsed())
            .unwrap_or_default();
        tracing::warn!(process = %self.name, id = %self.id, %reason, "process crashed");
        self.note_health(pm_core::HealthState::Unhealthy);
        let crashed = self.publish_course(
            ProcessState::Crashed {
                reason: reason.clone(),
            },
            Some(ProcessEvent::Crashed {
                id: self.id,
                reason: reason.clone(),
            }),
            |_| {},
        );
        if crashed {
            self.restart_after_crash(uptime, reason).await;
        }
    }

    async fn restart_after_crash(self: Arc<Self>, mut uptime: Duration, mut reason: String) {
        loop {
            let decision = lock(&self.tracker).on_crash(Instant::now(), uptime);
            match decision {
                Decision::GiveUp { reason: why } => {
                    let why = format!("{why}; last crash: {reason}");
                    self.fail(why);
                    return;
                }
                Decision::Restart { attempt, delay } => {
                    let restarting = self.publish_course(
                        ProcessState::Restarting { attempt, delay },
                        Some(ProcessEvent::Restarting {
                            id: self.id,
                            attempt,
                            delay,
                        }),
                        |_| {},
                    );
                    if !restarting {
                        return;
                    }
                    let mut stop_signal = self.stop_signal.subscribe();
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop_signal.wait_for(|stopped| *stopped) => return,
                    }
                    if self.stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    lock(&self.status).restarts += 1;
                    match self.start_incarnation().await {
                        Ok(()) => return,
                        Err(_) if self.stopping.load(Ordering::SeqCst) => return,
                        Err(err) => {
                            tracing::warn!(process = %self.name, %err, "restart failed");
                            reason = err.to_string();
                            uptime = Duration::ZERO;
                        }
                    }
                }
            }
        }
    }

    /// Watches one incarnation's health and resources until it ends. Holds only a weak
    /// reference to the connection, so it never keeps a dead incarnation's connection open.
    async fn monitor(self: Arc<Self>, rpc: std::sync::Weak<RpcConnection>, child_pid: Option<u32>) {
        const RESOURCE_INTERVAL: Duration = Duration::from_millis(500);
        let health = self.monitoring.health_check;
        let watch_memory = child_pid.is_some() && self.resources.max_memory.is_some();
        let watch_cpu = self.resources.max_cpu.is_some();
        if !health.enabled && !watch_memory && !watch_cpu {
            return;
        }
        let sampler = ResourceSampler::default();
        let mut failures = 0u32;
        let mut over_cpu = false;
        let mut next_health = tokio::time::Instant::now() + health.interval;
        let mut next_resources = tokio::time::Instant::now() + RESOURCE_INTERVAL;
        loop {
            let wake = match (health.enabled, watch_memory || watch_cpu) {
                (true, true) => next_health.min(next_resources),
                (true, false) => next_health,
                (false, _) => next_resources,
            };
            tokio::time::sleep_until(wake).await;
            let Some(conn) = rpc.upgrade() else { return };
            if conn.is_closed() || self.stopping.load(Ordering::SeqCst) {
                return;
            }
            let now = tokio::time::Instant::now();
            if (watch_memory || watch_cpu) && now >= next_resources {
                next_resources = now + RESOURCE_INTERVAL;
                let pid = child_pid.unwrap_or_else(std::process::id);
                if let Some((cpu, memory)) = sampler.sample(pid) {
                    if let (Some(limit), Some(_)) = (self.resources.max_memory, child_pid) {
                        if memory > limit {
                            self.recycle(
                                &conn,
                                child_pid,
                                format!(
                                "resident memory {memory} bytes exceeded max_memory {limit} bytes"
                            ),
                            );
                            return;
                        }
                    }
                    if let Some(limit) = self.resources.max_cpu {
                        let over = cpu > limit;
                        if over && !over_cpu {
                            let reason = format!("cpu {cpu:.1}% is over max_cpu {limit:.1}%");
                            tracing::warn!(process = %self.name, id = %self.id, %reason, "cpu budget exceeded");
                            self.emit(ProcessEvent::Unhealthy {
                                id: self.id,
                                reason,
                            });
                        }
                        over_cpu = over;
                    }
                }
            }
            if health.enabled && now >= next_health {
                next_health = now + health.interval;
                let verdict = match pm_core::wire::encode_value(&(), conn.max_frame()) {
                    Ok(args) => match conn
                        .call(
                            crate::rpc::client::HEALTH_METHOD,
                            &args,
                            Some(health.timeout),
                            None,
                        )
                        .await
                    {
                        Ok(frame) => match frame.decode::<pm_core::HealthStatus>() {
                            Ok(status) if status.status != pm_core::HealthState::Unhealthy => {
                                Ok(status.status)
                            }
                            Ok(_) => Err("the health check reported unhealthy".to_owned()),
                            Err(err) => Err(format!("undecodable health report: {err}")),
                        },
                        Err(err) => Err(err.to_string()),
                    },
                    Err(err) => Err(err.to_string()),
                };
                self.note_health(match verdict {
                    Ok(state) => state,
                    Err(_) => pm_core::HealthState::Unhealthy,
                });
                match verdict {
                    Ok(_) => failures = 0,
                    Err(reason) => {
                        failures += 1;
                        tracing::warn!(process = %self.name, id = %self.id, failures, %reason, "health check failed");
                        if failures >= health.failure_threshold.max(1) {
                            let reason = format!(
                                "{failures} consecutive health checks failed; last: {reason}"
                            );
                            self.emit(ProcessEvent::Unhealthy {
                                id: self.id,
                                reason: reason.clone(),
                            });
                            if self.restart_enabled {
                                self.recycle(&conn, child_pid, reason);
                                return;
                            }
                            failures = 0;
                        }
                    }
                }
            }
        }
    }

    /// Ends the current incarnation on the manager's initiative so supervision restarts it.
    fn recycle(&self, conn: &RpcConnection, child_pid: Option<u32>, reason: String) {
        if conn.is_closed() {
            // The incarnation ended meanwhile; supervision has it, with its own reason.
            return;
        }
        tracing::warn!(process = %self.name, id = %self.id, %reason, "restarting the process");
        *lock(&self.recycle_reason) = Some(reason.clone());
        conn.abort(Error::ProcessExited {
            process: self.name.clone(),
            reason,
        });
        // Only while it is still the published child: once supervision has reaped it, the pid
        // may belong to another process.
        if let Some(pid) = child_pid.filter(|pid| self.current_pid.load(Ordering::SeqCst) == *pid) {
            signal_group(pid, libc::SIGKILL);
        }
    }

    /// Records the end of a process that will not be restarted, and announces it, once: a
    /// process already stopped or failed keeps its state and sends no second event.
    fn mark_stopped(&self) {
        let mut status = lock(&self.status);
        if Self::is_final(&status.state) {
            return;
        }
        status.state = ProcessState::Stopped {};
        status.up_since = None;
        status.pid = None;
        self.emit(ProcessEvent::Stopped { id: self.id });
    }

    /// Gives up for good, unless a stop or kill has begun (then it ends as they say).
    fn fail(&self, reason: String) {
        let failed = self.publish_course(
            ProcessState::Failed {
                reason: reason.clone(),
            },
            Some(ProcessEvent::Failed {
                id: self.id,
                reason: reason.clone(),
            }),
            |status| {
                status.up_since = None;
                status.pid = None;
            },
        );
        if failed {
            tracing::error!(process = %self.name, id = %self.id, %reason, "process failed for good");
            self.link.send_replace(Link::Gone(
                self.unavailable(format!("it failed for good: {reason}")),
            ));
        }
    }

    /// Stops gracefully: refuse new calls, ask the process to shut down (hooks, drain within
    /// `grace`), then SIGTERM, then SIGKILL; always reaps. Never followed by a restart.
    ///
    /// The teardown runs in its own task, so a caller that gives up on this future (a
    /// timeout around it) does not leave the process half stopped.
    pub(crate) async fn stop(self: &Arc<Self>, grace: Duration) {
        let this = self.clone();
        let _ = tokio::spawn(async move { this.stop_now(grace).await }).await;
    }

    async fn stop_now(&self, grace: Duration) {
        if self.stopping.swap(true, Ordering::SeqCst) {
            // Already stopping or stopped: wait for the other stop to finish its work.
            let _guard = self.incarnation.lock().await;
            return;
        }
        self.stop_signal.send_replace(true);
        {
            let mut status = lock(&self.status);
            if !Self::is_final(&status.state) {
                status.state = ProcessState::Stopping {};
            }
        }
        self.close_link("it was stopped");
        let mut slot = self.incarnation.lock().await;
        // Again under the lock: a start or a supervision that checked `stopping` just before
        // it was raised may have published since; both publish only under this lock.
        self.close_link("it was stopped");
        if let Some(Incarnation {
            rpc,
            mut exit,
            control,
            ..
        }) = slot.take()
        {
            // An attached process belongs to its orchestrator: detach, do not shut it down.
            let answered = if self.spec.attach_to.is_some() {
                true
            } else {
                let asked =
                    tokio::time::timeout(grace.saturating_add(SHUTDOWN_SLACK), rpc.shutdown(grace))
                        .await;
                matches!(asked, Ok(Ok(())))
            };
            if !answered {
                tracing::warn!(process = %self.name, id = %self.id, "no answer to the shutdown request within the grace period");
            }
            rpc.abort(self.unavailable("it was stopped"));
            drop(rpc);
            // A process that answered exits by itself; one that did not gets SIGTERM now.
            let patience = if answered { EXIT_WAIT } else { Duration::ZERO };
            end_incarnation(control, &mut exit, patience).await;
        }
        self.current_pid.store(0, Ordering::SeqCst);
        drop(slot);
        self.mark_stopped();
    }

    /// Ends the process at once (SIGKILL for a child's whole group), without hooks and
    /// without restart. Does not wait behind a graceful stop in progress to send the signal.
    ///
    /// Like `stop`, the teardown runs in its own task, so giving up on this future does not
    /// leave it half done.
    pub(crate) async fn kill(self: &Arc<Self>) {
        self.kill_signal();
        let this = self.clone();
        let _ = tokio::spawn(async move { this.kill_now().await }).await;
    }

    /// `kill` without waiting: signals at once and finishes on the process's runtime.
    pub(crate) fn kill_in_background(self: &Arc<Self>) {
        self.kill_signal();
        let this = self.clone();
        self.runtime.spawn(async move { this.kill_now().await });
    }

    /// Marks the process as ending for good and SIGKILLs the running child's group, without
    /// waiting for anything.
    fn kill_signal(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.stop_signal.send_replace(true);
        self.close_link("it was killed");
        let pid = self.current_pid.load(Ordering::SeqCst);
        if pid != 0 {
            signal_group(pid, libc::SIGKILL);
        }
    }

    async fn kill_now(&self) {
        let mut slot = self.incarnation.lock().await;
        if !matches!(&*self.link.borrow(), Link::Gone(_)) {
            self.close_link("it was killed");
        }
        if let Some(Incarnation {
            rpc,
            mut exit,
            control,
            ..
        }) = slot.take()
        {
            rpc.abort(Error::ProcessExited {
                process: self.name.clone(),
                reason: "it was killed".into(),
            });
            drop(rpc);
            end_incarnation(control, &mut exit, Duration::ZERO).await;
        }
        self.current_pid.store(0, Ordering::SeqCst);
        drop(slot);
        self.mark_stopped();
    }

    /// Teardown for when the manager is dropped without `shutdown`: kills a child's group
    /// and closes a worker's or in-process instance's connection at once. When a start, stop
    /// or supervision holds the incarnation right now, the job is finished after it on the
    /// runtime the process was spawned on.
    pub(crate) fn abandon(self: &Arc<Self>) {
        self.stopping.store(true, Ordering::SeqCst);
        self.stop_signal.send_replace(true);
        let pid = self.current_pid.load(Ordering::SeqCst);
        if pid != 0 {
            signal_group(pid, libc::SIGKILL);
        }
        self.link
            .send_replace(Link::Gone(self.unavailable("its manager was dropped")));
        match self.incarnation.try_lock() {
            Ok(mut slot) => {
                if let Some(incarnation) = slot.take() {
                    // Closing the connection ends a worker's serving, so its thread returns.
                    incarnation
                        .rpc
                        .abort(self.unavailable("its manager was dropped"));
                    match incarnation.control {
                        Control::Child { pid } => signal_group(pid, libc::SIGKILL),
                        Control::Inline { task } => task.abort(),
                        Control::Worker { .. } | Control::Attached { .. } => {}
                    }
                }
            }
            Err(_) => {
                let this = self.clone();
                self.runtime.spawn(async move { this.kill_now().await });
            }
        }
    }
}

async fn wait_exit(exit: &mut ExitReceiver, within: Duration) -> bool {
    matches!(
        tokio::time::timeout(within, exit.wait_for(Option::is_some)).await,
        Ok(Ok(_))
    )
}

/// Makes sure an incarnation has ended: waits `patience` for it to exit by itself, then
/// SIGTERM and SIGKILL for a child (whose whole process group is killed in the end, so no
/// descendant survives), abort for an in-process task; a worker thread is joined once it ends.
async fn end_incarnation(control: Control, exit: &mut ExitReceiver, patience: Duration) {
    match control {
        Control::Child { pid } => {
            if !wait_exit(exit, patience).await {
                signal_group(pid, libc::SIGTERM);
                if !wait_exit(exit, EXIT_WAIT).await {
                    signal_group(pid, libc::SIGKILL);
                    if !wait_exit(exit, Duration::from_secs(10)).await {
                        tracing::error!(pid, "child did not end after SIGKILL");
                    }
                }
            }
            // Descendants in its group outlive a leader that exited on its own.
            signal_group(pid, libc::SIGKILL);
        }
        Control::Worker { thread } => {
            if wait_exit(exit, patience.max(EXIT_WAIT)).await {
                if let Some(thread) = thread {
                    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
                }
            } else {
                tracing::error!(
                    "worker thread did not end (a method blocks its thread); it is detached"
                );
            }
        }
        Control::Inline { task } => {
            if !wait_exit(exit, patience).await {
                task.abort();
            }
        }
        // Hosted elsewhere: dropping the connection is all there is to do.
        Control::Attached { .. } => {}
    }
}

impl Invoke for Managed {
    fn invoke<'a>(
        &'a self,
        method: &'static str,
        args: Bytes,
        timeout: Option<Duration>,
    ) -> BoxFuture<'a, Result<Frame, Error>> {
        if self.monitoring.tracing {
            let context = crate::trace::outgoing();
            let span = crate::trace::caller_span(&self.name, method, &context);
            return Box::pin(
                self.call_once(method, args, timeout, Some(context))
                    .instrument(span),
            );
        }
        Box::pin(self.call_once(method, args, timeout, None))
    }

    fn max_frame(&self) -> usize {
        self.spec.limits.max_frame_size
    }
}

impl Managed {
    /// One call: the live connection, then the call on it, recorded in the statistics.
    async fn call_once(
        &self,
        method: &'static str,
        args: Bytes,
        timeout: Option<Duration>,
        trace: Option<TraceContext>,
    ) -> Result<Frame, Error> {
        let started = Instant::now();
        let timeout = timeout.or(self.default_timeout);
        let result = async {
            let conn = self.wait_for_link(method, started, timeout).await?;
            let remaining = timeout.map(|t| t.saturating_sub(started.elapsed()));
            conn.call(method, &args, remaining, trace.as_ref()).await
        }
        .await;
        self.stats.conclude(method, started, timeout, result)
    }

    /// The live connection, waiting through a (re)start until the call's deadline.
    async fn wait_for_link(
        &self,
        method: &str,
        started: Instant,
        timeout: Option<Duration>,
    ) -> Result<Arc<RpcConnection>, Error> {
        // The common case, a running process, needs no subscription.
        match &*self.link.borrow() {
            Link::Up(conn) if !conn.is_closed() => return Ok(conn.clone()),
            Link::Gone(err) => return Err(err.clone()),
            _ => {}
        }
        let mut link = self.link.subscribe();
        loop {
            match &*link.borrow_and_update() {
                Link::Up(conn) if !conn.is_closed() => return Ok(conn.clone()),
                Link::Gone(err) => return Err(err.clone()),
                _ => {}
            }
            // A deadline too far away to represent is no deadline.
            let due = timeout.and_then(|limit| started.checked_add(limit));
            let changed = match (timeout, due) {
                (Some(limit), Some(due)) => {
                    match tokio::time::timeout_at(due.into(), link.changed()).await {
                        Ok(changed) => changed,
                        Err(_) => {
                            return Err(Error::Timeout {
                                method: method.to_owned(),
                                after: limit,
                            })
                        }
                    }
                }
                _ => link.changed().await,
            };
            if changed.is_err() {
                return Err(self.unavailable("its manager is gone"));
            }
        }
    }
}
