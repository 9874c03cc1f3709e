//! Starting an incarnation: launch, connect, handshake and `init`, then publishing it.

use super::owner::{Command, Owner};
use super::teardown::{end_incarnation, wait_exit};
use super::*;

impl Managed {
    /// Starts an incarnation: launch, handshake, init. On failure nothing is left running.
    /// The process's owner does the work, so a caller that gives up on this future does not
    /// leave a start half done.
    pub(crate) async fn start_incarnation(&self) -> Result<(), Error> {
        let (reply, started) = tokio::sync::oneshot::channel();
        self.command(Command::Start(reply))?;
        started
            .await
            .unwrap_or_else(|_| Err(self.unavailable("it is gone")))
    }

    /// Connects to a launched incarnation (when it listens) and runs the handshake. On
    /// failure, also says whether the process's own exit may explain it.
    async fn establish(
        &self,
        reach: Reach,
    ) -> Result<(pm_transport::Connection, crate::rpc::handshake::Greeting), (Error, bool)> {
        let mut conn = match reach {
            Reach::Connected(conn) => conn,
            Reach::Listening(address) => {
                let max = self.spec.limits.max_frame_size;
                let connecting = pm_transport::connect(&address, self.spec.token.as_str(), max);
                match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
                    Ok(Ok(conn)) => conn,
                    outcome => {
                        let reason = match outcome {
                            Ok(Err(err)) => format!("could not connect to {address}: {err}"),
                            _ => {
                                format!("could not connect to {address} within {CONNECT_TIMEOUT:?}")
                            }
                        };
                        let error = Error::Spawn {
                            process: self.name.clone(),
                            reason,
                        };
                        return Err((error, false));
                    }
                }
            }
        };
        let greeting = handshake(
            &mut conn,
            &self.identity,
            self.schema,
            &self.spec.token,
            self.dependencies.clone(),
            self.spec.limits.max_frame_size,
            HANDSHAKE_TIMEOUT,
        )
        .await
        .map_err(|err| (err, true))?;
        Ok((conn, greeting))
    }
}

impl Owner {
    /// The owner's start: nothing else happens to the process meanwhile, so a `stop` or
    /// `kill` (which raise `stopping` and the stop signal first, cutting the handshake short)
    /// is handled once this start has ended what it launched: a `shutdown` racing a spawn
    /// leaves nothing running.
    pub(super) async fn start(&mut self, m: &Arc<Managed>) -> Result<(), Error> {
        if !m.publish_course(ProcessState::Starting {}, None, |_| {}) {
            return Err(m.unavailable("it was stopped"));
        }
        let Launched {
            reach,
            dir,
            mut exit,
            control,
        } = (m.launcher)(&m.spec)?;
        // A child's pid is the one the manager launched, never what the process says. It is
        // published at once, so a `kill` during the handshake reaches the child: `kill` raises
        // `stopping` and then reads the pid, this stores the pid and then reads `stopping`
        // (both sequentially consistent), so at least one of the two sees the other.
        let child_pid = match control {
            Control::Child { pid } => Some(pid),
            _ => None,
        };
        if let Some(pid) = child_pid {
            m.current_pid.store(pid, Ordering::SeqCst);
            lock(&m.status).pid = Some(pid);
        }
        m.emit(ProcessEvent::Spawned {
            id: m.id,
            name: m.name.clone(),
        });
        let endpoint = match &reach {
            Reach::Connected(_) => None,
            Reach::Listening(address) => Some(address.clone()),
        };
        let mut stop_signal = m.stop_signal.subscribe();
        let established = tokio::select! {
            // A stop wins over a handshake that fails at the same time because of it.
            biased;
            _ = stop_signal.wait_for(|stopped| *stopped) => {
                Err((m.unavailable("it was stopped while starting"), false))
            }
            established = m.establish(reach) => established,
        };
        let (conn, greeting) = match established {
            Ok(established) => established,
            Err((err, explain_exit)) => {
                // A process that went away during the handshake has usually just exited: give
                // the reaper a moment so the error can say how.
                let ended = explain_exit && wait_exit(&mut exit, Duration::from_millis(300)).await;
                end_incarnation(control, &mut exit, Duration::ZERO).await;
                m.forget_pid(child_pid);
                lock(&m.status).pid = None;
                let err = match err {
                    Error::Spawn { process, reason } if ended => {
                        let how = exit
                            .borrow()
                            .as_ref()
                            .map(|e| e.reason.to_string())
                            .unwrap_or_default();
                        Error::Spawn {
                            process,
                            reason: format!("{reason}; the process {how}"),
                        }
                    }
                    other => other,
                };
                return Err(err);
            }
        };
        let pid = child_pid.unwrap_or(greeting.pid);
        let rpc = RpcConnection::start(
            conn,
            &m.name,
            pid,
            m.spec.limits.max_frame_size,
            m.spec.limits.max_in_flight,
            Some(exit.clone()),
        );
        // `stop` and `kill` raise the flag before sending their command: checking it here means
        // a stop that came during the handshake is never undone by publishing.
        if m.stopping.load(Ordering::SeqCst) {
            let error = m.unavailable("it was stopped while starting");
            rpc.abort(error.clone());
            drop(rpc);
            end_incarnation(control, &mut exit, Duration::ZERO).await;
            m.forget_pid(child_pid);
            lock(&m.status).pid = None;
            return Err(error);
        }
        self.current = Some(Incarnation {
            rpc: rpc.clone(),
            exit: exit.clone(),
            control,
            _dir: dir,
        });
        // A reason the manager gave for ending an earlier incarnation is no reason for this one,
        // and its health checks say nothing of this one.
        self.recycle_reason = None;
        m.last_health.store(0, Ordering::Relaxed);
        // Skipped when a stop has just begun: its command takes this incarnation next.
        m.publish_course(
            ProcessState::Running {},
            Some(ProcessEvent::Ready { id: m.id, pid }),
            |status| {
                status.pid = Some(pid);
                status.up_since = Some(Instant::now());
                status.endpoint = endpoint;
            },
        );
        m.link.send_replace(Link::Up(rpc.clone()));
        tokio::spawn(m.clone().monitor(Arc::downgrade(&rpc), child_pid));
        Ok(())
    }
}
