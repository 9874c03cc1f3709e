use pm_runtime::prelude::*;

#[derive(Default)]
struct S;

#[process(name = "s")]
impl S {
    #[public]
    pub async fn ping(&self) {}
}

fn main() {}
