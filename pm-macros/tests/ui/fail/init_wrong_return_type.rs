use pm_runtime::prelude::*;

struct S {
    port: u16,
}

#[process(name = "s", version = "1.0.0")]
impl S {
    pub async fn init(port: u16) -> Option<Self> {
        Some(Self { port })
    }

    #[public]
    pub async fn port(&self) -> u16 {
        self.port
    }
}

fn main() {}
