//! Starting one incarnation of a process under each isolation.

pub(crate) mod child;
mod forker;
pub(crate) mod inline;
mod output;
pub(crate) mod worker;

use std::net::IpAddr;
use std::path::PathBuf;

use pm_core::{Error, Isolation, Limits, TransportKind};
use pm_transport::{Address, Connection, SocketDir, StdListener};
use tokio::sync::watch;

use crate::process::Process;
use crate::rpc::server::ServeOptions;
use crate::token::Token;

/// What is needed to start an incarnation.
#[derive(Debug, Clone)]
pub(crate) struct LaunchSpec {
    pub(crate) name: String,
    pub(crate) binary: PathBuf,
    pub(crate) isolation: Isolation,
    pub(crate) limits: Limits,
    pub(crate) token: Token,
    pub(crate) transport: TransportKind,
    pub(crate) bind_address: IpAddr,
    /// Set for a process hosted elsewhere that the manager attaches to instead of starting.
    pub(crate) attach_to: Option<Address>,
}

impl LaunchSpec {
    pub(crate) fn serve_options(&self) -> ServeOptions {
        ServeOptions {
            token: self.token.clone(),
            max_frame: self.limits.max_frame_size,
            max_in_flight: self.limits.max_in_flight,
            peer_uids: Vec::new(),
        }
    }
}

/// How an incarnation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Exit {
    /// It ended on its own terms: exit code 0, or a completed shutdown.
    pub(crate) clean: bool,
    /// Exit code, signal or connection loss.
    pub(crate) reason: pm_core::CrashReason,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.reason.fmt(f)
    }
}

impl Exit {
    /// How a worker or in-process instance ended, from how its serving ended.
    pub(crate) fn from_serve_end(what: &str, end: &crate::rpc::server::ServeEnd) -> Self {
        use crate::rpc::server::ServeEnd;
        match end {
            ServeEnd::Shutdown => Exit {
                clean: true,
                reason: disconnected(format!("{what} shut down")),
            },
            ServeEnd::Disconnected => Exit {
                clean: false,
                reason: disconnected(format!("{what} lost its connection")),
            },
            ServeEnd::Refused(reason) => Exit {
                clean: false,
                reason: disconnected(format!("{what} refused its connection: {reason}")),
            },
        }
    }
}

fn disconnected(detail: String) -> pm_core::CrashReason {
    pm_core::CrashReason::Disconnected { detail }
}

/// Becomes `Some` once an incarnation has ended (for a child: once it is reaped).
pub(crate) type ExitReceiver = watch::Receiver<Option<Exit>>;

/// How to end an incarnation by force.
#[derive(Debug)]
pub(crate) enum Control {
    /// A child OS process, leader of its own process group.
    Child { pid: u32 },
    /// A worker thread; it ends when its connection closes.
    Worker {
        thread: Option<std::thread::JoinHandle<()>>,
    },
    /// A task on the caller's runtime.
    Inline { task: tokio::task::AbortHandle },
    /// A process hosted elsewhere: the manager only holds a connection to it. The sender
    /// keeps the exit watch open (an attached process never reports an exit).
    Attached { _exit: watch::Sender<Option<Exit>> },
}

/// How the manager reaches a started incarnation.
#[derive(Debug)]
pub(crate) enum Reach {
    /// Already connected (socketpair or in-memory channels).
    Connected(Connection),
    /// Listening at this address; the manager connects.
    Listening(Address),
}

/// A listener the manager creates before starting the process, so the address is known and
/// no port can be taken in between.
#[derive(Debug)]
pub(crate) struct Bound {
    pub(crate) listener: StdListener,
    pub(crate) address: Address,
    pub(crate) dir: Option<SocketDir>,
}

/// What a worker or in-process instance serves: its end of in-memory channels, or the
/// listener the manager bound for it.
pub(crate) enum ServeOn {
    Channel(Connection),
    Listener(StdListener, bool),
}

