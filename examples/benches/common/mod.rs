//! What the benchmarks share: the process binaries cargo built for them, the client runtime,
//! and a manager on it.

use pm_runtime::prelude::*;
use tokio::runtime::Runtime;

/// The calculator binary, built by cargo for the benchmark.
pub(crate) const CALCULATOR: &str = env!("CARGO_BIN_EXE_calculator");

/// The runtime the benchmarks call from: one thread, so a call's cost is not blurred by
/// hand-offs between the caller's own worker threads.
pub(crate) fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A manager on `runtime` whose processes run under `isolation` (over the default ipc
/// transport).
pub(crate) fn manager(runtime: &Runtime, isolation: Isolation) -> ProcessManager {
    runtime.block_on(async {
        ProcessManager::new(ProcessManagerConfig {
            isolation,
            ..Default::default()
        })
    })
}
