//! Starting one incarnation of a process under each isolation.

pub(crate) mod child;
pub(crate) mod inline;
pub(crate) mod worker;

use std::path::PathBuf;

use pm_core::{Error, Isolation, Limits};
use pm_transport::Connection;
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
}

impl LaunchSpec {
    pub(crate) fn serve_options(&self) -> ServeOptions {
        ServeOptions {
            token: self.token.clone(),
            max_frame: self.limits.max_frame_size,
            max_in_flight: self.limits.max_in_flight,
        }
    }
}

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
}

/// A started incarnation, before the handshake.
#[derive(Debug)]
pub(crate) struct Launched {
    /// The connection to it.
    pub(crate) conn: Connection,
    /// Becomes `Some(how it ended)` once it has ended (for a child: once it is reaped).
    pub(crate) exit: watch::Receiver<Option<String>>,
    pub(crate) control: Control,
}

/// Starts one incarnation of `P` under the spec's isolation.
pub(crate) fn launch<P: Process>(spec: &LaunchSpec) -> Result<Launched, Error> {
    match spec.isolation {
        Isolation::Child => child::launch(spec),
        Isolation::Worker => worker::launch::<P>(spec),
        Isolation::None => Ok(inline::launch::<P>(spec)),
    }
}
