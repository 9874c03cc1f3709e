//! Handling an incarnation's unrequested end.
//!
//! The process does not decide its own restart: its owner reports the end to whoever
//! oversees the process. A process on its own is overseen by its restart policy, applied
//! here; a process in a supervision tree reports to its supervisor, which decides for it and
//! its siblings.

use super::owner::Owner;
use super::teardown::end_incarnation;
use super::*;
use crate::restart_policy::Decision;
use pm_core::CrashReason;

/// How an incarnation ended without being asked to, as reported to a supervisor.
#[derive(Debug, Clone)]
pub(crate) struct ChildExit {
    /// Which of the supervisor's children.
    pub(crate) index: usize,
    /// Exit code 0 after the process's own decision (a recycle by the manager is no clean
    /// exit).
    pub(crate) clean: bool,
    /// How it ended.
    pub(crate) reason: CrashReason,
    /// How long the incarnation had been up.
    pub(crate) uptime: Duration,
}

impl Owner {
    /// The running incarnation ended without being asked to: end it for sure, then report.
    pub(super) async fn on_end(&mut self, m: &Arc<Managed>) {
        if m.stopping.load(Ordering::SeqCst) {
            // A stop or kill has begun; its command, sent right after, owns the ending.
            tokio::task::yield_now().await;
            return;
        }
        let Some(Incarnation {
            rpc,
            mut exit,
            control,
            ..
        }) = self.current.take()
        else {
            return;
        };
        m.link.send_replace(Link::Down);
        if m.stopping.load(Ordering::SeqCst) {
            // A stop raised just now published `Gone`: keep its callers from waiting on
            // `Down` until its command is handled.
            m.link
                .send_replace(Link::Gone(m.unavailable("it was stopped")));
        }
        end_incarnation(control, &mut exit, Duration::ZERO).await;
        m.current_pid.store(0, Ordering::SeqCst);
        lock(&m.status).pid = None;
        let ended = exit.borrow().clone();
        let recycled = self.recycle_reason.take();
        let clean = ended.as_ref().is_some_and(|e| e.clean) && recycled.is_none();
        // The manager's own verdict (memory, health) is the reason, not the SIGKILL it sent.
        let reason = match (recycled, ended) {
            (Some(why), _) => why,
            (None, Some(how)) => how.reason,
            (None, None) => CrashReason::Disconnected {
                detail: "connection closed".to_owned(),
            },
        };
        // Calls still waiting on the old connection end now, even if its socket stays open
        // (a descendant of the process may hold a copy of it).
        rpc.abort(Error::ProcessExited {
            process: m.name.clone(),
            reason: reason.to_string(),
        });
        drop(rpc);
        if m.stopping.load(Ordering::SeqCst) {
            return;
        }
        let uptime = lock(&m.status)
            .up_since
            .map(|t| t.elapsed())
            .unwrap_or_default();
        if let Some(Supervised { index, exits, .. }) = &m.supervised {
            if clean {
                tracing::info!(process = %m.name, id = %m.id, %reason, "process exited cleanly");
                // No longer running; the supervisor restarts it or stops it for good.
                let attempt = lock(&m.status).restarts.saturating_add(1);
                m.publish_course(
                    ProcessState::Restarting {
                        attempt,
                        delay: Duration::ZERO,
                    },
                    None,
                    |status| status.up_since = None,
                );
            } else {
                m.announce_crash(&reason);
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
        if clean && m.restart_on == RestartOn::OnFailure {
            tracing::info!(process = %m.name, id = %m.id, %reason, "process exited cleanly; not restarting");
            m.link.send_replace(Link::Gone(
                m.unavailable(format!("it exited cleanly ({reason})")),
            ));
            m.mark_stopped();
            return;
        }
        if m.announce_crash(&reason) {
            self.decide(m, uptime, &reason);
        }
    }

    /// Applies the process's own restart policy after a crash (or a restart that failed):
    /// schedule the restart, or give up for good.
    fn decide(&mut self, m: &Managed, uptime: Duration, reason: &dyn std::fmt::Display) {
        let Some(tracker) = self.tracker.as_mut() else {
            return;
        };
        match tracker.on_crash(Instant::now(), uptime) {
            Decision::GiveUp { reason: why } => {
                m.fail(format!("{why}; last crash: {reason}"));
            }
            Decision::Restart { attempt, delay } => {
                let restarting = m.publish_course(
                    ProcessState::Restarting { attempt, delay },
                    Some(ProcessEvent::Restarting {
                        id: m.id,
                        attempt,
                        delay,
                    }),
                    |_| {},
                );
                if restarting {
                    // A stop meanwhile is a command, handled before this falls due.
                    self.restart_at = Some(tokio::time::Instant::now() + delay);
                }
            }
        }
    }

    /// The backoff is over: start again, or decide again if that fails.
    pub(super) async fn restart_due(&mut self, m: &Arc<Managed>) {
        if m.stopping.load(Ordering::SeqCst) {
            return;
        }
        lock(&m.status).restarts += 1;
        match self.start(m).await {
            Ok(()) => {}
            Err(_) if m.stopping.load(Ordering::SeqCst) => {}
            Err(err) => {
                tracing::warn!(process = %m.name, %err, "restart failed");
                self.decide(m, Duration::ZERO, &err);
            }
        }
    }
}

impl Managed {
    /// Publishes a crash: the state, the event, the log line. Returns whether it was
    /// published (not when a stop has begun).
    pub(crate) fn announce_crash(&self, reason: &CrashReason) -> bool {
        tracing::warn!(process = %self.name, id = %self.id, %reason, "process crashed");
        self.note_health(pm_core::HealthState::Unhealthy);
        self.publish_course(
            ProcessState::Crashed {
                reason: reason.clone(),
            },
            Some(ProcessEvent::Crashed {
                id: self.id,
                reason: reason.clone(),
            }),
            |_| {},
        )
    }
}
