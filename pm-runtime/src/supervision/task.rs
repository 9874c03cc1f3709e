//! A supervisor's task: the one owner of its restart budget, deciding after each child's
//! end (strategy, restart type, budget), and serving its parent's and handle's commands.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pm_core::Error;
use tokio::sync::{broadcast, mpsc, watch};

use super::node::*;
use super::spec::{ChildRestart, RestartStrategy};
use super::tree::*;
use super::{SupervisorEvent, SupervisorState};
use crate::events::ProcessEvent;
use crate::managed::ChildExit;
use crate::restart_policy::{Decision, RestartTracker};

/// What the task owns besides the core.
pub(super) struct Task {
    pub(super) core: Arc<SupervisorCore>,
    pub(super) strategy: RestartStrategy,
    pub(super) policy: pm_core::RestartPolicy,
    pub(super) tracker: RestartTracker,
    pub(super) exits: mpsc::UnboundedReceiver<ChildExit>,
    /// For starts that fail during a restart: they are handled as the child's next exit.
    pub(super) own_exits: mpsc::UnboundedSender<ChildExit>,
    pub(super) commands: mpsc::UnboundedReceiver<Command>,
    pub(super) events: broadcast::Sender<ProcessEvent>,
    pub(super) parent: Option<Parent>,
    pub(super) grace: Duration,
}

/// Returns once the flag is raised (never, if its sender is dropped first).
async fn until_raised(flag: &mut watch::Receiver<bool>) {
    if flag.wait_for(|raised| *raised).await.is_err() {
        std::future::pending::<()>().await;
    }
}

impl Task {
    pub(super) async fn run(mut self) {
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
                        reason: pm_core::CrashReason::StartFailed {
                            error: err.to_string(),
                        },
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
                reason: pm_core::CrashReason::GroupFailed {
                    detail: format!("supervisor `{}` gave up: {reason}", self.core.path),
                },
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
