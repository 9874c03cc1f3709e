//! The schema of a process: its name, version and method table, and the fingerprint that the
//! handshake compares so that a client never sends a call to a process built from other code.
//!
//! The fingerprint covers the *structure* of every method's argument and return types in the
//! serde data model, traced once per process type (see [`Schema`]): container names as serde
//! sees them, field names and order, variant names and order, and primitive kinds,
//! recursively. How a type is spelled in the source does not count (`Vec<u8>` and
//! `std::vec::Vec<u8>` agree). A type that cannot be traced is compared by its name as
//! written instead (see [`Shape::Opaque`]).

use std::fmt;

use serde::{Deserialize, Serialize};

mod build;
mod diff;
mod shape;
mod trace;

pub use build::{MethodSchema, MethodTypes, Schema, TypeSchema, TypeTracer};
pub use shape::{Container, Containers, Shape, Variant};
pub use trace::{trace, Traced};

/// How a `#[public]` method takes its receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Receiver {
    /// `&self`: calls run concurrently.
    Shared,
    /// `&mut self`: calls to the process are serialised.
    Exclusive,
}

/// One entry of a process's method table, as the `#[process]` macro records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MethodInfo {
    /// The method's name, which is also its name on the wire.
    pub name: &'static str,
    /// The argument types, as written in the source.
    pub args: &'static [&'static str],
    /// The return type, as written in the source (`()` when none).
    pub ret: &'static str,
    /// Whether the method takes `&self` or `&mut self`.
    pub receiver: Receiver,
    /// Whether the method is marked `#[public(idempotent)]`: a pool may retry it once on
    /// another member when the member it ran on died with the call in flight.
    pub idempotent: bool,
}

/// What a process says it is during the handshake, and what a client expects it to be.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identity {
    /// The `name` of `#[process(name = ...)]`.
    pub name: String,
    /// The `version` of `#[process(version = ...)]`.
    pub version: String,
    /// [`Schema::fingerprint`] of the method table.
    pub fingerprint: u64,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` version {} (method table {:016x})",
            self.name, self.version, self.fingerprint
        )
    }
}
