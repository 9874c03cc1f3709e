//! The child's side: what `process_main!` runs.

use std::io::Write;
use std::os::fd::FromRawFd;
use std::process::ExitCode;
use std::time::Duration;

use pm_core::Error;

use crate::bootstrap::{Bootstrap, BootstrapError, SocketRole, BOOTSTRAP_ENV};
use crate::process::Process;
use crate::rpc::server::{serve, serve_listener, ServeEnd, ServeOptions};

/// The environment variable that makes a process binary host itself standalone: the address
/// to listen on (`unix:/path`, `tcp:ip:port` or `http://ip:port`).
pub const LISTEN_ENV: &str = "TITAN_PM_LISTEN";
/// The token clients must present to a standalone process (at least 16 characters).
pub const TOKEN_ENV: &str = "TITAN_PM_TOKEN";
/// Optional: the dependencies of a standalone process's `init`, as JSON.
pub const DEPENDENCIES_ENV: &str = "TITAN_PM_DEPENDENCIES";

/// The environment variable listing, comma-separated, the user ids besides the process's own
/// and root that may connect to a standalone process's unix socket
/// ([`HostOptions::peer_uids`]).
pub const PEER_UIDS_ENV: &str = "TITAN_PM_PEER_UIDS";

/// The log level of a process binary's own `tracing` output (`error`, `warn`, `info`,
/// `debug`, `trace` or `off`; default `info`). A child writes it to stderr and the manager
/// forwards each line into its own `tracing` at the same level.
pub const LOG_ENV: &str = crate::logging::LOG_ENV;

/// The shortest token a standalone host accepts.
const MIN_TOKEN_LEN: usize = 16;

/// Options of a standalone host (see [`host`]).
#[derive(Clone)]
pub struct HostOptions {
    /// Where to listen.
    pub address: pm_core::Address,
    /// The token every connection must present (at least 16 characters).
    pub token: String,
    /// Frame size and in-flight bounds.
    pub limits: pm_core::Limits,
    /// How long shutdown hooks may take after SIGTERM or Ctrl-C. Default: 5 s.
    pub grace_period: Duration,
    /// Users, besides this process's own and root, whose processes may connect to a unix
    /// socket address (checked with `SO_PEERCRED` before the token). Default: none.
    pub peer_uids: Vec<u32>,
    dependencies: Option<Result<bytes::Bytes, String>>,
}

impl std::fmt::Debug for HostOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostOptions")
            .field("address", &self.address)
            .field("token", &"<redacted>")
            .field("limits", &self.limits)
            .field("grace_period", &self.grace_period)
            .field("peer_uids", &self.peer_uids)
            .finish_non_exhaustive()
    }
}

impl HostOptions {
    /// Options for listening at `address` with `token`, default limits, no dependencies.
    pub fn new(address: pm_core::Address, token: impl Into<String>) -> Self {
        Self {
            address,
            token: token.into(),
            limits: pm_core::Limits::default(),
            grace_period: Duration::from_secs(5),
            peer_uids: Vec::new(),
            dependencies: None,
        }
    }

    /// The value handed to the process's `init` (encoded now; an encoding failure surfaces
    /// when hosting starts).
    pub fn dependencies<T: serde::Serialize>(mut self, dependencies: T) -> Self {
        self.dependencies = Some(
            rmp_serde::to_vec(&dependencies)
                .map(bytes::Bytes::from)
                .map_err(|err| err.to_string()),
        );
        self
    }

