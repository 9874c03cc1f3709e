use pm_runtime::prelude::*;

trait Greeter {
    fn greet(&self) -> String;
}

#[derive(Default)]
struct S;

#[process(name = "s", version = "1.0.0")]
impl Greeter for S {
    fn greet(&self) -> String {
        "hello".to_owned()
    }
}

fn main() {}
