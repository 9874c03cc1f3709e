//! The calculator process, built for the benchmarks.
pm_runtime::process_main!(pm_examples::Calculator);
