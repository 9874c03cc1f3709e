use pm_runtime::prelude::*;

#[derive(Default)]
struct S;

#[process(name = "s", version = "1.0.0")]
impl S {
    #[on_shutdown]
    pub async fn flush(&self, timeout_ms: u64) {
        let _ = timeout_ms;
    }
}

fn main() {}
