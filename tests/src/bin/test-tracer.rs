//! The tracer process, built for the trace-context tests.
pm_runtime::process_main!(pm_tests::Tracer);
