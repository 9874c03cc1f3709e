//! Per-call statistics of a process or pool, per method, measured on the manager's side.
//!
//! Requests and errors count every call since the process (or pool) was started. Latency
//! percentiles come from HDR histograms (two significant digits, 1 µs to one hour) over a
//! sliding window: each method keeps the current and the previous [`WINDOW`]/2, so a summary
//! covers the calls of the last 30 to 60 seconds and a slow spell ages out.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use pm_core::{LatencySummary, MethodMetrics};

/// The span the latency percentiles cover at most.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// The smallest and largest latency a histogram tells apart, in nanoseconds.
const LOWEST: u64 = 1_000;
const HIGHEST: u64 = 3_600 * 1_000_000_000;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(LOWEST, HIGHEST, 2)
        .expect("constant bounds: 1 <= low, 2 * low <= high, 2 significant digits")
}

/// Two halves of the window: recording goes to `current`; every `WINDOW / 2` it becomes
/// `previous` and a fresh one starts.
struct Window {
    current: Histogram<u64>,
    previous: Histogram<u64>,
    started: Instant,
}

impl Window {
    fn new(now: Instant) -> Self {
        Self {
            current: histogram(),
            previous: histogram(),
            started: now,
        }
    }

    fn rotate(&mut self, now: Instant) {
        let half = WINDOW / 2;
        let age = now.saturating_duration_since(self.started);
        if age >= half {
            if age >= WINDOW {
                // Nothing recent at all: both halves are stale.
                self.previous.reset();
            } else {
                std::mem::swap(&mut self.current, &mut self.previous);
            }
            self.current.reset();
            self.started = now;
        }
    }

    fn record(&mut self, nanos: u64, now: Instant) {
        self.rotate(now);
        self.current.saturating_record(nanos.clamp(LOWEST, HIGHEST));
    }

    /// Adds what this window holds now to `into`.
    fn merge_into(&mut self, into: &mut Histogram<u64>, now: Instant) {
        self.rotate(now);
        // Same bounds on both sides, so adding cannot fail.
        let _ = into.add(&self.previous);
        let _ = into.add(&self.current);
    }
}

fn summary(histogram: &Histogram<u64>) -> LatencySummary {
    if histogram.is_empty() {
        return LatencySummary::default();
    }
    let at = |q: f64| Duration::from_nanos(histogram.value_at_quantile(q));
    LatencySummary {
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
    }
}

/// The upper bounds of the cumulative duration buckets exported to Prometheus, in seconds.
pub(crate) const BUCKETS: [f64; 16] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// One method's figures.
struct MethodStats {
    requests: AtomicU64,
    errors: AtomicU64,
    latency: Mutex<Window>,
    /// Calls per duration bucket since the start (the last one past every bound).
    buckets: [AtomicU64; BUCKETS.len() + 1],
    /// The sum of every call's duration since the start, in nanoseconds.
    total_nanos: AtomicU64,
}

/// A method's figures since the start, as a Prometheus histogram wants them.
#[derive(Debug, Clone)]
pub(crate) struct Totals {
    pub(crate) method: &'static str,
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) seconds: f64,
    /// (upper bound, calls in that bucket alone), ending with `f64::INFINITY`.
    pub(crate) buckets: Vec<(f64, u64)>,
}

/// The statistics of one process or pool. With `enabled: false` (`Monitoring::metrics`
/// off) nothing is recorded and every figure stays zero.
pub(crate) struct CallStats {
    enabled: bool,
    /// By method name, hashed with FNV-1a: a few nanoseconds for a short name.
    methods: RwLock<HashMap<&'static str, Arc<MethodStats>, NameHash>>,
}

type NameHash = std::hash::BuildHasherDefault<crate::pool::StableHasher>;

