//! `Isolation::Child`: the process is the binary, run as a child OS process.
//!
//! The child gets one end of a socketpair (or the listener the manager bound for it) as its
//! standard input, and the bootstrap in its environment. It leads its own process group (so
//! stopping it reaches its descendants), and it is killed by the kernel when the manager's
//! process dies: the child arms the parent-death signal itself, first thing (see
//! `host::arm_parent_death`), and the thread it is tied to lives as long as the process (see
//! `forker`). It also exits by itself when the connection reaches end-of-stream.
//!
//! Nothing runs between fork and exec, so the standard library spawns with `posix_spawn`, a
//! vfork: the manager's page tables are not copied, and a manager with a large heap spawns
//! as fast as a small one.

use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};

use pm_core::{CrashReason, Error};
use tokio::sync::watch;

use crate::bootstrap::{Bootstrap, SocketRole, BOOTSTRAP_ENV, CHILD_FD};
use crate::spawn::{Bound, Control, Exit, LaunchSpec, Launched, Reach};

/// Says how a child ended, for errors and events.
fn describe_exit(status: &ExitStatus) -> CrashReason {
    if let Some(code) = status.code() {
        CrashReason::Exited { code }
    } else if let Some(signal) = status.signal() {
        CrashReason::Signaled { signal }
    } else {
        CrashReason::Disconnected {
            detail: format!("ended: {status}"),
        }
    }
}

fn spawn_error(spec: &LaunchSpec, reason: String) -> Error {
    Error::Spawn {
        process: spec.name.clone(),
        reason,
    }
}

/// What the child inherits as its standard input, and what the parent keeps.
enum Inherit {
    /// A socketpair: the parent keeps its end.
    Pair {
        parent: std::os::unix::net::UnixStream,
        child: std::os::unix::net::UnixStream,
    },
    /// A listener bound by the parent; the parent connects after the spawn.
    Listener(Bound),
}

impl Inherit {
    fn role(&self) -> SocketRole {
        match self {
            Inherit::Pair { .. } => SocketRole::Connected,
            Inherit::Listener(bound) => match (&bound.listener, &bound.address) {
                (pm_transport::StdListener::Unix(_), _) => SocketRole::UnixListener,
                (_, pm_transport::Address::Http(_)) => SocketRole::HttpListener,
                (pm_transport::StdListener::Tcp(_), _) => SocketRole::TcpListener,
            },
        }
    }

    /// Splits into the descriptor the child gets and what the parent goes on with.
    fn split(self) -> (OwnedFd, Kept) {
        match self {
            Inherit::Pair { parent, child } => (OwnedFd::from(child), Kept::Pair(parent)),
            Inherit::Listener(bound) => {
                let fd = match bound.listener {
                    pm_transport::StdListener::Unix(l) => OwnedFd::from(l),
                    pm_transport::StdListener::Tcp(l) => OwnedFd::from(l),
                };
                (fd, Kept::Listening(bound.address, bound.dir))
            }
        }
    }
}

/// The parent's side once the child's descriptor is handed over.
enum Kept {
    /// The parent's end of the socketpair.
    Pair(std::os::unix::net::UnixStream),
    /// The address the child listens on; the listener's directory, if the parent made one.
    Listening(pm_transport::Address, Option<pm_transport::SocketDir>),
}

pub(crate) fn launch(spec: &LaunchSpec, bound: Option<Bound>) -> Result<Launched, Error> {
    let binary = &spec.binary;
    if !binary.exists() {
        return Err(spawn_error(
            spec,
            format!("binary `{}` does not exist", binary.display()),
        ));
    }
    let inherit = match bound {
        Some(bound) => Inherit::Listener(bound),
        None => {
            let (parent, child) = std::os::unix::net::UnixStream::pair().map_err(|err| {
                spawn_error(spec, format!("could not create a socketpair: {err}"))
            })?;
            Inherit::Pair { parent, child }
        }
    };
    let bootstrap = Bootstrap {
        fd: CHILD_FD,
        socket: inherit.role(),
        token: spec.token.clone(),
        max_frame: spec.limits.max_frame_size,
        max_in_flight: spec.limits.max_in_flight,
        parent: Some(std::process::id()),
    };
    let (child_socket, kept) = inherit.split();
    let mut command = tokio::process::Command::new(binary);
    command
        .env(BOOTSTRAP_ENV, bootstrap.encode())
        .stdin(Stdio::from(child_socket))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let mut child = super::forker::spawn(command).map_err(|err| {
        let reason = match err.kind() {
            std::io::ErrorKind::NotFound => {
                format!("binary `{}` not found: {err}", binary.display())
            }
            std::io::ErrorKind::PermissionDenied => {
                format!("binary `{}` is not executable: {err}", binary.display())
            }
            _ => format!("could not start `{}`: {err}", binary.display()),
        };
        spawn_error(spec, reason)
    })?;
    let pid = child
        .id()
        .ok_or_else(|| spawn_error(spec, "the child exited at once".into()))?;

    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(super::output::forward(
            stdout,
            spec.name.clone(),
            pid,
            "stdout",
        ));
    }
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(super::output::forward(
            stderr,
            spec.name.clone(),
            pid,
            "stderr",
        ));
    }
    let (exit_tx, exit) = watch::channel(None);
    let name = spec.name.clone();
    tokio::spawn(async move {
        let exit = match child.wait().await {
            Ok(status) => Exit {
                clean: status.success(),
                reason: describe_exit(&status),
            },
            Err(err) => Exit {
                clean: false,
                reason: CrashReason::Disconnected {
                    detail: format!("its exit status could not be read: {err}"),
                },
            },
        };
        tracing::debug!(process = %name, pid, reason = %exit, "child ended");
        exit_tx.send_replace(Some(exit));
    });

    // The command, and with it the parent's copy of the child's descriptor, is gone: the
    // child holds the only other end.
    let (reach, dir) = match kept {
        Kept::Pair(parent) => {
            let stream = parent
                .set_nonblocking(true)
                .and_then(|()| tokio::net::UnixStream::from_std(parent))
                .map_err(|err| spawn_error(spec, format!("could not use the socketpair: {err}")))?;
            let conn =
                pm_transport::from_unix_stream(stream, spec.limits.max_frame_size, "socketpair");
            (Reach::Connected(conn), None)
        }
        Kept::Listening(address, dir) => (Reach::Listening(address), dir),
    };
    Ok(Launched {
        reach,
        dir,
        exit,
        control: Control::Child { pid },
    })
}

/// Sends `signal` to the child's whole process group.
pub(crate) fn signal_group(pid: u32, signal: i32) {
    if let Ok(pgid) = i32::try_from(pid) {
        // SAFETY: kill has no memory-safety preconditions; a stale group yields ESRCH.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}
