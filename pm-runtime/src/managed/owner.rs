//! The one owner of a process's incarnation: a task that holds the running incarnation, the
//! reason the manager gave for ending it, and the restart budget, and takes commands (start,
//! stop, kill, take down, recycle) one at a time, beside the incarnation's own end and a
//! restart falling due.
//!
//! What must act before the owner gets to a command is done by the caller first, through
//! signals the owner and the start in progress watch: a stop or kill raises `stopping` and the
//! stop signal (cutting a handshake short), a kill also SIGKILLs the published pid at once, so
//! neither waits behind a graceful stop or a slow `init`. Everything else is the owner's.

use std::sync::Weak;

use tokio::sync::{mpsc, oneshot};

use super::*;

/// What a caller asks of the owner.
pub(super) enum Command {
    /// Start an incarnation (the first, or a supervisor's restart); answer how it went.
    Start(oneshot::Sender<Result<(), Error>>),
    /// End the running incarnation gracefully, for good.
    Stop {
        grace: Duration,
        done: oneshot::Sender<()>,
    },
    /// End the running incarnation at once, for good. A kill nobody waits for holds the
    /// process, so that it is handled even when the caller let go of the last handle.
    Kill {
        done: Option<oneshot::Sender<()>>,
        hold: Option<Arc<Managed>>,
    },
    /// End the running incarnation gracefully, to be started again; answer whether one ran.
    TakeDown {
        grace: Duration,
        done: oneshot::Sender<bool>,
    },
    /// End the incarnation of this connection (the monitor's verdict), with `reason`.
    Recycle {
        rpc: std::sync::Weak<RpcConnection>,
        reason: pm_core::CrashReason,
    },
}

/// The owner's state.
pub(super) struct Owner {
    pub(super) managed: Weak<Managed>,
    /// For cleaning up once the process is gone.
    pub(super) name: String,
    pub(super) commands: mpsc::UnboundedReceiver<Command>,
    /// The running incarnation.
    pub(super) current: Option<Incarnation>,
    /// Why the manager itself ended the current incarnation (memory limit, failed health
    /// checks), reported instead of the bare exit status.
    pub(super) recycle_reason: Option<pm_core::CrashReason>,
    /// The process's own restart budget; `None` under a supervisor, which decides.
    pub(super) tracker: Option<RestartTracker>,
    /// When the restart the budget allowed is due.
    pub(super) restart_at: Option<tokio::time::Instant>,
}

/// What woke the owner.
enum Event {
    Command(Command),
    Ended,
    RestartDue,
    Gone,
}

/// Completes when the incarnation ends: its process exits or its connection closes.
async fn ended(current: Option<&mut Incarnation>) {
    let Some(incarnation) = current else {
        return std::future::pending().await;
    };
    let Incarnation { exit, rpc, .. } = incarnation;
    tokio::select! {
        exited = exit.wait_for(Option::is_some) => drop(exited),
        () = rpc.closed() => {}
    }
}

async fn due(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Owner {
    /// Serves until the process is dropped.
    pub(super) async fn run(mut self) {
        loop {
            let event = {
                let ended = ended(self.current.as_mut());
                let due = due(self.restart_at);
                tokio::select! {
                    // A command first: a stop that comes with a crash owns the ending.
                    biased;
                    command = self.commands.recv() => match command {
                        Some(command) => Event::Command(command),
                        None => Event::Gone,
                    },
                    () = ended => Event::Ended,
                    () = due => Event::RestartDue,
                }
            };
            let Some(managed) = self.managed.upgrade() else {
                return;
            };
            match event {
                Event::Gone => return,
                Event::Command(Command::Start(reply)) => {
                    let started = self.start(&managed).await;
                    let _ = reply.send(started);
                }
                Event::Command(Command::Stop { grace, done }) => {
                    self.stop(&managed, grace).await;
                    let _ = done.send(());
                }
                Event::Command(Command::Kill { done, hold }) => {
                    self.kill(&managed).await;
                    drop(hold);
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                }
                Event::Command(Command::TakeDown { grace, done }) => {
                    let ran = self.take_down(&managed, grace).await;
                    let _ = done.send(ran);
                }
                Event::Command(Command::Recycle { rpc, reason }) => {
                    self.recycle(&managed, &rpc, reason);
                }
                Event::Ended => self.on_end(&managed).await,
                Event::RestartDue => {
                    self.restart_at = None;
                    self.restart_due(&managed).await;
                }
            }
        }
    }
}

impl Drop for Owner {
    /// The owner is gone: the process was dropped, or the runtime it was spawned on shut
    /// down. End what it still holds without waiting, as a dropped manager does; a process
    /// that lives on (its runtime gone) ends for good, so its callers fail instead of waiting.
    fn drop(&mut self) {
        if let Some(managed) = self.managed.upgrade() {
            managed.stopping.store(true, Ordering::SeqCst);
            managed.stop_signal.send_replace(true);
            managed
                .link
                .send_replace(Link::Gone(managed.unavailable("its runtime is gone")));
            let pid = managed.current_pid.swap(0, Ordering::SeqCst);
            if pid != 0 {
                signal_group(pid, libc::SIGKILL);
            }
            managed.mark_stopped();
        }
        if let Some(incarnation) = self.current.take() {
            incarnation.rpc.abort(Error::Unavailable {
                process: self.name.clone(),
                reason: "its manager was dropped".into(),
            });
            match incarnation.control {
                Control::Child { pid } => signal_group(pid, libc::SIGKILL),
                Control::Inline { task } => task.abort(),
                Control::Worker { .. } | Control::Attached { .. } => {}
            }
        }
    }
}
