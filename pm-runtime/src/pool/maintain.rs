//! The pool's periodic work: autoscaling and recycling.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::{lock, PoolCore};
use crate::metrics::ResourceSampler;

/// How often recycling conditions are checked.
const RECYCLE_EVERY: Duration = Duration::from_millis(250);

/// Starts the pool's maintenance task when it has anything to do.
pub(crate) fn start(core: &Arc<PoolCore>) {
    let recycles = core.recycle.after_calls.is_some()
        || core.recycle.max_lifetime.is_some()
        || core.recycle.max_memory.is_some();
    if core.autoscale.is_none() && !recycles {
        return;
    }
    let tick = core
        .autoscale
        .map(|scale| scale.sample_every.min(RECYCLE_EVERY))
        .unwrap_or(RECYCLE_EVERY);
    tokio::spawn(run(Arc::downgrade(core), tick, recycles));
}

/// The autoscaler's memory between samples.
#[derive(Debug, Default)]
struct Scaling {
    above_since: Option<Instant>,
    below_since: Option<Instant>,
    last_change: Option<Instant>,
}

async fn run(pool: Weak<PoolCore>, tick: Duration, recycles: bool) {
    let mut scaling = Scaling::default();
    let sampler = ResourceSampler::default();
    let mut last_recycle_check = Instant::now();
    loop {
        tokio::time::sleep(tick).await;
        let Some(core) = pool.upgrade() else { return };
        if core.is_stopping() {
            return;
        }
        if core.autoscale.is_some() {
            autoscale(&core, &mut scaling).await;
        }
        if recycles && last_recycle_check.elapsed() >= RECYCLE_EVERY {
            last_recycle_check = Instant::now();
            recycle(&core, &sampler).await;
        }
    }
}

/// One autoscaling step: sample the load, grow or shrink by one when it has stayed past a
/// threshold long enough and the cooldown is over.
async fn autoscale(core: &Arc<PoolCore>, scaling: &mut Scaling) {
    let Some(scale) = core.autoscale else { return };
    let (size, load) = {
        let state = lock(&core.state);
        let size = state.expected_size();
        let busy: usize =
            state.members.iter().map(|m| m.in_flight()).sum::<usize>() + state.queue.len();
        (size, busy as f64 / size.max(1) as f64)
    };
    let now = Instant::now();
    if load > scale.scale_up_at {
        scaling.below_since = None;
        scaling.above_since.get_or_insert(now);
    } else if load < scale.scale_up_at / 2.0 {
        scaling.above_since = None;
        scaling.below_since.get_or_insert(now);
    } else {
        scaling.above_since = None;
        scaling.below_since = None;
    }
    let cooled = scaling
        .last_change
        .is_none_or(|at| now.duration_since(at) >= scale.cooldown);
    if !cooled {
        return;
    }
    let target = match (scaling.above_since, scaling.below_since) {
        (Some(since), _)
            if now.duration_since(since) >= scale.scale_up_after && size < scale.max =>
        {
            size + 1
        }
        (_, Some(since)) if now.duration_since(since) >= scale.idle_for && size > scale.min => {
            size - 1
        }
        _ => return,
    };
    let Ok(_changing) = core.changing.try_lock() else {
        return; // a reload or resize runs: look again later
    };
    tracing::info!(pool = %core.name, id = %core.id, load, from = size, to = target, "autoscaling");
    if let Err(err) = core.resize_now(target).await {
        tracing::warn!(pool = %core.name, id = %core.id, %err, "autoscaling failed");
    }
    scaling.last_change = Some(Instant::now());
    scaling.above_since = None;
    scaling.below_since = None;
}

/// Replaces the first member due for recycling, if any (one per check).
async fn recycle(core: &Arc<PoolCore>, sampler: &ResourceSampler) {
    let policy = core.recycle;
    let due = core.members().into_iter().find_map(|member| {
        if member.is_retiring() {
            return None;
        }
        if let Some(limit) = policy.after_calls {
            if member.routed() >= limit {
                return Some((member, format!("recycled after {limit} calls")));
            }
        }
        if let Some(limit) = policy.max_lifetime {
            if member.joined.elapsed() >= limit {
                return Some((member, format!("recycled after a lifetime of {limit:?}")));
            }
        }
        if let (Some(limit), Some(pid)) = (policy.max_memory, member.managed.child_pid()) {
            if let Some((_, memory)) = sampler.sample(pid) {
                if memory > limit {
                    return Some((
                        member,
                        format!("recycled at {memory} bytes resident, over {limit}"),
                    ));
                }
            }
        }
        None
    });
    let Some((member, reason)) = due else { return };
    let Ok(_changing) = core.changing.try_lock() else {
        return;
    };
    tracing::info!(pool = %core.name, member = %member.id(), %reason, "recycling a member");
    if let Err(err) = core.replace(member, &reason).await {
        tracing::warn!(pool = %core.name, id = %core.id, %err, "recycling failed");
    }
}
