//! Shared helpers of the end-to-end tests.

pub mod capture;
pub mod http;
pub mod resources;
pub mod shapes;
pub mod standalone;
pub mod tree;

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
            // One write per line: hooks run concurrently, and O_APPEND keeps a single write whole.
            let _ = file.write_all(format!("{line} pid={}\n", std::process::id()).as_bytes());
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

/// A process stopped with SIGSTOP, continued with SIGCONT when dropped, so that a failing
/// test never leaves a stopped process behind for the teardown to wait on.
pub struct Stopped(i32);

impl Stopped {
    /// Stops `pid`.
    ///
    /// # Panics
    /// If the signal cannot be sent.
    pub fn stop(pid: u32) -> Self {
        let pid = i32::try_from(pid).expect("pid");
        // SAFETY: sending a signal has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0, "SIGSTOP");
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

/// Whether `pid` is alive: exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

/// Waits up to `within` for `pid` to be dead (gone or a zombie); true if it is.
pub async fn wait_dead(pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if !pid_alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    !pid_alive(pid)
}

/// How a `Crasher` dies.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CrashPlan {
    /// Exit this long after `init`.
    pub after_ms: u64,
    /// The exit code.
    pub code: i32,
    /// When set: the first incarnation (the one that finds no file here, and creates it)
    /// lives `first_after_ms` instead.
    pub marker: Option<String>,
    /// See `marker`.
    pub first_after_ms: u64,
}

/// A process that exits on its own after a while, every incarnation.
#[derive(Debug)]
pub struct Crasher;

#[process(name = "crasher", version = "1.0.0")]
impl Crasher {
    /// Schedules the exit.
    pub async fn init(plan: CrashPlan) -> Self {
        let mut after = plan.after_ms;
        if let Some(marker) = &plan.marker {
            if std::fs::metadata(marker).is_err() {
                let _ = std::fs::write(marker, b"first");
                after = plan.first_after_ms;
            }
        }
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(after)).await;
            std::process::exit(plan.code);
        });
        Crasher
    }

    /// The pid serving calls.
    #[public]
    pub async fn pid(&self) -> u32 {
        std::process::id()
    }
}

/// Counts calls whose future was dropped before finishing.
struct AbortCounter<'a> {
    counter: &'a std::sync::atomic::AtomicU64,
    finished: bool,
}

impl Drop for AbortCounter<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.counter
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// Takes one off a counter when dropped.
struct Decrement<'a>(&'a std::sync::atomic::AtomicU64);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A process for lifecycle tests: slow calls that notice being aborted, output, descendants,
/// memory growth, exits, a health check that can be made to fail.
#[derive(Debug, Default)]
pub struct Lifecycle {
    aborted: std::sync::atomic::AtomicU64,
    hoard: std::sync::Mutex<Vec<Vec<u8>>>,
    sick: std::sync::atomic::AtomicBool,
    health_delay_ms: std::sync::atomic::AtomicU64,
    running: std::sync::atomic::AtomicU64,
    most_running: std::sync::atomic::AtomicU64,
    slow_running: std::sync::atomic::AtomicU64,
}

#[process(name = "lifecycle", version = "1.0.0")]
impl Lifecycle {
    /// Sleeps `millis`; a call aborted before the end is counted.
    #[public]
    pub async fn slow(&self, millis: u64) -> u64 {
        use std::sync::atomic::Ordering::SeqCst;
        let mut guard = AbortCounter {
            counter: &self.aborted,
            finished: false,
        };
        self.slow_running.fetch_add(1, SeqCst);
        let _running = Decrement(&self.slow_running);
        tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
        guard.finished = true;
        millis
    }

