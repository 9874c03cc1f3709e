//! The baselines: the same exchanges as the framework's, with nothing but tokio.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// A byte stream to the raw peer.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for S {}

/// Which socket the raw peer is reached over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Socket {
    /// A socketpair inherited on descriptor 3.
    Pair,
    /// A unix socket in a temporary directory.
    Unix,
    /// TCP on loopback.
    Tcp,
}

/// The raw echo peer (`raw-echo`), a child process, and our end of its socket.
pub struct RawPeer {
    child: Child,
    /// Our end; taken by [`RawPeer::take_stream`].
    pub stream: Option<Box<dyn Stream>>,
    dir: Option<std::path::PathBuf>,
}

impl RawPeer {
    /// Starts `binary` (the `raw-echo` peer) reached over `socket`.
    ///
    /// # Errors
    /// When the socket or the child cannot be set up.
    pub async fn start(binary: &Path, socket: Socket) -> io::Result<Self> {
        let mut command = Command::new(binary);
        command.stdin(Stdio::null());
        match socket {
            Socket::Pair => {
                let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
                let fd = theirs.as_raw_fd();
                // SAFETY: dup2 is async-signal-safe and allocates nothing.
                unsafe {
                    command.pre_exec(move || {
                        if libc::dup2(fd, 3) < 0 {
                            return Err(io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
                let child = command.spawn()?;
                drop(theirs);
                ours.set_nonblocking(true)?;
                let stream = tokio::net::UnixStream::from_std(ours)?;
                Ok(Self {
                    child,
                    stream: Some(Box::new(stream)),
                    dir: None,
                })
            }
            Socket::Unix => {
                let dir = std::env::temp_dir().join(format!(
                    "pm-bench-raw-{}-{}",
                    std::process::id(),
                    rand_suffix()
                ));
                std::fs::create_dir_all(&dir)?;
                let path = dir.join("echo.sock");
                let connected = async {
                    let listener = tokio::net::UnixListener::bind(&path)?;
                    let child = command.arg(format!("unix:{}", path.display())).spawn()?;
                    let mut peer = Self {
                        child,
                        stream: None,
                        dir: Some(dir.clone()),
                    };
                    // From here on the peer's Drop ends the child and removes the directory.
                    let (stream, _) = listener.accept().await?;
                    peer.stream = Some(Box::new(stream));
                    Ok(peer)
                };
                let peer = connected.await;
                if peer.is_err() {
                    let _ = std::fs::remove_dir_all(&dir);
                }
                peer
            }
            Socket::Tcp => {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let address = listener.local_addr()?;
                let child = command.arg(format!("tcp:{address}")).spawn()?;
                let (stream, _) = listener.accept().await?;
                stream.set_nodelay(true)?;
                Ok(Self {
                    child,
                    stream: Some(Box::new(stream)),
                    dir: None,
                })
            }
        }
    }

    /// Our end of the socket.
    ///
    /// # Panics
    /// When it was taken already.
    pub fn take_stream(&mut self) -> Box<dyn Stream> {
        self.stream.take().expect("the stream is taken once")
    }
}

impl RawPeer {
    /// Closes our end and waits for the peer to exit on its own at end-of-stream (where
    /// dropping the peer kills it): for a profiler that writes its output at exit.
    ///
    /// # Errors
    /// When waiting for the child fails.
    pub fn finish(mut self) -> io::Result<std::process::ExitStatus> {
        self.stream = None;
        self.child.wait()
    }
}

impl Drop for RawPeer {
    fn drop(&mut self) {
        self.stream = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    hasher.finish()
}

/// One length-prefixed message out and its echo back, read into `reply` (whose length is the
/// echo's: 4 + the message's).
///
/// # Errors
/// When the socket fails.
pub async fn ping<S: Stream + ?Sized>(
    stream: &mut S,
    message: &[u8],
    reply: &mut [u8],
) -> io::Result<()> {
    let mut frame = Vec::with_capacity(4 + message.len());
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    stream.write_all(&frame).await?;
    stream.read_exact(reply).await?;
    Ok(())
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Vec<u8>>>>>;

/// A raw tokio multiplexer: a pending map keyed by id, a oneshot per call, one writer task
/// (which batches whatever is queued into one write) and one reader task; the calls
/// themselves are futures of the caller's. Messages are `[len u32][id u64][payload]`.
pub struct RawMux {
    writer: mpsc::UnboundedSender<Vec<u8>>,
    pending: Pending,
    next: std::sync::atomic::AtomicU64,
}

impl RawMux {
    /// Takes over `stream` and starts its reader and writer tasks on the current runtime.
    pub fn start(stream: Box<dyn Stream>) -> Arc<Self> {
        let (mut read, mut write) = tokio::io::split(stream);
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(1 << 16);
            while let Some(frame) = rx.recv().await {
                batch.extend_from_slice(&frame);
                while let Ok(frame) = rx.try_recv() {
                    batch.extend_from_slice(&frame);
                }
                if write.write_all(&batch).await.is_err() {
                    return;
                }
                batch.clear();
            }
        });
        let pending: Pending = Arc::default();
        let table = pending.clone();
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(1 << 16);
            let mut chunk = vec![0u8; 1 << 16];
            loop {
                let n = match read.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                let mut start = 0;
                while buf.len() - start >= 12 {
                    let len = u32::from_be_bytes([
                        buf[start],
                        buf[start + 1],
                        buf[start + 2],
                        buf[start + 3],
                    ]) as usize;
                    if buf.len() - start < 4 + len {
                        break;
                    }
                    let mut id = [0u8; 8];
                    id.copy_from_slice(&buf[start + 4..start + 12]);
                    let body = buf[start + 12..start + 4 + len].to_vec();
                    let waiter = table
                        .lock()
                        .ok()
                        .and_then(|mut t| t.remove(&u64::from_be_bytes(id)));
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(body);
                    }
                    start += 4 + len;
                }
                buf.drain(..start);
            }
        });
        Arc::new(Self {
            writer: tx,
            pending,
            next: std::sync::atomic::AtomicU64::new(1),
        })
    }

    /// Sends `payload` and waits for its echo.
    ///
    /// # Errors
    /// When the connection is gone.
    pub async fn call(&self, payload: &[u8]) -> io::Result<Vec<u8>> {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut table) = self.pending.lock() {
            table.insert(id, tx);
        }
        let mut frame = Vec::with_capacity(12 + payload.len());
        frame.extend_from_slice(&((8 + payload.len()) as u32).to_be_bytes());
        frame.extend_from_slice(&id.to_be_bytes());
        frame.extend_from_slice(payload);
        self.writer
            .send(frame)
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        rx.await
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
    }
}

/// A request of the in-process baselines: two numbers and where to send the sum.
type AddRequest = (i64, i64, oneshot::Sender<i64>);

/// An `add` server on a thread of its own with its own runtime, reached by mpsc + oneshot:
/// the floor of a Worker call.
pub struct CrossThread {
    requests: Option<mpsc::UnboundedSender<AddRequest>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CrossThread {
    /// Starts the server thread.
    ///
    /// # Panics
    /// When the thread or its runtime cannot start.
    pub fn start() -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<AddRequest>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                while let Some((a, b, reply)) = rx.recv().await {
                    tokio::spawn(async move {
                        let _ = reply.send(a + b);
                    });
                }
            });
        });
        Self {
            requests: Some(tx),
            thread: Some(thread),
        }
    }

    /// One `add` across the threads.
    pub async fn add(&self, a: i64, b: i64) -> Option<i64> {
        let (tx, rx) = oneshot::channel();
        self.requests.as_ref()?.send((a, b, tx)).ok()?;
        rx.await.ok()
    }
}

impl Drop for CrossThread {
    fn drop(&mut self) {
        self.requests = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An `add` server task on the caller's own runtime: the floor of an in-process call.
pub struct InRuntime {
    requests: mpsc::UnboundedSender<AddRequest>,
}

impl InRuntime {
    /// Starts the server task on the current runtime.
    pub fn start() -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<AddRequest>();
        tokio::spawn(async move {
            while let Some((a, b, reply)) = rx.recv().await {
                let _ = reply.send(a + b);
            }
        });
        Self { requests: tx }
    }

    /// One `add` through the task.
    pub async fn add(&self, a: i64, b: i64) -> Option<i64> {
        let (tx, rx) = oneshot::channel();
        self.requests.send((a, b, tx)).ok()?;
        rx.await.ok()
    }
}
