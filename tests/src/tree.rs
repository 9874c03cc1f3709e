//! Supervision-tree tests' shared helpers: the tree's events as short words
//! (`crashed app/b`), collected until a condition holds, and SIGKILL for a child.

use std::time::Duration;

use pm_runtime::{ChildSpec, ProcessEvent, SpawnOptions, SupervisorEvent};
use tokio::sync::broadcast;

use crate::Lifecycle;

/// How long a test waits for the events it expects.
const WITHIN: Duration = Duration::from_secs(30);

/// A supervision event as a word and its path: `started app/c`, `gave-up app`.
pub fn word(path: &str, event: &SupervisorEvent) -> String {
    let what = match event {
        SupervisorEvent::ChildStarted { .. } => "started",
        SupervisorEvent::ChildSkipped { .. } => "skipped",
        SupervisorEvent::ChildCrashed { .. } => "crashed",
        SupervisorEvent::ChildExited => "exited",
        SupervisorEvent::ChildRestarting { .. } => "restarting",
        SupervisorEvent::ChildStopped => "stopped",
        SupervisorEvent::GaveUp { .. } => "gave-up",
        SupervisorEvent::Stopped => "supervisor-stopped",
        _ => "other",
    };
    format!("{what} {path}")
}

/// The supervision events, as words, until `done` holds for them; panics with what was seen
/// after 30 s, or when events were lost.
pub async fn words_until(
    events: &mut broadcast::Receiver<ProcessEvent>,
    mut done: impl FnMut(&[String]) -> bool,
) -> Vec<String> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WITHIN;
    while !done(&seen) {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(ProcessEvent::Supervisor { path, event })) => seen.push(word(&path, &event)),
            Ok(Ok(_)) => {}
            Ok(Err(err)) => panic!("events lost: {err}; seen {seen:?}"),
            Err(_) => panic!("timed out; seen {seen:?}"),
        }
    }
    seen
}

/// How often `word` occurs among `seen`.
pub fn count(seen: &[String], word: &str) -> usize {
    seen.iter().filter(|w| *w == word).count()
}

/// A child named `name` running the lifecycle binary at `binary`.
pub fn lifecycle(name: &str, binary: &str) -> ChildSpec {
    ChildSpec::process::<Lifecycle>(name, binary, SpawnOptions::default())
}

/// Kills `pid` with SIGKILL.
pub fn sigkill(pid: u32) {
    // SAFETY: signalling a process; no memory is involved.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}
