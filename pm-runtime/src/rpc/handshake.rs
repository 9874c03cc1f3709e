//! The client's side of the handshake: hello, identity check, init.

use std::time::Duration;

use bytes::Bytes;
use pm_core::wire::{self, FrameKind, Hello, Incoming, Welcome, PROTOCOL_VERSION};
use pm_core::{Error, Identity};
use pm_transport::Connection;

use crate::token::Token;

/// What the process told about itself.
#[derive(Debug, Clone)]
pub(crate) struct Greeting {
    pub(crate) pid: u32,
}

/// What a peer that does not speak the protocol during the handshake is told it may be.
const NOT_A_PROCESS: &str =
    "the process does not speak the protocol (is it a process binary, built with this version?)";

fn spawn_error(process: &str, reason: impl Into<String>) -> Error {
    Error::Spawn {
        process: process.to_owned(),
        reason: reason.into(),
    }
}

async fn next_frame(
    conn: &mut Connection,
    process: &str,
    step: &str,
    (due, limit): (tokio::time::Instant, Duration),
) -> Result<wire::Frame, Error> {
    match tokio::time::timeout_at(due, conn.receiver.recv()).await {
        Err(_) => Err(spawn_error(
            process,
            format!("no answer to {step}: the handshake and init may take {limit:?} in all"),
        )),
        Ok(None) => Err(spawn_error(
            process,
            format!("the process closed the connection during {step}"),
        )),
        Ok(Some(Err(err))) => Err(spawn_error(process, format!("during {step}: {err}"))),
        Ok(Some(Ok(Incoming::Oversize { len, .. }))) => Err(spawn_error(
            process,
            format!("{NOT_A_PROCESS}: it sent a frame of {len} bytes during {step}"),
        )),
        Ok(Some(Ok(Incoming::Frame(frame)))) => Ok(frame),
    }
}

/// Says hello, checks the process is `expected`, and sends it its dependencies, all within
/// `timeout` (one limit for the whole exchange, `init` included).
///
/// Fails with [`Error::VersionMismatch`] when the identity differs (before any call is sent),
/// with [`Error::Spawn`] when the process refuses, closes, answers with what is not the
/// protocol, or its `init` fails.
pub(crate) async fn handshake(
    conn: &mut Connection,
    expected: &Identity,
    schema: &pm_core::schema::Schema,
    token: &Token,
    dependencies: Bytes,
    max_frame: usize,
    timeout: Duration,
) -> Result<Greeting, Error> {
    let process = expected.name.as_str();
    let deadline = (tokio::time::Instant::now() + timeout, timeout);
    let hello = Hello {
        protocol: PROTOCOL_VERSION,
        token: token.as_str().to_owned(),
    };
    let mut builder = wire::FrameBuilder::new(FrameKind::Hello, 0, max_frame);
    builder.named(&hello)?;
    conn.sender
        .send(builder.finish()?)
        .map_err(|e| spawn_error(process, format!("could not send hello: {e}")))?;

    let answer = next_frame(conn, process, "the handshake", deadline).await?;
    let welcome: Welcome = match answer.kind() {
        FrameKind::Welcome => answer.decode().map_err(|err| {
            spawn_error(
                process,
                format!("{NOT_A_PROCESS}: its welcome is unreadable: {err}"),
            )
        })?,
        FrameKind::Reject => {
            let reason: String = answer
                .decode()
                .unwrap_or_else(|e| format!("unreadable reason: {e}"));
            return Err(spawn_error(
                process,
                format!("the process refused the connection: {reason}"),
            ));
        }
        other => {
            return Err(spawn_error(
                process,
                format!("{NOT_A_PROCESS}: it answered the hello with a {other:?} frame"),
            ))
        }
    };
    if welcome.protocol != PROTOCOL_VERSION {
        return Err(Error::Protocol(format!(
            "`{process}` speaks protocol {}, this client speaks {PROTOCOL_VERSION}",
            welcome.protocol
        )));
    }
    if &welcome.identity != expected {
        // Same name and version but another fingerprint: say what differs, if the process
        // sent its schema.
        let difference = (welcome.identity.fingerprint != expected.fingerprint)
            .then(|| {
                welcome
                    .schema
                    .as_deref()
                    .and_then(pm_core::schema::Schema::from_bytes)
                    .and_then(|theirs| schema.difference(&theirs))
                    .map(String::into_boxed_str)
            })
            .flatten();
        return Err(Error::VersionMismatch {
            expected: Box::new(expected.clone()),
            found: Box::new(welcome.identity),
            difference,
        });
    }

    let mut builder = wire::FrameBuilder::new(FrameKind::Init, 1, max_frame);
    builder.raw(&dependencies)?;
    conn.sender
        .send(builder.finish()?)
        .map_err(|e| spawn_error(process, format!("could not send dependencies: {e}")))?;
    let answer = next_frame(conn, process, "init", deadline).await?;
    match answer.kind() {
        FrameKind::ReplyOk => Ok(Greeting { pid: welcome.pid }),
        FrameKind::ReplyErr => {
            let error = wire::decode_error(&answer);
            Err(spawn_error(process, error.message))
        }
        other => Err(spawn_error(
            process,
            format!("{NOT_A_PROCESS}: it answered init with a {other:?} frame"),
        )),
    }
}
