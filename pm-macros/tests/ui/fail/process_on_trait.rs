use pm_runtime::prelude::*;

#[process(name = "s", version = "1.0.0")]
trait Calculator {
    #[public]
    async fn add(&self, a: i64, b: i64) -> i64;
}

fn main() {}
