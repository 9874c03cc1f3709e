//! What a generated client calls through: one process, or a pool of them.

use std::sync::Arc;
use std::time::Duration;

use pm_core::wire::{self, buffers, Frame};
use pm_core::Error;
use serde::{de::DeserializeOwned, Serialize};

use crate::process::BoxFuture;

/// Something that can carry an encoded call to a process and bring back its reply frame.
///
/// Implemented by a managed process's endpoint (which waits out restarts and records metrics)
/// and by pools (which pick a member per call).
pub trait Invoke: Send + Sync + 'static {
    /// Sends `method` with `args` (MessagePack) and returns the successful reply frame, or the
    /// error. `timeout` overrides the default deadline when set.
    fn invoke<'a>(
        &'a self,
        method: &'static str,
        args: &'a [u8],
        timeout: Option<Duration>,
    ) -> BoxFuture<'a, Result<Frame, Error>>;

    /// The largest frame the target accepts.
    fn max_frame(&self) -> usize;
}

/// The handle a generated client holds: a target and per-client call options.
#[derive(Clone)]
pub struct Caller {
    target: Arc<dyn Invoke>,
    timeout: Option<Duration>,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Caller {
    /// A caller over `target` with the target's default deadline.
    pub fn new(target: Arc<dyn Invoke>) -> Self {
        Self {
            target,
            timeout: None,
        }
    }

    /// The same target with every call's deadline set to `timeout`.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Self {
            target: self.target.clone(),
            timeout: Some(timeout),
        }
    }

    /// Encodes `args`, calls `method`, and decodes its reply as `R`. `args` is the tuple of
    /// the method's arguments (it must encode as a MessagePack array, as tuples do).
    ///
    /// Arguments too large for the frame limit fail with [`Error::Protocol`] before anything is
    /// sent; a reply that does not decode as `R` fails with [`Error::Protocol`] too.
    pub async fn call<A, R>(&self, method: &'static str, args: &A) -> Result<R, Error>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let limit = self
            .target
            .max_frame()
            .saturating_sub(wire::call_overhead(method));
        let args = wire::encode_value_vec(args, limit).map_err(|err| {
            Error::Protocol(format!("the arguments of `{method}` cannot be sent: {err}"))
        })?;
        let reply = self.target.invoke(method, &args, self.timeout).await;
        // The buffer serves the next call's arguments.
        buffers::give(args);
        reply?.decode().map_err(|err| {
            Error::Protocol(format!("the reply of `{method}` did not decode: {err}"))
        })
    }
}
