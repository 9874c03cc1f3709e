//! Who is in a pool: starting members, watching them, replacing the failed, resizing,
//! rolling replacement (reload, recycling) and the pool's end.

use std::sync::{Arc, Weak};
use std::time::Instant;

use pm_core::Error;

use super::dispatch::Phase;
use super::member::Member;
use super::{lock, PoolCore};
use crate::events::PoolEvent;
use crate::managed::{Link, Managed};
use crate::restart_policy::Decision;

impl PoolCore {
    /// Spawns `count` members at once; on any failure the others are stopped too.
    async fn spawn_members(&self, count: usize) -> Result<Vec<Arc<Managed>>, Error> {
        let spawns = (0..count).map(|_| self.host.spawn_member());
        let results = futures_util::future::join_all(spawns).await;
        let mut spawned = Vec::with_capacity(count);
        let mut failure = None;
        for result in results {
            match result {
                Ok(managed) => spawned.push(managed),
                Err(err) => failure = Some(err),
            }
        }
        match failure {
            None => Ok(spawned),
            Some(err) => {
                for managed in spawned {
                    self.end_member(&managed).await;
                }
                Err(err)
            }
        }
    }

    /// Stops a process that is no longer (or never became) a member and unlists it.
    async fn end_member(&self, managed: &Arc<Managed>) {
        managed.stop(self.host.grace()).await;
        self.host.unlist(managed.id);
    }

    /// Puts a spawned member in rotation and starts watching it, unless the pool stopped
    /// meanwhile or the place it was spawned for is no longer open (then `None`: the caller
    /// ends the process).
    fn admit(self: &Arc<Self>, managed: Arc<Managed>, join: Join<'_>) -> Option<Arc<Member>> {
        let member = {
            let mut state = lock(&self.state);
            if state.phase != Phase::Running {
                return None;
            }
            if let Join::Replacing(slot) = join {
                if state.cancelled_healing > 0 {
                    // A resize down while it was on its way asked for one member less.
                    return None;
                }
                // Arrived: no longer on its way, under the same lock that makes it a member,
                // so a resize never sees it as neither.
                state.forget_healing(slot);
            }
            let slot = match join {
                Join::New => {
                    let slot = state.next_slot;
                    state.next_slot += 1;
                    slot
                }
                Join::Replacing(slot) => slot,
                Join::Succeeding(old) => {
                    if old.is_retiring() {
                        return None; // a resize is removing it
                    }
                    let still_member = state.members.iter().any(|m| Arc::ptr_eq(m, old));
                    if !still_member
                        && (state.healing.contains(&old.slot)
                            || state.members.iter().any(|m| m.slot == old.slot))
                    {
                        // It failed meanwhile, and its replacement is coming or has already
                        // taken the slot.
                        return None;
                    }
                    // Out of rotation first, so the new member is the slot's only one once in.
                    // When it failed meanwhile and will not be replaced, its place is open.
                    old.retire();
                    old.slot
                }
            };
            let member = Member::new(managed, slot);
            let at = state.members.partition_point(|m| m.slot < slot);
            state.members.insert(at, member.clone());
            state.rebuild_ring();
            self.pump_locked(&mut state);
            member
        };
        self.emit(PoolEvent::MemberAdded {
            member: member.id(),
        });
        tokio::spawn(watch_member(Arc::downgrade(self), member.clone()));
        Some(member)
    }

    /// Admits each spawned member as a new one; ends those the pool no longer takes.
    async fn admit_new(self: &Arc<Self>, spawned: Vec<Arc<Managed>>) -> Result<(), Error> {
        let mut refused = false;
        for managed in spawned {
            if self.admit(managed.clone(), Join::New).is_none() {
                self.end_member(&managed).await;
                refused = true;
            }
        }
        if refused {
            return Err(self.unavailable("the pool was stopped while members started"));
        }
        Ok(())
    }

    /// Starts the first `size` members.
    pub(crate) async fn start(self: &Arc<Self>, size: usize) -> Result<(), Error> {
        let spawned = self.spawn_members(size).await?;
        self.admit_new(spawned).await?;
        super::maintain::start(self);
        Ok(())
    }

    /// A member's process ended for good on its own (it failed, or exited cleanly under
    /// `RestartOn::OnFailure`): take it out and replace it, under the restart policy.
    fn member_gone(self: &Arc<Self>, member: &Arc<Member>, why: String) {
        let decision = {
            let mut state = lock(&self.state);
            if member.is_retiring() || state.phase != Phase::Running {
                return;
            }
            let Some(at) = state.members.iter().position(|m| Arc::ptr_eq(m, member)) else {
                return;
            };
            state.members.remove(at);
            state.rebuild_ring();
            let decision =
                lock(&self.replacements).on_crash(Instant::now(), member.joined.elapsed());
            if matches!(decision, Decision::Restart { .. }) {
                state.healing.push(member.slot);
            }
            self.fail_waiters_if_hopeless(&mut state);
            decision
        };
        self.host.unlist(member.id());
        self.emit(PoolEvent::MemberRemoved {
            member: member.id(),
            reason: why.clone(),
        });
        match decision {
            Decision::GiveUp { reason } => {
                let reason = format!(
                    "not replacing member {}: {reason}; it ended: {why}",
                    member.id()
                );
                tracing::error!(pool = %self.name, id = %self.id, %reason, "pool shrinks");
                self.emit(PoolEvent::ReplacementFailed { reason });
            }
            Decision::Restart { delay, .. } => {
                let core = self.clone();
                let slot = member.slot;
                tokio::spawn(async move { core.replace_failed(slot, delay).await });
            }
        }
    }

