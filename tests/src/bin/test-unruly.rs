//! The unruly-hooks process, built for the lifecycle tests.
pm_runtime::process_main!(pm_tests::UnrulyHooks);
