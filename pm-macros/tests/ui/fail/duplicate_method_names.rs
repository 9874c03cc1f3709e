use pm_runtime::prelude::*;

#[derive(Default)]
struct S;

#[process(name = "s", version = "1.0.0")]
impl S {
    #[public]
    pub async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    #[public]
    pub async fn add(&self, a: i64, b: i64, c: i64) -> i64 {
        a + b + c
    }
}

fn main() {}
