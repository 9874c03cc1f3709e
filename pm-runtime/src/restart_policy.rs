//! The restart policy as a pure decision over a monotonic clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use pm_core::{BackoffKind, Error, RestartPolicy};

/// What to do after a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Start again after `delay`; this is restart number `attempt` of the current streak.
    Restart { attempt: u32, delay: Duration },
    /// Give up: the process is failed for good.
    GiveUp { reason: String },
}

/// The delay before restart number `attempt` (from 1) of a streak.
pub(crate) fn backoff_delay(policy: &RestartPolicy, attempt: u32) -> Duration {
    let backoff = policy.backoff;
    let raw = match backoff.kind {
        BackoffKind::Linear => backoff.initial.saturating_mul(attempt.max(1)),
        BackoffKind::Exponential => {
            let factor = 1u32
                .checked_shl(attempt.saturating_sub(1))
                .unwrap_or(u32::MAX);
            backoff.initial.saturating_mul(factor)
        }
    };
    raw.min(backoff.max)
}

/// How long an incarnation must stay up for the backoff to start over (see
/// [`RestartPolicy::stable_after`]).
pub(crate) fn stable_after(policy: &RestartPolicy) -> Duration {
    policy.stable_after.unwrap_or_else(|| {
        policy
            .backoff
            .max
            .saturating_mul(2)
            .max(Duration::from_secs(1))
    })
}

/// Refuses a policy whose limit could never trip: if even back-to-back crashes cannot fit
/// `max_restarts + 1` restarts into `window` because the delays alone are longer, a crash
/// loop would go on forever.
pub(crate) fn validate(policy: &RestartPolicy) -> Result<(), Error> {
    if !policy.enabled {
        return Ok(());
    }
    if policy.window.is_zero() {
        return Err(Error::Config(
            "restart_policy.window is zero, so no restart could ever be counted against \
             max_restarts"
                .into(),
        ));
    }
    if policy.stable_after.is_some_and(|d| d.is_zero()) {
        return Err(Error::Config(
            "restart_policy.stable_after is zero, so every incarnation would count as stable \
             and the backoff would never grow; leave it `None` for the default"
                .into(),
        ));
    }
    if policy.backoff.initial > policy.backoff.max {
        return Err(Error::Config(format!(
            "restart_policy.backoff.initial ({:?}) is larger than backoff.max ({:?})",
            policy.backoff.initial, policy.backoff.max
        )));
    }
    // Restarts are counted when a crash happens. A process that crashes the moment it starts
    // gives up at crash `max_restarts + 1`, which comes after the backoff delays of restarts
    // 1..=max_restarts; if those alone fill the window, the first restart has slid out of it
    // by then and the loop never trips.
    let mut total = Duration::ZERO;
    for attempt in 1..=policy.max_restarts {
        total = total.saturating_add(backoff_delay(policy, attempt));
    }
    if policy.max_restarts > 0 && total >= policy.window {
        return Err(Error::Config(format!(
            "restart_policy can never fail a crash loop: {} restarts take at least {total:?} \
             of backoff, as long as the {:?} window; lengthen `window`, lower `max_restarts`, \
             or shorten the backoff",
            policy.max_restarts, policy.window
        )));
    }
    Ok(())
}

/// Tracks restarts of one process: a sliding window of restart times and the backoff streak.
#[derive(Debug, Clone)]
pub(crate) struct RestartTracker {
    policy: RestartPolicy,
    restarts: VecDeque<Instant>,
    streak: u32,
}

impl RestartTracker {
    pub(crate) fn new(policy: RestartPolicy) -> Self {
        Self {
            policy,
            restarts: VecDeque::new(),
            streak: 0,
        }
    }

    /// How long an incarnation must stay up for the backoff to start over.
    pub(crate) fn stable_after(&self) -> Duration {
        stable_after(&self.policy)
    }

    /// Decides after a crash at `now` of an incarnation that had been up for `uptime`.
    pub(crate) fn on_crash(&mut self, now: Instant, uptime: Duration) -> Decision {
        if !self.policy.enabled {
            return Decision::GiveUp {
                reason: "restarts are disabled".into(),
            };
        }
        if uptime >= self.stable_after() {
            self.streak = 0;
        }
        while let Some(first) = self.restarts.front() {
            if now.duration_since(*first) >= self.policy.window {
                self.restarts.pop_front();
            } else {
                break;
            }
        }
        if self.restarts.len() >= self.policy.max_restarts as usize {
            return Decision::GiveUp {
                reason: format!(
                    "crashed after {} restarts within {:?} (max_restarts = {})",
                    self.restarts.len(),
                    self.policy.window,
                    self.policy.max_restarts
                ),
            };
        }
        self.streak += 1;
        self.restarts.push_back(now);
        Decision::Restart {
            attempt: self.streak,
            delay: backoff_delay(&self.policy, self.streak),
        }
    }
}

#[cfg(test)]
mod tests {
    use pm_core::Backoff;

    use super::*;

