//! How a manager tells a child process where its connection is and what token to expect.
//!
//! The bootstrap travels in one environment variable, never on the command line (where other
//! users could read the token from `/proc/*/cmdline`). The child removes it from its
//! environment before starting anything, so its own children do not inherit it.

use std::fmt;

use crate::token::Token;

/// The environment variable carrying the bootstrap.
pub(crate) const BOOTSTRAP_ENV: &str = "TITAN_PM_BOOTSTRAP";
/// The descriptor the child's socket arrives on: its standard input. Passing it there needs no
/// code between fork and exec, so the spawn can use `posix_spawn` (a vfork that copies none of
/// the manager's page tables) instead of a fork. The child moves it off descriptor 0 at once
/// and puts `/dev/null` in its place.
pub(crate) const CHILD_FD: i32 = 0;

/// What the inherited descriptor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SocketRole {
    /// One end of a socketpair, already connected to the manager.
    Connected,
    /// A listening unix socket; the manager connects to it.
    UnixListener,
    /// A listening TCP socket; the manager connects to it.
    TcpListener,
    /// A listening TCP socket speaking HTTP and WebSocket.
    HttpListener,
}

impl SocketRole {
    fn as_str(self) -> &'static str {
        match self {
            SocketRole::Connected => "connected",
            SocketRole::UnixListener => "unix-listener",
            SocketRole::TcpListener => "tcp-listener",
            SocketRole::HttpListener => "http-listener",
        }
    }
}

/// What a child needs to serve its manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bootstrap {
    pub(crate) fd: i32,
    /// What the descriptor is: a connected stream, or a listener to accept connections on.
    pub(crate) socket: SocketRole,
    pub(crate) token: Token,
    pub(crate) max_frame: usize,
    pub(crate) max_in_flight: usize,
    /// The manager's process id: the child asks to be killed when its parent dies, and exits
    /// at once if its parent is already another process (the manager died during the spawn).
    pub(crate) parent: Option<u32>,
}

impl Bootstrap {
    /// Encodes for the environment: `v1;fd=0;token=..;max_frame=..;max_in_flight=..;parent=..`.
    pub(crate) fn encode(&self) -> String {
        let mut text = format!(
            "v1;fd={};socket={};token={};max_frame={};max_in_flight={}",
            self.fd,
            self.socket.as_str(),
            self.token.as_str(),
            self.max_frame,
            self.max_in_flight
        );
        if let Some(parent) = self.parent {
            text.push_str(&format!(";parent={parent}"));
        }
        text
    }

    /// Parses what [`Bootstrap::encode`] wrote.
    pub(crate) fn parse(text: &str) -> Result<Self, BootstrapError> {
        let mut parts = text.split(';');
        if parts.next() != Some("v1") {
            return Err(BootstrapError(format!(
                "unsupported bootstrap format `{text}`: was this binary built with another \
                 version of pm-runtime than the manager?"
            )));
        }
        let (mut fd, mut token, mut max_frame, mut max_in_flight) = (None, None, None, None);
        let mut parent = None;
        let mut socket = SocketRole::Connected;
        for part in parts {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| BootstrapError(format!("malformed bootstrap entry `{part}`")))?;
            let number = || {
                value
                    .parse::<usize>()
                    .map_err(|_| BootstrapError(format!("bootstrap `{key}` is not a number")))
            };
            match key {
                "fd" => {
                    fd = Some(
                        i32::try_from(number()?)
                            .map_err(|_| BootstrapError("bootstrap fd out of range".into()))?,
                    )
                }
                "socket" => {
                    socket = match value {
                        "connected" => SocketRole::Connected,
                        "unix-listener" => SocketRole::UnixListener,
                        "tcp-listener" => SocketRole::TcpListener,
                        "http-listener" => SocketRole::HttpListener,
                        other => {
                            return Err(BootstrapError(format!(
                                "unknown bootstrap socket `{other}`"
                            )))
                        }
                    }
                }
                "token" => token = Some(Token::from_string(value.to_owned())),
                "max_frame" => max_frame = Some(number()?),
                "max_in_flight" => max_in_flight = Some(number()?),
                "parent" => {
                    parent = Some(
                        u32::try_from(number()?)
                            .map_err(|_| BootstrapError("bootstrap parent out of range".into()))?,
                    )
                }
                _ => {}
            }
        }
        let missing = |what: &str| BootstrapError(format!("bootstrap lacks `{what}`"));
        Ok(Self {
            fd: fd.ok_or_else(|| missing("fd"))?,
            socket,
            token: token.ok_or_else(|| missing("token"))?,
            max_frame: max_frame.ok_or_else(|| missing("max_frame"))?,
            max_in_flight: max_in_flight
                .ok_or_else(|| missing("max_in_flight"))?
                .max(1),
            parent,
        })
    }
}

/// A bootstrap that is missing or cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BootstrapError(pub(crate) String);

impl fmt::Display for BootstrapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_round_trips_through_its_text_form() {
        let bootstrap = Bootstrap {
            fd: 3,
            socket: SocketRole::TcpListener,
            token: Token::from_string("00ff".into()),
            max_frame: 1024,
            max_in_flight: 8,
            parent: Some(42),
        };
        assert_eq!(Bootstrap::parse(&bootstrap.encode()), Ok(bootstrap.clone()));
        let orphan = Bootstrap {
            parent: None,
            ..bootstrap
        };
        assert_eq!(Bootstrap::parse(&orphan.encode()), Ok(orphan));
    }

    #[test]
    fn bootstrap_errors_name_what_is_wrong() {
        assert!(Bootstrap::parse("v9;fd=3")
            .expect_err("fails")
            .0
            .contains("unsupported"));
        assert!(Bootstrap::parse("v1;fd=x")
            .expect_err("fails")
            .0
            .contains("`fd` is not a number"));
        assert!(Bootstrap::parse("v1;fd=3")
            .expect_err("fails")
            .0
            .contains("lacks `token`"));
    }
}
