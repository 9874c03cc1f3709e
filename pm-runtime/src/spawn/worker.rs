//! `Isolation::Worker`: the process runs on a dedicated thread with its own runtime.

use std::panic::AssertUnwindSafe;

use pm_core::Error;
use tokio::sync::watch;

use crate::catch::panic_message;
use crate::process::Process;
use crate::rpc::server::serve;
use crate::spawn::{Control, LaunchSpec, Launched};

pub(crate) fn launch<P: Process>(spec: &LaunchSpec) -> Result<Launched, Error> {
    let (client_end, server_end) = pm_transport::channel_pair();
    let (exit_tx, exit) = watch::channel(None);
    let opts = spec.serve_options();
    let thread = std::thread::Builder::new()
        .name(format!("pm-worker-{}", spec.name))
        .spawn(move || {
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|err| format!("worker runtime could not start: {err}"))?;
                let end = runtime.block_on(serve::<P>(server_end, opts));
                runtime.shutdown_background();
                Ok::<_, String>(format!("worker ended: {end:?}"))
            }));
            let reason = match outcome {
                Ok(Ok(reason)) | Ok(Err(reason)) => reason,
                Err(panic) => format!("worker panicked: {}", panic_message(panic.as_ref())),
            };
            exit_tx.send_replace(Some(reason));
        })
        .map_err(|err| Error::Spawn {
            process: spec.name.clone(),
            reason: format!("could not start a worker thread: {err}"),
        })?;
    Ok(Launched {
        conn: client_end,
        exit,
        control: Control::Worker {
            thread: Some(thread),
        },
    })
}
