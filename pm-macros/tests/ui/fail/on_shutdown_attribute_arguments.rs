use pm_runtime::prelude::*;

#[derive(Default)]
struct S;

#[process(name = "s", version = "1.0.0")]
impl S {
    #[on_shutdown(order = 1)]
    pub async fn flush(&self) {}
}

fn main() {}
