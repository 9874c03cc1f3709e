//! Ending incarnations: the commands that stop, kill or take down a process (their urgent
//! part done by the caller, the rest by the process's owner), and the one function that
//! makes sure an incarnation has ended.

use super::owner::{Command, Owner};
use super::*;

impl Managed {
    /// Sends a command to the process's owner.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the owner is gone (its runtime shut down).
    pub(super) fn command(&self, command: Command) -> Result<(), Error> {
        self.commands
            .send(command)
            .map_err(|_| self.unavailable("its runtime is gone"))
    }

    /// Stops gracefully: refuse new calls, ask the process to shut down (hooks, drain within
    /// `grace`), then SIGTERM, then SIGKILL; always reaps. Never followed by a restart.
    ///
    /// The owner does the teardown, so a caller that gives up on this future (a timeout
    /// around it) does not leave the process half stopped. A second stop waits for the
    /// first.
    pub(crate) async fn stop(&self, grace: Duration) {
        if !self.stopping.swap(true, Ordering::SeqCst) {
            self.stop_signal.send_replace(true);
            {
                let mut status = lock(&self.status);
                if !Self::is_final(&status.state) {
                    status.state = ProcessState::Stopping {};
                }
            }
            self.close_link("it was stopped");
        }
        let (done, stopped) = tokio::sync::oneshot::channel();
        if self.command(Command::Stop { grace, done }).is_ok() {
            let _ = stopped.await;
        } else {
            // The owner is gone with its runtime, and has ended what it held.
            self.close_link("it was stopped");
            self.mark_stopped();
        }
    }

    /// For a supervisor restarting this process with its siblings: ends the running
    /// incarnation gracefully (as `stop` does) but not for good: callers wait for the next
    /// incarnation, which [`Managed::restart`] starts. Returns whether an incarnation was
    /// running. Does nothing to a process that was stopped or killed.
    pub(crate) async fn take_down(&self, grace: Duration) -> bool {
        let (done, taken) = tokio::sync::oneshot::channel();
        if self.command(Command::TakeDown { grace, done }).is_err() {
            return false;
        }
        taken.await.unwrap_or(false)
    }

