//! A running supervisor's shared core: its children (fixed once started), its published
//! state, and the commands its task takes. The task itself is in `task`; what is done to one
//! child's slot is in `node`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pm_core::{Error, ProcessId, ProcessInfo, ProcessState};
use tokio::sync::{mpsc, oneshot, watch};

use super::node::*;
use super::spec::{ChildRestart, SupervisorSpec};
use super::task::*;
use super::{SupervisorEvent, SupervisorState};
use crate::managed::{ChildExit, Managed};
use crate::manager::ProcessManager;
use crate::pool::PoolCore;
use crate::process::BoxFuture;
use crate::restart_policy::RestartTracker;

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
pub(super) enum Command {
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
    pub(super) commands: mpsc::UnboundedSender<Command>,
    /// Raised when the manager is dropped: the task ends without touching anything.
    pub(super) abandoned: watch::Sender<bool>,
    /// Raised by `stop` before its command is sent, so a restart waiting out its backoff
    /// gives way to the stop at once.
    pub(super) stop_requested: watch::Sender<bool>,
    pub(super) restarts: Mutex<u32>,
    pub(super) since: Mutex<Instant>,
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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

    pub(super) async fn take_down(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::TakeDown(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    pub(super) async fn restart(&self) -> Result<(), Error> {
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
