//! The process manager: spawns, tracks, measures and stops processes.

use std::marker::PhantomData;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use pm_core::{Error, HealthStatus, ProcessId, ProcessInfo, ProcessManagerConfig, ProcessMetrics};
use tokio::sync::broadcast;

use crate::events::ProcessEvent;
pub use crate::handle::ProcessHandle;
use crate::managed::{Managed, ManagedSpec, Supervised};
use crate::options::SpawnOptions;
use crate::pool::{MemberHost, Pool, PoolCore, PoolOptions, PoolSpec};
use crate::process::{expected_identity, BoxFuture, Process};
use crate::spawn::{launch, LaunchSpec};
use crate::supervision::SupervisorCore;
use crate::token::Token;

const EVENT_BUFFER: usize = 1024;

struct Inner {
    config: ProcessManagerConfig,
    next_id: AtomicU64,
    /// In start order.
    processes: Mutex<Vec<Arc<Managed>>>,
    /// In start order.
    pools: Mutex<Vec<Arc<PoolCore>>>,
    /// Root supervisors, in start order.
    supervisors: Mutex<Vec<Arc<SupervisorCore>>>,
    /// How many shutdowns have begun: a supervisor whose start overlapped one is not kept.
    shutdowns: AtomicU64,
    events: broadcast::Sender<ProcessEvent>,
}

/// A manager that may be gone: what its status server holds, so serving status never keeps
/// a dropped manager's processes running.
#[derive(Clone)]
pub(crate) struct WeakManager(std::sync::Weak<Inner>);

impl WeakManager {
    /// The manager, while someone still holds it.
    pub(crate) fn upgrade(&self) -> Option<ProcessManager> {
        self.0.upgrade().map(|inner| ProcessManager { inner })
    }
}

/// Ends and unlists a process whose spawn was given up on before its start finished, when
/// dropped armed.
struct UnlistOnDrop<'a> {
    manager: &'a ProcessManager,
    managed: &'a Arc<Managed>,
    armed: bool,
}

impl Drop for UnlistOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.managed.kill_in_background();
            self.manager
                .processes()
                .retain(|m| !Arc::ptr_eq(m, self.managed));
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for supervisor in self
            .supervisors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
        {
            supervisor.abandon();
        }
        let processes = std::mem::take(
            &mut *self
                .processes
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for managed in processes.iter().rev() {
            managed.abandon();
        }
    }
}

/// Spawns processes, hands out typed handles to them, and supervises them.
///
/// Cheap to clone: clones share the same processes. When the last clone is dropped without
/// [`ProcessManager::shutdown`], children are killed (SIGKILL) and workers are disconnected;
/// call `shutdown` to run shutdown hooks and drain calls.
///
/// ```
/// use pm_runtime::prelude::*;
///
/// #[derive(Default)]
/// pub struct Calculator;
///
/// #[process(name = "calculator", version = "1.0.0")]
/// impl Calculator {
///     #[public]
///     pub async fn add(&self, a: i64, b: i64) -> i64 { a + b }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), pm_runtime::Error> {
/// let pm = ProcessManager::new(ProcessManagerConfig {
///     isolation: Isolation::Worker, // the default: a thread with its own runtime
///     ..Default::default()
/// });
/// let mut events = pm.subscribe();
/// let calc = pm.spawn_linked::<Calculator>(SpawnOptions::default().name("calc")).await?;
/// assert_eq!(calc.add(5, 3).await?, 8);
///
/// let info = pm.info(calc.id()).expect("listed");
/// assert_eq!((info.name.as_str(), info.state), ("calc", ProcessState::Running {}));
/// assert!(matches!(events.recv().await, Ok(ProcessEvent::Spawned { .. })));
/// assert_eq!(pm.get_metrics(calc.id()).await?.requests, 1);
///
/// pm.shutdown().await?; // stops every process, newest first, running its shutdown hooks
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ProcessManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ProcessManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessManager")
            .field("config", &self.inner.config)
            .field("processes", &self.list().len())
            .finish()
    }
}

impl ProcessManager {
    /// A manager with this configuration. Sync and infallible: a configuration that cannot
    /// work is reported by the first `spawn`. Must be called inside a tokio runtime when it
    /// spawns (a `current_thread` runtime, as `#[tokio::test]` starts, works).
    pub fn new(config: ProcessManagerConfig) -> Self {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        Self {
            inner: Arc::new(Inner {
                config,
                next_id: AtomicU64::new(1),
                processes: Mutex::new(Vec::new()),
                pools: Mutex::new(Vec::new()),
                supervisors: Mutex::new(Vec::new()),
                shutdowns: AtomicU64::new(0),
                events,
            }),
        }
    }

