//! The hasher process binary (CPU-bound work, for the pool benchmark).
pm_runtime::process_main!(pm_examples::Hasher);
