use pm_runtime::prelude::*;

#[process(name = "s", version = "1.0.0")]
#[derive(Default)]
struct S;

fn main() {}