    /// How many calls of `slow` are running now.
    #[public]
    pub async fn slow_running(&self) -> u64 {
        self.slow_running.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Sleeps `millis` and returns the most calls ever seen running at once in this process.
    #[public]
    pub async fn probe(&self, millis: u64) -> u64 {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.running.fetch_add(1, SeqCst) + 1;
        self.most_running.fetch_max(now, SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
        self.running.fetch_sub(1, SeqCst);
        self.most_running.load(SeqCst)
    }

    /// How many calls were aborted.
    #[public]
    pub async fn aborted(&self) -> u64 {
        self.aborted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The pid serving calls.
    #[public]
    pub async fn pid(&self) -> u32 {
        std::process::id()
    }

    /// Writes `lines` numbered lines to stdout, then exits with `code` at once.
    #[public]
    pub async fn print_and_exit(&self, lines: u32, code: i32) {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        for i in 0..lines {
            let _ = writeln!(out, "line {i} of {lines}");
        }
        let _ = out.flush();
        std::process::exit(code);
    }

    /// Writes `mib` MiB to stdout as fast as it can, in lines of `line_len` bytes (one line
    /// without a newline when `line_len` is 0); returns the bytes written.
    #[public]
    pub async fn flood(&self, mib: u64, line_len: u64) -> u64 {
        use std::io::Write;
        let total = mib.saturating_mul(1024 * 1024);
        let len = if line_len == 0 { 64 * 1024 } else { line_len };
        let mut chunk = vec![b'f'; usize::try_from(len).unwrap_or(64 * 1024)];
        if line_len > 0 {
            if let Some(last) = chunk.last_mut() {
                *last = b'\n';
            }
        }
        let mut out = std::io::stdout().lock();
        let mut written = 0;
        while written < total {
            if out.write_all(&chunk).is_err() {
                break;
            }
            written += len;
        }
        let _ = out.flush();
        written
    }

    /// Exits with `code` soon after answering.
    #[public]
    pub async fn exit_soon(&self, code: i32) {
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            std::process::exit(code);
        });
    }

    /// Starts a grandchild (`sleep 1000`) in this process's group and returns its pid.
    #[public]
    pub async fn spawn_grandchild(&self) -> u32 {
        match std::process::Command::new("sleep").arg("1000").spawn() {
            Ok(child) => child.id(),
            Err(_) => 0,
        }
    }

    /// Starts the allocating binary at `path` as a child of this process, holding `mib` MiB,
    /// and returns its pid once its memory is touched (0 when it cannot be started).
    #[public]
    pub async fn spawn_hog(&self, path: String, mib: u64) -> u32 {
        use std::io::BufRead;
        let started = std::process::Command::new(path)
            .arg(mib.to_string())
            .stdout(std::process::Stdio::piped())
            .spawn();
        let Ok(mut child) = started else { return 0 };
        let pid = child.id();
        let Some(stdout) = child.stdout.take() else {
            return 0;
        };
        let ready = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            let read = std::io::BufReader::new(stdout).read_line(&mut line);
            // Left running: reaped when this process exits, or killed with its group.
            drop(child);
            read.is_ok() && line.starts_with("ready")
        })
        .await
        .unwrap_or(false);
        if ready {
            pid
        } else {
            0
        }
    }

    /// Starts `sleep 30` in a process group of its own (as a daemonizing program would), so
    /// it outlives this process and its group; returns its pid.
    #[public]
    pub async fn spawn_daemon(&self) -> u32 {
        use std::os::unix::process::CommandExt;
        match std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
        {
            Ok(child) => child.id(),
            Err(_) => 0,
        }
    }

    /// Waits `millis`, counting itself in [`LINGERING`] while it runs and in
    /// [`LINGER_DROPPED`] if its future is dropped before the end. The counters are statics,
    /// readable by a test that runs this process in-process.
    #[public]
    pub async fn linger(&self, millis: u64) {
        use std::sync::atomic::Ordering::SeqCst;
        struct Guard(bool);
        impl Drop for Guard {
            fn drop(&mut self) {
                LINGERING.fetch_sub(1, SeqCst);
                if !self.0 {
                    LINGER_DROPPED.fetch_add(1, SeqCst);
                }
            }
        }
        LINGERING.fetch_add(1, SeqCst);
        let mut guard = Guard(false);
        tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
        guard.0 = true;
    }

    /// Ignores SIGTERM from now on.
    #[public]
    pub async fn ignore_sigterm(&self) {
        // SAFETY: installing SIG_IGN has no memory-safety preconditions.
        unsafe {
            libc::signal(libc::SIGTERM, libc::SIG_IGN);
        }
    }

    /// Keeps a core busy for `millis` milliseconds.
    #[public]
    pub async fn spin(&self, millis: u64) -> u64 {
        let until = std::time::Instant::now() + std::time::Duration::from_millis(millis);
        let mut n = 0u64;
        while std::time::Instant::now() < until {
            n = n.wrapping_add(1);
        }
        n
    }

    /// How many bytes `data` has: a call whose argument is as large as the caller likes.
    #[public]
    pub async fn swallow(&self, data: String) -> u64 {
        data.len() as u64
    }

    /// A reply of `len` bytes (at most 1 MiB): a small call with a large answer.
    #[public]
    pub async fn payload(&self, len: u64) -> String {
        "p".repeat(usize::try_from(len.min(1 << 20)).unwrap_or(0))
    }

    /// Makes the health check report unhealthy from now on.
    #[public]
    pub async fn fall_ill(&self) {
        self.sick.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Makes every health check take `millis` from now on.
    #[public]
    pub async fn slow_down_health(&self, millis: u64) {
        self.health_delay_ms
            .store(millis, std::sync::atomic::Ordering::SeqCst);
    }

    /// Healthy until `fall_ill`; takes as long as `slow_down_health` said.
    #[health_check]
    pub async fn health(&self) -> HealthStatus {
        let delay = self
            .health_delay_ms
            .load(std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        if self.sick.load(std::sync::atomic::Ordering::SeqCst) {
            HealthStatus::unhealthy().with_check("mood", CheckStatus::Fail, Some("ill".into()))
        } else {
            HealthStatus::healthy()
        }
    }

    /// What this process's standard input is (the target of `/proc/self/fd/0`), and how many
    /// bytes reading it to the end gave.
    #[public]
    pub async fn stdin(&self) -> (String, u64) {
        let target = std::fs::read_link("/proc/self/fd/0")
            .map(|path| path.display().to_string())
            .unwrap_or_else(|err| format!("unreadable: {err}"));
        let read = tokio::task::spawn_blocking(|| {
            std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink()).unwrap_or(u64::MAX)
        })
        .await
        .unwrap_or(u64::MAX);
        (target, read)
    }

    /// Allocates and touches `mib` MiB, and keeps it.
    #[public]
    pub async fn allocate(&self, mib: u64) -> u64 {
        let block = vec![1u8; (mib as usize) << 20];
        let total = block
            .iter()
            .step_by(4096)
            .map(|b| u64::from(*b))
            .sum::<u64>();
        if let Ok(mut hoard) = self.hoard.lock() {
            hoard.push(block);
        }
        total
    }
}

