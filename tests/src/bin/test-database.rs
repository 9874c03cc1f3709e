//! The database service process, built for the end-to-end tests.
pm_runtime::process_main!(pm_examples::DatabaseService);
