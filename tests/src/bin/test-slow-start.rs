//! The slow-starting process, built for the lifecycle tests.
pm_runtime::process_main!(pm_tests::SlowStart);
