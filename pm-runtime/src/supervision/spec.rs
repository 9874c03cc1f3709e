//! What a supervisor is built from: its children, its strategy, its restart budget.

use std::any::TypeId;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pm_core::{Backoff, Error};

use crate::managed::{Managed, Supervised};
use crate::manager::ProcessManager;
use crate::options::SpawnOptions;
use crate::pool::{Pool, PoolCore, PoolOptions};
use crate::process::{BoxFuture, Process};

/// Which children a supervisor restarts when one of them ends and must be restarted, as in
/// Erlang/OTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RestartStrategy {
    /// If a child terminates, only that child is restarted.
    #[default]
    OneForOne,
    /// If a child terminates, all other children are terminated (in reverse start order),
    /// then all children are restarted (in start order).
    OneForAll,
    /// If a child terminates, the children started after it are terminated (in reverse start
    /// order), then the terminated child and those are restarted (in start order).
    RestForOne,
}

/// When a child is restarted, as in Erlang/OTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ChildRestart {
    /// Always restarted, whether it crashed or exited cleanly.
    #[default]
    Permanent,
    /// Restarted only when it ends abnormally (a crash, a signal, a non-zero exit code, a
    /// recycle by the manager); a clean exit leaves it stopped.
    Transient,
    /// Never restarted, not even when a sibling's restart under `OneForAll` or `RestForOne`
    /// terminates it; its end never restarts its siblings either.
    Temporary,
}

/// Starts a process child under its supervisor; the process type is erased here.
pub(crate) type Starter = Arc<
    dyn Fn(ProcessManager, Supervised) -> BoxFuture<'static, Result<Arc<Managed>, Error>>
        + Send
        + Sync,
>;

/// Starts a pool child; the process type is erased here.
pub(crate) type PoolStarter =
    Arc<dyn Fn(ProcessManager) -> BoxFuture<'static, Result<Arc<PoolCore>, Error>> + Send + Sync>;

/// What a child is.
#[derive(Clone)]
pub(crate) enum ChildKind {
    /// A pool of processes of type `type_name`.
    Pool {
        starter: PoolStarter,
        type_id: TypeId,
        type_name: &'static str,
    },
    /// A process of type `type_name`.
    Process {
        starter: Starter,
        type_id: TypeId,
        type_name: &'static str,
    },
    /// A nested supervisor.
    Supervisor(SupervisorSpec),
}

/// One child of a supervisor: a process type with its binary and spawn options, or a nested
/// supervisor; its restart type; whether it is critical.
#[derive(Clone)]
pub struct ChildSpec {
    pub(crate) name: String,
    pub(crate) restart: ChildRestart,
    pub(crate) optional: bool,
    pub(crate) kind: ChildKind,
}

impl std::fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            ChildKind::Process { type_name, .. } => *type_name,
            ChildKind::Pool { type_name, .. } => type_name,
            ChildKind::Supervisor(_) => "supervisor",
        };
        f.debug_struct("ChildSpec")
            .field("name", &self.name)
            .field("kind", &kind)
            .field("restart", &self.restart)
            .field("optional", &self.optional)
            .finish()
    }
}

impl ChildSpec {
    /// A child running process type `P`, started as [`ProcessManager::spawn`] would start it
    /// with `binary` and `options` (under `Worker` and `None` isolation `binary` is not used).
    /// `options.name` is replaced by `name`. The child's restarts are decided by its
    /// supervisor: the manager's restart policy does not apply to it.
    pub fn process<P: Process>(
        name: impl Into<String>,
        binary: impl AsRef<Path>,
        options: SpawnOptions,
    ) -> Self {
        let name = name.into();
        let binary = binary.as_ref().to_path_buf();
        let options = options.name(name.clone());
        let starter: Starter = Arc::new(move |manager: ProcessManager, supervised| {
            let binary = binary.clone();
            let options = options.clone();
            Box::pin(async move {
                manager
                    .start::<P>(&binary, options, None, None, Some(supervised))
                    .await
            })
        });
        Self {
            name,
            restart: ChildRestart::Permanent,
            optional: false,
            kind: ChildKind::Process {
                starter,
                type_id: TypeId::of::<P>(),
                type_name: P::NAME,
            },
        }
    }

    /// A child that is a pool of processes of type `P`, started as [`ProcessManager::pool`]
    /// would start it (every member ready before the next child starts); `options.spawn.name`
    /// is replaced by `name`.
    ///
    /// The pool heals its own members (each restarted under the manager's restart policy, or
    /// replaced), so to its supervisor it ends only when it fails as a whole: every member
    /// failed and none could be replaced. In a group restart (`OneForAll`, `RestForOne`) a
    /// pool is reloaded (each member replaced by a fresh process, one at a time, the pool
    /// serving throughout) rather than stopped and started; it stops with its supervisor.
    pub fn pool<P: Process>(
        name: impl Into<String>,
        binary: impl AsRef<Path>,
        options: PoolOptions,
    ) -> Self {
        let name = name.into();
        let binary = binary.as_ref().to_path_buf();
        let mut options = options;
        options.spawn = options.spawn.name(name.clone());
        let starter: PoolStarter = Arc::new(move |manager: ProcessManager| {
            let binary = binary.clone();
            let options = options.clone();
            Box::pin(async move {
                let pool = manager.pool::<P>(&binary, options).await?;
                Ok(Pool::core_of(&pool))
            })
        });
        Self {
            name,
            restart: ChildRestart::Permanent,
            optional: false,
            kind: ChildKind::Pool {
                starter,
                type_id: TypeId::of::<P>(),
                type_name: P::NAME,
            },
        }
    }

