//! Without `version = "..."`, the seed's own spelling, a process takes its crate's version.

use pm_runtime::prelude::*;
use pm_runtime::Process;

#[derive(Default)]
pub struct SimpleService;

#[process(name = "simple-service")]
impl SimpleService {
    #[public]
    pub async fn ping(&self) -> String {
        "pong".into()
    }
}

fn main() {
    assert_eq!(<SimpleService as Process>::VERSION, env!("CARGO_PKG_VERSION"));
    assert_eq!(<SimpleService as Process>::NAME, "simple-service");
}
