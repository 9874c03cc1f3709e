//! Watching a running incarnation and handling its unrequested end.
//!
//! The process does not decide its own restart: it reports the end to its [`Overseer`]. A
//! process on its own is overseen by its restart policy, applied here; a process in a
//! supervision tree reports to its supervisor, which decides for it and its siblings.

use super::teardown::end_incarnation;
use super::*;
use crate::restart_policy::Decision;

/// How an incarnation ended without being asked to, as reported to a supervisor.
#[derive(Debug, Clone)]
pub(crate) struct ChildExit {
    /// Which of the supervisor's children.
    pub(crate) index: usize,
    /// Exit code 0 after the process's own decision (a recycle by the manager is no clean
    /// exit).
    pub(crate) clean: bool,
    /// How it ended.
    pub(crate) reason: String,
    /// How long the incarnation had been up.
    pub(crate) uptime: Duration,
}

/// Who decides what happens after an unrequested end.
#[derive(Debug)]
pub(crate) enum Overseer {
    /// The process's own restart policy.
    OwnPolicy(Mutex<RestartTracker>),
    /// A supervisor, told through this channel which child ended and how.
    Supervisor {
        index: usize,
        exits: tokio::sync::mpsc::UnboundedSender<ChildExit>,
    },
}

impl Managed {
    /// Watches one incarnation; on an unrequested end, reports it to the overseer.
    pub(super) async fn supervise(
        self: Arc<Self>,
        mut exit: ExitReceiver,
        rpc: Arc<RpcConnection>,
    ) {
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
        let uptime = lock(&self.status)
            .up_since
            .map(|t| t.elapsed())
            .unwrap_or_default();
        if let Overseer::Supervisor { index, exits } = &self.overseer {
            if clean {
                tracing::info!(process = %self.name, id = %self.id, %reason, "process exited cleanly");
                // No longer running; the supervisor restarts it or stops it for good.
                let attempt = lock(&self.status).restarts.saturating_add(1);
                self.publish_course(
                    ProcessState::Restarting {
                        attempt,
                        delay: Duration::ZERO,
                    },
                    None,
                    |status| status.up_since = None,
                );
            } else {
                self.announce_crash(&reason);
            }
            // The link stays down: callers wait for what the supervisor decides.
            let _ = exits.send(ChildExit {
                index: *index,
                clean,
                reason,
                uptime,
            });
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
        if self.announce_crash(&reason) {
            self.restart_after_crash(uptime, reason).await;
        }
    }

    /// Publishes a crash: the state, the event, the log line. Returns whether it was
    /// published (not when a stop has begun).
    pub(crate) fn announce_crash(&self, reason: &str) -> bool {
        tracing::warn!(process = %self.name, id = %self.id, %reason, "process crashed");
        self.note_health(pm_core::HealthState::Unhealthy);
        self.publish_course(
            ProcessState::Crashed {
                reason: reason.to_owned(),
            },
            Some(ProcessEvent::Crashed {
                id: self.id,
                reason: reason.to_owned(),
            }),
            |_| {},
        )
    }

    async fn restart_after_crash(self: Arc<Self>, mut uptime: Duration, mut reason: String) {
        loop {
            let Overseer::OwnPolicy(tracker) = &self.overseer else {
                return;
            };
            let decision = lock(tracker).on_crash(Instant::now(), uptime);
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
}
