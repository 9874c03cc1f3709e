//! Tracing a type's structure: the type is deserialized, pass after pass, from a
//! deserializer that makes up values and records every struct, field, enum and variant it is
//! asked for, until every variant of every enum it reaches has been seen.
//!
//! Why not `serde-reflection`: it stops exploring an `Option`, a sequence or a map once it
//! knows their element's format, so an enum inside them is traced with its first variant only,
//! unless each such enum is traced on its own by name — and the macro only knows a method's
//! signature, not the types nested in it.

use std::collections::BTreeMap;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};

use super::shape::{Container, Containers, Shape, Variant};

/// How many passes a type gets to reach every enum variant it contains, and how deep a value
/// may nest while being made up. Generous: a pass takes microseconds.
const PASSES: usize = 1024;
const MAX_DEPTH: usize = 64;

/// A traced type: its shape and the containers it refers to, or why it cannot be traced.
pub type Traced = Result<(Shape, Containers), String>;

/// Traces `T`: its shape and every struct and enum it reaches, with every variant of every
/// enum however deeply it is nested, or why it cannot be traced: a `Deserialize` that
/// refuses the made-up values (one that validates what it reads), one that needs
/// `deserialize_any` (self-describing formats only, as `serde_json::Value` or an untagged
/// enum do), or a recursive type with no way out of its recursion.
pub fn trace<T: DeserializeOwned>() -> Traced {
    let mut state = State::default();
    let mut shape = None;
    for _ in 0..PASSES {
        let mut slot = None;
        T::deserialize(Tracer {
            state: &mut state,
            slot: &mut slot,
            stack: &mut Vec::new(),
        })
        .map_err(|err| err.0)?;
        shape = shape.or(slot);
        if state.complete() {
            let shape = shape.ok_or("it was never traced")?;
            return Ok((shape, state.finish()?));
        }
    }
    Err("some enum variants could not be reached (only through a recursion, or too many)".into())
}

/// What the passes have learned.
#[derive(Default)]
struct State {
    containers: BTreeMap<&'static str, Partial>,
}

/// A container as far as it is known.
enum Partial {
    Done(Container),
    /// An enum: each variant's name and its structure once a pass has gone through it, and
    /// how many passes have made it up so far.
    Enum(Vec<(&'static str, Option<Variant>)>, usize),
}

impl State {
    fn complete(&self) -> bool {
        self.containers.values().all(|partial| match partial {
            Partial::Done(_) => true,
            Partial::Enum(variants, _) => variants.iter().all(|(_, v)| v.is_some()),
        })
    }

    fn finish(self) -> Result<Containers, String> {
        self.containers
            .into_iter()
            .map(|(name, partial)| {
                let container = match partial {
                    Partial::Done(container) => container,
                    Partial::Enum(variants, _) => Container::Enum(
                        variants
                            .into_iter()
                            .map(|(variant, format)| {
                                format
                                    .map(|format| (variant.to_owned(), format))
                                    .ok_or_else(|| {
                                        format!("variant `{name}::{variant}` was never reached")
                                    })
                            })
                            .collect::<Result<_, String>>()?,
                    ),
                };
                Ok((name.to_owned(), container))
            })
            .collect()
    }

    /// The variant to make up for enum `name` outside a recursion: the first not yet seen,
    /// or, once all have been, each in turn, so that enums nested in its variants are
    /// reached again.
    fn next_variant(&mut self, name: &'static str, variants: &'static [&'static str]) -> usize {
        let entry = self
            .containers
            .entry(name)
            .or_insert_with(|| Partial::Enum(variants.iter().map(|v| (*v, None)).collect(), 0));
        match entry {
            Partial::Enum(known, visits) => {
                *visits += 1;
                known
                    .iter()
                    .position(|(_, v)| v.is_none())
                    .unwrap_or(*visits % known.len().max(1))
            }
            Partial::Done(_) => 0,
        }
    }
}

/// Why tracing failed.
#[derive(Debug)]
struct TraceError(String);

impl std::fmt::Display for TraceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TraceError {}

impl de::Error for TraceError {
    fn custom<M: std::fmt::Display>(message: M) -> Self {
        TraceError(format!("it refused a made-up value: {message}"))
    }
}

/// The deserializer of one position: it records the shape found there in `slot`. `stack`
/// holds the containers being made up around it; inside a container already on the stack
/// (a recursion) nothing is recorded, and options, sequences and maps are made up empty so
/// that the recursion ends.
struct Tracer<'a> {
    state: &'a mut State,
    slot: &'a mut Option<Shape>,
    stack: &'a mut Vec<&'static str>,
}

impl Tracer<'_> {
    fn in_recursion(&self) -> bool {
        let Some(last) = self.stack.last() else {
            return false;
        };
        self.stack[..self.stack.len() - 1].contains(last) || self.stack.len() > MAX_DEPTH
    }

    fn record(&mut self, shape: Shape) {
        *self.slot = Some(shape);
    }

    /// Makes up the value of a child position, returning its shape.
    fn child<'de, S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<(S::Value, Shape), TraceError> {
        if self.stack.len() > MAX_DEPTH {
            return Err(TraceError(
                "it nests too deeply (a recursion with no way out)".into(),
            ));
        }
        let mut slot = None;
        let value = seed.deserialize(Tracer {
            state: self.state,
            slot: &mut slot,
            stack: self.stack,
        })?;
        Ok((value, slot.unwrap_or(Shape::Unit)))
    }

