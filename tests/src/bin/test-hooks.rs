//! The hook recorder process, built for the end-to-end tests.
pm_runtime::process_main!(pm_tests::HookRecorder);
