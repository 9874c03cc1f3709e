//! Tracing a type's structure: the type is deserialized, pass after pass, from a
//! deserializer that makes up values and records every struct, field, enum and variant it is
//! asked for, until every variant of every enum it reaches has been seen.
//!
//! Why not `serde-reflection`: it stops exploring an `Option`, a sequence or a map once it
//! knows their element's format, so an enum inside them is traced with its first variant only,
//! unless each such enum is traced on its own by name — and the macro only knows a method's
//! signature, not the types nested in it.

use std::collections::{BTreeMap, BTreeSet};

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};

use super::shape::{Container, Containers, Shape, Variant};

/// How many passes a type gets to reach every enum variant it contains, and how deep a value
/// may nest while being made up. Generous: a pass visits each container once in full.
const PASSES: usize = 4096;
const MAX_DEPTH: usize = 64;

/// A traced type: its shape and the containers it refers to, or why it cannot be traced.
pub type Traced = Result<(Shape, Containers), String>;

/// Traces `T`: its shape and every struct and enum it reaches, with every variant of every
/// enum however deeply it is nested, or why it cannot be traced: a `Deserialize` that
/// refuses the made-up values (one that validates what it reads), one that needs
/// `deserialize_any` (self-describing formats only, as `serde_json::Value`, untagged,
/// internally tagged and flattened types do), a recursive type with no way out of its
/// recursion, or one serde name given to two different structures.
///
/// Each pass makes up one value. The first time a pass meets a container it makes it up in
/// full (options `Some`, one element per sequence and map, the next enum variant not yet
/// seen) and records its structure; every later time in the same pass it makes it up as
/// small as it can (`None`, empty, a variant known to end), so a pass is linear in the
/// number of containers however they refer to each other.
pub fn trace<T: DeserializeOwned>() -> Traced {
    let mut state = State::default();
    let mut shape = None;
    for _ in 0..PASSES {
        state.visited.clear();
        let mut slot = None;
        let made = T::deserialize(Tracer {
            state: &mut state,
            slot: &mut slot,
            stack: &mut Vec::new(),
        });
        match made {
            Ok(_) => {}
            // Making up the smallest value of an enum went round in circles: try its next
            // variant as the way out.
            Err(TraceError {
                stuck: Some(name), ..
            }) if state.next_way_out(name) => continue,
            Err(err) => return Err(err.message),
        }
        shape = shape.or(slot);
        if state.complete() {
            let shape = shape.ok_or("it was never traced")?;
            return Ok((shape, state.finish()?));
        }
    }
    Err("some enum variants could not be reached".into())
}

/// What the passes have learned.
#[derive(Default)]
struct State {
    containers: BTreeMap<&'static str, Partial>,
    /// The containers this pass has made up in full.
    visited: BTreeSet<&'static str>,
    /// For enums made up as small as possible, the variant tried as the way out.
    ways_out: BTreeMap<&'static str, usize>,
}

