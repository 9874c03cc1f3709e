//! One supervisor's state, owned by one task: its children, its restart budget, and what it
//! does when a child ends, when its parent restarts it, and when it is stopped.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pm_core::{Error, ProcessId, ProcessInfo, ProcessState};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::spec::{ChildKind, ChildRestart, ChildSpec, RestartStrategy, SupervisorSpec};
use super::{SupervisorEvent, SupervisorState};
use crate::events::ProcessEvent;
use crate::managed::{ChildExit, Managed, Supervised};
use crate::manager::ProcessManager;
use crate::pool::PoolCore;
use crate::process::BoxFuture;
use crate::restart_policy::{Decision, RestartTracker};

/// What runs in a child's slot.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Process(Arc<Managed>),
    Pool(Arc<PoolCore>),
    Supervisor(Arc<SupervisorCore>),
    /// An optional child that could not be started.
    Absent(String),
}

/// One child: its spec's name and restart type, and what runs.
#[derive(Debug)]
pub(crate) struct Child {
    pub(crate) name: String,
    pub(crate) path: String,
    pub(crate) restart: ChildRestart,
    pub(crate) type_id: Option<std::any::TypeId>,
    pub(crate) node: Node,
}

/// Asked of a supervisor's task by its parent or its handle.
enum Command {
    /// Stop every child in reverse order, but not for good: the parent restarts this
    /// supervisor next.
    TakeDown(oneshot::Sender<()>),
    /// Start every child again, in order, with a fresh budget.
    Restart(oneshot::Sender<Result<(), Error>>),
    /// Stop every child in reverse order, for good.
    Stop(oneshot::Sender<()>),
}

/// Where a nested supervisor reports that it gave up.
#[derive(Debug, Clone)]
pub(crate) struct Parent {
    pub(crate) index: usize,
    pub(crate) exits: mpsc::UnboundedSender<ChildExit>,
}

/// A running supervisor. The handle and a parent talk to its task through `commands`; the
/// children are fixed once started (what runs in a slot keeps its identity across restarts,
/// so handles to it keep working).
#[derive(Debug)]
pub(crate) struct SupervisorCore {
    pub(crate) id: ProcessId,
    pub(crate) name: String,
    pub(crate) path: String,
    pub(crate) children: Vec<Child>,
    pub(crate) state: watch::Sender<SupervisorState>,
    commands: mpsc::UnboundedSender<Command>,
    /// Raised when the manager is dropped: the task ends without touching anything.
    abandoned: watch::Sender<bool>,
    /// Raised by `stop` before its command is sent, so a restart waiting out its backoff
    /// gives way to the stop at once.
    stop_requested: watch::Sender<bool>,
    restarts: Mutex<u32>,
    since: Mutex<Instant>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What the task owns besides the core.
struct Task {
    core: Arc<SupervisorCore>,
    strategy: RestartStrategy,
    policy: pm_core::RestartPolicy,
    tracker: RestartTracker,
    exits: mpsc::UnboundedReceiver<ChildExit>,
    /// For starts that fail during a restart: they are handled as the child's next exit.
    own_exits: mpsc::UnboundedSender<ChildExit>,
    commands: mpsc::UnboundedReceiver<Command>,
    events: broadcast::Sender<ProcessEvent>,
    parent: Option<Parent>,
    grace: Duration,
}

impl SupervisorCore {
    /// Starts the children of `spec` in order, each ready before the next, then the task
    /// that supervises them. On a critical child's failure, the children started so far are
    /// stopped in reverse order and the error is returned.
    pub(crate) fn start(
        manager: ProcessManager,
        spec: SupervisorSpec,
        prefix: Option<&str>,
        parent: Option<Parent>,
        started_at: u64,
    ) -> BoxFuture<'static, Result<Arc<SupervisorCore>, Error>> {
        let path = match prefix {
            Some(prefix) => format!("{prefix}/{}", spec.name),
            None => spec.name.clone(),
        };
        Box::pin(async move {
            let (exits_tx, exits) = mpsc::unbounded_channel();
            let events = manager.events();
            let grace = manager.config().grace_period;
            let mut children: Vec<Child> = Vec::with_capacity(spec.children.len());
            for (index, child) in spec.children.iter().enumerate() {
                let child_path = format!("{path}/{}", child.name);
                let started = if manager.shutdown_count() == started_at {
                    start_child(&manager, child, &path, index, &exits_tx, started_at).await
                } else {
                    Err(Error::Unavailable {
                        process: child_path.clone(),
                        reason: "the manager shut down while its supervisor was starting".into(),
                    })
                };
                let shut_down = manager.shutdown_count() != started_at;
                match started {
                    Ok(node) => {
                        announce(&events, &child_path, started_event(&node));
                        children.push(Child {
                            name: child.name.clone(),
                            path: child_path,
                            restart: child.restart,
                            type_id: type_id_of(child),
                            node,
                        });
                    }
                    Err(err) if child.optional && !shut_down => {
                        tracing::warn!(child = %child_path, %err, "optional child did not start; going on without it");
                        announce(
                            &events,
                            &child_path,
                            SupervisorEvent::ChildSkipped {
                                reason: err.to_string(),
                            },
                        );
                        children.push(Child {
                            name: child.name.clone(),
                            path: child_path,
                            restart: child.restart,
                            type_id: type_id_of(child),
                            node: Node::Absent(err.to_string()),
                        });
                    }
                    Err(err) => {
                        for started in children.iter().rev() {
                            stop_node(&started.node, grace).await;
                            announce(&events, &started.path, SupervisorEvent::ChildStopped);
                        }
                        return Err(match err {
                            Error::Spawn { process, reason } => Error::Spawn {
                                process,
                                reason: format!(
                                    "{reason} (child `{child_path}` of a supervisor; the \
                                     children started before it were stopped)"
                                ),
                            },
                            other => other,
                        });
                    }
                }
            }
            let (commands_tx, commands) = mpsc::unbounded_channel();
            let core = Arc::new(SupervisorCore {
                id: manager.next_id(),
                name: spec.name.clone(),
                path: path.clone(),
                children,
                state: watch::channel(SupervisorState::Running).0,
                commands: commands_tx,
                abandoned: watch::channel(false).0,
                stop_requested: watch::channel(false).0,
                restarts: Mutex::new(0),
                since: Mutex::new(Instant::now()),
            });
            let task = Task {
                core: core.clone(),
                strategy: spec.strategy,
                policy: spec.policy(),
                tracker: RestartTracker::new(spec.policy()),
                exits,
                own_exits: exits_tx,
                commands,
                events,
                parent,
                grace,
            };
            tokio::spawn(task.run());
            Ok(core)
        })
    }