    /// A nested supervisor, named by its spec. When it gives up (its own budget exhausted),
    /// it has stopped its children and reports to this supervisor as a crashed child.
    pub fn supervisor(spec: SupervisorSpec) -> Self {
        Self {
            name: spec.name.clone(),
            restart: ChildRestart::Permanent,
            optional: false,
            kind: ChildKind::Supervisor(spec),
        }
    }

    /// When the child is restarted (default [`ChildRestart::Permanent`]).
    pub fn restart(mut self, restart: ChildRestart) -> Self {
        self.restart = restart;
        self
    }

    /// Marks the child optional: if it cannot be started, the supervisor starts the others
    /// without it (and reports the failure in a `ChildSkipped` event) instead of failing. A
    /// child is critical by default: its failing to start fails the whole supervisor's start.
    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }
}

/// The spec of a supervisor: a name, an ordered list of children, a strategy, a restart
/// budget and a backoff. Built with methods, in the style of [`SpawnOptions`]:
///
/// ```
/// use std::time::Duration;
/// use pm_runtime::{ChildSpec, RestartStrategy, SupervisorSpec};
/// # #[pm_runtime::process(name = "db", version = "1.0.0")]
/// # impl Db { #[public] async fn get(&self) -> u32 { 1 } }
/// # #[derive(Default)] struct Db;
/// let spec = SupervisorSpec::new("app")
///     .strategy(RestartStrategy::RestForOne)
///     .restart_budget(3, Duration::from_secs(5))
///     .child(ChildSpec::process::<Db>("db", "target/debug/db", Default::default()));
/// assert_eq!(spec.name(), "app");
/// ```
#[derive(Debug, Clone)]
pub struct SupervisorSpec {
    pub(crate) name: String,
    pub(crate) strategy: RestartStrategy,
    pub(crate) max_restarts: u32,
    pub(crate) window: Duration,
    pub(crate) backoff: Backoff,
    pub(crate) children: Vec<ChildSpec>,
}

impl SupervisorSpec {
    /// A supervisor named `name` with no children, `OneForOne`, a budget of 3 restarts in
    /// 5 seconds and the default backoff (exponential from 100 ms to 10 s).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            strategy: RestartStrategy::OneForOne,
            max_restarts: 3,
            window: Duration::from_secs(5),
            backoff: Backoff::default(),
            children: Vec::new(),
        }
    }

    /// Its name, the first segment of its children's paths (`app/db`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Which children are restarted together.
    pub fn strategy(mut self, strategy: RestartStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// At most `max_restarts` restarts within any sliding `window`; one more, and the
    /// supervisor gives up: it stops its children in reverse order and fails (and a nested
    /// supervisor reports to its parent). A group restart (`OneForAll`, `RestForOne`) counts
    /// once.
    pub fn restart_budget(mut self, max_restarts: u32, window: Duration) -> Self {
        self.max_restarts = max_restarts;
        self.window = window;
        self
    }

    /// The delay before each restart, growing over a streak of restarts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Appends a child: children start in the order they are added, each ready before the
    /// next starts, and stop in reverse order.
    pub fn child(mut self, child: ChildSpec) -> Self {
        self.children.push(child);
        self
    }

    /// The restart budget as the policy the restart tracker applies.
    pub(crate) fn policy(&self) -> pm_core::RestartPolicy {
        pm_core::RestartPolicy {
            enabled: true,
            max_restarts: self.max_restarts,
            window: self.window,
            backoff: self.backoff,
            ..Default::default()
        }
    }

    /// Refuses a spec that cannot work: empty or duplicate names, a `/` in a name, a budget
    /// that could never trip; nested specs too.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let bad_name = |name: &str| name.is_empty() || name.contains('/');
        if bad_name(&self.name) {
            return Err(Error::Config(format!(
                "supervisor name `{}` must be non-empty and contain no `/`",
                self.name
            )));
        }
        crate::restart_policy::validate(&self.policy())
            .map_err(|err| Error::Config(format!("supervisor `{}`: {err}", self.name)))?;
        let mut seen = std::collections::HashSet::new();
        for child in &self.children {
            if bad_name(&child.name) {
                return Err(Error::Config(format!(
                    "supervisor `{}`: child name `{}` must be non-empty and contain no `/`",
                    self.name, child.name
                )));
            }
            if !seen.insert(child.name.as_str()) {
                return Err(Error::Config(format!(
                    "supervisor `{}` has two children named `{}`",
                    self.name, child.name
                )));
            }
            if let ChildKind::Supervisor(nested) = &child.kind {
                nested.validate()?;
            }
        }
        Ok(())
    }
}
