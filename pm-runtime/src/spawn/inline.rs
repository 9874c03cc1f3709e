//! `Isolation::None`: the process runs as tasks on the caller's runtime.

use tokio::sync::watch;

use crate::process::Process;
use crate::spawn::{Bound, Control, Exit, LaunchSpec, Launched, ServeOn};

pub(crate) fn launch<P: Process>(spec: &LaunchSpec, bound: Option<Bound>) -> Launched {
    let (exit_tx, exit) = watch::channel(None);
    let opts = spec.serve_options();
    let (reach, dir, serve_on) = ServeOn::split(bound);
    let task = tokio::spawn(async move {
        let end = serve_on.serve::<P>(opts).await;
        exit_tx.send_replace(Some(Exit::from_serve_end("in-process instance", &end)));
    });
    Launched {
        reach,
        dir,
        exit,
        control: Control::Inline {
            task: task.abort_handle(),
        },
    }
}
