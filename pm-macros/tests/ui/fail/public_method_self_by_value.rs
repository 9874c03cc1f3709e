use pm_runtime::prelude::*;

#[derive(Default)]
struct S;

#[process(name = "s", version = "1.0.0")]
impl S {
    #[public]
    pub async fn consume(self) -> i64 {
        1
    }
}

fn main() {}
