use pm_runtime::prelude::*;

#[derive(Default)]
struct S;

impl S {
    #[public]
    pub async fn ping(&self) {}
}

fn main() {}
