//! What is done to one child's slot: start it, stop it for good, take it down for a group
//! restart, start it again, and tell whether it is up or ended; a pool child's watcher.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pm_core::{Error, ProcessState};
use tokio::sync::{broadcast, mpsc};

use super::spec::{ChildKind, ChildSpec};
use super::tree::*;
use super::{SupervisorEvent, SupervisorState};
use crate::events::ProcessEvent;
use crate::managed::{ChildExit, Supervised};
use crate::manager::ProcessManager;
use crate::pool::PoolCore;

pub(super) fn type_id_of(child: &ChildSpec) -> Option<std::any::TypeId> {
    match &child.kind {
        ChildKind::Process { type_id, .. } | ChildKind::Pool { type_id, .. } => Some(*type_id),
        ChildKind::Supervisor(_) => None,
    }
}

pub(super) async fn start_child(
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
pub(super) async fn watch_pool(
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
                    reason: pm_core::CrashReason::GroupFailed {
                        detail: format!("the pool failed: {reason}"),
                    },
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

pub(super) fn started_event(node: &Node) -> SupervisorEvent {
    let pid = match node {
        Node::Process(managed) => managed.info().pid,
        _ => None,
    };
    SupervisorEvent::ChildStarted { pid }
}

pub(super) fn announce(
    events: &broadcast::Sender<ProcessEvent>,
    path: &str,
    event: SupervisorEvent,
) {
    let _ = events.send(ProcessEvent::Supervisor {
        path: path.to_owned(),
        event,
    });
}

/// Ends what runs in a slot for good.
pub(super) async fn stop_node(node: &Node, grace: Duration) {
    match node {
        Node::Process(managed) => managed.stop(grace).await,
        Node::Pool(core) => core.stop().await,
        Node::Supervisor(nested) => nested.stop().await,
        Node::Absent(_) => {}
    }
}

/// Ends what runs in a slot so that it can be started again; whether anything was running.
pub(super) async fn take_down_node(node: &Node, grace: Duration) -> bool {
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
pub(super) async fn restart_node(node: &Node) -> Result<(), Error> {
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
pub(super) fn node_ended(node: &Node) -> bool {
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
pub(super) fn node_is_up(node: &Node) -> bool {
    match node {
        Node::Process(managed) => managed.is_up(),
        Node::Pool(core) => matches!(core.info().state, ProcessState::Running {}),
        Node::Supervisor(nested) => matches!(*nested.state.borrow(), SupervisorState::Running),
        Node::Absent(_) => false,
    }
}
