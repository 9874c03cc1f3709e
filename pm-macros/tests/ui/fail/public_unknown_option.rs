use pm_runtime::prelude::*;

#[derive(Default)]
struct S;

#[process(name = "s", version = "1.0.0")]
impl S {
    #[public(idempotnt)]
    pub async fn get(&self) -> u32 {
        1
    }
}

fn main() {}
