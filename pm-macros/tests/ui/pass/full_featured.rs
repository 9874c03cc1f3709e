//! Every feature at once: `&self` and `&mut self` methods, an idempotent method, a typed
//! error, a health check, two shutdown hooks and an `init` with dependencies.

use pm_runtime::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MathError {
    DivisionByZero { dividend: i64 },
    Overflow,
}

impl std::fmt::Display for MathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MathError::DivisionByZero { dividend } => write!(f, "cannot divide {dividend} by zero"),
            MathError::Overflow => f.write_str("overflow"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    pub start: i64,
    pub label: String,
}

pub struct Full {
    total: i64,
    label: String,
}

#[process(name = "full-featured", version = "2.1.0-beta.1")]
impl Full {
    /// Builds the instance from its dependencies.
    pub async fn init(cfg: Config) -> Result<Self, String> {
        if cfg.label.is_empty() {
            return Err("the label is empty".to_owned());
        }
        Ok(Self {
            total: cfg.start,
            label: cfg.label,
        })
    }

    /// Adds two numbers; safe to run twice, so a pool may retry it.
    #[public(idempotent)]
    pub async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    /// Divides, failing with a typed error.
    #[public]
    pub async fn div(&self, a: i64, b: i64) -> Result<i64, MathError> {
        if b == 0 {
            return Err(MathError::DivisionByZero { dividend: a });
        }
        a.checked_div(b).ok_or(MathError::Overflow)
    }

    /// Adds to the running total (calls are serialised).
    #[public]
    pub async fn accumulate(&mut self, amount: i64) -> i64 {
        self.total += amount;
        self.total
    }

    /// Takes and returns owned collections, tuples and options.
    #[public]
    pub async fn stats(&self, values: Vec<i64>, scale: Option<(u8, f64)>) -> (usize, Option<f64>) {
        let sum: i64 = values.iter().sum();
        (values.len(), scale.map(|(_, s)| sum as f64 * s))
    }

    /// Returns nothing.
    #[public]
    pub async fn reset(&mut self) {
        self.total = 0;
    }

    /// The label from the configuration.
    #[public]
    pub async fn label(&self) -> String {
        self.label.clone()
    }

    #[health_check]
    async fn health(&self) -> HealthStatus {
        HealthStatus::healthy()
    }

    #[on_shutdown]
    async fn flush(&self) {}

    #[on_shutdown]
    async fn close(&mut self) {
        self.total = 0;
    }

    /// A plain helper, untouched by the macro.
    fn helper(&self) -> i64 {
        self.total
    }
}

async fn use_it(c: &FullClient) {
    let _: Result<i64, pm_runtime::Error> = c.add(1, 2).await;
    let _: Result<i64, pm_runtime::Error> = c.div(4, 2).await;
    let _: Result<i64, pm_runtime::Error> = c.accumulate(5).await;
    let _: Result<(usize, Option<f64>), pm_runtime::Error> =
        c.stats(vec![1, 2, 3], Some((1, 0.5))).await;
    let _: Result<(), pm_runtime::Error> = c.reset().await;
    let _: Result<String, pm_runtime::Error> = c.label().await;
    // The client is cheap to clone and printable.
    let copy: FullClient = c.clone();
    let _ = format!("{copy:?}");
}

fn main() {
    use pm_runtime::Process;

    let _ = use_it;
    let _ = Full::helper;
    assert_eq!(<Full as Process>::NAME, "full-featured");
    assert_eq!(<Full as Process>::VERSION, "2.1.0-beta.1");
    let names: Vec<&str> = Full::METHODS.iter().map(|m| m.name).collect();
    assert_eq!(names, ["add", "div", "accumulate", "stats", "reset", "label"]);
    let idempotent: Vec<bool> = Full::METHODS.iter().map(|m| m.idempotent).collect();
    assert_eq!(idempotent, [true, false, false, false, false, false]);
}

// The same, checked at compile time through the path the runtime uses.
const _: () = {
    let methods = <Full as ::pm_runtime::__private::Process>::METHODS;
    assert!(methods[0].idempotent, "`add` is #[public(idempotent)]");
    assert!(!methods[1].idempotent, "`div` is a plain #[public]");
};