    /// Records container `name` unless it is being made up further out already.
    fn record_container(&mut self, name: &'static str, container: Container) {
        if !self.in_recursion() {
            self.state.containers.insert(name, Partial::Done(container));
        }
    }
}

macro_rules! primitive {
    ($($method:ident => $shape:ident, $visit:ident($value:expr);)*) => {
        $(
            fn $method<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, TraceError> {
                self.record(Shape::$shape);
                visitor.$visit($value)
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for Tracer<'_> {
    type Error = TraceError;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, TraceError> {
        Err(TraceError(
            "it needs a self-describing format (deserialize_any)".into(),
        ))
    }

    // Numbers are made up as 1, not 0, so that types refusing zero still trace.
    primitive! {
        deserialize_bool => Bool, visit_bool(false);
        deserialize_i8 => I8, visit_i8(1);
        deserialize_i16 => I16, visit_i16(1);
        deserialize_i32 => I32, visit_i32(1);
        deserialize_i64 => I64, visit_i64(1);
        deserialize_i128 => I128, visit_i128(1);
        deserialize_u8 => U8, visit_u8(1);
        deserialize_u16 => U16, visit_u16(1);
        deserialize_u32 => U32, visit_u32(1);
        deserialize_u64 => U64, visit_u64(1);
        deserialize_u128 => U128, visit_u128(1);
        deserialize_f32 => F32, visit_f32(1.0);
        deserialize_f64 => F64, visit_f64(1.0);
        deserialize_char => Char, visit_char('a');
        deserialize_str => Str, visit_str("");
        deserialize_string => Str, visit_string(String::new());
        deserialize_bytes => Bytes, visit_bytes(&[]);
        deserialize_byte_buf => Bytes, visit_byte_buf(Vec::new());
        deserialize_identifier => Str, visit_str("");
    }

    fn deserialize_unit<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, TraceError> {
        self.record(Shape::Unit);
        visitor.visit_unit()
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(
        mut self,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        self.record(Shape::Unit);
        visitor.visit_unit()
    }

    fn deserialize_option<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, TraceError> {
        if self.in_recursion() {
            self.record(Shape::Option(Box::new(Shape::Unit)));
            return visitor.visit_none();
        }
        let mut slot = None;
        let value = visitor.visit_some(Tracer {
            state: self.state,
            slot: &mut slot,
            stack: self.stack,
        })?;
        self.record(Shape::Option(Box::new(slot.unwrap_or(Shape::Unit))));
        Ok(value)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        mut self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        self.stack.push(name);
        self.record_container(name, Container::UnitStruct);
        self.stack.pop();
        self.record(Shape::Named(name.to_owned()));
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        mut self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        self.stack.push(name);
        let mut slot = None;
        let value = visitor.visit_newtype_struct(Tracer {
            state: self.state,
            slot: &mut slot,
            stack: self.stack,
        });
        let inner = slot.unwrap_or(Shape::Unit);
        self.record_container(name, Container::Newtype(inner));
        self.stack.pop();
        self.record(Shape::Named(name.to_owned()));
        value
    }

    fn deserialize_seq<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, TraceError> {
        let one = !self.in_recursion();
        let mut access = Items::new(&mut self, if one { 1 } else { 0 });
        let value = visitor.visit_seq(&mut access)?;
        let element = access.shapes.pop().unwrap_or(Shape::Unit);
        self.record(Shape::Seq(Box::new(element)));
        Ok(value)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        mut self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        let mut access = Items::new(&mut self, len);
        let value = visitor.visit_seq(&mut access)?;
        let shapes = std::mem::take(&mut access.shapes);
        // `[T; N]` and `(T, T, ...)` look the same to serde; a tuple of one element kind is
        // reported as the tuple it is on the wire either way.
        self.record(Shape::Tuple(shapes));
        Ok(value)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        mut self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        self.stack.push(name);
        let mut access = Items::new(&mut self, len);
        let value = visitor.visit_seq(&mut access);
        let shapes = std::mem::take(&mut access.shapes);
        self.record_container(name, Container::Tuple(shapes));
        self.stack.pop();
        self.record(Shape::Named(name.to_owned()));
        value
    }

    fn deserialize_map<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, TraceError> {
        let one = !self.in_recursion();
        let mut access = Entries {
            tracer: &mut self,
            left: usize::from(one),
            key: None,
            value: None,
        };
        let value = visitor.visit_map(&mut access)?;
        let key = access.key.take().unwrap_or(Shape::Unit);
        let entry = access.value.take().unwrap_or(Shape::Unit);
        self.record(Shape::Map(Box::new(key), Box::new(entry)));
        Ok(value)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        mut self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        self.stack.push(name);
        let mut access = Items::new(&mut self, fields.len());
        let value = visitor.visit_seq(&mut access);
        let shapes = std::mem::take(&mut access.shapes);
        let named = fields.iter().map(|f| (*f).to_owned()).zip(shapes).collect();
        self.record_container(name, Container::Struct(named));
        self.stack.pop();
        self.record(Shape::Named(name.to_owned()));
        value
    }

    fn deserialize_enum<V: Visitor<'de>>(
        mut self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        if variants.is_empty() {
            return Err(TraceError(format!("enum `{name}` has no variants")));
        }
        self.stack.push(name);
        let recursion = self.in_recursion();
        // Every enum gets its entry, so a pass that never reaches a variant is noticed.
        let next = self.state.next_variant(name, variants);
        let index = if recursion { 0 } else { next };
        let mut access = OneVariant {
            tracer: &mut self,
            index,
            shape: None,
        };
        let value = visitor.visit_enum(&mut access);
        let shape = access.shape.take();
        if !recursion {
            if let (Some(shape), Some(Partial::Enum(known, _))) =
                (shape, self.state.containers.get_mut(name))
            {
                if let Some((_, slot)) = known.get_mut(index) {
                    *slot = Some(shape);
                }
            }
        }
        self.stack.pop();
        self.record(Shape::Named(name.to_owned()));
        value
    }

    fn is_human_readable(&self) -> bool {
        // MessagePack, the wire format, is not: types that serialize differently for people
        // must be traced the way they travel.
        false
    }
}

/// The elements of a sequence, tuple or struct: `left` more are made up.
struct Items<'t, 'a> {
    tracer: &'t mut Tracer<'a>,
    left: usize,
    shapes: Vec<Shape>,
}

impl<'t, 'a> Items<'t, 'a> {
    fn new(tracer: &'t mut Tracer<'a>, left: usize) -> Self {
        Items {
            tracer,
            left,
            shapes: Vec::new(),
        }
    }
}

impl<'de> de::SeqAccess<'de> for &mut Items<'_, '_> {
    type Error = TraceError;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, TraceError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        let (value, shape) = self.tracer.child(seed)?;
        self.shapes.push(shape);
        Ok(Some(value))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

/// The entries of a map: at most one is made up.
struct Entries<'t, 'a> {
    tracer: &'t mut Tracer<'a>,
    left: usize,
    key: Option<Shape>,
    value: Option<Shape>,
}

impl<'de> de::MapAccess<'de> for &mut Entries<'_, '_> {
    type Error = TraceError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, TraceError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        let (key, shape) = self.tracer.child(seed)?;
        self.key = Some(shape);
        Ok(Some(key))
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<S::Value, TraceError> {
        let (value, shape) = self.tracer.child(seed)?;
        self.value = Some(shape);
        Ok(value)
    }
}

/// The one variant a pass makes up for an enum.
struct OneVariant<'t, 'a> {
    tracer: &'t mut Tracer<'a>,
    index: usize,
    shape: Option<Variant>,
}

impl<'de> de::EnumAccess<'de> for &mut OneVariant<'_, '_> {
    type Error = TraceError;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self), TraceError> {
        let index =
            u32::try_from(self.index).map_err(|_| TraceError("too many variants".into()))?;
        let variant = seed.deserialize(IntoDeserializer::<TraceError>::into_deserializer(index))?;
        Ok((variant, self))
    }
}

impl<'de> de::VariantAccess<'de> for &mut OneVariant<'_, '_> {
    type Error = TraceError;

    fn unit_variant(self) -> Result<(), TraceError> {
        self.shape = Some(Variant::Unit);
        Ok(())
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<S::Value, TraceError> {
        let (value, shape) = self.tracer.child(seed)?;
        self.shape = Some(Variant::Newtype(shape));
        Ok(value)
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        let mut access = Items::new(self.tracer, len);
        let value = visitor.visit_seq(&mut access)?;
        self.shape = Some(Variant::Tuple(std::mem::take(&mut access.shapes)));
        Ok(value)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        let mut access = Items::new(self.tracer, fields.len());
        let value = visitor.visit_seq(&mut access)?;
        let shapes = std::mem::take(&mut access.shapes);
        self.shape = Some(Variant::Struct(
            fields.iter().map(|f| (*f).to_owned()).zip(shapes).collect(),
        ));
        Ok(value)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    #[allow(dead_code)]
    enum Leaf {
        A,
        B(u8),
        C { x: i64 },
    }

    #[derive(Serialize, Deserialize)]
    #[allow(dead_code)]
    enum Middle {
        Empty,
        Holds(Vec<Leaf>),
    }

    #[derive(Serialize, Deserialize)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        inner: Option<Middle>,
    }

    #[test]
    fn every_variant_of_enums_nested_in_a_struct_is_traced() {
        let (shape, containers) = trace::<Outer>().expect("traceable");
        assert_eq!(shape, Shape::Named("Outer".into()));
        let text = |name: &str| containers.get(name).map(ToString::to_string);
        assert_eq!(
            text("Outer").as_deref(),
            Some("struct { name: String, inner: Option<Middle> }")
        );
        assert_eq!(
            text("Middle").as_deref(),
            Some("enum { Empty, Holds(Vec<Leaf>) }")
        );
        assert_eq!(
            text("Leaf").as_deref(),
            Some("enum { A, B(u8), C { x: i64 } }")
        );
    }

    #[test]
    fn a_type_that_needs_deserialize_any_is_refused_with_a_reason() {
        #[derive(Deserialize)]
        #[serde(untagged)]
        #[allow(dead_code)]
        enum Either {
            N(i64),
            S(String),
        }
        let err = trace::<Either>().expect_err("untagged needs deserialize_any");
        assert!(!err.is_empty());
    }

    /// A name that must not be empty: it refuses the made-up empty string.
    #[derive(Deserialize)]
    #[serde(try_from = "String")]
    pub(in crate::schema) struct Name(#[allow(dead_code)] String);

    impl TryFrom<String> for Name {
        type Error = &'static str;
        fn try_from(text: String) -> Result<Self, Self::Error> {
            if text.is_empty() {
                Err("a name cannot be empty")
            } else {
                Ok(Name(text))
            }
        }
    }

    #[test]
    fn a_deserialize_that_validates_is_refused_with_a_reason() {
        let err = trace::<Name>().expect_err("the empty name is refused");
        assert!(err.contains("a name cannot be empty"), "{err}");
        // Made-up numbers are 1, so a type refusing zero still traces.
        assert_eq!(
            trace::<std::num::NonZeroU32>(),
            Ok((Shape::U32, Containers::new()))
        );
    }

    #[test]
    fn a_recursive_type_is_traced_once_and_ends() {
        #[derive(Deserialize)]
        #[allow(dead_code)]
        enum Tree {
            Leaf(i64),
            Node(Box<Tree>, Box<Tree>),
        }
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct List {
            head: u8,
            tail: Option<Box<List>>,
        }
        let (_, trees) = trace::<Tree>().expect("a tree traces");
        assert_eq!(
            trees.get("Tree").map(ToString::to_string).as_deref(),
            Some("enum { Leaf(i64), Node(Tree, Tree) }")
        );
        let (_, lists) = trace::<List>().expect("a list traces");
        assert_eq!(
            lists.get("List").map(ToString::to_string).as_deref(),
            Some("struct { head: u8, tail: Option<List> }")
        );
    }
}