impl std::fmt::Debug for CallStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallStats")
            .field("enabled", &self.enabled)
            .field("requests", &self.requests())
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl CallStats {
    pub(crate) fn new(enabled: bool) -> Self {
        Self {
            enabled,
            methods: RwLock::new(HashMap::default()),
        }
    }

    /// Runs `f` on the figures of method `name`, created on its first call. The common case,
    /// a method seen before, takes the read lock only and clones nothing.
    fn with_method(&self, name: &'static str, f: impl Fn(&MethodStats)) {
        if let Some(stats) = self
            .methods
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(name)
        {
            return f(stats);
        }
        let stats = self
            .methods
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(name)
            .or_insert_with(|| {
                Arc::new(MethodStats {
                    requests: AtomicU64::new(0),
                    errors: AtomicU64::new(0),
                    latency: Mutex::new(Window::new(Instant::now())),
                    buckets: std::array::from_fn(|_| AtomicU64::new(0)),
                    total_nanos: AtomicU64::new(0),
                })
            })
            .clone();
        f(&stats);
    }

    /// Records one call of `method` that took `latency` and ended at `now` (the caller has
    /// read the clock already; it also ages the window).
    pub(crate) fn record(&self, method: &'static str, latency: Duration, ok: bool, now: Instant) {
        if !self.enabled {
            return;
        }
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        let seconds = latency.as_secs_f64();
        let bucket = BUCKETS.partition_point(|bound| *bound < seconds);
        self.with_method(method, |stats| {
            stats.requests.fetch_add(1, Ordering::Relaxed);
            if !ok {
                stats.errors.fetch_add(1, Ordering::Relaxed);
            }
            stats.buckets[bucket].fetch_add(1, Ordering::Relaxed);
            stats.total_nanos.fetch_add(nanos, Ordering::Relaxed);
            lock(&stats.latency).record(nanos, now);
        });
    }

    /// Ends a call begun at `started` with `timeout` as its deadline: records it, and reports
    /// a timeout as the caller's whole deadline (the connection saw only what was left of it).
    pub(crate) fn conclude<T>(
        &self,
        method: &'static str,
        started: Instant,
        timeout: Option<Duration>,
        result: Result<T, pm_core::Error>,
    ) -> Result<T, pm_core::Error> {
        let ended = Instant::now();
        self.record(method, ended - started, result.is_ok(), ended);
        match (result, timeout) {
            (Err(pm_core::Error::Timeout { method, .. }), Some(after)) => {
                Err(pm_core::Error::Timeout { method, after })
            }
            (result, _) => result,
        }
    }

    /// Every method's figures since the start, for the Prometheus exposition.
    pub(crate) fn totals(&self) -> Vec<Totals> {
        let mut totals: Vec<Totals> = self
            .snapshot()
            .into_iter()
            .map(|(method, stats)| Totals {
                method,
                requests: stats.requests.load(Ordering::Relaxed),
                errors: stats.errors.load(Ordering::Relaxed),
                seconds: stats.total_nanos.load(Ordering::Relaxed) as f64 / 1e9,
                buckets: BUCKETS
                    .iter()
                    .copied()
                    .chain([f64::INFINITY])
                    .zip(stats.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
                    .collect(),
            })
            .collect();
        totals.sort_by_key(|t| t.method);
        totals
    }

    fn snapshot(&self) -> Vec<(&'static str, Arc<MethodStats>)> {
        self.methods
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .map(|(name, stats)| (*name, stats.clone()))
            .collect()
    }

    /// Calls recorded, every method together.
    pub(crate) fn requests(&self) -> u64 {
        self.snapshot()
            .iter()
            .map(|(_, s)| s.requests.load(Ordering::Relaxed))
            .sum()
    }

    /// Calls that did not return `Ok`, every method together.
    pub(crate) fn errors(&self) -> u64 {
        self.snapshot()
            .iter()
            .map(|(_, s)| s.errors.load(Ordering::Relaxed))
            .sum()
    }

    /// Latency percentiles over the window, every method together.
    pub(crate) fn latency(&self) -> LatencySummary {
        let now = Instant::now();
        let mut all = histogram();
        for (_, stats) in self.snapshot() {
            lock(&stats.latency).merge_into(&mut all, now);
        }
        summary(&all)
    }

    /// Each method's figures, by name.
    pub(crate) fn methods(&self) -> BTreeMap<String, MethodMetrics> {
        let now = Instant::now();
        self.snapshot()
            .into_iter()
            .map(|(name, stats)| {
                let mut window = histogram();
                lock(&stats.latency).merge_into(&mut window, now);
                let metrics = MethodMetrics {
                    requests: stats.requests.load(Ordering::Relaxed),
                    errors: stats.errors.load(Ordering::Relaxed),
                    latency: summary(&window),
                };
                (name.to_owned(), metrics)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: Duration, want: Duration) -> bool {
        (got.as_secs_f64() - want.as_secs_f64()).abs() / want.as_secs_f64() < 0.05
    }

    #[test]
    fn percentiles_follow_the_recorded_distribution_per_method_and_together() {
        let stats = CallStats::new(true);
        for _ in 0..90 {
            stats.record("fast", Duration::from_micros(100), true, Instant::now());
        }
        for _ in 0..10 {
            stats.record("slow", Duration::from_millis(10), false, Instant::now());
        }
        assert_eq!((stats.requests(), stats.errors()), (100, 10));
        let all = stats.latency();
        assert!(close(all.p50, Duration::from_micros(100)), "{all:?}");
        assert!(close(all.p95, Duration::from_millis(10)), "{all:?}");
        let methods = stats.methods();
        assert_eq!(methods["fast"].requests, 90);
        assert_eq!(methods["fast"].errors, 0);
        assert_eq!(methods["slow"].errors, 10);
        assert!(close(
            methods["slow"].latency.p99,
            Duration::from_millis(10)
        ));
        assert!(close(
            methods["fast"].latency.p99,
            Duration::from_micros(100)
        ));
    }

    #[test]
    fn disabled_statistics_keep_nothing() {
        let stats = CallStats::new(false);
        stats.record("add", Duration::from_micros(10), false, Instant::now());
        assert_eq!((stats.requests(), stats.errors()), (0, 0));
        assert!(stats.methods().is_empty());
        assert_eq!(stats.latency(), LatencySummary::default());
    }

    #[test]
    fn latency_ages_out_of_the_window_while_counts_stay() {
        let start = Instant::now();
        let mut window = Window::new(start);
        window.record(5_000_000, start);
        let mut merged = histogram();
        window.merge_into(&mut merged, start + WINDOW / 2);
        assert_eq!(merged.len(), 1, "the previous half still counts");
        let mut merged = histogram();
        window.merge_into(&mut merged, start + WINDOW + Duration::from_secs(1));
        assert!(merged.is_empty(), "older than the window");
    }
}