    /// For a supervisor: starts a new incarnation of a process whose last one has ended
    /// (after a crash, or `take_down`), counted as a restart. Calls waiting meanwhile go to
    /// it.
    ///
    /// # Errors
    /// As for the first start; [`Error::Unavailable`] when the process was stopped.
    pub(crate) async fn restart(&self) -> Result<(), Error> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err(self.unavailable("it was stopped"));
        }
        lock(&self.status).restarts += 1;
        self.start_incarnation().await
    }

    /// Whether a stop or kill has begun: the process never runs again.
    pub(crate) fn is_stopped_for_good(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Whether an incarnation is up and taking calls.
    pub(crate) fn is_up(&self) -> bool {
        matches!(&*self.link.borrow(), Link::Up(conn) if !conn.is_closed())
    }

    /// Ends the process at once (SIGKILL for a child's whole group), without hooks and
    /// without restart. Does not wait behind a graceful stop in progress to send the signal.
    ///
    /// Like `stop`, the owner finishes the teardown, so giving up on this future does not
    /// leave it half done.
    pub(crate) async fn kill(&self) {
        self.kill_signal();
        let (done, killed) = tokio::sync::oneshot::channel();
        let command = Command::Kill {
            done: Some(done),
            hold: None,
        };
        if self.command(command).is_ok() {
            let _ = killed.await;
        } else {
            // The owner is gone with its runtime, and has ended what it held.
            self.mark_stopped();
        }
    }

    /// `kill` without waiting: signals at once; the owner finishes, holding the process
    /// until it has (the caller may be letting go of the last handle).
    pub(crate) fn kill_in_background(self: &Arc<Self>) {
        self.kill_signal();
        let _ = self.command(Command::Kill {
            done: None,
            hold: Some(self.clone()),
        });
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

    /// Teardown for when the manager is dropped without `shutdown`: kills a child's group at
    /// once; the owner closes a worker's or in-process instance's connection (or, when the
    /// runtime is gone too, the owner's drop does).
    pub(crate) fn abandon(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.stop_signal.send_replace(true);
        let pid = self.current_pid.load(Ordering::SeqCst);
        if pid != 0 {
            signal_group(pid, libc::SIGKILL);
        }
        let gone = self.unavailable("its manager was dropped");
        // Calls in flight end now, with why, not later as a killed process's.
        if let Link::Up(conn) = &*self.link.borrow() {
            conn.abort(gone.clone());
        }
        self.link.send_replace(Link::Gone(gone));
        let _ = self.command(Command::Kill {
            done: None,
            hold: None,
        });
    }
}

impl Owner {
    /// The owner's part of `stop`.
    pub(super) async fn stop(&mut self, m: &Managed, grace: Duration) {
        self.restart_at = None;
        // Again here: a start that checked `stopping` just before it was raised may have
        // published since; only the owner publishes an incarnation.
        m.close_link("it was stopped");
        if let Some(incarnation) = self.current.take() {
            end_gracefully(m, incarnation, grace, "it was stopped").await;
        }
        m.current_pid.store(0, Ordering::SeqCst);
        m.mark_stopped();
    }

    /// The owner's part of `kill` and `abandon`.
    pub(super) async fn kill(&mut self, m: &Managed) {
        self.restart_at = None;
        if !matches!(&*m.link.borrow(), Link::Gone(_)) {
            m.close_link("it was killed");
        }
        if let Some(Incarnation {
            rpc,
            mut exit,
            control,
            ..
        }) = self.current.take()
        {
            rpc.abort(Error::ProcessExited {
                process: m.name.clone(),
                reason: "it was killed".into(),
            });
            drop(rpc);
            end_incarnation(control, &mut exit, Duration::ZERO).await;
        }
        m.current_pid.store(0, Ordering::SeqCst);
        m.mark_stopped();
    }

    /// The owner's part of `take_down`.
    pub(super) async fn take_down(&mut self, m: &Managed, grace: Duration) -> bool {
        if m.stopping.load(Ordering::SeqCst) {
            return false;
        }
        let Some(incarnation) = self.current.take() else {
            return false;
        };
        m.link.send_replace(Link::Down);
        m.publish_course(ProcessState::Stopping {}, None, |_| {});
        end_gracefully(
            m,
            incarnation,
            grace,
            "it is being restarted by its supervisor",
        )
        .await;
        m.forget_pid(lock(&m.status).pid);
        // Not `Stopped`, which is final: the supervisor starts it again next (or stops it for
        // good, which then announces `Stopped`).
        let attempt = lock(&m.status).restarts.saturating_add(1);
        m.publish_course(
            ProcessState::Restarting {
                attempt,
                delay: Duration::ZERO,
            },
            None,
            |status| {
                status.pid = None;
                status.up_since = None;
            },
        );
        true
    }

    /// Ends the running incarnation on the manager's initiative (the monitor's verdict), so
    /// that what oversees the process restarts it; `reason` is reported instead of the bare
    /// exit status. Only the incarnation of `rpc` is ended: one that ended meanwhile has its
    /// own reason.
    pub(super) fn recycle(
        &mut self,
        m: &Managed,
        rpc: &std::sync::Weak<RpcConnection>,
        reason: pm_core::CrashReason,
    ) {
        let Some(current) = self.current.as_ref() else {
            return;
        };
        if !std::ptr::eq(Arc::as_ptr(&current.rpc), rpc.as_ptr()) || current.rpc.is_closed() {
            return;
        }
        // An incarnation that has already ended on its own keeps its own reason: the
        // verdict came too late to be why it died.
        if current.exit.borrow().is_some() {
            return;
        }
        tracing::warn!(process = %m.name, id = %m.id, %reason, "restarting the process");
        current.rpc.abort(Error::ProcessExited {
            process: m.name.clone(),
            reason: reason.to_string(),
        });
        self.recycle_reason = Some(reason);
        if let Control::Child { pid } = &current.control {
            signal_group(*pid, libc::SIGKILL);
        }
    }
}

/// Ends a taken incarnation the graceful way: ask for a shutdown (hooks, drain within
/// `grace`), then SIGTERM, then SIGKILL, and reap; calls still waiting end with `why`.
async fn end_gracefully(m: &Managed, incarnation: Incarnation, grace: Duration, why: &str) {
    let Incarnation {
        rpc,
        mut exit,
        control,
        ..
    } = incarnation;
    // An attached process belongs to its orchestrator: detach, do not shut it down.
    let answered = if m.spec.attach_to.is_some() {
        true
    } else {
        let asked =
            tokio::time::timeout(grace.saturating_add(SHUTDOWN_SLACK), rpc.shutdown(grace)).await;
        matches!(asked, Ok(Ok(())))
    };
    if !answered {
        tracing::warn!(process = %m.name, id = %m.id, "no answer to the shutdown request within the grace period");
    }
    rpc.abort(m.unavailable(why));
    drop(rpc);
    // A process that answered exits by itself; one that did not gets SIGTERM now.
    let patience = if answered { EXIT_WAIT } else { Duration::ZERO };
    end_incarnation(control, &mut exit, patience).await;
}

pub(super) async fn wait_exit(exit: &mut ExitReceiver, within: Duration) -> bool {
    matches!(
        tokio::time::timeout(within, exit.wait_for(Option::is_some)).await,
        Ok(Ok(_))
    )
}

/// Makes sure an incarnation has ended: waits `patience` for it to exit by itself, then
/// SIGTERM and SIGKILL for a child (whose whole process group is killed in the end, so no
/// descendant survives), abort for an in-process task; a worker thread is joined once it ends.
pub(super) async fn end_incarnation(control: Control, exit: &mut ExitReceiver, patience: Duration) {
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
