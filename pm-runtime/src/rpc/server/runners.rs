//! The tasks that run one connection's calls. A runner runs one call at a time; between calls
//! it waits, idle, to be handed the next. A call then costs a hand-over instead of a task of
//! its own.
//!
//! Spawning a task per call was about a third of the process side's instructions: tokio's
//! task cell is aligned to 128 bytes, which glibc serves on its slow path, and the task was
//! built, scheduled, completed and freed on every call.
//!
//! A runner is still the unit of cancellation. Cancelling a call, a deadline the manager
//! gives up on, or the connection ending aborts the task that runs the call, as it aborted
//! the call's own task before; an aborted runner is not reused. Runners are never more than
//! the calls that ran at once (at most the connection's call slots and health checks). Idle
//! ones wait on no timer, and are aborted when the connection's call loop ends.

use std::sync::OnceLock;

use tokio::sync::{Notify, OwnedSemaphorePermit};

use super::calls::run_call;
use super::first_poll::{FirstPoll, Ticket};
use super::*;
use crate::rpc::call_ids::CallIdMap;

/// Calls in flight, by id: the task running each, to abort it.
pub(super) type InFlight = Arc<Mutex<CallIdMap<AbortHandle>>>;

/// One call, ready to run.
pub(super) struct Job {
    pub(super) id: u64,
    /// Held until the reply is queued: the call's slot.
    pub(super) permit: OwnedSemaphorePermit,
    pub(super) future: crate::process::BoxFuture<'static, DispatchResult>,
    pub(super) deadline: Option<Duration>,
    /// Set when the call was polled once already, in the call loop: how long that took, which
    /// counts against its deadline. Such a call may hold something (the instance's lock), so
    /// it does not wait behind the client's backed-up replies.
    pub(super) first_poll: Option<Duration>,
    /// Set when the call is timed for its method's probation: how long it took, from its
    /// start here to its reply, is reported to the connection's [`FirstPoll`].
    pub(super) probe: Option<Ticket>,
}

/// The runners of one connection.
pub(super) struct Runners {
    shared: Arc<Shared>,
}

/// What the runners of one connection share.
struct Shared {
    sender: FrameSender,
    in_flight: InFlight,
    first_poll: Arc<FirstPoll>,
    max_frame: usize,
    idle: Mutex<Idle>,
}

struct Idle {
    runners: Vec<Arc<Runner>>,
    /// Set when the call loop ends: a runner that finishes its call then exits.
    closed: bool,
}

/// One runner's mailbox.
#[derive(Default)]
struct Runner {
    job: Mutex<Option<Job>>,
    ready: Notify,
    /// The runner's task. Set right after it is spawned, while the caller holds the in-flight
    /// registry's lock, which the runner needs before it can first go idle: so it is set
    /// whenever the runner is idle.
    task: OnceLock<AbortHandle>,
}

impl Runners {
    pub(super) fn new(
        sender: FrameSender,
        in_flight: InFlight,
        first_poll: Arc<FirstPoll>,
        max_frame: usize,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                sender,
                in_flight,
                first_poll,
                max_frame,
                idle: Mutex::new(Idle {
                    runners: Vec::new(),
                    closed: false,
                }),
            }),
        }
    }

    /// Runs `job` on an idle runner, or on a new one, and registers the runner under the
    /// job's id in `registry` (the locked in-flight registry), so a cancel can abort it.
    pub(super) fn start(&self, job: Job, registry: &mut CallIdMap<AbortHandle>) {
        let id = job.id;
        let idle = lock(&self.shared.idle).runners.pop();
        if let Some(runner) = idle {
            if let Some(task) = runner.task.get() {
                registry.insert(id, task.clone());
                *lock(&runner.job) = Some(job);
                runner.ready.notify_one();
                return;
            }
            // Unreachable (an idle runner's task is set): leave that runner, use a new one.
        }
        let runner = Arc::new(Runner::default());
        let task = tokio::spawn(run(runner.clone(), job, self.shared.clone()));
        let abort = task.abort_handle();
        let _ = runner.task.set(abort.clone());
        registry.insert(id, abort);
    }

    /// Ends the idle runners, and makes the busy ones exit after their call (the call loop
    /// aborts those it still wants gone).
    pub(super) fn close(&self) {
        let idle = {
            let mut idle = lock(&self.shared.idle);
            idle.closed = true;
            std::mem::take(&mut idle.runners)
        };
        for runner in idle {
            if let Some(task) = runner.task.get() {
                task.abort();
            }
        }
    }
}

/// A runner's life: its first call, then each one it is handed, until the loop closes.
async fn run(runner: Arc<Runner>, first: Job, shared: Arc<Shared>) {
    let mut job = first;
    loop {
        if !shared.run(job).await {
            return;
        }
        {
            let mut idle = lock(&shared.idle);
            if idle.closed {
                return;
            }
            idle.runners.push(runner.clone());
        }
        job = loop {
            if let Some(job) = lock(&runner.job).take() {
                break job;
            }
            // A hand-over that came first left its permit: the wait does not miss it.
            runner.ready.notified().await;
        };
    }
}

