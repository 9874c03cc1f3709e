//! `Isolation::Worker`: the process runs on a dedicated thread with its own runtime.

use std::panic::AssertUnwindSafe;

use pm_core::Error;
use tokio::sync::watch;

use crate::catch::panic_message;
use crate::process::Process;
use crate::spawn::{Bound, Control, Exit, LaunchSpec, Launched, ServeOn};

pub(crate) fn launch<P: Process>(
    spec: &LaunchSpec,
    bound: Option<Bound>,
) -> Result<Launched, Error> {
    let (reach, dir, serve_on) = ServeOn::split(bound);
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
                let end = runtime.block_on(serve_on.serve::<P>(opts));
                runtime.shutdown_background();
                Ok::<_, String>(Exit::from_serve_end("worker", &end))
            }));
            let exit = match outcome {
                Ok(Ok(exit)) => exit,
                Ok(Err(reason)) => Exit {
                    clean: false,
                    reason: pm_core::CrashReason::Disconnected { detail: reason },
                },
                Err(panic) => Exit {
                    clean: false,
                    reason: pm_core::CrashReason::Panicked {
                        message: panic_message(panic.as_ref()),
                    },
                },
            };
            exit_tx.send_replace(Some(exit));
        })
        .map_err(|err| Error::Spawn {
            process: spec.name.clone(),
            reason: format!("could not start a worker thread: {err}"),
        })?;
    Ok(Launched {
        reach,
        dir,
        exit,
        control: Control::Worker {
            thread: Some(thread),
        },
    })
}
