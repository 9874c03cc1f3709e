//! The `api` process binary.
pm_runtime::process_main!(pm_examples::patterns::Api);
