//! The `orders` process binary.
pm_runtime::process_main!(pm_examples::patterns::shop::Orders);