    /// Reads [`LISTEN_ENV`], [`TOKEN_ENV`] and [`DEPENDENCIES_ENV`]; `None` when
    /// `TITAN_PM_LISTEN` is not set. Removes `TITAN_PM_TOKEN` from the environment so nothing
    /// the process starts inherits it: call it before starting other threads, as
    /// `process_main!` does.
    pub fn from_env() -> Option<Result<Self, Error>> {
        let address = std::env::var(LISTEN_ENV).ok()?;
        let token = std::env::var(TOKEN_ENV);
        // Nothing this process starts should inherit the secret. Called before any runtime
        // thread exists (from `process_main!`).
        std::env::remove_var(TOKEN_ENV);
        let Ok(token) = token else {
            return Some(Err(Error::Config(format!(
                "{LISTEN_ENV} is set but {TOKEN_ENV} is not: a standalone process never serves \
                 without a token"
            ))));
        };
        let address = match pm_core::Address::parse(&address) {
            Ok(address) => address,
            Err(err) => return Some(Err(Error::Config(format!("{LISTEN_ENV}: {err}")))),
        };
        let mut options = Self::new(address, token);
        if let Ok(list) = std::env::var(PEER_UIDS_ENV) {
            let parsed: Result<Vec<u32>, _> = list
                .split(',')
                .map(str::trim)
                .filter(|uid| !uid.is_empty())
                .map(str::parse::<u32>)
                .collect();
            match parsed {
                Ok(uids) => options.peer_uids = uids,
                Err(err) => {
                    return Some(Err(Error::Config(format!(
                        "{PEER_UIDS_ENV} is not a comma-separated list of user ids: {err}"
                    ))))
                }
            }
        }
        if let Ok(json) = std::env::var(DEPENDENCIES_ENV) {
            match serde_json::from_str::<serde_json::Value>(&json) {
                Ok(value) => options = options.dependencies(value),
                Err(err) => {
                    return Some(Err(Error::Config(format!(
                        "{DEPENDENCIES_ENV} is not JSON: {err}"
                    ))))
                }
            }
        }
        Some(Ok(options))
    }
}