/// A container as far as it is known.
enum Partial {
    Done(Container),
    /// An enum: each variant's name and its structure once a pass has gone through it.
    Enum(Vec<(&'static str, Option<Variant>)>),
}

impl State {
    fn complete(&self) -> bool {
        self.containers.values().all(|partial| match partial {
            Partial::Done(_) => true,
            Partial::Enum(variants) => variants.iter().all(|(_, v)| v.is_some()),
        })
    }

    fn finish(self) -> Result<Containers, String> {
        self.containers
            .into_iter()
            .map(|(name, partial)| {
                let container = match partial {
                    Partial::Done(container) => container,
                    Partial::Enum(variants) => Container::Enum(
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

    /// Moves enum `name`'s way out to its next variant; `false` once every one was tried.
    fn next_way_out(&mut self, name: &'static str) -> bool {
        let count = match self.containers.get(name) {
            Some(Partial::Enum(variants)) => variants.len(),
            _ => return false,
        };
        let tried = self.ways_out.entry(name).or_insert(0);
        *tried += 1;
        *tried < count
    }

    /// The variant to make up for enum `name` in full: the first not yet seen; once all
    /// have been, one that leads to an enum with variants still unseen.
    fn full_variant(&mut self, name: &'static str, variants: &'static [&'static str]) -> usize {
        let known = match self.containers.entry(name).or_insert_with(|| {
            Partial::Enum(variants.iter().map(|variant| (*variant, None)).collect())
        }) {
            Partial::Enum(known) => known,
            Partial::Done(_) => return 0,
        };
        if let Some(unseen) = known.iter().position(|(_, v)| v.is_none()) {
            return unseen;
        }
        let known: Vec<Variant> = known.iter().filter_map(|(_, v)| v.clone()).collect();
        known
            .iter()
            .position(|variant| self.leads_to_unseen(variant))
            .unwrap_or(0)
    }

    /// The variant to make up for enum `name` as small as possible: the way out being
    /// tried, or else the first seen variant that refers to no container.
    fn small_variant(&self, name: &'static str) -> usize {
        if let Some(way_out) = self.ways_out.get(name) {
            return *way_out;
        }
        match self.containers.get(name) {
            Some(Partial::Enum(known)) => known
                .iter()
                .position(|(_, v)| v.as_ref().is_some_and(Variant::is_leaf))
                .unwrap_or(0),
            _ => 0,
        }
    }

    /// Whether `variant` refers, directly or through other containers, to an enum with
    /// variants still unseen.
    fn leads_to_unseen(&self, variant: &Variant) -> bool {
        let mut names = Vec::new();
        variant.names(&mut names);
        let mut seen = BTreeSet::new();
        while let Some(name) = names.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            match self.containers.get(name.as_str()) {
                Some(Partial::Enum(variants)) => {
                    if variants.iter().any(|(_, v)| v.is_none()) {
                        return true;
                    }
                    for v in variants.iter().filter_map(|(_, v)| v.as_ref()) {
                        v.names(&mut names);
                    }
                }
                Some(Partial::Done(container)) => container.names(&mut names),
                // Not met yet: going there may find more.
                None => return true,
            }
        }
        false
    }

    /// Records container `name`: a serde name given to two structures fails the trace.
    fn record(&mut self, name: &'static str, container: Container) -> Result<(), TraceError> {
        match self.containers.get(name) {
            Some(Partial::Done(known)) if *known != container => Err(clash(name)),
            Some(Partial::Enum(_)) => Err(clash(name)),
            _ => {
                self.containers.insert(name, Partial::Done(container));
                Ok(())
            }
        }
    }

    /// Records variant `index` of enum `name`.
    fn record_variant(
        &mut self,
        name: &'static str,
        index: usize,
        variant: Variant,
    ) -> Result<(), TraceError> {
        let Some(Partial::Enum(known)) = self.containers.get_mut(name) else {
            return Err(clash(name));
        };
        match known.get_mut(index) {
            Some((_, Some(seen))) if *seen != variant => Err(clash(name)),
            Some((_, slot)) => {
                *slot = Some(variant);
                Ok(())
            }
            None => Err(clash(name)),
        }
    }
}

fn clash(name: &str) -> TraceError {
    TraceError {
        message: format!("two different types are both named `{name}` by serde"),
        stuck: None,
    }
}

/// Why tracing failed; `stuck` names the enum whose smallest value went round in circles.
#[derive(Debug)]
struct TraceError {
    message: String,
    stuck: Option<&'static str>,
}

impl TraceError {
    fn new(message: impl Into<String>) -> Self {
        TraceError {
            message: message.into(),
            stuck: None,
        }
    }
}

impl std::fmt::Display for TraceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TraceError {}

impl de::Error for TraceError {
    fn custom<M: std::fmt::Display>(message: M) -> Self {
        TraceError::new(format!("it refused a made-up value: {message}"))
    }
}

/// One container being made up: its name, and whether it is made up as small as possible
/// (and is an enum).
#[derive(Clone, Copy)]
struct Frame {
    name: &'static str,
    small: bool,
    is_enum: bool,
}

/// The deserializer of one position: it records the shape found there in `slot`. `stack`
/// holds the containers being made up around it.
struct Tracer<'a> {
    state: &'a mut State,
    slot: &'a mut Option<Shape>,
    stack: &'a mut Vec<Frame>,
}

impl Tracer<'_> {
    /// Whether the innermost container is being made up as small as possible.
    fn small(&self) -> bool {
        self.stack.last().is_some_and(|frame| frame.small)
    }

    fn record(&mut self, shape: Shape) {
        *self.slot = Some(shape);
    }

    /// Starts making up container `name`; returns whether it is made up in full (the first
    /// time this pass meets it). Too deep a nesting is a recursion with no way out, unless an
    /// enum made up small on the way can try another variant.
    fn enter(&mut self, name: &'static str, is_enum: bool) -> Result<bool, TraceError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.too_deep());
        }
        let full = self.state.visited.insert(name);
        self.stack.push(Frame {
            name,
            small: !full,
            is_enum,
        });
        Ok(full)
    }

    /// The error of a nesting too deep: a recursion with no way out, unless an enum made up
    /// small on the way can try another variant (it is named as `stuck`).
    fn too_deep(&self) -> TraceError {
        let stuck = self
            .stack
            .iter()
            .rev()
            .find(|frame| frame.small && frame.is_enum)
            .map(|frame| frame.name);
        TraceError {
            message: "it nests too deeply (a recursion with no way out)".into(),
            stuck,
        }
    }

    fn leave(&mut self) {
        self.stack.pop();
    }

    /// Makes up the value of a child position, returning its shape.
    fn child<'de, S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<(S::Value, Shape), TraceError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.too_deep());
        }
        let mut slot = None;
        let value = seed.deserialize(Tracer {
            state: self.state,
            slot: &mut slot,
            stack: self.stack,
        })?;
        Ok((value, slot.unwrap_or(Shape::Unit)))
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
        Err(TraceError::new(
            "it needs a self-describing format (deserialize_any)",
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
        if self.small() {
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
        let full = self.enter(name, false)?;
        let recorded = if full {
            self.state.record(name, Container::UnitStruct)
        } else {
            Ok(())
        };
        self.leave();
        recorded?;
        self.record(Shape::Named(name.to_owned()));
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        mut self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        let full = self.enter(name, false)?;
        let mut slot = None;
        let value = visitor.visit_newtype_struct(Tracer {
            state: self.state,
            slot: &mut slot,
            stack: self.stack,
        });
        let recorded = match (&value, full) {
            (Ok(_), true) => self
                .state
                .record(name, Container::Newtype(slot.unwrap_or(Shape::Unit))),
            _ => Ok(()),
        };
        self.leave();
        recorded?;
        self.record(Shape::Named(name.to_owned()));
        value
    }

    fn deserialize_seq<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, TraceError> {
        let one = !self.small();
        let mut access = Items::new(&mut self, usize::from(one));
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
        // `[T; N]` and `(T, T, ...)` are the same to serde and on the wire: both are tuples.
        self.record(Shape::Tuple(shapes));
        Ok(value)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        mut self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        let full = self.enter(name, false)?;
        let mut access = Items::new(&mut self, len);
        let value = visitor.visit_seq(&mut access);
        let shapes = std::mem::take(&mut access.shapes);
        let recorded = match (&value, full) {
            (Ok(_), true) => self.state.record(name, Container::Tuple(shapes)),
            _ => Ok(()),
        };
        self.leave();
        recorded?;
        self.record(Shape::Named(name.to_owned()));
        value
    }

    fn deserialize_map<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, TraceError> {
        let one = !self.small();
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
        let full = self.enter(name, false)?;
        let mut access = Items::new(&mut self, fields.len());
        let value = visitor.visit_seq(&mut access);
        let shapes = std::mem::take(&mut access.shapes);
        let recorded = match (&value, full) {
            (Ok(_), true) => {
                let named = fields.iter().map(|f| (*f).to_owned()).zip(shapes).collect();
                self.state.record(name, Container::Struct(named))
            }
            _ => Ok(()),
        };
        self.leave();
        recorded?;
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
            return Err(TraceError::new(format!("enum `{name}` has no variants")));
        }
        let full = self.enter(name, true)?;
        // Every enum gets its entry, so a pass that never reaches a variant is noticed.
        let index = if full {
            self.state.full_variant(name, variants)
        } else {
            self.state.small_variant(name).min(variants.len() - 1)
        };
        let mut access = OneVariant {
            tracer: &mut self,
            index,
            shape: None,
        };
        let value = visitor.visit_enum(&mut access);
        let shape = access.shape.take();
        let recorded = match (&value, full, shape) {
            (Ok(_), true, Some(shape)) => self.state.record_variant(name, index, shape),
            _ => Ok(()),
        };
        self.leave();
        recorded?;
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
        let index = u32::try_from(self.index).map_err(|_| TraceError::new("too many variants"))?;
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