    /// Stops every child in reverse order, for good, and waits for it.
    pub(crate) async fn stop(&self) {
        self.stop_requested.send_replace(true);
        for child in &self.children {
            if let Node::Supervisor(nested) = &child.node {
                nested.stop_requested.send_replace(true);
            }
        }
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Stop(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    async fn take_down(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::TakeDown(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    async fn restart(&self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Restart(tx))
            .map_err(|_| self.gone())?;
        rx.await.map_err(|_| self.gone())?
    }

    /// Whether it has ended for good: stopped, or failed with no parent to restart it.
    pub(crate) fn has_ended(&self) -> bool {
        *self.stop_requested.borrow()
            || *self.abandoned.borrow()
            || matches!(*self.state.borrow(), SupervisorState::Stopped)
    }

    fn gone(&self) -> Error {
        Error::Unavailable {
            process: self.path.clone(),
            reason: "the supervisor has ended".into(),
        }
    }

    /// Ends the task without touching the children: the manager is gone and abandons them.
    pub(crate) fn abandon(&self) {
        self.abandoned.send_replace(true);
        self.state.send_if_modified(|state| {
            if matches!(
                state,
                SupervisorState::Stopped | SupervisorState::Failed { .. }
            ) {
                return false;
            }
            *state = SupervisorState::Failed {
                reason: "its manager was dropped".into(),
            };
            true
        });
        for child in &self.children {
            if let Node::Supervisor(nested) = &child.node {
                nested.abandon();
            }
        }
    }

    /// This supervisor's own snapshot, followed by its children's, depth first.
    pub(crate) fn list_into(&self, out: &mut Vec<ProcessInfo>) {
        let state = match &*self.state.borrow() {
            SupervisorState::Running => ProcessState::Running {},
            SupervisorState::Restarting => ProcessState::Restarting {
                attempt: *lock(&self.restarts),
                delay: Duration::ZERO,
            },
            SupervisorState::Stopped => ProcessState::Stopped {},
            SupervisorState::Failed { reason } => ProcessState::Failed {
                reason: reason.clone(),
            },
        };
        out.push(ProcessInfo {
            id: self.id,
            name: self.name.clone(),
            version: String::new(),
            pid: None,
            state,
            restarts: *lock(&self.restarts),
            uptime: lock(&self.since).elapsed(),
            endpoint: None,
            pool: None,
            supervisor: Some(self.path.clone()),
        });
        for child in &self.children {
            match &child.node {
                Node::Process(managed) => out.push(managed.info()),
                Node::Pool(core) => {
                    let mut info = core.info();
                    info.supervisor = Some(child.path.clone());
                    out.push(info);
                    out.extend(core.members().iter().map(|member| {
                        let mut info = member.managed.info();
                        info.supervisor = Some(child.path.clone());
                        info
                    }));
                }
                Node::Supervisor(nested) => nested.list_into(out),
                Node::Absent(_) => {}
            }
        }
    }
}

fn type_id_of(child: &ChildSpec) -> Option<std::any::TypeId> {
    match &child.kind {
        ChildKind::Process { type_id, .. } | ChildKind::Pool { type_id, .. } => Some(*type_id),
        ChildKind::Supervisor(_) => None,
    }
}

async fn start_child(
    manager: &ProcessManager,
    child: &ChildSpec,
    path: &str,
    index: usize,
    exits: &mpsc::UnboundedSender<ChildExit>,
    started_at: u64,
) -> Result<Node, Error> {
    match &child.kind {
        ChildKind::Process { starter, .. } => {
            let supervised = Supervised {
                path: format!("{path}/{}", child.name),
                index,
                exits: exits.clone(),
            };
            starter(manager.clone(), supervised)
                .await
                .map(Node::Process)
        }
        ChildKind::Pool { starter, .. } => {
            let events = manager.subscribe();
            let core = starter(manager.clone()).await?;
            tokio::spawn(watch_pool(core.clone(), events, index, exits.clone()));
            Ok(Node::Pool(core))
        }
        ChildKind::Supervisor(nested) => {
            let parent = Parent {
                index,
                exits: exits.clone(),
            };
            SupervisorCore::start(
                manager.clone(),
                nested.clone(),
                Some(path),
                Some(parent),
                started_at,
            )
            .await
            .map(Node::Supervisor)
        }
    }
}

/// Reports a pool child's end to its supervisor: when it fails as a whole (every member failed
/// and none could be replaced), once per failure. Ends when the pool stops or the manager is
/// gone.
async fn watch_pool(
    core: Arc<PoolCore>,
    mut events: broadcast::Receiver<ProcessEvent>,
    index: usize,
    exits: mpsc::UnboundedSender<ChildExit>,
) {
    let mut since = Instant::now();
    let mut reported = false;
    loop {
        match events.recv().await {
            Err(broadcast::error::RecvError::Closed) => return,
            Ok(ProcessEvent::Pool { pool, event }) if pool == core.id => {
                if event == crate::events::PoolEvent::Stopped {
                    return;
                }
            }
            // A member's end, or events missed: the pool's state may have changed.
            Ok(ProcessEvent::Failed { .. } | ProcessEvent::Stopped { .. })
            | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Ok(_) => continue,
        }
        match core.info().state {
            ProcessState::Failed { reason } if !reported => {
                reported = true;
                let _ = exits.send(ChildExit {
                    index,
                    clean: false,
                    reason: format!("the pool failed: {reason}"),
                    uptime: since.elapsed(),
                });
            }
            ProcessState::Running {} if reported => {
                reported = false;
                since = Instant::now();
            }
            _ => {}
        }
    }
}

fn started_event(node: &Node) -> SupervisorEvent {
    let pid = match node {
        Node::Process(managed) => managed.info().pid,
        _ => None,
    };
    SupervisorEvent::ChildStarted { pid }
}

fn announce(events: &broadcast::Sender<ProcessEvent>, path: &str, event: SupervisorEvent) {
    let _ = events.send(ProcessEvent::Supervisor {
        path: path.to_owned(),
        event,
    });
}

/// Ends what runs in a slot for good.
async fn stop_node(node: &Node, grace: Duration) {
    match node {
        Node::Process(managed) => managed.stop(grace).await,
        Node::Pool(core) => core.stop().await,
        Node::Supervisor(nested) => nested.stop().await,
        Node::Absent(_) => {}
    }
}

/// Ends what runs in a slot so that it can be started again; whether anything was running.
async fn take_down_node(node: &Node, grace: Duration) -> bool {
    match node {
        Node::Process(managed) => managed.take_down(grace).await,
        // A pool keeps serving until its restart replaces its members.
        Node::Pool(_) => false,
        Node::Supervisor(nested) => {
            if nested.has_ended() {
                return false;
            }
            nested.take_down().await;
            true
        }
        Node::Absent(_) => false,
    }
}

/// Starts again what runs in a slot.
async fn restart_node(node: &Node) -> Result<(), Error> {
    match node {
        Node::Process(managed) => managed.restart().await,
        Node::Pool(core) => match core.info().state {
            // Nothing is left to replace: the pool's own healing already gave up.
            ProcessState::Failed { reason } => Err(Error::Unavailable {
                process: core.name.clone(),
                reason: format!("the pool cannot be restarted: {reason}"),
            }),
            _ => core.reload().await,
        },
        Node::Supervisor(nested) => nested.restart().await,
        Node::Absent(reason) => Err(Error::Unavailable {
            process: String::new(),
            reason: reason.clone(),
        }),
    }
}

/// Whether what runs in a slot has ended for good (stopped by its user, a child that will
/// not be restarted, a nested supervisor that was stopped): it stays out of group restarts.
fn node_ended(node: &Node) -> bool {
    match node {
        Node::Process(managed) => managed.is_stopped_for_good(),
        Node::Pool(core) => matches!(
            core.info().state,
            ProcessState::Stopped {} | ProcessState::Stopping {}
        ),
        Node::Supervisor(nested) => nested.has_ended(),
        Node::Absent(_) => true,
    }
}

/// Whether what runs in a slot is up (a queued exit for it is stale then).
fn node_is_up(node: &Node) -> bool {
    match node {
        Node::Process(managed) => managed.is_up(),
        Node::Pool(core) => matches!(core.info().state, ProcessState::Running {}),
        Node::Supervisor(nested) => matches!(*nested.state.borrow(), SupervisorState::Running),
        Node::Absent(_) => false,
    }
}

/// Returns once the flag is raised (never, if its sender is dropped first).
async fn until_raised(flag: &mut watch::Receiver<bool>) {
    if flag.wait_for(|raised| *raised).await.is_err() {
        std::future::pending::<()>().await;
    }
}

impl Task {
    async fn run(mut self) {
        let mut abandoned = self.core.abandoned.subscribe();
        loop {
            tokio::select! {
                () = until_raised(&mut abandoned) => return,
                Some(exit) = self.exits.recv() => {
                    if self.on_exit(exit).await.is_break() {
                        return;
                    }
                }
                Some(command) = self.commands.recv() => match command {
                    Command::TakeDown(reply) => {
                        self.take_down_all().await;
                        self.core.state.send_replace(SupervisorState::Restarting);
                        let _ = reply.send(());
                    }
                    Command::Restart(reply) => {
                        let started = self.start_all().await;
                        let _ = reply.send(started);
                    }
                    Command::Stop(reply) => {
                        self.stop_all().await;
                        let _ = reply.send(());
                        return;
                    }
                },
                else => return,
            }
        }
    }

    fn announce(&self, path: &str, event: SupervisorEvent) {
        announce(&self.events, path, event);
    }

    fn child(&self, index: usize) -> Option<&Child> {
        self.core.children.get(index)
    }

    /// Handles one child's unrequested end; `Break` when the supervisor has ended.
    async fn on_exit(&mut self, exit: ChildExit) -> std::ops::ControlFlow<()> {
        use std::ops::ControlFlow::{Break, Continue};
        if !matches!(*self.core.state.borrow(), SupervisorState::Running)
            || *self.core.stop_requested.borrow()
        {
            // Taken down by the parent, failed, or stopping: nothing to restart.
            return Continue(());
        }
        let Some(child) = self.child(exit.index) else {
            return Continue(());
        };
        if node_is_up(&child.node) || node_ended(&child.node) {
            // Restarted with a group since it ended, or stopped for good since.
            return Continue(());
        }
        let path = child.path.clone();
        let restart = match child.restart {
            ChildRestart::Permanent => true,
            ChildRestart::Transient => !exit.clean,
            ChildRestart::Temporary => false,
        };
        self.announce(
            &path,
            if exit.clean {
                SupervisorEvent::ChildExited
            } else {
                SupervisorEvent::ChildCrashed {
                    reason: exit.reason.clone(),
                }
            },
        );
        if !restart {
            stop_node(&child.node, self.grace).await;
            self.announce(&path, SupervisorEvent::ChildStopped);
            return Continue(());
        }
        let (attempt, delay) = match self.tracker.on_crash(Instant::now(), exit.uptime) {
            Decision::Restart { attempt, delay } => (attempt, delay),
            Decision::GiveUp { reason } => {
                let reason = format!("{reason}; last: `{path}` {}", exit.reason);
                self.give_up(reason).await;
                return if self.parent.is_some() {
                    Continue(())
                } else {
                    Break(())
                };
            }
        };
        let count = self.core.children.len();
        let group: Vec<usize> = match self.strategy {
            RestartStrategy::OneForOne => vec![exit.index],
            RestartStrategy::OneForAll => (0..count).collect(),
            RestartStrategy::RestForOne => (exit.index..count).collect(),
        };
        for &index in group.iter().rev() {
            if index == exit.index {
                continue;
            }
            if let Some(sibling) = self.child(index) {
                if take_down_node(&sibling.node, self.grace).await {
                    self.announce(&sibling.path, SupervisorEvent::ChildStopped);
                }
            }
        }
        self.announce(&path, SupervisorEvent::ChildRestarting { attempt, delay });
        *lock(&self.core.restarts) += 1;
        let mut abandoned = self.core.abandoned.subscribe();
        let mut stop = self.core.stop_requested.subscribe();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            () = until_raised(&mut abandoned) => return Break(()),
            // The stop command is next in the queue; the group stays down for it.
            () = until_raised(&mut stop) => return Continue(()),
        }
        for &index in &group {
            let Some(child) = self.child(index) else {
                continue;
            };
            if index != exit.index && child.restart == ChildRestart::Temporary {
                // Terminated with the group and never restarted.
                stop_node(&child.node, self.grace).await;
                continue;
            }
            if node_ended(&child.node) {
                continue;
            }
            match restart_node(&child.node).await {
                Ok(()) => {
                    let event = started_event(&child.node);
                    self.announce(&child.path, event);
                }
                Err(err) => {
                    // Handled as this child's next end: the strategy and the budget apply.
                    tracing::warn!(child = %child.path, %err, "restart failed");
                    let _ = self.own_exits.send(ChildExit {
                        index,
                        clean: false,
                        reason: format!("its restart failed: {err}"),
                        uptime: Duration::ZERO,
                    });
                    break;
                }
            }
        }
        Continue(())
    }

    /// The budget is exhausted: stop the children in reverse order and fail; a nested
    /// supervisor then reports to its parent, which decides.
    async fn give_up(&mut self, reason: String) {
        tracing::error!(supervisor = %self.core.path, %reason, "supervisor gave up");
        if self.parent.is_some() {
            self.take_down_all().await;
        } else {
            self.stop_children().await;
        }
        self.core.state.send_replace(SupervisorState::Failed {
            reason: reason.clone(),
        });
        self.announce(
            &self.core.path.clone(),
            SupervisorEvent::GaveUp {
                reason: reason.clone(),
            },
        );
        if let Some(parent) = &self.parent {
            let uptime = lock(&self.core.since).elapsed();
            let _ = parent.exits.send(ChildExit {
                index: parent.index,
                clean: false,
                reason: format!("supervisor `{}` gave up: {reason}", self.core.path),
                uptime,
            });
        }
    }

    async fn take_down_all(&mut self) {
        for child in self.core.children.iter().rev() {
            if take_down_node(&child.node, self.grace).await {
                announce(&self.events, &child.path, SupervisorEvent::ChildStopped);
            }
        }
    }

    async fn stop_children(&mut self) {
        for child in self.core.children.iter().rev() {
            let running = node_is_up(&child.node);
            stop_node(&child.node, self.grace).await;
            if running {
                announce(&self.events, &child.path, SupervisorEvent::ChildStopped);
            }
        }
    }

    async fn stop_all(&mut self) {
        self.stop_children().await;
        if !matches!(*self.core.state.borrow(), SupervisorState::Failed { .. }) {
            self.core.state.send_replace(SupervisorState::Stopped);
        }
        let path = self.core.path.clone();
        self.announce(&path, SupervisorEvent::Stopped);
    }

    /// Starts every child again in order with a fresh budget (the parent restarts this
    /// supervisor). On a failure, the children started are taken down again.
    async fn start_all(&mut self) -> Result<(), Error> {
        self.tracker = RestartTracker::new(self.policy);
        // Exits queued before the restart belong to incarnations already ended.
        while self.exits.try_recv().is_ok() {}
        for child in &self.core.children {
            if child.restart == ChildRestart::Temporary || matches!(child.node, Node::Absent(_)) {
                continue;
            }
            if let Err(err) = restart_node(&child.node).await {
                self.take_down_all().await;
                return Err(err);
            }
            announce(&self.events, &child.path, started_event(&child.node));
        }
        *lock(&self.core.since) = Instant::now();
        self.core.state.send_replace(SupervisorState::Running);
        Ok(())
    }
}
