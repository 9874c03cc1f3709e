//! `crate = "..."` makes the expansion name the runtime through a re-export.

mod facade {
    pub use pm_runtime as rt;
}

use facade::rt as renamed;

#[derive(Default)]
pub struct Renamed;

#[renamed::process(name = "renamed", version = "0.1.0", crate = "renamed")]
impl Renamed {
    #[public]
    pub async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    #[health_check]
    pub async fn health(&self) -> renamed::HealthStatus {
        renamed::HealthStatus::healthy()
    }
}

#[derive(Default)]
pub struct Nested;

#[renamed::process(name = "nested", version = "0.1.0", crate = "crate::facade::rt")]
impl Nested {
    #[public]
    pub async fn ping(&self) {}
}

async fn use_it(c: &RenamedClient, n: &NestedClient) {
    let _: Result<i64, renamed::Error> = c.add(1, 2).await;
    let _: Result<(), facade::rt::Error> = n.ping().await;
}

fn main() {
    let _ = use_it;
    assert_eq!(<Renamed as renamed::Process>::NAME, "renamed");
    assert_eq!(<Nested as renamed::Process>::NAME, "nested");
}
