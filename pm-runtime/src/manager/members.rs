//! How a pool spawns its members through the manager.

use super::*;

/// Spawns the members of one pool through the manager, without keeping the manager alive.
pub(super) struct Members<P> {
    pub(super) manager: std::sync::Weak<Inner>,
    pub(super) binary: std::path::PathBuf,
    pub(super) options: SpawnOptions,
    pub(super) pool: ProcessId,
    pub(super) _process: PhantomData<fn() -> P>,
}

impl<P: Process> MemberHost for Members<P> {
    fn spawn_member(&self) -> BoxFuture<'static, Result<Arc<Managed>, Error>> {
        let manager = self.manager.upgrade().map(|inner| ProcessManager { inner });
        let binary = self.binary.clone();
        let options = self.options.clone();
        let pool = self.pool;
        Box::pin(async move {
            let manager = manager.ok_or_else(|| Error::Unavailable {
                process: P::NAME.to_owned(),
                reason: "its manager is gone".into(),
            })?;
            manager
                .start::<P>(&binary, options, None, Some(pool), None)
                .await
        })
    }

    fn unlist(&self, id: ProcessId) {
        if let Some(inner) = self.manager.upgrade() {
            ProcessManager { inner }.processes().retain(|m| m.id != id);
        }
    }

    fn grace(&self) -> std::time::Duration {
        self.manager
            .upgrade()
            .map(|inner| inner.config.grace_period)
            .unwrap_or_default()
    }
}
