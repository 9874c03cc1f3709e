//! The one error type of every call and every manager operation.

use std::time::Duration;

use bytes::Bytes;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::schema::Identity;

/// Why a call failed on the process's side, as carried by an error reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RemoteErrorKind {
    /// The method returned `Err(e)`; the payload holds `e` in MessagePack.
    Application,
    /// The method panicked; the process went on serving.
    Panic,
    /// The process has no method of that name.
    UnknownMethod,
    /// The arguments did not decode into the method's parameter types.
    InvalidArguments,
    /// A frame was larger than the receiver's limit.
    TooLarge,
    /// The call's deadline passed while the method ran; the process aborted it.
    DeadlineExceeded,
    /// The caller cancelled the call.
    Cancelled,
    /// The process is shutting down and takes no new calls.
    ShuttingDown,
    /// The process could not be built (its `init` failed or its dependencies did not decode).
    InitFailed,
    /// The reply could not be encoded, or another fault inside the process's runtime.
    Internal,
}

/// An error reply from a process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteError {
    /// What kind of failure this is.
    pub kind: RemoteErrorKind,
    /// A message for people: for [`RemoteErrorKind::Application`] the `Display` of the error
    /// the method returned, for [`RemoteErrorKind::Panic`] the panic message.
    pub message: String,
    /// For [`RemoteErrorKind::Application`], the method's error value in MessagePack, which
    /// [`Error::remote_payload`] decodes back into its type.
    pub payload: Option<Bytes>,
}

impl RemoteError {
    /// An error reply of the given kind with a message and no payload.
    pub fn new(kind: RemoteErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            payload: None,
        }
    }
}

/// Everything that can go wrong with a call to a process or with managing one.
///
/// Every generated client method returns `Result<T, Error>`. Each variant's message names the
/// process or method involved and says what happened; match on the variant to react.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The method returned an error, panicked, or the process refused the call.
    #[error("call to `{method}` failed in the process: {}", .error.message)]
    Remote {
        /// The method called.
        method: String,
        /// The process's error reply.
        error: RemoteError,
    },
    /// The call did not complete within its deadline; the process was told to abort it.
    #[error("call to `{method}` timed out after {after:?}")]
    Timeout {
        /// The method called.
        method: String,
        /// The deadline that passed.
        after: Duration,
    },
    /// The process died, or its connection closed, while the call was in flight.
    #[error("process `{process}` exited with the call in flight: {reason}")]
    ProcessExited {
        /// The process's name.
        process: String,
        /// How it ended (exit code, signal, or connection loss), as far as it is known.
        reason: String,
    },
    /// An I/O failure on the connection to a process.
    #[error("transport failure: {0}")]
    Transport(String),
    /// A malformed or oversized frame, or a call the process's method table cannot take.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The process is not the one the client was built for.
    #[error(
        "version mismatch: the client expects {expected}, but the process is {found}{}",
        difference.as_deref().map(|d| format!("; {d}")).unwrap_or_default()
    )]
    VersionMismatch {
        /// What the client was generated from (boxed, as `found`: they keep `Error` small).
        expected: Box<Identity>,
        /// What the process reported in the handshake.
        found: Box<Identity>,
        /// What differs in the method tables, when the process sent its schema: the method,
        /// and the first argument, field, variant or type whose structure differs.
        difference: Option<Box<str>>,
    },
    /// No process with this id is known to the manager.
    #[error("no process with id {0}")]
    NotFound(String),
    /// The process could not be started, or its `init` failed.
    #[error("could not spawn `{process}`: {reason}")]
    Spawn {
        /// The process's name.
        process: String,
        /// What went wrong, with the OS error or the `init` error's message.
        reason: String,
    },
    /// The process takes no calls: it was stopped, is restarting past the call's deadline, or
    /// has failed for good.
    #[error("process `{process}` is unavailable: {reason}")]
    Unavailable {
        /// The process's name.
        process: String,
        /// Why it takes no calls.
        reason: String,
    },
    /// The configuration cannot work; the message says which field and why.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A pool could take no more calls: every member was at its `limits.max_in_flight` and
    /// the pool's queue already held `max_queue` waiting calls. The call was not sent.
    #[error("pool `{pool}` is overloaded: every member is busy and {queued} calls already wait")]
    Overloaded {
        /// The pool's name.
        pool: String,
        /// How many calls were waiting in the queue.
        queued: usize,
    },
    /// A pool's circuit breaker is open after repeated failures: the call was failed fast,
    /// without being sent.
    #[error(
        "pool `{pool}`'s circuit breaker is open; probe calls are let through in {retry_in:?}"
    )]
    CircuitOpen {
        /// The pool's name.
        pool: String,
        /// How long until the breaker lets a probe call through (zero while a probe runs).
        retry_in: Duration,
    },
}

impl Error {
    /// For an [`Error::Remote`] carrying an application error, decode the error value the
    /// method returned back into its type `E`.
    ///
    /// Returns `None` for every other error, and for a payload that does not decode as `E`.
    pub fn remote_payload<E: DeserializeOwned>(&self) -> Option<E> {
        match self {
            Error::Remote { error, .. } if error.kind == RemoteErrorKind::Application => {
                let payload = error.payload.as_ref()?;
                rmp_serde::from_slice(payload).ok()
            }
            _ => None,
        }
    }

    /// The kind of an [`Error::Remote`], or `None` for every other variant.
    pub fn remote_kind(&self) -> Option<RemoteErrorKind> {
        match self {
            Error::Remote { error, .. } => Some(error.kind),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_payload_decodes_an_application_error() {
        let payload = rmp_serde::to_vec(&"disk full".to_string())
            .map(Bytes::from)
            .ok();
        let err = Error::Remote {
            method: "save".into(),
            error: RemoteError {
                kind: RemoteErrorKind::Application,
                message: "disk full".into(),
                payload,
            },
        };
        assert_eq!(err.remote_payload::<String>().as_deref(), Some("disk full"));
        assert!(err.to_string().contains("disk full"));
        assert!(err.to_string().contains("`save`"));
    }

    #[test]
    fn remote_payload_is_none_for_a_panic() {
        let err = Error::Remote {
            method: "boom".into(),
            error: RemoteError::new(RemoteErrorKind::Panic, "oops"),
        };
        assert_eq!(err.remote_payload::<String>(), None);
        assert_eq!(err.remote_kind(), Some(RemoteErrorKind::Panic));
    }
}
