use pm_runtime::prelude::*;

#[derive(Default)]
struct S;

#[process(name = "s", version = "1.0.0")]
impl S {
    #[public]
    pub async fn echo<T>(&self, value: T) -> T {
        value
    }
}

fn main() {}
