//! The `kv-store` process binary.
pm_runtime::process_main!(pm_examples::patterns::KvStore);