impl Shared {
    /// Runs one call to its reply, and queues the reply. `false` when the call was taken out
    /// of the registry meanwhile (cancelled, or aborted by a shutdown or the connection's
    /// end): whoever took it has aborted this task too, which takes effect at its next wait,
    /// so the runner must not go idle and be handed another call. Its reply is not sent
    /// either: a shutdown that took it has answered for it already.
    ///
    /// The entry must be this task's, not just one under the call's id: a peer may reuse the
    /// id of a call it cancelled for a new call, which another runner then runs.
    async fn run(&self, job: Job) -> bool {
        let Job {
            id,
            permit,
            future,
            deadline,
            first_poll,
            probe,
        } = job;
        let _permit = permit;
        let started = probe.map(|ticket| (ticket, std::time::Instant::now()));
        // A call read before its client's replies backed up waits to run until they drain:
        // what a client that stops reading costs stays near the backlog limit (plus the
        // replies of the calls already running), not a reply per call read. The wait counts
        // against the call's deadline. It is rare, and boxed: its future would make every
        // runner's larger.
        let future = std::pin::pin!(async {
            if first_poll.is_none() && self.sender.is_backlogged() {
                Box::pin(self.sender.writable()).await;
            }
            future.await
        });
        let frame = match run_call(future, deadline, first_poll.unwrap_or_default()).await {
            Ok(frame) => frame,
            Err(error) => encode_error(id, &error, self.max_frame),
        };
        if let Some((ticket, started)) = started {
            self.first_poll.probed(ticket, started.elapsed());
        }
        {
            let mut registry = lock(&self.in_flight);
            let ours = registry
                .get(&id)
                .is_some_and(|task| Some(task.id()) == tokio::task::try_id());
            if !ours {
                return false;
            }
            registry.remove(&id);
        }
        let _ = self.sender.send(frame);
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    fn reply(id: u64) -> DispatchResult {
        wire::encode_reply(id, &id, 1024)
            .map_err(|e| RemoteError::new(RemoteErrorKind::Internal, e.to_string()))
    }

    fn job(
        id: u64,
        slots: &Arc<Semaphore>,
        future: crate::process::BoxFuture<'static, DispatchResult>,
    ) -> Job {
        Job {
            id,
            permit: slots.clone().try_acquire_owned().expect("a free slot"),
            future,
            deadline: None,
            first_poll: None,
            probe: None,
        }
    }

    /// The replies' ids, as they arrive, within a generous bound.
    async fn next_reply(conn: &mut Connection) -> u64 {
        match tokio::time::timeout(Duration::from_secs(10), conn.receiver.recv()).await {
            Ok(Some(Ok(Incoming::Frame(frame)))) => frame.id(),
            other => panic!("no reply: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_runner_goes_idle_after_its_call_and_runs_the_next_one_it_is_handed() {
        let (ours, mut peer) = pm_transport::channel_pair();
        let in_flight: InFlight = Arc::default();
        let runners = Runners::new(
            ours.sender,
            in_flight.clone(),
            Arc::new(FirstPoll::new()),
            1024,
        );
        let slots = Arc::new(Semaphore::new(4));
        for id in 1..=3 {
            runners.start(
                job(id, &slots, Box::pin(async move { reply(id) })),
                &mut lock(&in_flight),
            );
            assert_eq!(next_reply(&mut peer).await, id);
            // Idle again, its slot given back, and nothing left registered.
            while lock(&runners.shared.idle).runners.len() != 1 {
                tokio::task::yield_now().await;
            }
            assert_eq!(slots.available_permits(), 4);
            assert!(lock(&in_flight).is_empty());
        }
        runners.close();
        assert!(lock(&runners.shared.idle).runners.is_empty());
    }

    /// A cancel that aborts a runner while its call is finishing in the same poll: the runner
    /// must not go idle, or the next call handed to it would die with it, unanswered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_runner_aborted_as_its_call_finishes_is_not_handed_another_call() {
        let (ours, mut peer) = pm_transport::channel_pair();
        let in_flight: InFlight = Arc::default();
        let runners = Runners::new(
            ours.sender,
            in_flight.clone(),
            Arc::new(FirstPoll::new()),
            1024,
        );
        let slots = Arc::new(Semaphore::new(4));
        let (started_tx, started) = mpsc::channel();
        let (go, go_rx) = mpsc::channel::<()>();
        // A call that blocks its worker thread until told to finish: the abort below lands
        // while it is being polled, and it then completes in that same poll.
        let blocking = Box::pin(async move {
            let _ = started_tx.send(());
            let _ = go_rx.recv();
            reply(1)
        });
        runners.start(job(1, &slots, blocking), &mut lock(&in_flight));
        tokio::task::spawn_blocking(move || started.recv())
            .await
            .expect("joined")
            .expect("the call started");
        // What a cancel does: take the call out of the registry and abort its task.
        let task = lock(&in_flight).remove(&1).expect("registered");
        task.abort();
        go.send(()).expect("still running");
        // The runner finishes its poll; it must exit rather than go idle (where it would
        // die at its first wait, the abort taking effect, and stay listed as idle).
        while !task.is_finished() {
            tokio::task::yield_now().await;
        }
        runners.start(
            job(2, &slots, Box::pin(async { reply(2) })),
            &mut lock(&in_flight),
        );
        assert_eq!(
            next_reply(&mut peer).await,
            2,
            "the second call was answered"
        );
    }
}