impl ServeOn {
    /// Splits an optional bound listener into how the manager reaches the instance, the
    /// socket directory to keep, and what the instance serves.
    pub(crate) fn split(bound: Option<Bound>) -> (Reach, Option<SocketDir>, ServeOn) {
        match bound {
            None => {
                let (client_end, server_end) = pm_transport::channel_pair();
                (
                    Reach::Connected(client_end),
                    None,
                    ServeOn::Channel(server_end),
                )
            }
            Some(Bound {
                listener,
                address,
                dir,
            }) => {
                let http = matches!(address, Address::Http(_));
                (
                    Reach::Listening(address),
                    dir,
                    ServeOn::Listener(listener, http),
                )
            }
        }
    }

    /// Serves process type `P` until the manager's connection ends.
    pub(crate) async fn serve<P: Process>(
        self,
        opts: ServeOptions,
    ) -> crate::rpc::server::ServeEnd {
        match self {
            ServeOn::Channel(conn) => crate::rpc::server::serve::<P>(conn, opts).await,
            ServeOn::Listener(listener, http) => {
                crate::rpc::server::serve_listener::<P>(listener, http, opts).await
            }
        }
    }
}

/// Binds the listener the spec's transport needs (`None` for `Ipc`).
pub(crate) fn bind(spec: &LaunchSpec) -> Result<Option<Bound>, Error> {
    let failed = |what: &str, err: std::io::Error| Error::Spawn {
        process: spec.name.clone(),
        reason: format!("could not {what}: {err}"),
    };
    match spec.transport {
        TransportKind::Ipc => Ok(None),
        TransportKind::Unix => {
            let tag: String = spec
                .name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .take(32)
                .collect();
            let dir = SocketDir::create(None, &tag)
                .map_err(|err| failed("create a private socket directory", err))?;
            let (listener, path) = dir
                .bind("process.sock")
                .map_err(|err| failed("bind a unix socket", err))?;
            Ok(Some(Bound {
                listener: StdListener::Unix(listener),
                address: Address::Unix(path),
                dir: Some(dir),
            }))
        }
        TransportKind::Tcp => {
            let listener = std::net::TcpListener::bind((spec.bind_address, 0))
                .map_err(|err| failed("bind a tcp socket", err))?;
            let address = listener
                .local_addr()
                .map_err(|err| failed("read the tcp socket's address", err))?;
            Ok(Some(Bound {
                listener: StdListener::Tcp(listener),
                address: Address::Tcp(address),
                dir: None,
            }))
        }
        TransportKind::Http => {
            let listener = std::net::TcpListener::bind((spec.bind_address, 0))
                .map_err(|err| failed("bind a tcp socket for http", err))?;
            let address = listener
                .local_addr()
                .map_err(|err| failed("read the http socket's address", err))?;
            Ok(Some(Bound {
                listener: StdListener::Tcp(listener),
                address: Address::Http(address),
                dir: None,
            }))
        }
    }
}

/// A started incarnation, before the handshake.
#[derive(Debug)]
pub(crate) struct Launched {
    /// How to reach it.
    pub(crate) reach: Reach,
    /// The private socket directory, removed when the incarnation is dropped.
    pub(crate) dir: Option<SocketDir>,
    /// Becomes `Some(how it ended)` once it has ended (for a child: once it is reaped).
    pub(crate) exit: ExitReceiver,
    pub(crate) control: Control,
}

/// Starts one incarnation of `P` under the spec's isolation.
pub(crate) fn launch<P: Process>(spec: &LaunchSpec) -> Result<Launched, Error> {
    if let Some(address) = &spec.attach_to {
        let (exit_tx, exit) = watch::channel(None);
        return Ok(Launched {
            reach: Reach::Listening(address.clone()),
            dir: None,
            exit,
            control: Control::Attached { _exit: exit_tx },
        });
    }
    let bound = bind(spec)?;
    match spec.isolation {
        Isolation::Child => child::launch(spec, bound),
        Isolation::Worker => worker::launch::<P>(spec, bound),
        Isolation::None => Ok(inline::launch::<P>(spec, bound)),
    }
}