/// Hosts process type `P` standalone at `options.address` until SIGTERM or Ctrl-C, then runs
/// its `#[on_shutdown]` hooks and returns. Managers attach with
/// [`ProcessManager::connect`](crate::ProcessManager::connect); over `http://`, people and
/// other languages can also `POST /call/{method}` a JSON array and `GET /health`.
///
/// This is how a process runs under an orchestrator (Kubernetes, Nomad, systemd): the
/// orchestrator starts and restarts the binary with `TITAN_PM_LISTEN` and `TITAN_PM_TOKEN`
/// set (the token from a secret), and `process_main!` calls this function.
///
/// # Errors
/// [`Error::Config`] for a bad address, limits out of range (see [`pm_core::Limits::check`])
/// or a token shorter than 16 characters;
/// [`Error::Spawn`] when `init` fails or the address cannot be bound.
pub async fn host<P: Process>(options: HostOptions) -> Result<(), Error> {
    if options.token.len() < MIN_TOKEN_LEN {
        return Err(Error::Config(format!(
            "the token must be at least {MIN_TOKEN_LEN} characters long"
        )));
    }
    options.limits.check()?;
    let address = options.address.clone();
    let spawn_error = |reason: String| Error::Spawn {
        process: P::NAME.to_owned(),
        reason,
    };
    let dependencies = match options.dependencies {
        None => bytes::Bytes::from_static(&[0xc0]),
        Some(Ok(bytes)) => bytes,
        Some(Err(err)) => return Err(spawn_error(format!("dependencies: {err}"))),
    };
    let cell = crate::rpc::server::build_instance::<P>(dependencies)
        .await
        .map_err(|err| spawn_error(format!("init failed: {err}")))?;
    let (listener, http, socket_path) = match &address {
        pm_transport::Address::Unix(path) => {
            let listener = std::os::unix::net::UnixListener::bind(path)
                .map_err(|err| spawn_error(format!("cannot bind {address}: {err}")))?;
            (
                pm_transport::StdListener::Unix(listener),
                false,
                Some(path.clone()),
            )
        }
        pm_transport::Address::Tcp(addr) | pm_transport::Address::Http(addr) => {
            let listener = std::net::TcpListener::bind(addr)
                .map_err(|err| spawn_error(format!("cannot bind {address}: {err}")))?;
            let http = matches!(address, pm_transport::Address::Http(_));
            (pm_transport::StdListener::Tcp(listener), http, None)
        }
    };
    tracing::info!(process = P::NAME, version = P::VERSION, %address, "hosting standalone");
    let instance: crate::rpc::server::SharedInstance<P> =
        std::sync::Arc::new(tokio::sync::OnceCell::new_with(Some(cell.clone())));
    let opts = ServeOptions {
        token: crate::token::Token::from_string(options.token),
        max_frame: options.limits.max_frame_size,
        max_in_flight: options.limits.max_in_flight,
        peer_uids: options.peer_uids,
    };
    tokio::select! {
        end = crate::rpc::server::serve_listener_with::<P>(listener, http, opts, instance) => {
            tracing::warn!(process = P::NAME, ?end, "stopped serving");
        }
        () = shutdown_signal() => {
            tracing::info!(process = P::NAME, "shutting down on signal");
        }
    }
    let hooks = crate::rpc::server::run_hooks(P::__shutdown(&cell));
    if tokio::time::timeout(options.grace_period, hooks)
        .await
        .is_err()
    {
        tracing::error!(
            process = P::NAME,
            "on_shutdown hooks did not finish within the grace period"
        );
    }
    if let Some(path) = socket_path {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Reads the bootstrap and removes it from the environment.
fn take_bootstrap() -> Result<Bootstrap, BootstrapError> {
    let text = std::env::var(BOOTSTRAP_ENV).map_err(|_| {
        BootstrapError(format!(
            "this binary is a Titan PM process and is started by a ProcessManager \
             (`ProcessManager::spawn`); the `{BOOTSTRAP_ENV}` environment variable is not set"
        ))
    })?;
    // Still single-threaded here: no runtime has started yet.
    std::env::remove_var(BOOTSTRAP_ENV);
    Bootstrap::parse(&text)
}

/// Asks the kernel to kill this process when its parent dies, then checks that the manager
/// still lives: had it died between the spawn and here, the signal would never come, and the
/// process would run on as an orphan. Started through a wrapper that does not `exec` (a
/// shell script, `timeout`), the parent is the wrapper: the signal then follows the wrapper,
/// which the manager's own signal ends.
fn arm_parent_death(parent: Option<u32>) -> Result<(), BootstrapError> {
    let Some(parent) = parent else {
        return Ok(());
    };
    // SAFETY: prctl(PR_SET_PDEATHSIG) reads and writes no memory of ours.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } < 0 {
        return Err(BootstrapError(format!(
            "cannot ask to be stopped with the manager: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: getppid has no preconditions.
    let now = unsafe { libc::getppid() };
    if u32::try_from(now).ok() == Some(parent) {
        return Ok(());
    }
    let gone = match libc::pid_t::try_from(parent) {
        Ok(pid) => {
            // SAFETY: signal 0 only checks that the process exists; nothing is sent.
            let rc = unsafe { libc::kill(pid, 0) };
            rc < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
        }
        Err(_) => true,
    };
    if gone {
        return Err(BootstrapError(format!(
            "the manager (pid {parent}) exited while this process was starting"
        )));
    }
    Ok(())
}

/// Moves the manager's socket off standard input, where the spawn placed it, onto a
/// close-on-exec descriptor of its own, and gives standard input `/dev/null` as a process
/// started by the manager had before: code reading stdin must never read the RPC stream.
/// Returns the descriptor the socket is on now; one not on 0 stays where it is.
fn take_socket_off_stdin(fd: i32) -> Result<i32, BootstrapError> {
    if fd != 0 {
        return Ok(fd);
    }
    // SAFETY: fcntl duplicates descriptor 0 (checked by the caller to be a socket) and touches
    // no memory of ours.
    let moved = unsafe { libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 3) };
    if moved < 0 {
        return Err(BootstrapError(format!(
            "cannot move the manager's socket off standard input: {}",
            std::io::Error::last_os_error()
        )));
    }
    let null = std::fs::File::open("/dev/null").map_err(|err| {
        BootstrapError(format!("cannot open /dev/null for standard input: {err}"))
    })?;
    // SAFETY: dup2 onto descriptor 0, which no Rust object of ours owns: the socket's copy
    // moved above, and `null` is closed when it drops.
    if unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 0) } < 0 {
        return Err(BootstrapError(format!(
            "cannot give standard input /dev/null: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(moved)
}

/// Checks that `fd` is an open socket before taking ownership of it, and marks it
/// close-on-exec.
fn check_socket(fd: i32) -> Result<(), BootstrapError> {
    // SAFETY: fstat only writes into the zeroed struct we pass and reads no memory of ours.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above; an invalid fd makes fstat return -1 and touch nothing.
    let rc = unsafe { libc::fstat(fd, &mut stat) };
    if rc != 0 {
        return Err(BootstrapError(format!(
            "descriptor {fd} from the bootstrap is not open: {}",
            std::io::Error::last_os_error()
        )));
    }
    if stat.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(BootstrapError(format!(
            "descriptor {fd} from the bootstrap is not a socket"
        )));
    }
    // Programs this process starts must not inherit the manager's socket: one that outlived
    // the process would keep the connection open and hide the process's death.
    // SAFETY: fcntl on a descriptor checked above; it reads and writes no memory of ours.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(BootstrapError(format!(
            "cannot mark descriptor {fd} close-on-exec: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

/// Runs process type `P` as a child of a manager: reads the bootstrap, serves the manager's
/// connection until it asks for a shutdown or goes away, and returns the exit code.
///
/// Exit codes: 0 after a shutdown or when the manager went away, 1 when the handshake or
/// `init` failed, 2 when the binary was not started by a manager.
pub fn run_process_main<P: Process>() -> ExitCode {
    if std::env::var_os(BOOTSTRAP_ENV).is_none() {
        if let Some(options) = HostOptions::from_env() {
            return run_standalone::<P>(options);
        }
    }
    crate::logging::init_child_logging();
    keep_large_buffers();
    let ready = take_bootstrap().and_then(|mut bootstrap| {
        arm_parent_death(bootstrap.parent)?;
        check_socket(bootstrap.fd)?;
        bootstrap.fd = take_socket_off_stdin(bootstrap.fd)?;
        Ok(bootstrap)
    });
    let bootstrap = match ready {
        Ok(bootstrap) => bootstrap,
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "{}: {err}", P::NAME);
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(format!("pm-{}", P::NAME))
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            let _ = writeln!(
                std::io::stderr(),
                "{}: cannot start a runtime: {err}",
                P::NAME
            );
            return ExitCode::from(1);
        }
    };
    // Serve from a runtime worker rather than the main thread, so reading, dispatch and
    // replies stay on the same worker threads instead of hopping to and from `main`.
    let serving = async move {
        let opts = ServeOptions {
            token: bootstrap.token,
            max_frame: bootstrap.max_frame,
            max_in_flight: bootstrap.max_in_flight,
            peer_uids: Vec::new(),
        };
        let fd = bootstrap.fd;
        match bootstrap.socket {
            SocketRole::Connected => {
                // SAFETY: the fd was checked to be an open socket above, and the bootstrap
                // hands it to this process alone; nothing else in the process owns it.
                let std_stream = unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) };
                let stream = std_stream
                    .set_nonblocking(true)
                    .and_then(|()| tokio::net::UnixStream::from_std(std_stream));
                match stream {
                    Ok(stream) => {
                        let conn =
                            pm_transport::from_unix_stream(stream, opts.max_frame, "socketpair");
                        serve::<P>(conn, opts).await
                    }
                    Err(err) => {
                        ServeEnd::Refused(format!("cannot use the manager's socket: {err}"))
                    }
                }
            }
            role @ (SocketRole::UnixListener
            | SocketRole::TcpListener
            | SocketRole::HttpListener) => {
                // SAFETY: as above: an open socket owned by nothing else in this process.
                let listener = unsafe {
                    if role == SocketRole::UnixListener {
                        pm_transport::StdListener::Unix(
                            std::os::unix::net::UnixListener::from_raw_fd(fd),
                        )
                    } else {
                        pm_transport::StdListener::Tcp(std::net::TcpListener::from_raw_fd(fd))
                    }
                };
                serve_listener::<P>(listener, role == SocketRole::HttpListener, opts).await
            }
        }
    };
    let end = runtime.block_on(async move {
        match tokio::spawn(serving).await {
            Ok(end) => end,
            Err(err) => ServeEnd::Refused(format!("the serving task failed: {err}")),
        }
    });
    // Calls still blocking a thread must not keep the process alive.
    runtime.shutdown_timeout(Duration::from_millis(500));
    match end {
        ServeEnd::Shutdown | ServeEnd::Disconnected => ExitCode::SUCCESS,
        ServeEnd::Refused(reason) => {
            let _ = writeln!(std::io::stderr(), "{}: {reason}", P::NAME);
            ExitCode::from(1)
        }
    }
}

/// Set to `0` to leave the allocator of a process binary as glibc configures it.
pub const KEEP_BUFFERS_ENV: &str = "TITAN_PM_KEEP_BUFFERS";

/// How long, in microseconds, a call's first poll in its connection's call loop may take
/// before it counts against its method (200 by default); `0` polls no call in the loop, so
/// every call runs on a runner task. Read once by each process that serves calls: a process
/// binary, and a manager whose Worker and None instances serve in its own process. A value
/// that is not a number means the default.
pub const FIRST_POLL_BUDGET_ENV: &str = "TITAN_PM_FIRST_POLL_BUDGET_US";

/// Lets the allocator of a process binary keep and reuse the large buffers that big messages
/// need. By default glibc serves every block over 128 KiB with a fresh `mmap` and returns it
/// on free, so each large call paid for mapping and faulting in its memory again (a fifth of
/// the child's time on a 1 MiB echo). Blocks up to 32 MiB now come from the heap, and each
/// malloc arena (about one per runtime worker thread) keeps up to 64 MiB of free heap at its
/// top. An idle child's memory is unchanged; after large messages a child keeps what they
/// needed (a child that echoed 12 MiB messages six at a time stayed at 67 MiB instead of
/// 43 MiB), which a pool's `Recycle::max_memory` sees as the member's memory.
/// `TITAN_PM_KEEP_BUFFERS=0` turns this off.
fn keep_large_buffers() {
    if std::env::var(KEEP_BUFFERS_ENV).is_ok_and(|v| v.trim() == "0") {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator tuning parameters and takes the allocator's
        // own locks.
        let applied = unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20) == 1
        };
        if !applied {
            tracing::debug!("the allocator refused the large-buffer settings; keeping its own");
        }
    }
}

fn run_standalone<P: Process>(options: Result<HostOptions, Error>) -> ExitCode {
    // Standalone, stderr is the orchestrator's log: the same one line per event, at the level
    // `TITAN_PM_LOG` sets, as under a manager.
    crate::logging::init_child_logging();
    keep_large_buffers();
    let outcome = options.and_then(|options| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name(format!("pm-{}", P::NAME))
            .build()
            .map_err(|err| Error::Spawn {
                process: P::NAME.to_owned(),
                reason: format!("cannot start a runtime: {err}"),
            })?;
        let result = runtime.block_on(host::<P>(options));
        runtime.shutdown_timeout(Duration::from_millis(500));
        result
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "{}: {err}", P::NAME);
            ExitCode::from(1)
        }
    }
}
