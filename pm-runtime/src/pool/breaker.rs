//! The circuit breaker's state machine, pure over the clock it is given.

use std::time::{Duration, Instant};

use super::options::CircuitBreaker;

/// How a call was let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// The breaker is closed.
    Normal,
    /// A half-open probe: its outcome decides whether the breaker closes.
    Probe,
}

/// A change worth announcing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    Opened,
    HalfOpened,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probes: u32 },
}

/// Closed → (threshold consecutive failures) → open → (`open_for`) → half-open → (a probe
/// succeeds) → closed, or (a probe fails) → open.
#[derive(Debug)]
pub(crate) struct Breaker {
    config: CircuitBreaker,
    state: State,
}

impl Breaker {
    pub(crate) fn new(config: CircuitBreaker) -> Self {
        Self {
            config,
            state: State::Closed { failures: 0 },
        }
    }

    /// Lets a call through, or says how long until a probe may go (zero while the probes
    /// run). A transition to half-open is reported beside the admission.
    pub(crate) fn admit(
        &mut self,
        now: Instant,
    ) -> (Result<Admission, Duration>, Option<Transition>) {
        match self.state {
            State::Closed { .. } => (Ok(Admission::Normal), None),
            State::Open { until } if now < until => (Err(until - now), None),
            State::Open { .. } => {
                self.state = State::HalfOpen { probes: 1 };
                (Ok(Admission::Probe), Some(Transition::HalfOpened))
            }
            State::HalfOpen { probes } if probes < self.config.probes => {
                self.state = State::HalfOpen { probes: probes + 1 };
                (Ok(Admission::Probe), None)
            }
            State::HalfOpen { .. } => (Err(Duration::ZERO), None),
        }
    }

    /// Records the outcome of an admitted call: `Some(true)` failed, `Some(false)`
    /// succeeded, `None` ended without saying anything about the pool's health (cancelled,
    /// or an application error).
    pub(crate) fn record(
        &mut self,
        admission: Admission,
        failed: Option<bool>,
        now: Instant,
    ) -> Option<Transition> {
        match (admission, self.state, failed) {
            (Admission::Normal, State::Closed { failures }, Some(true)) => {
                let failures = failures + 1;
                if failures >= self.config.failure_threshold {
                    self.state = State::Open {
                        until: now + self.config.open_for,
                    };
                    Some(Transition::Opened)
                } else {
                    self.state = State::Closed { failures };
                    None
                }
            }
            (Admission::Normal, State::Closed { .. }, Some(false)) => {
                self.state = State::Closed { failures: 0 };
                None
            }
            (Admission::Probe, State::HalfOpen { .. }, Some(false)) => {
                self.state = State::Closed { failures: 0 };
                Some(Transition::Closed)
            }
            (Admission::Probe, State::HalfOpen { .. }, Some(true)) => {
                self.state = State::Open {
                    until: now + self.config.open_for,
                };
                Some(Transition::Opened)
            }
            (Admission::Probe, State::HalfOpen { probes }, None) => {
                self.state = State::HalfOpen {
                    probes: probes.saturating_sub(1),
                };
                None
            }
            // Calls admitted before the breaker changed say nothing about its new state.
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(CircuitBreaker {
            failure_threshold: 3,
            open_for: Duration::from_secs(1),
            probes: 1,
        })
    }

    #[test]
    fn opens_after_the_threshold_fails_fast_half_opens_and_closes() {
        let mut b = breaker();
        let t = Instant::now();
        for _ in 0..2 {
            assert_eq!(b.record(Admission::Normal, Some(true), t), None);
        }
        assert_eq!(
            b.record(Admission::Normal, Some(true), t),
            Some(Transition::Opened)
        );
        assert_eq!(b.admit(t).0, Err(Duration::from_secs(1)));
        let later = t + Duration::from_secs(1);
        assert_eq!(
            b.admit(later),
            (Ok(Admission::Probe), Some(Transition::HalfOpened))
        );
        assert_eq!(b.admit(later).0, Err(Duration::ZERO), "one probe at a time");
        assert_eq!(
            b.record(Admission::Probe, Some(false), later),
            Some(Transition::Closed)
        );
        assert_eq!(b.admit(later).0, Ok(Admission::Normal));
    }

    #[test]
    fn a_success_resets_the_count_and_a_failed_probe_reopens() {
        let mut b = breaker();
        let t = Instant::now();
        b.record(Admission::Normal, Some(true), t);
        b.record(Admission::Normal, Some(true), t);
        b.record(Admission::Normal, Some(false), t);
        assert_eq!(b.record(Admission::Normal, Some(true), t), None);
        b.record(Admission::Normal, Some(true), t);
        b.record(Admission::Normal, Some(true), t);
        let later = t + Duration::from_secs(2);
        assert_eq!(b.admit(later).0, Ok(Admission::Probe));
        assert_eq!(
            b.record(Admission::Probe, Some(true), later),
            Some(Transition::Opened)
        );
        assert!(b.admit(later).0.is_err());
    }

    #[test]
    fn a_cancelled_probe_frees_its_place() {
        let mut b = breaker();
        let t = Instant::now();
        for _ in 0..3 {
            b.record(Admission::Normal, Some(true), t);
        }
        let later = t + Duration::from_secs(1);
        assert_eq!(b.admit(later).0, Ok(Admission::Probe));
        assert_eq!(b.record(Admission::Probe, None, later), None);
        assert_eq!(b.admit(later).0, Ok(Admission::Probe));
    }
}
