//! Ending incarnations: stop, kill and abandon, and the one function that makes sure an
//! incarnation has ended.

use super::*;

impl Managed {
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
        if let Some(incarnation) = slot.take() {
            self.end_gracefully(incarnation, grace, "it was stopped")
                .await;
        }
        self.current_pid.store(0, Ordering::SeqCst);
        drop(slot);
        self.mark_stopped();
    }

    /// Ends a taken incarnation the graceful way: ask for a shutdown (hooks, drain within
    /// `grace`), then SIGTERM, then SIGKILL, and reap; calls still waiting end with `why`.
    async fn end_gracefully(&self, incarnation: Incarnation, grace: Duration, why: &str) {
        let Incarnation {
            rpc,
            mut exit,
            control,
            ..
        } = incarnation;
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
        rpc.abort(self.unavailable(why));
        drop(rpc);
        // A process that answered exits by itself; one that did not gets SIGTERM now.
        let patience = if answered { EXIT_WAIT } else { Duration::ZERO };
        end_incarnation(control, &mut exit, patience).await;
    }

    /// For a supervisor restarting this process with its siblings: ends the running
    /// incarnation gracefully (as `stop` does) but not for good: callers wait for the next
    /// incarnation, which [`Managed::restart`] starts. Returns whether an incarnation was
    /// running. Does nothing to a process that was stopped or killed.
    pub(crate) async fn take_down(self: &Arc<Self>, grace: Duration) -> bool {
        let this = self.clone();
        tokio::spawn(async move {
            let mut slot = this.incarnation.lock().await;
            if this.stopping.load(Ordering::SeqCst) {
                return false;
            }
            let Some(incarnation) = slot.take() else {
                return false;
            };
            this.link.send_replace(Link::Down);
            this.publish_course(ProcessState::Stopping {}, None, |_| {});
            this.end_gracefully(
                incarnation,
                grace,
                "it is being restarted by its supervisor",
            )
            .await;
            this.forget_pid(lock(&this.status).pid);
            // Not `Stopped`, which is final: the supervisor starts it again next (or stops
            // it for good, which then announces `Stopped`).
            let attempt = lock(&this.status).restarts.saturating_add(1);
            this.publish_course(
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
        })
        .await
        .unwrap_or(false)
    }

    /// For a supervisor: starts a new incarnation of a process whose last one has ended
    /// (after a crash, or `take_down`), counted as a restart. Calls waiting meanwhile go to
    /// it.
    ///
    /// # Errors
    /// As for the first start; [`Error::Unavailable`] when the process was stopped.
    pub(crate) async fn restart(self: &Arc<Self>) -> Result<(), Error> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err(self.unavailable("it was stopped"));
        }
        lock(&self.status).restarts += 1;
        let this = self.clone();
        tokio::spawn(async move { this.start_incarnation().await })
            .await
            .unwrap_or_else(|err| {
                Err(Error::Spawn {
                    process: self.name.clone(),
                    reason: format!("the restart failed: {err}"),
                })
            })
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
