//! The calculator process binary.
pm_runtime::process_main!(pm_examples::Calculator);
