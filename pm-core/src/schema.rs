//! The schema of a process: its name, version and method table, and the fingerprint that the
//! handshake compares so that a client never sends a call to a process built from other code.

use std::fmt;

use serde::{Deserialize, Serialize};

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

/// FNV-1a, 64 bits: small, stable across platforms and releases, good enough to tell method
/// tables apart (it is a consistency check, not a security boundary).
fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(PRIME);
    }
    hash
}

/// The fingerprint of a method table: a hash of every method's name, argument type names and
/// return type name, in order. Two builds of the same `#[process]` block agree on it; adding,
/// removing, renaming or retyping a method changes it. Whether a method is idempotent is not
/// part of it: that is a caller-side property, so marking a method changes no wire contract.
pub fn fingerprint(methods: &[MethodInfo]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    let mut hash = OFFSET;
    for method in methods {
        hash = fnv1a(hash, method.name.as_bytes());
        hash = fnv1a(hash, b"(");
        for arg in method.args {
            hash = fnv1a(hash, arg.as_bytes());
            hash = fnv1a(hash, b",");
        }
        hash = fnv1a(hash, b")->");
        hash = fnv1a(hash, method.ret.as_bytes());
        hash = fnv1a(hash, b";");
    }
    hash
}

/// What a process says it is during the handshake, and what a client expects it to be.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identity {
    /// The `name` of `#[process(name = ...)]`.
    pub name: String,
    /// The `version` of `#[process(version = ...)]`.
    pub version: String,
    /// [`fingerprint`] of the method table.
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

#[cfg(test)]
mod tests {
    use super::*;

    const ADD: MethodInfo = MethodInfo {
        name: "add",
        args: &["i64", "i64"],
        ret: "i64",
        receiver: Receiver::Shared,
        idempotent: false,
    };

    #[test]
    fn fingerprint_is_stable_for_the_same_table() {
        assert_eq!(fingerprint(&[ADD]), fingerprint(&[ADD]));
    }

    #[test]
    fn fingerprint_changes_when_a_type_or_name_changes() {
        let retyped = MethodInfo {
            args: &["i32", "i64"],
            ..ADD
        };
        let renamed = MethodInfo {
            name: "plus",
            ..ADD
        };
        let base = fingerprint(&[ADD]);
        assert_ne!(base, fingerprint(&[retyped]));
        assert_ne!(base, fingerprint(&[renamed]));
        assert_ne!(base, fingerprint(&[]));
    }

    #[test]
    fn fingerprint_separates_argument_boundaries() {
        let a = MethodInfo {
            args: &["ab", "c"],
            ..ADD
        };
        let b = MethodInfo {
            args: &["a", "bc"],
            ..ADD
        };
        assert_ne!(fingerprint(&[a]), fingerprint(&[b]));
    }

    #[test]
    fn fingerprint_ignores_idempotency() {
        let marked = MethodInfo {
            idempotent: true,
            ..ADD
        };
        assert_eq!(fingerprint(&[ADD]), fingerprint(&[marked]));
    }
}
