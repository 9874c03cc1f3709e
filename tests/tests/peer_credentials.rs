//! A process listening on a unix socket checks who connects (`SO_PEERCRED`) before it reads a
//! byte: a peer running as another user is closed at once, unless that user is allowed with
//! `TITAN_PM_PEER_UIDS`. Run as root (as CI does), the test connects as `nobody` from a forked
//! child; as any other user it can only check that its own user is let in.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CALCULATOR: &str = env!("CARGO_BIN_EXE_test-calculator");
const TOKEN: &str = "0123456789abcdef-peer-token";
const NOBODY: u32 = 65534;

/// A standalone calculator on a unix socket that anyone may open (mode 0777), so that only
/// the credential check stands between another user and the process. Killed when dropped,
/// with its directory.
struct Host {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
}

impl Host {
    fn start(name: &str, env: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir().join(format!("titan-peer-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("directory");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("mode");
        let socket = dir.join("calc.sock");
        let child = Command::new(CALCULATOR)
            .env("TITAN_PM_LISTEN", format!("unix:{}", socket.display()))
            .env("TITAN_PM_TOKEN", TOKEN)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .spawn()
            .expect("starts");
        let host = Host { child, dir, socket };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&host.socket).is_err() {
            assert!(Instant::now() < deadline, "the host never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::fs::set_permissions(&host.socket, std::fs::Permissions::from_mode(0o777))
            .expect("socket mode");
        host
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How a connection made as `uid` went.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Closed by the process before it sent anything.
    ClosedAtOnce,
    /// Kept open: the process waits for the hello.
    KeptOpen,
}

/// Connects to `socket` from a forked child running as `uid` and reads for up to a second.
fn connect_as(uid: u32, socket: &Path) -> Outcome {
    // Everything the child needs is prepared before the fork: after it, only system calls.
    // SAFETY: a zeroed sockaddr_un is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let path = socket.as_os_str().as_bytes();
    assert!(path.len() < addr.sun_path.len(), "socket path too long");
    for (slot, byte) in addr.sun_path.iter_mut().zip(path) {
        *slot = *byte as libc::c_char;
    }
    let timeout = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    // SAFETY: the child calls only async-signal-safe functions and leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: plain system calls on values prepared above.
        unsafe {
            if libc::setgid(uid) != 0 || libc::setuid(uid) != 0 {
                libc::_exit(10);
            }
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
            if fd < 0 || libc::connect(fd, std::ptr::addr_of!(addr).cast(), len) != 0 {
                libc::_exit(11);
            }
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                std::ptr::addr_of!(timeout).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
            let mut byte = 0u8;
            let read = libc::recv(fd, std::ptr::addr_of_mut!(byte).cast(), 1, 0);
            libc::_exit(match read {
                0 => 0,
                n if n < 0 => 1,
                _ => 2,
            });
        }
    }
    let mut status = 0;
    // SAFETY: waiting for the child forked above.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid);
    assert!(libc::WIFEXITED(status), "the child died: {status}");
    match libc::WEXITSTATUS(status) {
        0 => Outcome::ClosedAtOnce,
        1 => Outcome::KeptOpen,
        other => panic!("the child could not connect or read (exit {other})"),
    }
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn a_peer_running_as_another_user_is_closed_before_it_can_say_anything() {
    let host = Host::start("refused", &[]);
    if !running_as_root() {
        // Only root can become another user; our own user must be let in.
        // SAFETY: geteuid has no preconditions.
        let own = unsafe { libc::geteuid() };
        assert_eq!(connect_as(own, &host.socket), Outcome::KeptOpen);
        return;
    }
    assert_eq!(connect_as(NOBODY, &host.socket), Outcome::ClosedAtOnce);
    // Root (this test) is let in.
    assert_eq!(connect_as(0, &host.socket), Outcome::KeptOpen);
}

#[test]
fn a_user_named_in_titan_pm_peer_uids_is_let_in() {
    if !running_as_root() {
        return;
    }
    let uids = format!("1234, {NOBODY}");
    let host = Host::start("allowed", &[("TITAN_PM_PEER_UIDS", uids.as_str())]);
    assert_eq!(connect_as(NOBODY, &host.socket), Outcome::KeptOpen);
}
