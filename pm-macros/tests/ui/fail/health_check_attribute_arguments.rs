use pm_runtime::prelude::*;

#[derive(Default)]
struct S;

#[process(name = "s", version = "1.0.0")]
impl S {
    #[health_check(idempotent)]
    async fn health(&self) -> HealthStatus {
        HealthStatus::healthy()
    }
}

fn main() {}
