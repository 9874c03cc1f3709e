//! Starting an incarnation: launch, connect, handshake and `init`, then publishing it.

use super::teardown::{end_incarnation, wait_exit};
use super::*;

impl Managed {
    /// Starts an incarnation: launch, handshake, init. On failure nothing is left running.
    ///
    /// Boxed as `Send` explicitly: supervision restarts through this function and this function
    /// starts supervision, a cycle the compiler cannot see through otherwise.
    pub(crate) fn start_incarnation(self: &Arc<Self>) -> BoxFuture<'static, Result<(), Error>> {
        Box::pin(self.clone().start_incarnation_inner())
    }

    async fn start_incarnation_inner(self: Arc<Self>) -> Result<(), Error> {
        // Held for the whole start, so a `stop` or `kill` (which raise `stopping` and the stop
        // signal first, cutting the handshake short) returns only once this start has ended
        // what it launched: a `shutdown` racing a spawn leaves nothing running.
        let mut slot = self.incarnation.lock().await;
        if !self.publish_course(ProcessState::Starting {}, None, |_| {}) {
            return Err(self.unavailable("it was stopped"));
        }
        let Launched {
            reach,
            dir,
            mut exit,
            control,
        } = (self.launcher)(&self.spec)?;
        // A child's pid is the one the manager launched, never what the process says. It is
        // published at once, so a `kill` during the handshake reaches the child: `kill` raises
        // `stopping` and then reads the pid, this stores the pid and then reads `stopping`
        // (both sequentially consistent), so at least one of the two sees the other.
        let child_pid = match control {
            Control::Child { pid } => Some(pid),
            _ => None,
        };
        if let Some(pid) = child_pid {
            self.current_pid.store(pid, Ordering::SeqCst);
            lock(&self.status).pid = Some(pid);
        }
        self.emit(ProcessEvent::Spawned {
            id: self.id,
            name: self.name.clone(),
        });
        let endpoint = match &reach {
            Reach::Connected(_) => None,
            Reach::Listening(address) => Some(address.to_string()),
        };
        let mut stop_signal = self.stop_signal.subscribe();
        let established = tokio::select! {
            // A stop wins over a handshake that fails at the same time because of it.
            biased;
            _ = stop_signal.wait_for(|stopped| *stopped) => {
                Err((self.unavailable("it was stopped while starting"), false))
            }
            established = self.establish(reach) => established,
        };
        let (conn, greeting) = match established {
            Ok(established) => established,
            Err((err, explain_exit)) => {
                // A process that went away during the handshake has usually just exited: give
                // the reaper a moment so the error can say how.
                let ended = explain_exit && wait_exit(&mut exit, Duration::from_millis(300)).await;
                end_incarnation(control, &mut exit, Duration::ZERO).await;
                self.forget_pid(child_pid);
                lock(&self.status).pid = None;
                let err = match err {
                    Error::Spawn { process, reason } if ended => {
                        let how = exit
                            .borrow()
                            .as_ref()
                            .map(|e| e.description.clone())
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
            &self.name,
            pid,
            self.spec.limits.max_frame_size,
            self.spec.limits.max_in_flight,
            Some(exit.clone()),
        );
        // `stop` and `kill` raise the flag before taking the lock this start holds: checking it
        // here means a stop that came during the handshake is never undone by publishing.
        if self.stopping.load(Ordering::SeqCst) {
            let error = self.unavailable("it was stopped while starting");
            rpc.abort(error.clone());
            drop(rpc);
            end_incarnation(control, &mut exit, Duration::ZERO).await;
            self.forget_pid(child_pid);
            lock(&self.status).pid = None;
            return Err(error);
        }
        *slot = Some(Incarnation {
            rpc: rpc.clone(),
            exit: exit.clone(),
            control,
            _dir: dir,
        });
        // A reason the manager gave for ending an earlier incarnation is no reason for this one,
        // and its health checks say nothing of this one.
        lock(&self.recycle_reason).take();
        self.last_health.store(0, Ordering::Relaxed);
        // Skipped when a stop has just begun: it takes this incarnation once the lock is free.
        self.publish_course(
            ProcessState::Running {},
            Some(ProcessEvent::Ready { id: self.id, pid }),
            |status| {
                status.pid = Some(pid);
                status.up_since = Some(Instant::now());
                status.endpoint = endpoint;
            },
        );
        self.link.send_replace(Link::Up(rpc.clone()));
        drop(slot);
        tokio::spawn(self.clone().monitor(Arc::downgrade(&rpc), child_pid));
        tokio::spawn(self.clone().supervise(exit, rpc));
        Ok(())
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
