//! Supervision trees: processes, pools and nested supervisors restarted together and in order,
//! with Erlang/OTP's strategies, restart types and restart budget.
//!
//! A supervisor starts its children in the order of its spec, each ready (its `init` done)
//! before the next starts, and stops them in reverse order. When a child ends without being
//! asked to, the supervisor decides, not the child:
//!
//! - whether to restart it, by its [`ChildRestart`] type: a `Permanent` child is always
//!   restarted, a `Transient` child only when it ended abnormally, a `Temporary` child never;
//! - which siblings go with it, by the [`RestartStrategy`]: `OneForOne` restarts only that
//!   child; `OneForAll` terminates the others in reverse start order, then restarts all in
//!   start order; `RestForOne` terminates the children started after it (in reverse order),
//!   then restarts it and them in start order;
//! - whether it may: if more than `max_restarts` restarts happen within `window`, the
//!   supervisor terminates all its children in reverse order and fails
//!   ([`SupervisorState::Failed`], a [`SupervisorEvent::GaveUp`]). A nested supervisor that
//!   fails is, to its parent, a child that crashed: the parent's strategy and budget decide.
//!
//! Handles to a child ([`Supervisor::process`], [`Supervisor::pool`]) keep working across its
//! restarts: a call made while it is down waits for the next incarnation, up to its deadline.
//! A pool child heals its own members; to its supervisor it ends only when it fails as a
//! whole, and a group restart reloads it (see [`ChildSpec::pool`]).
//!
//! ```no_run
//! use pm_runtime::prelude::*;
//! use pm_runtime::{ChildSpec, RestartStrategy, SupervisorSpec};
//!
//! #[derive(Default)]
//! struct Db;
//! #[process(name = "db", version = "1.0.0")]
//! impl Db {
//!     #[public]
//!     async fn get(&self, key: String) -> Option<String> { None }
//! }
//!
//! #[derive(Default)]
//! struct Api;
//! #[process(name = "api", version = "1.0.0")]
//! impl Api {
//!     #[public]
//!     async fn handle(&self, path: String) -> String { path }
//! }
//!
//! # async fn run() -> Result<(), pm_runtime::Error> {
//! let pm = ProcessManager::new(ProcessManagerConfig::default());
//! // The API depends on the database: if the database restarts, so does the API, after it.
//! let app = pm
//!     .supervise(
//!         SupervisorSpec::new("app")
//!             .strategy(RestartStrategy::RestForOne)
//!             .child(ChildSpec::process::<Db>("db", "target/release/db", SpawnOptions::default()))
//!             .child(ChildSpec::process::<Api>("api", "target/release/api", SpawnOptions::default())),
//!     )
//!     .await?;
//! let api = app.process::<Api>("api")?;
//! assert_eq!(api.handle("/users".into()).await?, "/users");
//! app.stop().await; // api first, then db
//! # Ok(())
//! # }
//! ```

mod node;
mod spec;
mod task;
mod tree;

use std::sync::Arc;

use pm_core::{Error, ProcessId};

pub use spec::{ChildRestart, ChildSpec, RestartStrategy, SupervisorSpec};
use tree::Node;
pub(crate) use tree::SupervisorCore;

use crate::manager::{ProcessHandle, ProcessManager};
use crate::pool::Pool;
use crate::process::Process;

/// Where a supervisor is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SupervisorState {
    /// Its children are started (optional ones that could not start excepted) and watched.
    Running,
    /// Its parent is restarting it with its siblings: its children are stopped for now.
    Restarting,
    /// It was stopped: every child is stopped.
    Stopped,
    /// It gave up (its restart budget exhausted) and stopped every child.
    Failed {
        /// The budget's verdict and the last end that exhausted it.
        reason: String,
    },
}

/// What happened in a supervision tree, in [`ProcessEvent::Supervisor`](crate::ProcessEvent)
/// with the path of the child (`app/db`) or of the supervisor (`app`) it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SupervisorEvent {
    /// A child was started (first start or restart) and is ready.
    ChildStarted {
        /// The OS pid hosting it, for a process.
        pid: Option<u32>,
    },
    /// An optional child could not be started; its siblings started without it.
    ChildSkipped {
        /// Why it did not start.
        reason: String,
    },
    /// A child ended abnormally without being asked to.
    ChildCrashed {
        /// How it ended.
        reason: pm_core::CrashReason,
    },
    /// A child exited cleanly without being asked to.
    ChildExited,
    /// A restart was decided, with this child as its cause; it follows after `delay`.
    ChildRestarting {
        /// Which restart of the current streak, from 1.
        attempt: u32,
        /// The backoff before it.
        delay: std::time::Duration,
    },
    /// A child was stopped: with a group restart, after it ended for good, or with its
    /// supervisor.
    ChildStopped,
    /// The supervisor exhausted its restart budget, stopped its children, and failed.
    GaveUp {
        /// Why.
        reason: String,
    },
    /// The supervisor was stopped.
    Stopped,
}

/// A running supervision tree, from [`ProcessManager::supervise`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Supervisor {
    core: Arc<SupervisorCore>,
}

