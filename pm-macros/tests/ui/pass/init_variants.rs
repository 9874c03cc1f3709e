//! The shapes of `init`: no argument, `-> Self`, `-> Result<Self, E>`, and an argument.

use pm_runtime::prelude::*;

pub struct NoArgsSelf {
    started: bool,
}

#[process(name = "no-args-self", version = "1.0.0")]
impl NoArgsSelf {
    pub async fn init() -> Self {
        Self { started: true }
    }

    #[public]
    pub async fn started(&self) -> bool {
        self.started
    }
}

pub struct NoArgsFallible {
    value: u32,
}

#[process(name = "no-args-fallible", version = "1.0.0")]
impl NoArgsFallible {
    pub async fn init() -> Result<Self, std::io::Error> {
        Ok(Self { value: 7 })
    }

    #[public]
    pub async fn value(&self) -> u32 {
        self.value
    }
}

pub struct NamedSelf {
    port: u16,
}

#[process(name = "named-self", version = "1.0.0")]
impl NamedSelf {
    /// Returns the type by name instead of `Self`.
    pub async fn init(port: u16) -> NamedSelf {
        NamedSelf { port }
    }

    #[public]
    pub async fn port(&mut self) -> u16 {
        self.port
    }
}

async fn use_them(a: &NoArgsSelfClient, b: &NoArgsFallibleClient, c: &NamedSelfClient) {
    let _: Result<bool, pm_runtime::Error> = a.started().await;
    let _: Result<u32, pm_runtime::Error> = b.value().await;
    let _: Result<u16, pm_runtime::Error> = c.port().await;
}

fn main() {
    let _ = use_them;
}
