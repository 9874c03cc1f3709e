//! A documented process compiles under `deny(warnings)` and `deny(missing_docs)`: the
//! generated client and its methods carry docs and trigger no lint.

#![deny(warnings)]
#![deny(missing_docs)]
#![deny(rust_2018_idioms)]
#![deny(unused)]

use pm_runtime::prelude::*;

/// A documented calculator.
#[derive(Default)]
pub struct Calculator;

#[process(name = "calculator", version = "1.0.0")]
impl Calculator {
    /// Adds two numbers.
    #[public]
    pub async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    /// Without docs on the method the client still gets one.
    #[public]
    pub async fn negate(&self, a: i64) -> i64 {
        -a
    }

    /// Always healthy.
    #[health_check]
    pub async fn health(&self) -> HealthStatus {
        HealthStatus::healthy()
    }
}

/// Uses the generated client.
pub async fn use_it(c: &CalculatorClient) -> Result<i64, pm_runtime::Error> {
    let sum: Result<i64, pm_runtime::Error> = c.add(1, 2).await;
    let negated = c.negate(sum?).await?;
    Ok(negated)
}

fn main() {
    let _ = use_it;
}
