//! The shapes process, built for the schema tests.
pm_runtime::process_main!(pm_tests::shapes::Shapes);
