//! The child's side: what `process_main!` runs.

use std::io::Write;
use std::os::fd::FromRawFd;
use std::process::ExitCode;
use std::time::Duration;

use crate::bootstrap::{Bootstrap, BootstrapError, SocketRole, BOOTSTRAP_ENV};
use crate::process::Process;
use crate::rpc::server::{serve, serve_listener, ServeEnd, ServeOptions};

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

/// Checks that `fd` is an open socket before taking ownership of it.
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
    Ok(())
}

/// Runs process type `P` as a child of a manager: reads the bootstrap, serves the manager's
/// connection until it asks for a shutdown or goes away, and returns the exit code.
///
/// Exit codes: 0 after a shutdown or when the manager went away, 1 when the handshake or
/// `init` failed, 2 when the binary was not started by a manager.
pub fn run_process_main<P: Process>() -> ExitCode {
    let bootstrap = match take_bootstrap().and_then(|b| check_socket(b.fd).map(|()| b)) {
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
    let end = runtime.block_on(async move {
        let opts = ServeOptions {
            token: bootstrap.token,
            max_frame: bootstrap.max_frame,
            max_in_flight: bootstrap.max_in_flight,
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