    /// The configuration this manager was built with.
    pub fn config(&self) -> &ProcessManagerConfig {
        &self.inner.config
    }

    /// A reference that does not keep the manager alive (for its status server).
    pub(crate) fn downgrade(&self) -> WeakManager {
        WeakManager(Arc::downgrade(&self.inner))
    }

    pub(crate) fn processes(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Managed>>> {
        self.inner
            .processes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn supervisors(&self) -> std::sync::MutexGuard<'_, Vec<Arc<SupervisorCore>>> {
        self.inner
            .supervisors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many shutdowns have begun, for a start to tell whether one overlapped it.
    pub(crate) fn shutdown_count(&self) -> u64 {
        self.inner.shutdowns.load(Ordering::SeqCst)
    }

    /// Keeps a root supervisor for `list`, `shutdown` and the manager's drop, unless a
    /// shutdown began since its start did (`started_at`, from `shutdown_count`): then the
    /// shutdown could not see it, and it is refused (`false`) for the caller to stop.
    pub(crate) fn register_supervisor(&self, core: Arc<SupervisorCore>, started_at: u64) -> bool {
        let mut supervisors = self.supervisors();
        if self.shutdown_count() != started_at {
            return false;
        }
        supervisors.push(core);
        true
    }

    /// Where events are announced.
    pub(crate) fn events(&self) -> broadcast::Sender<ProcessEvent> {
        self.inner.events.clone()
    }

    /// A fresh id, for a process, a pool or a supervisor.
    pub(crate) fn next_id(&self) -> ProcessId {
        ProcessId::from_raw(self.inner.next_id.fetch_add(1, Ordering::Relaxed))
    }

    pub(crate) fn pools(&self) -> std::sync::MutexGuard<'_, Vec<Arc<PoolCore>>> {
        self.inner
            .pools
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The process or pool with this id.
    fn find(&self, id: ProcessId) -> Result<Target, Error> {
        if let Some(managed) = self.processes().iter().find(|m| m.id == id) {
            return Ok(Target::Process(managed.clone()));
        }
        self.pools()
            .iter()
            .find(|p| p.id == id)
            .map(|p| Target::Pool(p.clone()))
            .ok_or_else(|| Error::NotFound(id.to_string()))
    }

    /// Starts process type `P` and returns a typed handle to it.
    ///
    /// Under [`Isolation::Child`](pm_core::Isolation::Child) `binary` is run as a child OS
    /// process (it must be a binary whose `main` is `process_main!(P)`); under `Worker` and
    /// `None` the linked type `P` runs and `binary` is not used.
    ///
    /// # Errors
    /// [`Error::Config`] for a configuration that cannot work; [`Error::Spawn`] when the binary
    /// is missing or not executable, the process closes during the handshake, or its `init`
    /// fails (the message holds `init`'s error); [`Error::VersionMismatch`] when the binary is
    /// a different version of `P`. Nothing is left running after an error.
    ///
    /// ```no_run
    /// # use pm_runtime::prelude::*;
    /// # #[derive(Default)] pub struct Calculator;
    /// # #[process(name = "calculator", version = "1.0.0")]
    /// # impl Calculator { #[public] pub async fn add(&self, a: i64, b: i64) -> i64 { a + b } }
    /// # async fn demo() -> Result<(), pm_runtime::Error> {
    /// // The binary's `main` is `pm_runtime::process_main!(Calculator);`.
    /// let pm = ProcessManager::new(ProcessManagerConfig {
    ///     isolation: Isolation::Child,
    ///     ..Default::default()
    /// });
    /// let calc = pm
    ///     .spawn::<Calculator>("target/debug/calculator", SpawnOptions::default())
    ///     .await?;
    /// assert_eq!(calc.add(5, 3).await?, 8);
    /// pm.stop(calc.id()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn spawn<P: Process>(
        &self,
        binary: impl AsRef<Path>,
        options: SpawnOptions,
    ) -> Result<ProcessHandle<P>, Error> {
        let managed = self
            .start::<P>(binary.as_ref(), options, None, None, None)
            .await?;
        Ok(ProcessHandle::from_managed(managed))
    }

    /// Starts process type `P` as it is linked into this program, on a thread of its own
    /// (`Isolation::Worker`) or in this runtime (`Isolation::None`), with no binary to name:
    /// `spawn` for what needs no path. The isolation is `options`' or, without one, the
    /// manager's.
    ///
    /// # Errors
    /// [`Error::Config`] when the isolation is `Child`, which runs a binary (use
    /// [`ProcessManager::spawn`]); otherwise the errors of `spawn`.
    ///
    /// ```
    /// # use pm_runtime::prelude::*;
    /// # #[derive(Default)] struct Greeter;
    /// # #[process(name = "greeter")]
    /// # impl Greeter { #[public] async fn hello(&self) -> String { "hi".into() } }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), pm_runtime::Error> {
    /// let pm = ProcessManager::new(ProcessManagerConfig {
    ///     isolation: Isolation::None,
    ///     ..Default::default()
    /// });
    /// let greeter = pm.spawn_linked::<Greeter>(SpawnOptions::default()).await?;
    /// assert_eq!(greeter.hello().await?, "hi");
    /// pm.shutdown().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn spawn_linked<P: Process>(
        &self,
        options: SpawnOptions,
    ) -> Result<ProcessHandle<P>, Error> {
        let isolation = options.isolation.unwrap_or(self.inner.config.isolation);
        if isolation == pm_core::Isolation::Child {
            return Err(Error::Config(format!(
                "`spawn_linked::<{}>` runs the linked type on a worker thread or in process; \
                 Isolation::Child runs a binary: use `spawn(binary, options)`",
                P::NAME
            )));
        }
        let managed = self
            .start::<P>(Path::new(""), options, None, None, None)
            .await?;
        Ok(ProcessHandle::from_managed(managed))
    }

