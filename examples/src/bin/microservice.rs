//! The `microservice` process binary.
pm_runtime::process_main!(pm_examples::patterns::Microservice);
