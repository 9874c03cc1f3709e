//! The structure of a type in the serde data model, as the handshake compares it.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use serde::{Deserialize, Serialize};

/// The structure of one type: what its values look like in the serde data model (and so on
/// the wire), with named containers (structs and enums) referred to by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Shape {
    /// `()`.
    Unit,
    /// `bool`.
    Bool,
    /// `i8`.
    I8,
    /// `i16`.
    I16,
    /// `i32`.
    I32,
    /// `i64`.
    I64,
    /// `i128`.
    I128,
    /// `u8`.
    U8,
    /// `u16`.
    U16,
    /// `u32`.
    U32,
    /// `u64`.
    U64,
    /// `u128`.
    U128,
    /// `f32`.
    F32,
    /// `f64`.
    F64,
    /// `char`.
    Char,
    /// A string.
    Str,
    /// A byte string (`serde_bytes`, `bytes::Bytes`).
    Bytes,
    /// `Option<T>`.
    Option(Box<Shape>),
    /// A sequence (`Vec<T>`, `HashSet<T>`, ...).
    Seq(Box<Shape>),
    /// A map (`HashMap<K, V>`, `BTreeMap<K, V>`, ...).
    Map(Box<Shape>, Box<Shape>),
    /// A tuple.
    Tuple(Vec<Shape>),
    /// A fixed-size array `[T; N]`.
    Array(Box<Shape>, usize),
    /// A struct or enum, by the name serde gives it; its structure is in the schema's
    /// containers.
    Named(String),
    /// A type that could not be traced structurally, compared by its name as written in the
    /// source (the weaker rule): a `Deserialize` that validates what it reads, or one that
    /// needs `deserialize_any` (such as `serde_json::Value`).
    Opaque(String),
}

/// The structure of a named container.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Container {
    /// `struct A;`
    UnitStruct,
    /// `struct A(T);`
    Newtype(Shape),
    /// `struct A(T, U);`
    Tuple(Vec<Shape>),
    /// `struct A { x: T, y: U }`, its fields in order.
    Struct(Vec<(String, Shape)>),
    /// An enum, its variants in order.
    Enum(Vec<(String, Variant)>),
}

/// The structure of one enum variant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Variant {
    /// `A`
    Unit,
    /// `A(T)`
    Newtype(Shape),
    /// `A(T, U)`
    Tuple(Vec<Shape>),
    /// `A { x: T }`
    Struct(Vec<(String, Shape)>),
}

/// The named containers of a schema, by serde name.
pub type Containers = BTreeMap<String, Container>;

impl Shape {
    /// Adds the names of the containers this shape refers to directly to `out`.
    pub(crate) fn names(&self, out: &mut Vec<String>) {
        match self {
            Shape::Named(name) => out.push(name.clone()),
            Shape::Option(inner) | Shape::Seq(inner) | Shape::Array(inner, _) => inner.names(out),
            Shape::Map(key, value) => {
                key.names(out);
                value.names(out);
            }
            Shape::Tuple(items) => items.iter().for_each(|item| item.names(out)),
            _ => {}
        }
    }
}

impl Container {
    /// Adds the names of the containers this one refers to directly to `out`.
    pub(crate) fn names(&self, out: &mut Vec<String>) {
        match self {
            Container::UnitStruct => {}
            Container::Newtype(inner) => inner.names(out),
            Container::Tuple(items) => items.iter().for_each(|item| item.names(out)),
            Container::Struct(fields) => fields.iter().for_each(|(_, item)| item.names(out)),
            Container::Enum(variants) => variants.iter().for_each(|(_, v)| v.names(out)),
        }
    }
}

impl Variant {
    /// Adds the names of the containers this variant refers to directly to `out`.
    pub(crate) fn names(&self, out: &mut Vec<String>) {
        match self {
            Variant::Unit => {}
            Variant::Newtype(inner) => inner.names(out),
            Variant::Tuple(items) => items.iter().for_each(|item| item.names(out)),
            Variant::Struct(fields) => fields.iter().for_each(|(_, item)| item.names(out)),
        }
    }

    /// Whether the variant refers to no container, so making it up always ends.
    pub(crate) fn is_leaf(&self) -> bool {
        let mut names = Vec::new();
        self.names(&mut names);
        names.is_empty()
    }
}

/// Writes a shape as people read it: `i64`, `Vec<Rect>`, `Option<String>`, `(u8, bool)`.
impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Unit => f.write_str("()"),
            Shape::Bool => f.write_str("bool"),
            Shape::I8 => f.write_str("i8"),
            Shape::I16 => f.write_str("i16"),
            Shape::I32 => f.write_str("i32"),
            Shape::I64 => f.write_str("i64"),
            Shape::I128 => f.write_str("i128"),
            Shape::U8 => f.write_str("u8"),
            Shape::U16 => f.write_str("u16"),
            Shape::U32 => f.write_str("u32"),
            Shape::U64 => f.write_str("u64"),
            Shape::U128 => f.write_str("u128"),
            Shape::F32 => f.write_str("f32"),
            Shape::F64 => f.write_str("f64"),
            Shape::Char => f.write_str("char"),
            Shape::Str => f.write_str("String"),
            Shape::Bytes => f.write_str("bytes"),
            Shape::Option(inner) => write!(f, "Option<{inner}>"),
            Shape::Seq(inner) => write!(f, "Vec<{inner}>"),
            Shape::Map(key, value) => write!(f, "Map<{key}, {value}>"),
            Shape::Tuple(items) => {
                f.write_char('(')?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                if items.len() == 1 {
                    f.write_char(',')?;
                }
                f.write_char(')')
            }
            Shape::Array(inner, size) => write!(f, "[{inner}; {size}]"),
            Shape::Named(name) => f.write_str(name),
            Shape::Opaque(spelled) => write!(f, "{spelled} (by name)"),
        }
    }
}

/// Writes a container's structure on one line: `struct { w: i64, h: i64 }`,
/// `enum { A, B(u8) }`.
impl fmt::Display for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Container::UnitStruct => f.write_str("struct"),
            Container::Newtype(inner) => write!(f, "struct({inner})"),
            Container::Tuple(items) => write!(f, "struct{}", Shape::Tuple(items.clone())),
            Container::Struct(items) => {
                f.write_str("struct ")?;
                write_fields(f, items)
            }
            Container::Enum(variants) => {
                f.write_str("enum { ")?;
                for (i, (name, variant)) in variants.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{name}{variant}")?;
                }
                f.write_str(" }")
            }
        }
    }
}

/// Writes what follows a variant's name: nothing, `(T)`, `(T, U)` or `{ x: T }`.
impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Variant::Unit => Ok(()),
            Variant::Newtype(inner) => write!(f, "({inner})"),
            Variant::Tuple(items) => write!(f, "{}", Shape::Tuple(items.clone())),
            Variant::Struct(items) => {
                f.write_char(' ')?;
                write_fields(f, items)
            }
        }
    }
}

fn write_fields(f: &mut fmt::Formatter<'_>, items: &[(String, Shape)]) -> fmt::Result {
    f.write_str("{ ")?;
    for (i, (name, shape)) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{name}: {shape}")?;
    }
    f.write_str(" }")
}
