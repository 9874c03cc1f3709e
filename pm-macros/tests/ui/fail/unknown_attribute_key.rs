use pm_runtime::prelude::*;

#[derive(Default)]
struct S;

#[process(nmae = "s", version = "1.0.0")]
impl S {
    #[public]
    pub async fn ping(&self) {}
}

fn main() {}
