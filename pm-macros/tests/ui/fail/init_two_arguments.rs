use pm_runtime::prelude::*;

struct S {
    host: String,
    port: u16,
}

#[process(name = "s", version = "1.0.0")]
impl S {
    pub async fn init(host: String, port: u16) -> Result<Self, String> {
        Ok(Self { host, port })
    }

    #[public]
    pub async fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

fn main() {}
