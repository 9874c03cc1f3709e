//! `Isolation::None`: the process runs as tasks on the caller's runtime.

use tokio::sync::watch;

use crate::process::Process;
use crate::rpc::server::{serve, serve_listener};
use crate::spawn::{Bound, Control, Exit, LaunchSpec, Launched, Reach};

pub(crate) fn launch<P: Process>(spec: &LaunchSpec, bound: Option<Bound>) -> Launched {
    let (exit_tx, exit) = watch::channel(None);
    let opts = spec.serve_options();
    let (reach, dir, task) = match bound {
        None => {
            let (client_end, server_end) = pm_transport::channel_pair();
            let task = tokio::spawn(async move {
                let end = serve::<P>(server_end, opts).await;
                exit_tx.send_replace(Some(Exit::from_serve_end("in-process instance", &end)));
            });
            (Reach::Connected(client_end), None, task)
        }
        Some(Bound {
            listener,
            address,
            dir,
        }) => {
            let http = matches!(address, pm_transport::Address::Http(_));
            let task = tokio::spawn(async move {
                let end = serve_listener::<P>(listener, http, opts).await;
                exit_tx.send_replace(Some(Exit::from_serve_end("in-process instance", &end)));
            });
            (Reach::Listening(address), dir, task)
        }
    };
    Launched {
        reach,
        dir,
        exit,
        control: Control::Inline {
            task: task.abort_handle(),
        },
    }
}
