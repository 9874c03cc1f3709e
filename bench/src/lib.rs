//! What the call-path benchmarks share: the raw baselines (a framework-free echo peer, a raw
//! tokio multiplexer, in-process round trips) that every case of `benches/calls.rs` is
//! measured beside.
//!
//! Run with `taskset -c 0 cargo bench -p pm-bench` (children inherit the affinity), and
//! `bench/table.py` turns criterion's results into the table of `docs/PERFORMANCE.md`.

pub mod raw;
