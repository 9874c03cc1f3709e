//! Choosing a member for a call without a key: the strategies, as pure functions over what
//! the pool knows of each member that can take a call right now.

use std::cell::Cell;

use super::options::Strategy;
use super::ring::mix;

/// A member that can take a call: its position in the pool, its calls in flight and its
/// latency estimate (nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Candidate {
    pub(crate) index: usize,
    pub(crate) in_flight: usize,
    pub(crate) latency: f64,
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let local = 0u8;
    mix(nanos ^ (&local as *const u8 as u64)) | 1
}

/// A uniform number below `n` (n > 0), from a per-thread xorshift generator: routing needs
/// spread, not secrecy.
pub(crate) fn random_below(n: usize) -> usize {
    RNG.with(|rng| {
        let mut x = rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        rng.set(x);
        ((u128::from(x) * n as u128) >> 64) as usize
    })
}

/// The peak-EWMA cost of sending one more call to a candidate.
fn cost(candidate: &Candidate) -> f64 {
    candidate.latency * (candidate.in_flight as f64 + 1.0)
}

/// Picks among `candidates` (non-empty), returning the chosen candidate's position in the
/// slice. `turn` is the pool's round-robin counter for this call.
pub(crate) fn choose(strategy: Strategy, candidates: &[Candidate], turn: usize) -> usize {
    let n = candidates.len();
    match strategy {
        Strategy::RoundRobin => turn % n,
        Strategy::Random => random_below(n),
        Strategy::LeastLoaded => least_by(candidates, |c| c.in_flight as f64),
        Strategy::LeastLatency => least_by(candidates, cost),
        Strategy::PowerOfTwo => {
            let idle = candidates.iter().filter(|c| c.in_flight == 0).count();
            if idle > 0 {
                // An idle member beats any busy one; among idle ones, any is as good.
                let pick = random_below(idle);
                return candidates
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.in_flight == 0)
                    .nth(pick)
                    .map(|(i, _)| i)
                    .unwrap_or(0);
            }
            if n == 1 {
                return 0;
            }
            let first = random_below(n);
            let second = (first + 1 + random_below(n - 1)) % n;
            let (a, b) = (&candidates[first], &candidates[second]);
            if b.in_flight < a.in_flight {
                second
            } else {
                first
            }
        }
    }
}

fn least_by(candidates: &[Candidate], key: impl Fn(&Candidate) -> f64) -> usize {
    let mut best = 0;
    for (i, candidate) in candidates.iter().enumerate().skip(1) {
        if key(candidate) < key(&candidates[best]) {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(loads: &[usize]) -> Vec<Candidate> {
        loads
            .iter()
            .enumerate()
            .map(|(index, &in_flight)| Candidate {
                index,
                in_flight,
                latency: 1000.0,
            })
            .collect()
    }

    #[test]
    fn round_robin_takes_each_in_turn() {
        let c = members(&[0, 0, 0]);
        let picks: Vec<usize> = (0..6)
            .map(|t| choose(Strategy::RoundRobin, &c, t))
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn least_loaded_takes_the_fewest_in_flight() {
        assert_eq!(choose(Strategy::LeastLoaded, &members(&[3, 1, 2]), 0), 1);
    }

    #[test]
    fn power_of_two_always_prefers_an_idle_member() {
        for _ in 0..200 {
            assert_eq!(choose(Strategy::PowerOfTwo, &members(&[2, 1, 0, 1]), 0), 2);
        }
    }

    #[test]
    fn power_of_two_never_takes_the_busiest_of_many() {
        for _ in 0..500 {
            let pick = choose(Strategy::PowerOfTwo, &members(&[9, 1, 1, 1]), 0);
            assert_ne!(pick, 0);
        }
    }

    #[test]
    fn least_latency_weighs_latency_by_load() {
        let mut c = members(&[0, 0]);
        c[0].latency = 50_000.0;
        c[1].latency = 10_000.0;
        assert_eq!(choose(Strategy::LeastLatency, &c, 0), 1);
        c[1].in_flight = 9; // 10 µs × 10 > 50 µs × 1
        assert_eq!(choose(Strategy::LeastLatency, &c, 0), 0);
    }

    #[test]
    fn random_covers_every_member() {
        let c = members(&[0, 0, 0, 0]);
        let mut seen = [false; 4];
        for _ in 0..400 {
            seen[choose(Strategy::Random, &c, 0)] = true;
        }
        assert_eq!(seen, [true; 4]);
    }
}