/// What a process saw of a call's trace context.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SeenTrace {
    /// The trace id, 32 hex digits.
    pub trace_id: String,
    /// The process's span for the call.
    pub span_id: String,
    /// The caller's span, the parent of the process's.
    pub parent_id: Option<String>,
}

/// A process that reports the trace context its calls arrive with.
#[derive(Debug, Default)]
pub struct Tracer;

#[process(name = "tracer", version = "1.0.0")]
impl Tracer {
    /// The trace context this call runs under, if it carried one; logs a line inside the
    /// call's span.
    #[public]
    pub async fn seen(&self) -> Option<SeenTrace> {
        tracing::info!("traced call arrived");
        pm_runtime::trace::current().map(|ctx| SeenTrace {
            trace_id: ctx.trace_id().to_string(),
            span_id: ctx.span_id().to_string(),
            parent_id: ctx.parent_id().map(|id| id.to_string()),
        })
    }
}

/// `Lifecycle::linger` calls running now, in this OS process.
pub static LINGERING: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// `Lifecycle::linger` calls whose future was dropped before the end, in this OS process.
pub static LINGER_DROPPED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A process whose `init` takes as many milliseconds as its dependencies say.
#[derive(Debug)]
pub struct SlowStart;

#[process(name = "slow-start", version = "1.0.0")]
impl SlowStart {
    /// Sleeps `millis`, then is ready.
    pub async fn init(millis: u64) -> Self {
        tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
        SlowStart
    }

    /// The pid serving calls.
    #[public]
    pub async fn pid(&self) -> u32 {
        std::process::id()
    }
}

/// A process with one well-behaved shutdown hook between one that panics and one that
/// hangs, to show neither holds up the others or the stop.
#[derive(Debug)]
pub struct UnrulyHooks {
    path: std::path::PathBuf,
}

#[process(name = "unruly-hooks", version = "1.0.0")]
impl UnrulyHooks {
    /// Takes the file the good hook writes.
    pub async fn init(path: String) -> Self {
        Self { path: path.into() }
    }

    /// The pid serving calls.
    #[public]
    pub async fn pid(&self) -> u32 {
        std::process::id()
    }

    /// Panics.
    #[on_shutdown]
    pub async fn explode(&self) {
        panic!("a hook that panics");
    }

    /// Never finishes.
    #[on_shutdown]
    pub async fn hang(&self) {
        std::future::pending::<()>().await;
    }

    /// Writes the file.
    #[on_shutdown]
    pub async fn record(&self) {
        let _ = std::fs::write(&self.path, format!("recorded pid={}", std::process::id()));
    }
}

