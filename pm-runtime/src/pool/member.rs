//! One member of a pool: its process and what the pool observes of it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pm_core::ProcessId;
use tokio::sync::Notify;

use crate::managed::Managed;

/// The time constant of the latency estimate's decay: an estimate halves in about 350 ms.
const DECAY: Duration = Duration::from_millis(500);

/// A peak-EWMA latency estimate: a reply slower than the estimate replaces it at once, a
/// faster one blends in, and the estimate decays towards zero while nothing is observed, so a
/// member avoided for being slow is tried again soon.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeakEwma {
    nanos: f64,
    at: Instant,
}

impl PeakEwma {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            nanos: 0.0,
            at: now,
        }
    }

    fn weight(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        (-elapsed / DECAY.as_secs_f64()).exp()
    }

    /// Adds one observed latency.
    pub(crate) fn observe(&mut self, latency: Duration, now: Instant) {
        let sample = latency.as_secs_f64() * 1e9;
        let decayed = self.nanos * self.weight(now);
        self.nanos = if sample > decayed {
            sample
        } else {
            // Blend with a weight for the time since the last sample, at least a tenth, so a
            // stream of fast replies pulls a high estimate down within a few calls.
            let keep = self.weight(now).min(0.9);
            decayed * keep + sample * (1.0 - keep)
        };
        self.at = now;
    }

    /// The estimate now, in nanoseconds.
    pub(crate) fn value(&self, now: Instant) -> f64 {
        self.nanos * self.weight(now)
    }
}

/// A member of a pool.
pub(crate) struct Member {
    pub(crate) managed: Arc<Managed>,
    /// Its place on the hash ring; a replacement takes over its predecessor's slot.
    pub(crate) slot: u64,
    /// Calls the pool has routed to it that have not finished.
    in_flight: AtomicUsize,
    /// Calls the pool has routed to it in all.
    routed: AtomicU64,
    /// When it joined the pool.
    pub(crate) joined: Instant,
    /// Out of rotation for good: draining before it stops.
    retiring: AtomicBool,
    latency: Mutex<PeakEwma>,
    /// Notified when its last call in flight finishes.
    idle: Notify,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("id", &self.managed.id)
            .field("slot", &self.slot)
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl Member {
    pub(crate) fn new(managed: Arc<Managed>, slot: u64) -> Arc<Self> {
        let now = Instant::now();
        Arc::new(Self {
            managed,
            slot,
            in_flight: AtomicUsize::new(0),
            routed: AtomicU64::new(0),
            joined: now,
            retiring: AtomicBool::new(false),
            latency: Mutex::new(PeakEwma::new(now)),
            idle: Notify::new(),
        })
    }

    pub(crate) fn id(&self) -> ProcessId {
        self.managed.id
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    pub(crate) fn routed(&self) -> u64 {
        self.routed.load(Ordering::Relaxed)
    }

    /// Takes one of its call slots (the caller has checked there is one free).
    pub(crate) fn reserve(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.routed.fetch_add(1, Ordering::Relaxed);
    }

    /// Gives a call slot back.
    pub(crate) fn release(&self) {
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }

    pub(crate) fn is_retiring(&self) -> bool {
        self.retiring.load(Ordering::SeqCst)
    }

    pub(crate) fn retire(&self) {
        self.retiring.store(true, Ordering::SeqCst);
    }

    /// Completes once no call the pool routed to it is in flight, or after `within`.
    pub(crate) async fn drained(&self, within: Duration) -> bool {
        let waiting = async {
            loop {
                let notified = self.idle.notified();
                if self.in_flight() == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(within, waiting).await.is_ok()
    }

    pub(crate) fn observe(&self, latency: Duration, now: Instant) {
        self.latency
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .observe(latency, now);
    }

    /// Its peak-EWMA latency estimate now, in nanoseconds.
    pub(crate) fn latency(&self, now: Instant) -> f64 {
        self.latency
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .value(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_reply_counts_at_once_and_decays_away() {
        let start = Instant::now();
        let mut ewma = PeakEwma::new(start);
        ewma.observe(Duration::from_micros(100), start);
        ewma.observe(Duration::from_millis(50), start);
        assert!(ewma.value(start) >= 49e6);
        let later = start + Duration::from_secs(3);
        assert!(ewma.value(later) < 0.2e6, "{}", ewma.value(later));
    }

    #[test]
    fn fast_replies_pull_a_high_estimate_down() {
        let start = Instant::now();
        let mut ewma = PeakEwma::new(start);
        ewma.observe(Duration::from_millis(50), start);
        let mut now = start;
        for _ in 0..40 {
            now += Duration::from_micros(200);
            ewma.observe(Duration::from_micros(200), now);
        }
        assert!(ewma.value(now) < 2e6, "{}", ewma.value(now));
    }
}
