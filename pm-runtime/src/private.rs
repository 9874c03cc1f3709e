//! Helpers the `#[process]` expansion calls. Not a public API: names and signatures change
//! without notice.

use std::fmt::Display;
use std::future::Future;

use bytes::Bytes;
use pm_core::wire;
use pm_core::{RemoteError, RemoteErrorKind};
use serde::{de::DeserializeOwned, Serialize};

pub use crate::caller::Caller;
pub use crate::host::run_process_main;
pub use crate::process::{BoxFuture, ClientStub, DispatchResult, Process, ProcessCell, ReplyTo};
pub use bytes::Bytes as RawBytes;
pub use pm_core::schema::{trace, MethodTypes};
pub use pm_core::{HealthStatus, MethodInfo, Receiver};

/// Boxes a call's future.
pub fn boxed<F>(future: F) -> BoxFuture<'static, F::Output>
where
    F: Future + Send + 'static,
{
    Box::pin(future)
}

/// Decodes a call's arguments, or says why they do not fit the method.
pub fn decode_args<A: DeserializeOwned>(args: &[u8], method: &str) -> Result<A, RemoteError> {
    rmp_serde::from_slice(args).map_err(|err| {
        RemoteError::new(
            RemoteErrorKind::InvalidArguments,
            format!("the arguments do not match `{method}`: {err}"),
        )
    })
}

fn encode_failure(err: wire::WireError) -> RemoteError {
    let kind = match err {
        wire::WireError::TooLarge { .. } => RemoteErrorKind::TooLarge,
        _ => RemoteErrorKind::Internal,
    };
    RemoteError::new(kind, format!("the reply could not be sent: {err}"))
}

/// Encodes a method's return value as the reply.
pub fn reply_value<T: Serialize + ?Sized>(reply: ReplyTo, value: &T) -> DispatchResult {
    wire::encode_reply(reply.id, value, reply.max_frame).map_err(encode_failure)
}

/// Encodes a `Result`-returning method's outcome: `Ok` as the reply, `Err` as an application
/// error whose message is the error's `Display` and whose payload is the error itself.
pub fn reply_result<T, E>(reply: ReplyTo, outcome: Result<T, E>) -> DispatchResult
where
    T: Serialize,
    E: Serialize + Display,
{
    match outcome {
        Ok(value) => reply_value(reply, &value),
        Err(err) => {
            let payload = wire::encode_value(&err, reply.max_frame / 2).ok();
            Err(RemoteError {
                kind: RemoteErrorKind::Application,
                message: err.to_string(),
                payload,
            })
        }
    }
}

/// Waits for shared access to the instance (for `&self` methods).
pub async fn shared<P: Send + Sync + 'static>(
    cell: ProcessCell<P>,
) -> tokio::sync::OwnedRwLockReadGuard<P> {
    cell.read_owned().await
}

/// Waits for exclusive access to the instance (for `&mut self` methods).
pub async fn exclusive<P: Send + Sync + 'static>(
    cell: ProcessCell<P>,
) -> tokio::sync::OwnedRwLockWriteGuard<P> {
    cell.write_owned().await
}

/// Whether the spawn passed no dependencies (MessagePack `nil`).
fn is_nil(dependencies: &[u8]) -> bool {
    dependencies.is_empty() || dependencies == [0xc0]
}

/// Builds an instance of a process without `init`: `Default`, and no dependencies accepted.
pub fn init_default<P: Default>(dependencies: &Bytes, process: &str) -> Result<P, String> {
    if is_nil(dependencies) {
        Ok(P::default())
    } else {
        Err(format!(
            "dependencies were passed, but process `{process}` has no `init` to receive them"
        ))
    }
}

/// Decodes the dependencies for `init`.
pub fn decode_dependencies<C: DeserializeOwned>(
    dependencies: &Bytes,
    process: &str,
) -> Result<C, String> {
    rmp_serde::from_slice(dependencies).map_err(|err| {
        format!("the dependencies do not match the parameter of `{process}`'s init: {err}")
    })
}

/// Turns an `init` error into its message.
pub fn init_error<E: Display>(err: E) -> String {
    err.to_string()
}

/// Holds for types that can be built without `init`. A `#[process]` type without an `init`
/// method must implement `Default`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no `init` method and does not implement `Default`",
    label = "this process type cannot be built",
    note = "add `#[derive(Default)]` to the type, or an `async fn init(config: C) -> Result<Self, E>` to its #[process] block"
)]
pub trait DefaultUnlessInit {}

impl<T: Default> DefaultUnlessInit for T {}
