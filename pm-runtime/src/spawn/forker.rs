//! One long-lived thread forks every child.
//!
//! Linux sends the parent-death signal (`PR_SET_PDEATHSIG`) when the *thread* that forked the
//! child exits, not when the manager's process does. Forking on whatever thread happens to
//! call `spawn` would tie each child's life to that thread: a child spawned from
//! `spawn_blocking` (whose threads end after ten idle seconds), from a short-lived helper
//! thread, or from a worker thread of a runtime that is later dropped would be killed with it.
//! Forking on a thread that lives as long as the process gives the signal the meaning it is
//! meant to have: the child dies when the manager's process dies, and only then.

use std::sync::mpsc;
use std::sync::OnceLock;

type Job = Box<dyn FnOnce() + Send>;

/// The forking thread's queue; `None` when the thread could not be started.
fn queue() -> Option<&'static mpsc::Sender<Job>> {
    static QUEUE: OnceLock<Option<mpsc::Sender<Job>>> = OnceLock::new();
    QUEUE
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Job>();
            let started = std::thread::Builder::new()
                .name("titan-pm-forker".into())
                .spawn(move || {
                    // Lives until the process ends: the sender is never dropped.
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                });
            match started {
                Ok(_) => Some(tx),
                Err(err) => {
                    tracing::warn!(
                        %err,
                        "could not start the forking thread; children are forked by the \
                         calling thread and die with it"
                    );
                    None
                }
            }
        })
        .as_ref()
}

/// Spawns `command` from the forking thread, inside the current tokio runtime's context, and
/// waits for the fork and exec to finish (as `Command::spawn` itself would).
///
/// # Errors
/// Whatever `Command::spawn` returns; `Other` when the forking thread is gone.
///
/// # Panics
/// Where `Command::spawn` itself would (e.g. a runtime built without I/O enabled): the panic
/// is caught on the forking thread, which goes on serving, and resumed here in the caller.
/// Called outside a tokio runtime, it spawns on the calling thread, where `tokio::process`
/// reports its own error.
pub(crate) fn spawn(
    mut command: tokio::process::Command,
) -> std::io::Result<tokio::process::Child> {
    let (Some(queue), Ok(runtime)) = (queue(), tokio::runtime::Handle::try_current()) else {
        return command.spawn();
    };
    let (reply_tx, reply_rx) = mpsc::sync_channel(1);
    let job: Job = Box::new(move || {
        let spawned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _context = runtime.enter();
            command.spawn()
        }));
        let _ = reply_tx.send(spawned);
    });
    queue
        .send(job)
        .map_err(|_| std::io::Error::other("the forking thread is gone"))?;
    match reply_rx.recv() {
        Ok(Ok(spawned)) => spawned,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => Err(std::io::Error::other(
            "the forking thread ended during a spawn",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_spawn_panics_in_the_caller_and_the_forking_thread_goes_on() {
        // A runtime without I/O makes `tokio::process` panic.
        let without_io = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let panicked = std::panic::catch_unwind(|| {
            without_io.block_on(async { spawn(tokio::process::Command::new("true")) })
        });
        assert!(panicked.is_err(), "the panic reaches the caller");
        let with_io = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let status = with_io.block_on(async {
            spawn(tokio::process::Command::new("true"))
                .expect("the forking thread still serves")
                .wait()
                .await
        });
        assert!(status.expect("waits").success());
    }

    fn state_of(pid: u32) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat[stat.rfind(')')? + 1..].trim_start().chars().next()
    }

    #[test]
    fn a_child_with_a_parent_death_signal_outlives_the_thread_that_asked_for_it() {
        let asker = std::thread::spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let mut command = tokio::process::Command::new("sleep");
                command.arg("30");
                // SAFETY: prctl is async-signal-safe.
                unsafe {
                    command.pre_exec(|| {
                        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
                spawn(command).expect("spawns").id().expect("a pid")
            })
        });
        let pid = asker.join().expect("the asking thread ends");
        std::thread::sleep(std::time::Duration::from_millis(300));
        let state = state_of(pid);
        // SAFETY: signalling and reaping our own child.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
            libc::waitpid(pid as i32, std::ptr::null_mut(), 0);
        }
        assert!(
            matches!(state, Some(s) if s != 'Z'),
            "the child died with the thread that asked for it (state {state:?})"
        );
    }
}
