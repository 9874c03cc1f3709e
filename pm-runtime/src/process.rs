//! The trait `#[process]` implements, and the pieces of it the runtime calls.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use pm_core::wire::Frame;
use pm_core::{HealthStatus, MethodInfo, RemoteError};

use crate::caller::Caller;

/// A boxed, sendable future, as the generated dispatch code returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The shared, lockable instance of a process. `&self` methods take a read lock (and so run
/// concurrently); `&mut self` methods take the write lock (and so run one at a time).
pub type ProcessCell<P> = Arc<tokio::sync::RwLock<P>>;

/// Where a reply goes: the call's id and the frame limit, so a reply is encoded straight into
/// its frame.
#[derive(Debug, Clone, Copy)]
pub struct ReplyTo {
    pub(crate) id: u64,
    pub(crate) max_frame: usize,
}

/// What one dispatched call produces: the reply frame, or the error to send back.
pub type DispatchResult = Result<Frame, RemoteError>;

/// A type that can run as a managed process. Implemented by `#[process]`; not meant to be
/// implemented by hand (the hidden methods are the generated dispatch table).
pub trait Process: Sized + Send + Sync + 'static {
    /// The generated typed client, `<Type>Client`.
    type Client: ClientStub;

    /// The process's name, from `#[process(name = ...)]`.
    const NAME: &'static str;
    /// The process's version, from `#[process(version = ...)]`.
    const VERSION: &'static str;
    /// The method table: every `#[public]` method, in source order.
    const METHODS: &'static [MethodInfo];

    /// Every `#[public]` method's argument and return types with their tracers: what the
    /// handshake's structural schema is built from (see [`pm_core::schema::Schema`]).
    #[doc(hidden)]
    const SCHEMA_TYPES: &'static [pm_core::schema::MethodTypes] = &[];

    /// Builds the instance from the spawn's dependencies (MessagePack). Without an `init`
    /// method this is `Default::default()`.
    #[doc(hidden)]
    fn __init(dependencies: Bytes) -> BoxFuture<'static, Result<Self, String>>;

    /// Starts the call to `method`, or returns `None` if there is no such method. Argument
    /// decoding failures are reported by the returned future.
    #[doc(hidden)]
    fn __dispatch(
        cell: &ProcessCell<Self>,
        method: &str,
        args: Bytes,
        reply: ReplyTo,
    ) -> Option<BoxFuture<'static, DispatchResult>>;

    /// Runs the `#[health_check]` method; healthy when there is none.
    #[doc(hidden)]
    fn __health(cell: &ProcessCell<Self>) -> BoxFuture<'static, HealthStatus> {
        let _ = cell;
        Box::pin(async { HealthStatus::healthy() })
    }

    /// One future per `#[on_shutdown]` method, in source order. The runtime runs them
    /// concurrently, each isolated from the others' panics, within the grace period.
    #[doc(hidden)]
    fn __shutdown(cell: &ProcessCell<Self>) -> Vec<BoxFuture<'static, ()>> {
        let _ = cell;
        Vec::new()
    }
}

/// A generated client type, built over a [`Caller`].
pub trait ClientStub: Clone + Send + Sync + 'static {
    /// Wraps a caller.
    #[doc(hidden)]
    fn __from_caller(caller: Caller) -> Self;

    /// The caller underneath.
    #[doc(hidden)]
    fn __caller(&self) -> &Caller;
}

/// The identity a client built for `P` expects in the handshake.
pub(crate) fn expected_identity<P: Process>() -> pm_core::Identity {
    pm_core::Identity {
        name: P::NAME.to_owned(),
        version: P::VERSION.to_owned(),
        fingerprint: schema_of::<P>().fingerprint,
    }
}

/// A process type's schema with what the handshake needs of it, computed once: its
/// fingerprint and its encoding for the `Welcome`.
pub(crate) struct KnownSchema {
    pub(crate) schema: pm_core::schema::Schema,
    pub(crate) fingerprint: u64,
    pub(crate) bytes: Option<bytes::Bytes>,
}

/// The structural schema of `P`, traced on first use and kept for the life of the program
/// (one per process type), so no spawn or connection traces, hashes or encodes it again.
pub(crate) fn schema_of<P: Process>() -> &'static KnownSchema {
    use std::any::TypeId;
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    type Schemas = Mutex<HashMap<TypeId, &'static KnownSchema>>;
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    let schemas = SCHEMAS.get_or_init(Schemas::default);
    let known = schemas
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(&TypeId::of::<P>())
        .copied();
    if let Some(schema) = known {
        return schema;
    }
    // Traced outside the lock: tracing runs the types' own `Deserialize` code. Two threads
    // may trace the same type at once; the first to finish is kept.
    let traced = pm_core::schema::Schema::build(P::SCHEMA_TYPES);
    for reason in &traced.by_name {
        tracing::warn!(process = P::NAME, %reason, "a type is compared by its name only");
    }
    let known = KnownSchema {
        fingerprint: traced.fingerprint(),
        bytes: traced.to_bytes(),
        schema: traced,
    };
    let mut schemas = schemas
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let known: &'static KnownSchema = schemas
        .entry(TypeId::of::<P>())
        .or_insert_with(|| Box::leak(Box::new(known)));
    known
}