    /// Attaches to a process hosted elsewhere (see [`host`](crate::host)): `address` is an
    /// [`Address`](pm_core::Address) or its text (`unix:/path`, `tcp:ip:port` or
    /// `http://ip:port`), `token` the token it was started with. The handshake checks name, version and method table as for `spawn`.
    ///
    /// The manager supervises the connection, not the process: a lost connection is
    /// re-established with the restart policy's backoff (calls wait for it up to their
    /// deadline), `stop` and `shutdown` detach without shutting the process down, and
    /// metrics report calls but no CPU or memory (the process may be on another host).
    ///
    /// # Errors
    /// [`Error::Config`] for an unparsable address; [`Error::Spawn`] when the connection or
    /// handshake fails (a wrong token included); [`Error::VersionMismatch`] as for `spawn`.
    pub async fn connect<P: Process>(
        &self,
        address: impl pm_core::ToAddress,
        token: &str,
        options: SpawnOptions,
    ) -> Result<ProcessHandle<P>, Error> {
        let address = address
            .to_address()
            .map_err(|err| Error::Config(err.to_string()))?;
        let transport = match address {
            pm_transport::Address::Unix(_) => pm_core::TransportKind::Unix,
            pm_transport::Address::Tcp(_) => pm_core::TransportKind::Tcp,
            pm_transport::Address::Http(_) => pm_core::TransportKind::Http,
        };
        let options = options.transport(transport);
        let attach = Some((address, Token::from_string(token.to_owned())));
        let managed = self
            .start::<P>(Path::new(""), options, attach, None, None)
            .await?;
        Ok(ProcessHandle::from_managed(managed))
    }