impl Supervisor {
    /// The manager's id of this supervisor: of its entry in [`ProcessManager::list`] and for
    /// [`ProcessManager::info`]. (Stop it with [`Supervisor::stop`]; `ProcessManager::stop`
    /// takes process and pool ids.)
    pub fn id(&self) -> ProcessId {
        self.core.id
    }

    /// Its name, the first segment of its children's paths.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// Its path in the tree: its name, after its parents' (`app/workers`).
    pub fn path(&self) -> &str {
        &self.core.path
    }

    /// A typed handle to the child process named `name`, which keeps working across the
    /// child's restarts.
    ///
    /// # Errors
    /// [`Error::NotFound`] when there is no process child of that name, or it runs another
    /// process type than `P`; [`Error::Unavailable`] for an optional child that could not be
    /// started.
    pub fn process<P: Process>(&self, name: &str) -> Result<ProcessHandle<P>, Error> {
        let child = self.find(name)?;
        match &child.node {
            Node::Process(managed) if child.type_id == Some(std::any::TypeId::of::<P>()) => {
                Ok(ProcessHandle::from_managed(managed.clone()))
            }
            Node::Process(_) => Err(Error::NotFound(format!(
                "child `{}` does not run process type `{}`",
                child.path,
                P::NAME
            ))),
            Node::Absent(reason) => Err(Error::Unavailable {
                process: child.path.clone(),
                reason: format!("the optional child did not start: {reason}"),
            }),
            Node::Supervisor(_) | Node::Pool(_) => Err(Error::NotFound(format!(
                "child `{}` is not a process (a supervisor or a pool)",
                child.path
            ))),
        }
    }

    /// A typed handle to the child pool named `name`, of process type `P`.
    ///
    /// # Errors
    /// [`Error::NotFound`] when there is no pool child of that name, or its members run
    /// another process type than `P`; [`Error::Unavailable`] for an optional child that could
    /// not be started.
    pub fn pool<P: Process>(&self, name: &str) -> Result<Pool<P>, Error> {
        let child = self.find(name)?;
        match &child.node {
            Node::Pool(core) if child.type_id == Some(std::any::TypeId::of::<P>()) => {
                Ok(Pool::new(core.clone()))
            }
            Node::Absent(reason) => Err(Error::Unavailable {
                process: child.path.clone(),
                reason: format!("the optional child did not start: {reason}"),
            }),
            _ => Err(Error::NotFound(format!(
                "child `{}` is not a pool of `{}`",
                child.path,
                P::NAME
            ))),
        }
    }

    /// The nested supervisor named `name`.
    ///
    /// # Errors
    /// [`Error::NotFound`] when there is no supervisor child of that name.
    pub fn supervisor(&self, name: &str) -> Result<Supervisor, Error> {
        let child = self.find(name)?;
        match &child.node {
            Node::Supervisor(core) => Ok(Supervisor { core: core.clone() }),
            _ => Err(Error::NotFound(format!(
                "child `{}` is not a supervisor",
                child.path
            ))),
        }
    }

    fn find(&self, name: &str) -> Result<&tree::Child, Error> {
        self.core
            .children
            .iter()
            .find(|child| child.name == name)
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "supervisor `{}` has no child `{name}`",
                    self.path()
                ))
            })
    }

    /// Where it is in its life now.
    pub fn state(&self) -> SupervisorState {
        self.core.state.borrow().clone()
    }

    /// Waits until it has ended, stopped or failed, and returns that state.
    pub async fn ended(&self) -> SupervisorState {
        let mut state = self.core.state.subscribe();
        let ended = state
            .wait_for(|s| matches!(s, SupervisorState::Stopped | SupervisorState::Failed { .. }))
            .await
            .map(|s| s.clone());
        // The sender lives in the core this handle holds, so the wait cannot fail.
        ended.unwrap_or(SupervisorState::Stopped)
    }

    /// Stops every child in reverse start order (nested supervisors stop theirs the same
    /// way), for good: no restart follows.
    pub async fn stop(&self) {
        self.core.stop().await;
    }
}

impl ProcessManager {
    /// Starts the supervision tree `spec`: its children in order, each ready before the
    /// next, then supervises them (see [`supervision`](crate::supervision) for the rules).
    ///
    /// # Errors
    /// [`Error::Config`] for a spec that cannot work (empty or duplicate child names, a `/`
    /// in a name, a budget that could never trip); every error of `spawn` for a critical
    /// child that cannot start, after the children started before it are stopped in reverse
    /// order. Nothing is left running after an error.
    pub async fn supervise(&self, spec: SupervisorSpec) -> Result<Supervisor, Error> {
        spec.validate()?;
        let started_at = self.shutdown_count();
        let core = SupervisorCore::start(self.clone(), spec, None, None, started_at).await?;
        if !self.register_supervisor(core.clone(), started_at) {
            core.stop().await;
            return Err(Error::Unavailable {
                process: core.path.clone(),
                reason: "the manager shut down while the supervisor was starting".into(),
            });
        }
        Ok(Supervisor { core })
    }
}