    async fn replace_failed(self: Arc<Self>, slot: u64, delay: std::time::Duration) {
        // A stop cuts the backoff short (checked after the registration, so none is missed).
        let stopping = self.stopping.notified();
        if !self.is_stopping() {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stopping => {}
            }
        }
        let spawned = if self.is_stopping() {
            None
        } else {
            Some(self.host.spawn_member().await)
        };
        let failure = match spawned {
            Some(Ok(managed)) => {
                if self.admit(managed.clone(), Join::Replacing(slot)).is_some() {
                    return;
                }
                // Turned away (cancelled by a resize, or the pool stops): ended before it
                // stops counting as on its way, so a stop waiting for it finds it gone.
                self.end_member(&managed).await;
                None
            }
            Some(Err(err)) => Some(err),
            None => None,
        };
        {
            let mut state = lock(&self.state);
            state.forget_healing(slot);
            // One member fewer than planned, which is what a pending cancel asked for.
            state.cancelled_healing = state
                .cancelled_healing
                .saturating_sub(1)
                .min(state.healing.len());
            self.fail_waiters_if_hopeless(&mut state);
        }
        if let Some(err) = failure {
            let reason = format!("a replacement member could not start: {err}");
            tracing::error!(pool = %self.name, id = %self.id, %reason, "pool shrinks");
            self.emit(PoolEvent::ReplacementFailed { reason });
        }
    }

    /// Takes `member` out of rotation, lets its calls finish, stops it and unlists it.
    async fn retire(&self, member: Arc<Member>, reason: &str) {
        member.retire();
        {
            let mut state = lock(&self.state);
            if let Some(at) = state.members.iter().position(|m| Arc::ptr_eq(m, &member)) {
                state.members.remove(at);
                state.rebuild_ring();
            }
            state.retiring.push(member.clone());
        }
        if !member.drained(self.host.grace()).await {
            tracing::warn!(pool = %self.name, member = %member.id(), "member still had calls in flight after the grace period");
        }
        self.end_member(&member.managed).await;
        lock(&self.state)
            .retiring
            .retain(|m| !Arc::ptr_eq(m, &member));
        self.emit(PoolEvent::MemberRemoved {
            member: member.id(),
            reason: reason.to_owned(),
        });
    }

    fn ensure_running(&self) -> Result<(), Error> {
        if lock(&self.state).phase == Phase::Running {
            Ok(())
        } else {
            Err(self.unavailable("the pool is stopping or stopped"))
        }
    }

    /// Resizes to `size`; `Pool::resize` and autoscaling.
    pub(crate) async fn resize(self: &Arc<Self>, size: usize) -> Result<(), Error> {
        super::check_size(size, self.autoscale.as_ref(), "size")?;
        let _changing = self.changing.lock().await;
        self.resize_now(size).await
    }

    /// Resizes while holding `changing`.
    pub(crate) async fn resize_now(self: &Arc<Self>, size: usize) -> Result<(), Error> {
        self.ensure_running()?;
        // Replacements on their way count: they will be members.
        let from = lock(&self.state).expected_size();
        if size > from {
            let spawned = self.spawn_members(size - from).await?;
            self.admit_new(spawned).await?;
        } else if size < from {
            let removed: Vec<Arc<Member>> = {
                let mut state = lock(&self.state);
                // Cancel replacements on their way first, then retire the newest members.
                let pending = state.healing.len() - state.cancelled_healing;
                let cancelled = pending.min(from - size);
                state.cancelled_healing += cancelled;
                let excess = from - size - cancelled;
                let chosen: Vec<Arc<Member>> =
                    state.members.iter().rev().take(excess).cloned().collect();
                // Marked here, so a chosen member that dies now is not also replaced.
                for member in &chosen {
                    member.retire();
                }
                chosen
            };
            let retiring = removed
                .into_iter()
                .map(|member| self.retire(member, "the pool was resized down"));
            futures_util::future::join_all(retiring).await;
        } else {
            return Ok(());
        }
        tracing::info!(pool = %self.name, id = %self.id, from, to = size, "pool resized");
        self.emit(PoolEvent::Resized { from, to: size });
        Ok(())
    }

    /// Replaces `old` by a fresh member in its slot: the new one is ready and in rotation
    /// before the old one leaves rotation and drains. Holds `changing` (the caller's).
    pub(crate) async fn replace(
        self: &Arc<Self>,
        old: Arc<Member>,
        reason: &str,
    ) -> Result<(), Error> {
        self.ensure_running()?;
        let managed = self.host.spawn_member().await?;
        if self
            .admit(managed.clone(), Join::Succeeding(&old))
            .is_none()
        {
            // Stopped meanwhile, or `old` ended for good and its replacement is the
            // self-healing's: either way this one is not needed.
            self.end_member(&managed).await;
            return self.ensure_running();
        }
        self.retire(old, reason).await;
        Ok(())
    }

    /// `Pool::reload`.
    pub(crate) async fn reload(self: &Arc<Self>) -> Result<(), Error> {
        let Ok(_changing) = self.changing.try_lock() else {
            return Err(self
                .unavailable("a reload, resize or recycling of this pool is already in progress"));
        };
        self.ensure_running()?;
        self.emit(PoolEvent::ReloadStarted);
        tracing::info!(pool = %self.name, id = %self.id, "rolling reload");
        for old in self.members() {
            if old.is_retiring() {
                continue;
            }
            self.replace(old, "replaced by a reload").await?;
        }
        self.emit(PoolEvent::ReloadFinished);
        Ok(())
    }

    /// The pool's graceful end: refuse new calls, let those in flight and queued finish
    /// within the grace period, stop every member. Once: a second call waits for the first.
    pub(crate) async fn stop(&self) {
        {
            let mut state = lock(&self.state);
            if state.phase == Phase::Stopped {
                return;
            }
            state.phase = Phase::Stopping;
        }
        self.stopping.notify_waiters();
        // A resize or replacement in progress sees the phase at its next step and gives up.
        let _changing = self.changing.lock().await;
        if lock(&self.state).phase == Phase::Stopped {
            return;
        }
        self.await_replacements().await;
        let grace = self.host.grace();
        let members = self.members();
        let drained = async {
            loop {
                if lock(&self.state).queue.is_empty() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            for member in &members {
                member.drained(grace).await;
            }
        };
        if tokio::time::timeout(grace, drained).await.is_err() {
            tracing::warn!(pool = %self.name, id = %self.id, "calls still in flight after the grace period");
        }
        self.end_all(|m| Box::pin(async move { m.stop(grace).await }))
            .await;
    }

    /// Ends every member at once, without hooks; `ProcessManager::kill` of a pool.
    pub(crate) async fn kill(&self) {
        lock(&self.state).phase = Phase::Stopping;
        self.stopping.notify_waiters();
        self.await_replacements().await;
        self.end_all(|m| Box::pin(async move { m.kill().await }))
            .await;
    }

    /// Waits for replacements on their way to arrive and be turned away (the pool is
    /// stopping, so each ends the member it spawned), so none outlives the pool's end.
    async fn await_replacements(&self) {
        const LONGEST_START: std::time::Duration = std::time::Duration::from_secs(40);
        let waited = tokio::time::timeout(LONGEST_START, async {
            while !lock(&self.state).healing.is_empty() {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
        .await;
        if waited.is_err() {
            tracing::warn!(pool = %self.name, id = %self.id, "a replacement member was still starting when the pool stopped");
        }
    }

    async fn end_all(&self, end: impl Fn(Arc<Managed>) -> crate::process::BoxFuture<'static, ()>) {
        let (members, retiring) = {
            let state = lock(&self.state);
            (state.members.clone(), state.retiring.clone())
        };
        let ends = members
            .iter()
            .chain(retiring.iter())
            .map(|m| end(m.managed.clone()));
        futures_util::future::join_all(ends).await;
        {
            let mut state = lock(&self.state);
            state.phase = Phase::Stopped;
            let error = self.unavailable("the pool was stopped");
            self.fail_waiters(&mut state, &error);
        }
        self.emit(PoolEvent::Stopped);
    }

    /// Whether the pool has been stopped (or is stopping).
    pub(crate) fn is_stopping(&self) -> bool {
        lock(&self.state).phase != Phase::Running
    }
}

/// Where a spawned member goes.
enum Join<'a> {
    /// A new slot.
    New,
    /// The slot of a member that ended for good.
    Replacing(u64),
    /// The slot of this member, still in rotation, which it takes over from.
    Succeeding(&'a Arc<Member>),
}

/// Follows one member's process: serves waiting calls when it comes up, and hands it to
/// the pool's replacement when it ends for good.
async fn watch_member(pool: Weak<PoolCore>, member: Arc<Member>) {
    let mut link = member.managed.watch_link();
    loop {
        let gone = match &*link.borrow_and_update() {
            Link::Up(_) => None,
            Link::Down => None,
            Link::Gone(err) => Some(err.to_string()),
        };
        let Some(core) = pool.upgrade() else { return };
        match gone {
            Some(why) => {
                core.member_gone(&member, why);
                return;
            }
            None => core.pump(),
        }
        drop(core);
        if link.changed().await.is_err() || member.is_retiring() {
            return;
        }
    }
}
