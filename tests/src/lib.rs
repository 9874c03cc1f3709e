//! Shared helpers of the end-to-end tests.

use std::time::{Duration, Instant};

/// Whether an OS process with this pid exists (zombies included).
pub fn pid_exists(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Waits up to `within` for `pid` to disappear (reaped, not just dead); true if it did.
/// Async, so the runtime that reaps children keeps running meanwhile.
pub async fn wait_gone(pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if !pid_exists(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    !pid_exists(pid)
}

use pm_runtime::prelude::*;

/// A process whose shutdown hooks append to a file named by its dependencies, so a test can
/// observe that they ran (and in which process).
#[derive(Debug)]
pub struct HookRecorder {
    path: std::path::PathBuf,
}

impl HookRecorder {
    fn append(&self, line: &str) {
        use std::io::Write;
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
        {
            let _ = writeln!(file, "{line} pid={}", std::process::id());
        }
    }
}

#[process(name = "hook-recorder", version = "1.0.0")]
impl HookRecorder {
    /// Takes the path of the file the hooks write to.
    pub async fn init(path: String) -> Self {
        Self { path: path.into() }
    }

    /// The pid serving calls.
    #[public]
    pub async fn pid(&self) -> u32 {
        std::process::id()
    }

    /// First hook.
    #[on_shutdown]
    pub async fn flush(&self) {
        self.append("flush");
    }

    /// Second hook.
    #[on_shutdown]
    pub async fn close(&self) {
        self.append("close");
    }
}