/// Gives each instance of [`PoolWorker`] in this OS process its own number.
static NEXT_INSTANCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A pool member for the pool tests: it says who it is (pid and instance, so members are
/// told apart under every isolation), can be slowed down, can fail, and counts its calls
/// running right now.
#[derive(Debug)]
pub struct PoolWorker {
    instance: u64,
    delay_ms: std::sync::atomic::AtomicU64,
    running: std::sync::atomic::AtomicU64,
}

impl Default for PoolWorker {
    fn default() -> Self {
        Self {
            instance: NEXT_INSTANCE.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
            delay_ms: std::sync::atomic::AtomicU64::new(0),
            running: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

/// Which member answered: its OS pid and its instance number within that OS process.
pub type Who = (u32, u64);

impl PoolWorker {
    fn who_am_i(&self) -> Who {
        (std::process::id(), self.instance)
    }

    async fn hold(&self, millis: u64) -> Who {
        use std::sync::atomic::Ordering::SeqCst;
        self.running.fetch_add(1, SeqCst);
        tokio::time::sleep(Duration::from_millis(millis)).await;
        self.running.fetch_sub(1, SeqCst);
        self.who_am_i()
    }
}

#[process(name = "pool-worker", version = "1.0.0")]
impl PoolWorker {
    /// Who answered, after the delay set with `set_delay`.
    #[public]
    pub async fn who(&self) -> Who {
        let delay = self.delay_ms.load(std::sync::atomic::Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        self.who_am_i()
    }

    /// Who answered; marked idempotent, so a pool retries it elsewhere when its member dies.
    #[public(idempotent)]
    pub async fn who_again(&self) -> Who {
        self.who_am_i()
    }

    /// Sleeps `millis`, then says who answered. Idempotent.
    #[public(idempotent)]
    pub async fn hold_again(&self, millis: u64) -> Who {
        self.hold(millis).await
    }

    /// Sleeps `millis`, then says who answered. Not idempotent.
    #[public]
    pub async fn hold_once(&self, millis: u64) -> Who {
        self.hold(millis).await
    }

    /// Calls running in this member right now.
    #[public]
    pub async fn running(&self) -> u64 {
        self.running.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Makes every later `who` take `millis` longer; says who was slowed.
    #[public]
    pub async fn set_delay(&self, millis: u64) -> Who {
        self.delay_ms
            .store(millis, std::sync::atomic::Ordering::SeqCst);
        self.who_am_i()
    }

    /// Panics: a failure for the circuit breaker.
    #[public]
    pub async fn boom(&self) {
        panic!("boom on purpose");
    }
}

/// Polls `check` every 20 ms until it holds or `within` passes; whether it held.
pub async fn eventually(within: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A pool of `size` members of `P` started from `binary`, with every other option at its
/// default.
///
/// # Panics
/// When the pool does not start.
pub async fn pool_of<P: pm_runtime::Process>(
    pm: &ProcessManager,
    binary: &str,
    size: usize,
) -> pm_runtime::Pool<P> {
    pm.pool::<P>(
        binary,
        PoolOptions {
            size,
            ..Default::default()
        },
    )
    .await
    .expect("the pool starts")
}

/// `future`'s output.
///
/// # Panics
/// If `future` does not complete within `limit` (the message names `what`).
pub async fn within<T>(
    what: &str,
    limit: Duration,
    future: impl std::future::Future<Output = T>,
) -> T {
    match tokio::time::timeout(limit, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what} did not complete within {limit:?}"),
    }
}

/// Runs `call` in a task and returns the task once the call has been polled once: a call to
/// a running process has taken its in-flight slot and been sent by then (calls on one
/// connection arrive in order, so a call made after it reaches the process after it).
pub async fn start_call<T: Send + 'static>(
    call: impl std::future::Future<Output = T> + Send + 'static,
) -> tokio::task::JoinHandle<T> {
    let (polled, was_polled) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut call = std::pin::pin!(call);
        let mut polled = Some(polled);
        std::future::poll_fn(|cx| {
            let poll = std::future::Future::poll(call.as_mut(), cx);
            if let Some(polled) = polled.take() {
                let _ = polled.send(());
            }
            poll
        })
        .await
    });
    let _ = was_polled.await;
    task
}

/// A `Hello` frame presenting `token`, as a raw peer sends it.
///
/// # Panics
/// Never for a token that fits in a MiB.
pub fn hello_frame(token: &str) -> pm_core::wire::Frame {
    let mut builder = pm_core::wire::FrameBuilder::new(pm_core::wire::FrameKind::Hello, 0, 1 << 20);
    builder
        .named(&pm_core::wire::Hello {
            protocol: pm_core::wire::PROTOCOL_VERSION,
            token: token.into(),
        })
        .expect("a hello encodes");
    builder.finish().expect("a hello fits")
}
