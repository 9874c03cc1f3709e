//! Calls to an in-process instance (`Isolation::None`) that skip the frames: no framing, no
//! channel hops and no reader task; each call still runs as a task of its own, as a framed
//! call does, so a method that blocks its thread cannot hold up its caller's deadline or a
//! kill, nested calls do not deepen one stack, and the method does not see its caller's
//! task-locals. They take the same call slots as calls that arrive as frames, and keep their
//! semantics: a panic that becomes an error, the health checks' own bound, refusal once a
//! shutdown has begun, and an end with an error when the instance shuts down (after the
//! grace period) or is killed. Aborting the call's task cancels it, as a cancel frame would.

use std::time::Duration;

use bytes::Bytes;
use pm_core::trace::TraceContext;
use tokio::sync::{oneshot, watch};

use super::calls::{call_future, run_call, HEALTH_CHECKS_IN_FLIGHT};
use super::*;
use crate::process::BoxFuture;

/// Where a connection's calls stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Calls are served.
    Serving,
    /// A shutdown has begun: new calls are refused, running ones may finish.
    ShuttingDown,
    /// Serving is over: calls still running end with an error.
    Ended,
}

/// A direct call that has its slot, ready to run as a task of its own.
pub(crate) type Admitted = BoxFuture<'static, DispatchResult>;

/// Direct calls to one instance, whatever its process type.
pub(crate) trait DirectCalls: Send + Sync + std::fmt::Debug + 'static {
    /// Takes a call slot for `method` on `args` (a MessagePack array), waiting in line for
    /// one as a framed call would, and returns the call, to be run as a task (aborting it
    /// cancels the call); or why it is refused.
    fn admit(
        self: Arc<Self>,
        method: &'static str,
        args: Bytes,
        trace: Option<TraceContext>,
    ) -> BoxFuture<'static, Result<Admitted, RemoteError>>;
}

/// Where a served connection hands out its direct calls, once its `init` succeeded.
pub(crate) type DirectSlot = oneshot::Sender<Arc<dyn DirectCalls>>;

/// What a direct call needs of its connection's call loop.
pub(super) struct DirectServer<P: Process> {
    pub(super) cell: ProcessCell<P>,
    pub(super) permits: Arc<Semaphore>,
    pub(super) health_permits: Arc<Semaphore>,
    pub(super) phase: watch::Receiver<Phase>,
    pub(super) max_frame: usize,
}

impl<P: Process> std::fmt::Debug for DirectServer<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectServer")
            .field("process", &P::NAME)
            .field("phase", &*self.phase.borrow())
            .finish_non_exhaustive()
    }
}

fn shutting_down<P: Process>() -> RemoteError {
    RemoteError::new(
        RemoteErrorKind::ShuttingDown,
        format!("process `{}` is shutting down", P::NAME),
    )
}

impl<P: Process> DirectCalls for DirectServer<P> {
    fn admit(
        self: Arc<Self>,
        method: &'static str,
        args: Bytes,
        trace: Option<TraceContext>,
    ) -> BoxFuture<'static, Result<Admitted, RemoteError>> {
        Box::pin(async move {
            let mut phase = self.phase.clone();
            if *phase.borrow() != Phase::Serving {
                return Err(shutting_down::<P>());
            }
            let permit = if method == HEALTH_METHOD {
                self.health_permits
                    .clone()
                    .try_acquire_owned()
                    .map_err(|_| {
                        RemoteError::new(
                            RemoteErrorKind::Internal,
                            format!("{HEALTH_CHECKS_IN_FLIGHT} health checks are already running"),
                        )
                    })?
            } else {
                tokio::select! {
                    biased;
                    permit = self.permits.clone().acquire_owned() => {
                        permit.map_err(|_| shutting_down::<P>())?
                    }
                    _ = phase.wait_for(|now| *now != Phase::Serving) => {
                        return Err(shutting_down::<P>());
                    }
                }
            };
            // A slot freed during a shutdown (by a hook, say) must not start a call that
            // waited for it: framed calls waiting then are refused too.
            if *phase.borrow() != Phase::Serving {
                return Err(shutting_down::<P>());
            }
            let reply = ReplyTo {
                id: 0,
                max_frame: self.max_frame,
            };
            let future = call_future::<P>(&self.cell, method, args, trace, reply)?;
            Ok(Box::pin(async move {
                let _permit = permit;
                tokio::select! {
                    biased;
                    result = run_call(future, None::<Duration>) => result,
                    _ = phase.wait_for(|now| *now == Phase::Ended) => Err(RemoteError::new(
                        RemoteErrorKind::ShuttingDown,
                        format!("process `{}` shut down before the call finished", P::NAME),
                    )),
                }
            }) as Admitted)
        })
    }
}