    pub(crate) async fn start<P: Process>(
        &self,
        binary: &Path,
        options: SpawnOptions,
        attach: Option<(pm_transport::Address, Token)>,
        pool: Option<ProcessId>,
        supervised: Option<Supervised>,
    ) -> Result<Arc<Managed>, Error> {
        let config = &self.inner.config;
        crate::restart_policy::validate(&config.restart_policy)?;
        let name = options.name.unwrap_or_else(|| P::NAME.to_owned());
        let transport = options.transport.unwrap_or(config.transport);
        config.limits.check()?;
        let dependencies = match options.dependencies {
            None => bytes::Bytes::from_static(&[0xc0]), // MessagePack nil
            Some(Ok(bytes)) => bytes,
            Some(Err(err)) => {
                return Err(Error::Spawn {
                    process: name,
                    reason: format!("the dependencies could not be encoded: {err}"),
                })
            }
        };
        let (attach_to, token) = match attach {
            Some((address, token)) => (Some(address), token),
            None => {
                let token = Token::generate().map_err(|err| Error::Spawn {
                    process: name.clone(),
                    reason: format!("could not read the OS random source for a token: {err}"),
                })?;
                (None, token)
            }
        };
        let id = self.next_id();
        let managed = Managed::new(ManagedSpec {
            id,
            identity: expected_identity::<P>(),
            schema: &crate::process::schema_of::<P>().schema,
            launch: LaunchSpec {
                name,
                binary: binary.to_path_buf(),
                isolation: options.isolation.unwrap_or(config.isolation),
                limits: config.limits,
                token,
                transport,
                bind_address: config.bind_address,
                attach_to,
            },
            launcher: launch::<P>,
            dependencies,
            default_timeout: options.timeout.or(config.resources.timeout),
            restart_policy: config.restart_policy,
            events: self.inner.events.clone(),
            monitoring: config.monitoring,
            resources: config.resources,
            pool,
            optional: options.optional,
            supervised,
        });
        // Listed before it starts, so a `shutdown` racing this spawn stops it too (its start
        // then fails with "stopped while starting") instead of missing it.
        {
            let mut processes = self.processes();
            retention::forget_ended(&mut processes, config.retention.max_ended);
            processes.push(managed.clone());
        }
        // The start runs in a task of its own and the guard kills and unlists the process if
        // this future is dropped first (a timeout around `spawn`): a launched child is never
        // left without anyone to end it, and nothing is listed that no one asked for.
        let mut guard = UnlistOnDrop {
            manager: self,
            managed: &managed,
            armed: true,
        };
        let starting = tokio::spawn({
            let managed = managed.clone();
            async move { managed.start_incarnation().await }
        });
        let started = starting.await.unwrap_or_else(|err| {
            Err(Error::Spawn {
                process: managed.name.clone(),
                reason: format!("the start failed: {err}"),
            })
        });
        guard.armed = false;
        drop(guard);
        if let Err(err) = started {
            // The start has already ended whatever it launched.
            self.processes().retain(|m| !Arc::ptr_eq(m, &managed));
            return Err(err);
        }
        Ok(managed)
    }

    /// Starts a pool of `options.size` members of process type `P`, each spawned as by
    /// [`ProcessManager::spawn`] with `options.spawn`, and returns a handle whose calls are
    /// spread over them (see [`Pool`]). Every member is ready when this returns.
    ///
    /// # Errors
    /// [`Error::Config`] naming the field for invalid options (a size of 0, `autoscale.min`
    /// over `autoscale.max`, a size outside them, ...), and every error of `spawn`: when one
    /// member cannot start, those that did are stopped and nothing is left running.
    pub async fn pool<P: Process>(
        &self,
        binary: impl AsRef<Path>,
        options: PoolOptions,
    ) -> Result<Pool<P>, Error> {
        options.check()?;
        let config = &self.inner.config;
        crate::restart_policy::validate(&config.restart_policy)?;
        config.limits.check()?;
        let id = ProcessId::from_raw(self.inner.next_id.fetch_add(1, Ordering::Relaxed));
        let name = options
            .spawn
            .name
            .clone()
            .unwrap_or_else(|| P::NAME.to_owned());
        let host = Members::<P> {
            manager: Arc::downgrade(&self.inner),
            binary: binary.as_ref().to_path_buf(),
            options: options.spawn.clone(),
            pool: id,
            _process: PhantomData,
        };
        let size = options.size;
        let core = PoolCore::new(PoolSpec {
            id,
            name,
            version: P::VERSION,
            methods: P::METHODS,
            default_timeout: options.spawn.timeout.or(config.resources.timeout),
            options,
            capacity: config.limits.max_in_flight,
            max_frame: config.limits.max_frame_size,
            events: self.inner.events.clone(),
            host: Box::new(host),
            restart_policy: config.restart_policy,
            metrics: config.monitoring.metrics,
            tracing: config.monitoring.tracing,
        });
        // Listed first, so a `shutdown` racing this call stops what it started.
        self.pools().push(core.clone());
        if let Err(err) = core.start(size).await {
            self.pools().retain(|p| !Arc::ptr_eq(p, &core));
            return Err(err);
        }
        Ok(Pool::new(core))
    }

