use pm_runtime::prelude::*;

#[derive(Default)]
struct S;

#[process(name = "s", version = "1.0.0")]
impl S {
    #[public]
    pub async fn add(&self, a: impl Into<i64>) -> i64 {
        a.into()
    }
}

fn main() {}