    fn policy(max_restarts: u32, window_ms: u64, kind: BackoffKind) -> RestartPolicy {
        RestartPolicy {
            enabled: true,
            max_restarts,
            window: Duration::from_millis(window_ms),
            backoff: Backoff {
                kind,
                initial: Duration::from_millis(10),
                max: Duration::from_millis(50),
            },
            restart_on: pm_core::RestartOn::Always,
            stable_after: None,
        }
    }

    #[test]
    fn exponential_backoff_doubles_and_hits_the_cap() {
        let p = policy(5, 10_000, BackoffKind::Exponential);
        let delays: Vec<u64> = (1..=6)
            .map(|a| backoff_delay(&p, a).as_millis() as u64)
            .collect();
        assert_eq!(delays, vec![10, 20, 40, 50, 50, 50]);
        assert_eq!(backoff_delay(&p, 200), Duration::from_millis(50));
    }

    #[test]
    fn linear_backoff_grows_by_initial_and_hits_the_cap() {
        let p = policy(5, 10_000, BackoffKind::Linear);
        let delays: Vec<u64> = (1..=6)
            .map(|a| backoff_delay(&p, a).as_millis() as u64)
            .collect();
        assert_eq!(delays, vec![10, 20, 30, 40, 50, 50]);
    }

    #[test]
    fn a_crash_loop_gives_up_after_max_restarts_within_the_window() {
        let mut tracker = RestartTracker::new(policy(3, 1_000, BackoffKind::Exponential));
        let t0 = Instant::now();
        for i in 0..3u32 {
            let now = t0 + Duration::from_millis(10 * u64::from(i));
            assert!(
                matches!(tracker.on_crash(now, Duration::ZERO), Decision::Restart { attempt, .. } if attempt == i + 1)
            );
        }
        assert!(matches!(
            tracker.on_crash(t0 + Duration::from_millis(40), Duration::ZERO),
            Decision::GiveUp { .. }
        ));
    }

    #[test]
    fn crashes_slower_than_the_window_keep_being_restarted() {
        let mut tracker = RestartTracker::new(policy(2, 100, BackoffKind::Exponential));
        let t0 = Instant::now();
        for i in 0..20u64 {
            let now = t0 + Duration::from_millis(150 * i);
            assert!(matches!(
                tracker.on_crash(now, Duration::from_millis(60)),
                Decision::Restart { .. }
            ));
        }
    }

    #[test]
    fn a_late_crash_loop_is_still_caught() {
        let mut tracker = RestartTracker::new(policy(3, 1_000, BackoffKind::Exponential));
        let t0 = Instant::now() + Duration::from_secs(2);
        let mut gave_up = false;
        for i in 0..10u64 {
            if let Decision::GiveUp { .. } =
                tracker.on_crash(t0 + Duration::from_millis(5 * i), Duration::ZERO)
            {
                gave_up = true;
                assert_eq!(i, 3);
                break;
            }
        }
        assert!(gave_up);
    }

    #[test]
    fn backoff_resets_after_a_stable_run() {
        let mut tracker = RestartTracker::new(policy(100, 100_000, BackoffKind::Exponential));
        let t0 = Instant::now();
        for i in 0..3u64 {
            tracker.on_crash(t0 + Duration::from_millis(i), Duration::ZERO);
        }
        let stable = tracker.stable_after();
        assert_eq!(
            tracker.on_crash(t0 + Duration::from_secs(5), stable),
            Decision::Restart {
                attempt: 1,
                delay: Duration::from_millis(10)
            }
        );
    }

    #[test]
    fn the_stable_period_defaults_to_twice_the_cap_and_can_be_set() {
        let mut p = policy(100, 100_000, BackoffKind::Exponential);
        assert_eq!(stable_after(&p), Duration::from_secs(1), "at least 1 s");
        p.backoff.max = Duration::from_secs(3);
        assert_eq!(stable_after(&p), Duration::from_secs(6));
        p.stable_after = Some(Duration::from_millis(200));
        let mut tracker = RestartTracker::new(p);
        let t0 = Instant::now();
        for i in 0..3u64 {
            tracker.on_crash(t0 + Duration::from_millis(i), Duration::ZERO);
        }
        // Up for less than the stable period: the streak goes on.
        assert!(matches!(
            tracker.on_crash(t0 + Duration::from_secs(1), Duration::from_millis(199)),
            Decision::Restart { attempt: 4, .. }
        ));
        assert!(matches!(
            tracker.on_crash(t0 + Duration::from_secs(2), Duration::from_millis(200)),
            Decision::Restart { attempt: 1, .. }
        ));
        p.stable_after = Some(Duration::ZERO);
        assert!(matches!(validate(&p), Err(Error::Config(_))));
    }

    #[test]
    fn a_policy_that_can_never_trip_is_rejected() {
        // Linear 10..50 ms: five restarts take 10+20+30+40+50 = 150 ms of backoff.
        let mut p = policy(5, 150, BackoffKind::Linear);
        assert!(matches!(validate(&p), Err(Error::Config(_))));
        p.window = Duration::from_millis(151);
        assert!(
            validate(&p).is_ok(),
            "the loop trips at the sixth crash, 150 ms in"
        );
        p.window = Duration::from_secs(10);
        assert!(validate(&p).is_ok());
        assert!(validate(&RestartPolicy::default()).is_ok());
    }
}
