//! One managed process: what callers see of it (its link, its published state), and the jobs
//! done on it, each in a module of its own:
//!
//! - `owner`: the one task that holds the running incarnation and takes commands;
//! - `start`: launching an incarnation, the handshake and `init`;
//! - `supervise`: an incarnation's unrequested end, reported to whoever decides the restart
//!   (the process's own restart policy, or its supervisor);
//! - `monitor`: health checks and resource limits of a running incarnation;
//! - `teardown`: stop, kill, restart on command, and the one way an incarnation is ended;
//! - `invoke`: the calls made through a handle.

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
use crate::restart_policy::RestartTracker;
use crate::rpc::client::RpcConnection;
use crate::rpc::handshake::handshake;
use crate::spawn::{child::signal_group, Control, ExitReceiver, LaunchSpec, Launched, Reach};

mod invoke;
mod monitor;
mod owner;
mod start;
mod supervise;
mod teardown;

pub(crate) use supervise::ChildExit;

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
    endpoint: Option<pm_core::Address>,
}

/// Starts one incarnation of the process's type; `launch::<P>` for the spawned `P`.
pub(crate) type Launcher = fn(&LaunchSpec) -> Result<Launched, Error>;

/// Everything the manager keeps about one process.
pub(crate) struct Managed {
    pub(crate) id: ProcessId,
    pub(crate) name: String,
    pub(crate) identity: Identity,
    /// The structure behind `identity`'s fingerprint, to say what differs on a mismatch.
    pub(crate) schema: &'static pm_core::schema::Schema,
    spec: LaunchSpec,
    launcher: Launcher,
    dependencies: Bytes,
    pub(crate) default_timeout: Option<Duration>,
    link: watch::Sender<Link>,
    status: Mutex<Status>,
    /// Where commands go to the process's owner (see `owner`).
    commands: tokio::sync::mpsc::UnboundedSender<owner::Command>,
    /// Where the process sits in a supervision tree (`app/db`), if it is in one.
    pub(crate) supervision: Option<String>,
    /// The supervisor its unrequested ends are reported to; `None` on its own, when its
    /// restart policy decides.
    supervised: Option<Supervised>,
    stopping: AtomicBool,
    /// Becomes `true` on stop or kill; wakes a restart waiting out its backoff.
    stop_signal: watch::Sender<bool>,
    /// The pid of the running child (0 when none), readable without asking the owner, so
    /// `kill` acts at once even while the owner is busy with a graceful stop.
    current_pid: std::sync::atomic::AtomicU32,
    events: broadcast::Sender<ProcessEvent>,
    pub(crate) stats: CallStats,
    pub(crate) sampler: ResourceSampler,
    monitoring: Monitoring,
    resources: Resources,
    restart_on: RestartOn,
    restart_enabled: bool,
    /// One health check asked for by users at a time, so the monitor's own poll always finds
    /// one of the two health slots a process keeps per connection.
    user_health: tokio::sync::Semaphore,
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
    pub(crate) schema: &'static pm_core::schema::Schema,
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
    /// The supervisor deciding its restarts, when it is in a supervision tree.
    pub(crate) supervised: Option<Supervised>,
}

/// A process's place under a supervisor.
#[derive(Debug, Clone)]
pub(crate) struct Supervised {
    /// Its path in the tree, `app/db`.
    pub(crate) path: String,
    /// Which of the supervisor's children it is.
    pub(crate) index: usize,
    /// Where it reports an unrequested end.
    pub(crate) exits: tokio::sync::mpsc::UnboundedSender<ChildExit>,
}

impl Managed {
    pub(crate) fn new(spec: ManagedSpec) -> Arc<Self> {
        let (link, _) = watch::channel(Link::Down);
        let supervision = spec.supervised.as_ref().map(|s| s.path.clone());
        let supervised = supervision.is_some();
        let (commands, commands_rx) = tokio::sync::mpsc::unbounded_channel();
        let tracker = (!supervised).then(|| RestartTracker::new(spec.restart_policy));
        let name = spec.launch.name.clone();
        let managed = Arc::new(Self {
            id: spec.id,
            name: spec.launch.name.clone(),
            identity: spec.identity,
            schema: spec.schema,
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
            commands,
            supervision,
            stopping: AtomicBool::new(false),
            stop_signal: watch::channel(false).0,
            current_pid: std::sync::atomic::AtomicU32::new(0),
            events: spec.events,
            stats: CallStats::new(spec.monitoring.metrics),
            sampler: ResourceSampler::default(),
            monitoring: spec.monitoring,
            resources: spec.resources,
            restart_on: spec.restart_policy.restart_on,
            // A supervised process's restarts are its supervisor's: recycling an unhealthy one
            // never depends on the manager's own policy.
            restart_enabled: spec.restart_policy.enabled || supervised,
            user_health: tokio::sync::Semaphore::new(1),
            pool: spec.pool,
            optional: spec.optional,
            last_health: std::sync::atomic::AtomicU8::new(0),
            supervised: spec.supervised,
        });
        tokio::spawn(
            owner::Owner {
                managed: Arc::downgrade(&managed),
                name,
                commands: commands_rx,
                current: None,
                recycle_reason: None,
                tracker,
                restart_at: None,
            }
            .run(),
        );
        managed
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
    /// Whether the process has ended for good (stopped or failed), read without building a
    /// snapshot.
    pub(crate) fn has_ended(&self) -> bool {
        lock(&self.status).state.is_terminal()
    }

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
            supervisor: self.supervision.clone(),
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

    /// Clears the published pid if it is still `pid` (a newer incarnation's stays).
    fn forget_pid(&self, pid: Option<u32>) {
        if let Some(pid) = pid {
            let _ = self
                .current_pid
                .compare_exchange(pid, 0, Ordering::SeqCst, Ordering::SeqCst);
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
}
