//! A process whose methods take structs, enums and nested types: the schema tests build
//! clients from other source (a field added, two swapped, a variant renamed, ...) and spawn
//! this binary, `test-shapes`, with them.

use pm_runtime::prelude::*;
use serde::{Deserialize, Serialize};

/// Two fields of the same type, so that swapping them changes no byte count.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rect {
    /// Width.
    pub w: i64,
    /// Height.
    pub h: i64,
}

/// An order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    /// What is ordered.
    pub item: String,
    /// How many.
    pub quantity: u32,
}

/// A size class.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Kind {
    /// Small.
    Small,
    /// Large.
    Large,
}

/// The outer level of a nested type.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outer {
    /// The middle level.
    pub middle: Middle,
}

/// The middle level.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Middle {
    /// The leaves.
    pub leaves: Vec<Leaf>,
}

/// The innermost level.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Leaf {
    /// A small leaf.
    Small(i32),
    /// A big one.
    Big,
}

/// The process the schema tests spawn.
#[derive(Default)]
pub struct Shapes;

#[process(name = "shapes", version = "1.0.0")]
impl Shapes {
    /// The rectangle's width.
    #[public]
    pub async fn width(&self, rect: Rect) -> i64 {
        rect.w
    }

    /// How many are ordered.
    #[public]
    pub async fn place_order(&self, order: Order) -> u32 {
        order.quantity
    }

    /// The kind's name.
    #[public]
    pub async fn classify(&self, kind: Kind) -> String {
        format!("{kind:?}")
    }

    /// `n + 1`.
    #[public]
    pub async fn count(&self, n: i32) -> i32 {
        n.saturating_add(1)
    }

    /// How many leaves.
    #[public]
    pub async fn plant(&self, outer: Outer) -> u64 {
        outer.middle.leaves.len() as u64
    }

    /// The sum of the bytes.
    #[public]
    pub async fn checksum(&self, bytes: Vec<u8>) -> u64 {
        bytes.iter().map(|b| u64::from(*b)).sum()
    }
}
