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
/// Never; called outside a tokio runtime, it spawns on the calling thread, which makes
/// `tokio::process` report its own error.
pub(crate) fn spawn(
    mut command: tokio::process::Command,
) -> std::io::Result<tokio::process::Child> {
    let (Some(queue), Ok(runtime)) = (queue(), tokio::runtime::Handle::try_current()) else {
        return command.spawn();
    };
    let (reply_tx, reply_rx) = mpsc::sync_channel(1);
    let job: Job = Box::new(move || {
        let _context = runtime.enter();
        let _ = reply_tx.send(command.spawn());
    });
    queue
        .send(job)
        .map_err(|_| std::io::Error::other("the forking thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| std::io::Error::other("the forking thread ended during a spawn"))?
}

#[cfg(test)]
mod tests {
    use super::*;

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
