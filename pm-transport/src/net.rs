//! Socket transports: unix domain sockets in a private directory, and TCP.

use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub use pm_core::Address;

use crate::connection::Connection;
use crate::stream::{from_stream, from_unix_stream};

/// Connects to a listening process and wraps the stream as a frame connection.
///
/// TCP connections disable Nagle's algorithm: frames are already batched by the writer.
/// `token` is presented as a bearer token for `Http` (the socket transports present it in the
/// handshake instead).
pub async fn connect(address: &Address, token: &str, max_frame: usize) -> io::Result<Connection> {
    match address {
        Address::Unix(path) => {
            let stream = tokio::net::UnixStream::connect(path).await?;
            Ok(from_unix_stream(stream, max_frame, "unix"))
        }
        Address::Tcp(addr) => {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let (read, write) = stream.into_split();
            Ok(from_stream(read, write, max_frame, "tcp"))
        }
        Address::Http(addr) => crate::http::connect_http(*addr, token, max_frame).await,
    }
}

/// Whether the peer of a unix stream runs as a user that may connect: this process's
/// effective user, root, or one of `uids`.
fn peer_allowed(stream: &tokio::net::UnixStream, uids: &[u32]) -> Result<(), String> {
    let peer = stream
        .peer_cred()
        .map_err(|err| format!("its credentials cannot be read: {err}"))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let own = unsafe { libc::geteuid() };
    let uid = peer.uid();
    if uid == own || uid == 0 || uids.contains(&uid) {
        Ok(())
    } else {
        Err(format!(
            "peer pid {:?} runs as uid {uid}, not {own} (this process's), root, or one allowed",
            peer.pid()
        ))
    }
}

/// A listening socket, unix or TCP.
#[derive(Debug)]
pub enum Listener {
    /// A unix domain socket listener.
    Unix(tokio::net::UnixListener),
    /// A TCP listener.
    Tcp(tokio::net::TcpListener),
}

impl Listener {
    /// Takes over a listener created with the standard library (e.g. inherited from a parent
    /// or moved from another thread). Must be called inside a tokio runtime.
    pub fn from_std(listener: StdListener) -> io::Result<Self> {
        Ok(match listener {
            StdListener::Unix(l) => {
                l.set_nonblocking(true)?;
                Listener::Unix(tokio::net::UnixListener::from_std(l)?)
            }
            StdListener::Tcp(l) => {
                l.set_nonblocking(true)?;
                Listener::Tcp(tokio::net::TcpListener::from_std(l)?)
            }
        })
    }

    /// Accepts the next connection. Over a unix socket, only a peer running as this
    /// process's own user, or as root, is accepted (see [`Listener::accept_from`]).
    ///
    /// # Errors
    /// The listener's I/O errors.
    pub async fn accept(&self, max_frame: usize) -> io::Result<Connection> {
        self.accept_from(max_frame, &[]).await
    }

    /// Accepts the next connection. Over a unix socket, the peer's credentials
    /// (`SO_PEERCRED`) are checked before a byte is read: a peer whose user is not this
    /// process's effective user, root, or one of `uids` is closed at once, logged, and the
    /// next connection is awaited. TCP peers have no credentials; the token is their check.
    ///
    /// # Errors
    /// The listener's I/O errors.
    pub async fn accept_from(&self, max_frame: usize, uids: &[u32]) -> io::Result<Connection> {
        match self {
            Listener::Unix(l) => loop {
                let (stream, _) = l.accept().await?;
                match peer_allowed(&stream, uids) {
                    Ok(()) => return Ok(from_unix_stream(stream, max_frame, "unix")),
                    Err(reason) => tracing::warn!(%reason, "refused a unix connection"),
                }
            },
            Listener::Tcp(l) => {
                let (stream, _) = l.accept().await?;
                stream.set_nodelay(true)?;
                let (read, write) = stream.into_split();
                Ok(from_stream(read, write, max_frame, "tcp"))
            }
        }
    }
}

