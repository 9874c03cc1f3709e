use pm_runtime::prelude::*;

#[derive(Default)]
struct S;

#[process(name = "s", version = "1.0.0")]
impl S {
    #[health_check]
    pub async fn disk(&self) -> HealthStatus {
        HealthStatus::healthy()
    }

    #[health_check]
    pub async fn network(&self) -> HealthStatus {
        HealthStatus::healthy()
    }
}

fn main() {}
