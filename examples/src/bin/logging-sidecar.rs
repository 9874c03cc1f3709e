//! The `logging-sidecar` process binary.
pm_runtime::process_main!(pm_examples::patterns::sidecar::LoggingSidecar);