/// A listener from the standard library, before it is handed to a runtime.
#[derive(Debug)]
pub enum StdListener {
    /// Unix.
    Unix(std::os::unix::net::UnixListener),
    /// TCP.
    Tcp(std::net::TcpListener),
}

/// A private directory for unix sockets: created with mode 0700 (so no other user can reach
/// a socket inside it, whatever the socket's own mode), removed with its contents on drop.
#[derive(Debug)]
pub struct SocketDir {
    path: PathBuf,
}

impl SocketDir {
    /// Creates a fresh directory under `parent` (the system temp directory when `None`).
    ///
    /// The mode is set at creation (`mkdir` with 0700), never loosened and tightened later;
    /// fails if the directory came out more permissive than 0700.
    pub fn create(parent: Option<&Path>, tag: &str) -> io::Result<Self> {
        let parent = parent
            .map(Path::to_path_buf)
            .unwrap_or_else(std::env::temp_dir);
        let mut attempt = 0u32;
        loop {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let path = parent.join(format!(
                "titan-pm-{}-{tag}-{nanos:08x}{attempt}",
                std::process::id()
            ));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
                    if mode & 0o077 != 0 {
                        let _ = std::fs::remove_dir(&path);
                        return Err(io::Error::other(format!(
                            "socket directory {} came out with mode {mode:o}",
                            path.display()
                        )));
                    }
                    return Ok(Self { path });
                }
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => {
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Binds a unix listener at `name` inside the directory.
    pub fn bind(&self, name: &str) -> io::Result<(std::os::unix::net::UnixListener, PathBuf)> {
        let path = self.path.join(name);
        let listener = std::os::unix::net::UnixListener::bind(&path)?;
        Ok((listener, path))
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        if let Err(err) = std::fs::remove_dir_all(&self.path) {
            if err.kind() != io::ErrorKind::NotFound {
                tracing::warn!(dir = %self.path.display(), %err, "could not remove socket directory");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use pm_core::wire::{Frame, FrameKind, Incoming};

    use super::*;

    #[test]
    fn addresses_parse_and_print_back() {
        for text in [
            "unix:/run/x.sock",
            "tcp:127.0.0.1:7000",
            "http://10.0.0.1:8080",
        ] {
            let address = Address::parse(text).expect("parses");
            assert_eq!(address.to_string(), text);
        }
        assert!(Address::parse("ftp://x").is_err());
        assert!(Address::parse("tcp:nohost").is_err());
        assert!(Address::parse("unix:").is_err());
    }

    #[test]
    fn the_socket_directory_is_private_and_removed_on_drop() {
        let dir = SocketDir::create(None, "test").expect("mkdir");
        let mode = std::fs::metadata(dir.path())
            .expect("exists")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700);
        let (_listener, path) = dir.bind("x.sock").expect("bind");
        assert!(path.exists());
        let kept = dir.path().to_path_buf();
        drop(dir);
        assert!(!kept.exists());
    }

    #[tokio::test]
    async fn frames_cross_unix_and_tcp_connections() {
        let dir = SocketDir::create(None, "test").expect("mkdir");
        let (unix, path) = dir.bind("s.sock").expect("bind");
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let tcp_addr = tcp.local_addr().expect("addr");
        for (listener, address) in [
            (StdListener::Unix(unix), Address::Unix(path)),
            (StdListener::Tcp(tcp), Address::Tcp(tcp_addr)),
        ] {
            let listener = Listener::from_std(listener).expect("listener");
            let (client, server) = tokio::join!(connect(&address, "", 1024), listener.accept(1024));
            let (client, mut server) = (client.expect("connect"), server.expect("accept"));
            client
                .sender
                .send(Frame::empty(FrameKind::Cancel, 9))
                .expect("send");
            match server.receiver.recv().await {
                Some(Ok(Incoming::Frame(frame))) => assert_eq!(frame.id(), 9),
                other => panic!("unexpected {other:?} on {address}"),
            }
        }
    }
}
