use pm_runtime::prelude::*;

#[derive(Default)]
struct S {
    name: String,
}

#[process(name = "s", version = "1.0.0")]
impl S {
    #[public]
    pub async fn name<'a>(&'a self) -> String {
        self.name.clone()
    }
}

fn main() {}
