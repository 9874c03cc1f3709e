//! The counter process, built for the end-to-end tests.
pm_runtime::process_main!(pm_examples::Counter);
