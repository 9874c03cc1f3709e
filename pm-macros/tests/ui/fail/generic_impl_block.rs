use pm_runtime::prelude::*;

#[derive(Default)]
struct S<T>(T);

#[process(name = "s", version = "1.0.0")]
impl<T: Send + Sync + 'static> S<T> {
    #[public]
    pub async fn ping(&self) {}
}

fn main() {}