    /// A snapshot of one process, pool or supervisor, or `None` for an unknown id.
    pub fn info(&self, id: ProcessId) -> Option<ProcessInfo> {
        match self.find(id) {
            Ok(Target::Process(managed)) => Some(managed.info()),
            Ok(Target::Pool(pool)) => Some(pool.info()),
            // A supervisor's own entry, as `list` shows it.
            Err(_) => {
                let supervisors: Vec<Arc<SupervisorCore>> = self.supervisors().clone();
                let mut entries = Vec::new();
                for supervisor in &supervisors {
                    supervisor.list_into(&mut entries);
                }
                entries.into_iter().find(|entry| entry.id == id)
            }
        }
    }

    /// Snapshots of every process, pool members included (their `pool` field names their
    /// pool), in start order. Pools themselves are not listed: `info(pool.id())` gives one.
    ///
    /// Supervision trees come first, each as its root supervisor's own entry followed by
    /// its children's, depth first in start order; `supervisor` holds each entry's path
    /// (`app`, `app/db`). Processes outside any tree follow.
    pub fn list(&self) -> Vec<ProcessInfo> {
        let supervisors: Vec<Arc<SupervisorCore>> = self.supervisors().clone();
        let mut list = Vec::new();
        for supervisor in &supervisors {
            supervisor.list_into(&mut list);
        }
        let in_trees: std::collections::HashSet<ProcessId> = list.iter().map(|p| p.id).collect();
        let processes: Vec<Arc<Managed>> = self.processes().clone();
        list.extend(
            processes
                .iter()
                .filter(|m| m.supervision.is_none() && !in_trees.contains(&m.id))
                .map(|m| m.info()),
        );
        list
    }

    /// A stream of lifecycle events of every process. Events sent before subscribing are not
    /// seen; a subscriber that falls more than 1024 events behind loses the oldest.
    pub fn subscribe(&self) -> broadcast::Receiver<ProcessEvent> {
        self.inner.events.subscribe()
    }

    /// Stops one process gracefully: new calls are refused, its `#[on_shutdown]` hooks run,
    /// calls in flight get up to `grace_period` (5 s by default) to finish, then a child gets
    /// SIGTERM and, 2 s later, SIGKILL; it is always reaped, and its whole process group is
    /// killed so no descendant survives. It is never restarted afterwards.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown id.
    pub async fn stop(&self, id: ProcessId) -> Result<(), Error> {
        match self.find(id)? {
            Target::Process(managed) => managed.stop(self.inner.config.grace_period).await,
            Target::Pool(pool) => pool.stop().await,
        }
        Ok(())
    }

    /// Ends one process at once (SIGKILL for a child), without hooks and without restart.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown id.
    pub async fn kill(&self, id: ProcessId) -> Result<(), Error> {
        match self.find(id)? {
            Target::Process(managed) => managed.kill().await,
            Target::Pool(pool) => pool.kill().await,
        }
        Ok(())
    }

    /// Stops every process gracefully, in reverse start order, and reaps every child.
    /// Handles stay valid but their calls fail with [`Error::Unavailable`].
    ///
    /// # Errors
    /// None today: a process that does not stop within the grace period is killed, and that
    /// is logged, not returned. The `Result` is part of the pinned signature, so that a
    /// failure to reap can be reported later without breaking callers.
    pub async fn shutdown(&self) -> Result<(), Error> {
        // Supervisors first, each stopping its tree in reverse order, so none restarts a
        // child the shutdown stops.
        let supervisors: Vec<Arc<SupervisorCore>> = {
            let supervisors = self.supervisors();
            // Counted under the lock `register_supervisor` checks under: a supervisor is
            // either in this list or refused.
            self.inner.shutdowns.fetch_add(1, Ordering::SeqCst);
            supervisors.clone()
        };
        for supervisor in supervisors.iter().rev() {
            supervisor.stop().await;
        }
        // Pools first: they stop taking calls and replacing members before members stop.
        let pools: Vec<Arc<PoolCore>> = self.pools().clone();
        for pool in pools.iter().rev() {
            pool.stop().await;
        }
        let processes: Vec<Arc<Managed>> = self.processes().clone();
        for managed in processes.iter().rev() {
            managed.stop(self.inner.config.grace_period).await;
        }
        Ok(())
    }
}

/// What an id names.
enum Target {
    Process(Arc<Managed>),
    Pool(Arc<PoolCore>),
}

mod members;
mod report;
mod retention;

use members::Members;
