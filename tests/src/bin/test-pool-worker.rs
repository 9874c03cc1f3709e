//! The pool worker process, built for the pool tests.
pm_runtime::process_main!(pm_tests::PoolWorker);
