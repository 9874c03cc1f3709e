//! One mistake in the block (a method that is not `async`) is the only error: code naming the
//! client type, the handle and the spawn still finds them.

use pm_runtime::prelude::*;

#[derive(Default)]
pub struct Calculator;

#[process(name = "calculator", version = "1.0.0")]
impl Calculator {
    #[public]
    pub fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }
}

#[allow(dead_code)]
async fn uses(pm: ProcessManager) -> Result<(), pm_runtime::Error> {
    let handle: ProcessHandle<Calculator> = pm
        .spawn::<Calculator>("target/debug/calculator", SpawnOptions::default())
        .await?;
    let client: &CalculatorClient = &handle;
    let _ = client.clone();
    Ok(())
}

fn main() {}
