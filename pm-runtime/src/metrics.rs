//! Per-process call statistics and OS resource readings.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pm_core::LatencySummary;

/// Sub-buckets per power of two: 4 gives a relative error under 12.5 % around each midpoint.
const SUB_BITS: u32 = 2;
const BUCKETS: usize = 64 << SUB_BITS;

/// Lock-free counters and a log-linear latency histogram, updated on every call.
pub(crate) struct CallStats {
    requests: AtomicU64,
    errors: AtomicU64,
    buckets: Box<[AtomicU64]>,
}

impl std::fmt::Debug for CallStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallStats")
            .field("requests", &self.requests)
            .field("errors", &self.errors)
            .finish_non_exhaustive()
    }
}

fn bucket_of(nanos: u64) -> usize {
    let v = nanos.max(1);
    let exp = 63 - v.leading_zeros();
    if exp < SUB_BITS {
        return v as usize;
    }
    let sub = (v >> (exp - SUB_BITS)) & ((1 << SUB_BITS) - 1);
    ((exp as usize) << SUB_BITS) + sub as usize
}

/// The midpoint of a bucket, in nanoseconds.
fn bucket_mid(index: usize) -> u64 {
    let exp = (index >> SUB_BITS) as u32;
    if exp < SUB_BITS {
        return index as u64;
    }
    let sub = (index as u64) & ((1 << SUB_BITS) - 1);
    let low = ((1u64 << SUB_BITS) + sub) << (exp - SUB_BITS);
    let width = 1u64 << (exp - SUB_BITS);
    low + width / 2
}

impl CallStats {
    pub(crate) fn new() -> Self {
        Self {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Records one call.
    pub(crate) fn record(&self, latency: Duration, ok: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(nanos)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub(crate) fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// p50, p95 and p99 of every recorded call.
    pub(crate) fn latency(&self) -> LatencySummary {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let quantile = |q: f64| -> Duration {
            if total == 0 {
                return Duration::ZERO;
            }
            let rank = ((total as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (index, count) in counts.iter().enumerate() {
                seen += count;
                if seen >= rank {
                    return Duration::from_nanos(bucket_mid(index));
                }
            }
            Duration::ZERO
        };
        LatencySummary {
            p50: quantile(0.50),
            p95: quantile(0.95),
            p99: quantile(0.99),
        }
    }
}

/// CPU and memory readings of an OS process from `/proc`.
#[derive(Debug, Default)]
pub(crate) struct ResourceSampler {
    last: Mutex<Option<(Instant, u64)>>,
}

impl ResourceSampler {
    /// Resident memory in bytes, and CPU use in percent of one core since the previous sample
    /// (since the process started, on the first sample). `None` when `/proc` cannot be read
    /// (the process is gone).
    pub(crate) fn sample(&self, pid: u32) -> Option<(f64, u64)> {
        let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
        let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        // SAFETY: sysconf has no memory-safety preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
        let memory = resident_pages * page;

        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name may hold spaces; fields resume after its closing parenthesis.
        let after_name = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the full line: 11 and 12 after the name.
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        let start_ticks: u64 = fields.get(19)?.parse().ok()?;
        // SAFETY: as above.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let cpu = match *last {
            Some((at, before)) => {
                let elapsed = now.duration_since(at).as_secs_f64();
                if elapsed > 0.0 {
                    (ticks.saturating_sub(before) as f64 / hz) / elapsed * 100.0
                } else {
                    0.0
                }
            }
            None => {
                let uptime: f64 = std::fs::read_to_string("/proc/uptime")
                    .ok()
                    .and_then(|s| s.split_whitespace().next()?.parse().ok())
                    .unwrap_or(0.0);
                let alive = uptime - start_ticks as f64 / hz;
                if alive > 0.0 {
                    (ticks as f64 / hz) / alive * 100.0
                } else {
                    0.0
                }
            }
        };
        *last = Some((now, ticks));
        Some((cpu, memory))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_midpoints_fall_inside_them() {
        let mut previous = 0;
        for nanos in [
            1u64,
            3,
            4,
            5,
            7,
            8,
            100,
            1_000,
            65_000,
            1_000_000,
            3_000_000_000,
        ] {
            let index = bucket_of(nanos);
            assert!(index >= previous, "{nanos}");
            previous = index;
            let mid = bucket_mid(index) as f64;
            assert!(
                (mid - nanos as f64).abs() / nanos as f64 <= 0.25,
                "{nanos} -> {mid}"
            );
        }
    }

    #[test]
    fn percentiles_follow_the_recorded_distribution() {
        let stats = CallStats::new();
        for _ in 0..90 {
            stats.record(Duration::from_micros(100), true);
        }
        for _ in 0..10 {
            stats.record(Duration::from_millis(10), false);
        }
        assert_eq!(stats.requests(), 100);
        assert_eq!(stats.errors(), 10);
        let latency = stats.latency();
        let within = |d: Duration, want: Duration| {
            (d.as_secs_f64() - want.as_secs_f64()).abs() / want.as_secs_f64() < 0.15
        };
        assert!(
            within(latency.p50, Duration::from_micros(100)),
            "{latency:?}"
        );
        assert!(
            within(latency.p95, Duration::from_millis(10)),
            "{latency:?}"
        );
        assert!(
            within(latency.p99, Duration::from_millis(10)),
            "{latency:?}"
        );
    }

    #[test]
    fn sampling_this_process_reads_memory_and_cpu() {
        let sampler = ResourceSampler::default();
        let (cpu, memory) = sampler.sample(std::process::id()).expect("own /proc");
        assert!(memory > 1024 * 1024, "{memory}");
        assert!(cpu >= 0.0);
        assert!(sampler.sample(u32::MAX).is_none());
    }
}
