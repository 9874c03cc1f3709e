//! How long ended processes stay listed, and forgetting one on request.

use std::sync::Arc;

use pm_core::{Error, ProcessId};

use super::{ProcessManager, Target};
use crate::managed::Managed;

impl ProcessManager {
    /// Forgets one process or pool: stops it first if it still runs (gracefully, as
    /// [`ProcessManager::stop`]), then removes it from `list`, so `info` answers `None` and
    /// `stop` and `kill` answer [`Error::NotFound`] for it; its handles' calls fail with
    /// [`Error::Unavailable`]. A pool goes with its members. PM2's `delete`.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown id; [`Error::Config`] for a pool member (remove
    /// the pool, or resize it) and for a process or supervisor in a supervision tree (stop
    /// its root supervisor instead).
    pub async fn remove(&self, id: ProcessId) -> Result<(), Error> {
        match self.find(id) {
            Ok(Target::Process(managed)) => {
                if managed.supervision.is_some() {
                    return Err(Error::Config(format!(
                        "process {id} is in a supervision tree: stop its root supervisor"
                    )));
                }
                if managed.pool.is_some() {
                    return Err(Error::Config(format!(
                        "process {id} is a member of a pool: remove the pool, or resize it"
                    )));
                }
                managed.stop(self.inner.config.grace_period).await;
                self.processes().retain(|m| !Arc::ptr_eq(m, &managed));
                Ok(())
            }
            Ok(Target::Pool(pool)) => {
                pool.stop().await;
                self.pools().retain(|p| !Arc::ptr_eq(p, &pool));
                self.processes().retain(|m| m.pool != Some(id));
                Ok(())
            }
            Err(err) => match self.info(id) {
                Some(_) => Err(Error::Config(format!(
                    "{id} is a supervisor: stop it with its tree"
                ))),
                None => Err(err),
            },
        }
    }
}

/// Forgets the earliest-started ended processes (stopped or failed, outside pools and
/// supervision trees, which keep their own) beyond the newest `keep`.
pub(super) fn forget_ended(processes: &mut Vec<Arc<Managed>>, keep: usize) {
    let ended = |m: &Arc<Managed>| m.pool.is_none() && m.supervision.is_none() && m.has_ended();
    let count = processes.iter().filter(|m| ended(m)).count();
    let mut excess = count.saturating_sub(keep);
    if excess == 0 {
        return;
    }
    processes.retain(|m| {
        if excess > 0 && ended(m) {
            excess -= 1;
            return false;
        }
        true
    });
}
