//! A process binary hosted standalone (as under an orchestrator) for tests that play its
//! client: it listens where the test says and is killed, its socket directory removed, when
//! dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pm_core::wire::{Frame, FrameBuilder, FrameKind, Incoming};

/// A standalone process listening on a unix socket in a fresh directory, or on a free
/// loopback port over tcp or http.
pub struct Host {
    child: Child,
    address: String,
    dir: Option<std::path::PathBuf>,
}

impl Host {
    /// Starts `binary` listening with `scheme` (`unix:`, `tcp:` or `http://`) and `token`,
    /// logging errors only, and waits until it accepts connections.
    ///
    /// # Panics
    /// If the binary cannot start or does not listen within 10 s.
    pub fn start(binary: &str, scheme: &str, token: &str) -> Self {
        let (address, dir) = if scheme == "unix:" {
            let dir = std::env::temp_dir().join(format!(
                "titan-host-{}-{}",
                std::process::id(),
                unique()
            ));
            std::fs::create_dir_all(&dir).expect("directory");
            (
                format!("unix:{}", dir.join("host.sock").display()),
                Some(dir),
            )
        } else {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            (format!("{scheme}127.0.0.1:{port}"), None)
        };
        let child = Command::new(binary)
            .env("TITAN_PM_LISTEN", &address)
            .env("TITAN_PM_TOKEN", token)
            .env("TITAN_PM_LOG", "error")
            .stdin(Stdio::null())
            .spawn()
            .expect("starts");
        let host = Host {
            child,
            address,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !host.reachable() {
            assert!(Instant::now() < deadline, "the host never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        host
    }

    /// Where it listens, as `TITAN_PM_LISTEN` spells it.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The unix socket path, or the `host:port` of a tcp or http address.
    pub fn endpoint(&self) -> &str {
        self.address
            .strip_prefix("unix:")
            .or_else(|| self.address.strip_prefix("tcp:"))
            .or_else(|| self.address.strip_prefix("http://"))
            .unwrap_or(&self.address)
    }

    /// Whether its address is a unix socket.
    pub fn is_unix(&self) -> bool {
        self.address.starts_with("unix:")
    }

    fn reachable(&self) -> bool {
        if self.is_unix() {
            std::os::unix::net::UnixStream::connect(self.endpoint()).is_ok()
        } else {
            std::net::TcpStream::connect(self.endpoint()).is_ok()
        }
    }

    /// A frame connection over its transport (for `http://`, a WebSocket upgraded with
    /// `token`), before any hello.
    ///
    /// # Panics
    /// If it cannot connect.
    pub async fn frames(&self, token: &str) -> pm_transport::Connection {
        let address = self.address.parse().expect("address");
        pm_transport::connect(&address, token, 1 << 21)
            .await
            .expect("connect")
    }

    /// A frame connection that has said hello with `token` and sent `init` without
    /// dependencies, both answered.
    ///
    /// # Panics
    /// If the handshake does not succeed within 30 s.
    pub async fn handshaken(&self, token: &str) -> pm_transport::Connection {
        handshake(self.frames(token).await, token).await
    }

    /// Its resident memory, in bytes.
    ///
    /// # Panics
    /// If it has exited.
    pub fn rss(&self) -> u64 {
        let statm = std::fs::read_to_string(format!("/proc/{}/statm", self.child.id()))
            .expect("the host is alive");
        let pages: u64 = statm
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .expect("pages");
        pages * 4096
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A number no other call in this process returns.
fn unique() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The next frame on `receiver`.
///
/// # Panics
/// If none comes within 30 s, or the connection ends or fails instead.
pub async fn next_frame(receiver: &mut pm_transport::FrameReceiver) -> Frame {
    match tokio::time::timeout(Duration::from_secs(30), receiver.recv()).await {
        Ok(Some(Ok(Incoming::Frame(frame)))) => frame,
        Ok(other) => panic!("expected a frame, got {other:?}"),
        Err(_) => panic!("no frame within 30 s"),
    }
}

/// Says hello with `token` on `conn` and sends `init` without dependencies; returns the
/// connection once both are answered.
///
/// # Panics
/// If either is not answered within 30 s, or not as expected.
pub async fn handshake(
    mut conn: pm_transport::Connection,
    token: &str,
) -> pm_transport::Connection {
    conn.sender.send(crate::hello_frame(token)).expect("hello");
    let welcome = next_frame(&mut conn.receiver).await;
    assert_eq!(welcome.kind(), FrameKind::Welcome, "{welcome:?}");
    let mut init = FrameBuilder::new(FrameKind::Init, 1, 1 << 20);
    init.raw(&[0xc0]).expect("nil");
    conn.sender
        .send(init.finish().expect("fits"))
        .expect("init");
    let ready = next_frame(&mut conn.receiver).await;
    assert_eq!(ready.kind(), FrameKind::ReplyOk, "{ready:?}");
    conn
}

/// A process of type `P` hosted on a unix socket in a fresh directory, in the calling
/// runtime (as a process binary hosts itself, without the binary): for tests that play its
/// client and need to reach into the process. The hosting is aborted and the directory
/// removed when dropped.
pub struct InProcessHost {
    task: tokio::task::JoinHandle<Result<(), pm_runtime::Error>>,
    address: pm_runtime::Address,
    dir: std::path::PathBuf,
}

impl InProcessHost {
    /// Hosts `P` with `token` in a directory named after `name`, and waits until it listens.
    ///
    /// # Panics
    /// If the directory cannot be made, or the host does not listen within 10 s.
    pub async fn start<P: pm_runtime::Process>(name: &str, token: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "pm-tests-in-process-{}-{name}-{}",
            std::process::id(),
            unique()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("directory");
        let path = dir.join("process.sock");
        let address = pm_runtime::Address::Unix(path.clone());
        let task = tokio::spawn(pm_runtime::host::host::<P>(
            pm_runtime::host::HostOptions::new(address.clone(), token),
        ));
        let hosted = Self { task, address, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&path).is_err() {
            assert!(Instant::now() < deadline, "the host never listened");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        hosted
    }

    /// A frame connection that has said hello with `token` and sent `init`, both answered.
    ///
    /// # Panics
    /// If the connection or the handshake fails.
    pub async fn handshaken(&self, token: &str) -> pm_transport::Connection {
        let conn = pm_transport::connect(&self.address, token, 1 << 21)
            .await
            .expect("connect");
        handshake(conn, token).await
    }
}

impl Drop for InProcessHost {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The next frame on `conn` within `limit`; `None` when none came in time.
///
/// # Panics
/// If the connection ends or fails instead.
pub async fn frame_within(conn: &mut pm_transport::Connection, limit: Duration) -> Option<Frame> {
    match tokio::time::timeout(limit, conn.receiver.recv()).await {
        Ok(Some(Ok(Incoming::Frame(frame)))) => Some(frame),
        Ok(other) => panic!("expected a frame, got {other:?}"),
        Err(_) => None,
    }
}
