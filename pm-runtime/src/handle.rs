//! The typed handle to one process.

use std::marker::PhantomData;
use std::sync::Arc;

use pm_core::ProcessId;

use crate::caller::Caller;
use crate::managed::Managed;
use crate::process::{ClientStub, Process};

/// A typed handle to a spawned process. Derefs to the generated client, so
/// `handle.add(5, 3).await` calls the process.
///
/// The handle outlives restarts: calls made while the process restarts wait for the new
/// incarnation (up to their deadline).
pub struct ProcessHandle<P: Process> {
    id: ProcessId,
    client: P::Client,
    _process: PhantomData<fn() -> P>,
}

impl<P: Process> ProcessHandle<P> {
    /// A handle calling `managed`.
    pub(crate) fn from_managed(managed: Arc<Managed>) -> Self {
        Self {
            id: managed.id,
            client: P::Client::__from_caller(Caller::new(managed)),
            _process: PhantomData,
        }
    }

    /// The manager's id of this process.
    pub fn id(&self) -> ProcessId {
        self.id
    }

    /// A handle to the same process whose calls all have `timeout` as their deadline,
    /// overriding `resources.timeout` and `SpawnOptions::timeout`. The deadline travels with
    /// each call: the caller gets `Error::Timeout` and the process aborts the method.
    ///
    /// An associated function (`ProcessHandle::with_timeout(&handle, d)`) rather than a
    /// method, so it can never shadow a process method of the same name.
    pub fn with_timeout(handle: &Self, timeout: std::time::Duration) -> Self {
        Self {
            id: handle.id,
            client: P::Client::__from_caller(handle.client.__caller().with_timeout(timeout)),
            _process: PhantomData,
        }
    }
}

impl<P: Process> Clone for ProcessHandle<P> {
    fn clone(&self) -> Self {
        Self {
            id: self.id,
            client: self.client.clone(),
            _process: PhantomData,
        }
    }
}

impl<P: Process> std::fmt::Debug for ProcessHandle<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessHandle")
            .field("process", &P::NAME)
            .field("id", &self.id)
            .finish()
    }
}

impl<P: Process> std::ops::Deref for ProcessHandle<P> {
    type Target = P::Client;

    fn deref(&self) -> &P::Client {
        &self.client
    }
}
