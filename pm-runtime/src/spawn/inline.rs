//! `Isolation::None`: the process runs as tasks on the caller's runtime.

use tokio::sync::watch;

use crate::process::Process;
use crate::rpc::server::serve;
use crate::spawn::{Control, LaunchSpec, Launched};

pub(crate) fn launch<P: Process>(spec: &LaunchSpec) -> Launched {
    let (client_end, server_end) = pm_transport::channel_pair();
    let (exit_tx, exit) = watch::channel(None);
    let opts = spec.serve_options();
    let task = tokio::spawn(async move {
        let end = serve::<P>(server_end, opts).await;
        exit_tx.send_replace(Some(format!("in-process instance ended: {end:?}")));
    });
    Launched {
        conn: client_end,
        exit,
        control: Control::Inline {
            task: task.abort_handle(),
        },
    }
}
