//! A process type's schema: each method's argument and return types, traced, and the
//! fingerprint over them.

use serde::{Deserialize, Serialize};

use super::shape::{Containers, Shape};
use super::trace::Traced;

/// Traces one type: [`trace::<T>`](super::trace) for that type.
pub type TypeTracer = fn() -> Traced;

/// What the `#[process]` macro records of one method for its schema: the types as written,
/// each with the function that traces it.
#[derive(Clone, Copy)]
pub struct MethodTypes {
    /// The method's name.
    pub name: &'static str,
    /// Each argument's type as written, and its tracer.
    pub args: &'static [(&'static str, TypeTracer)],
    /// The type a caller receives (the `T` of `Result<T, E>`), and its tracer.
    pub ret: (&'static str, TypeTracer),
}

impl std::fmt::Debug for MethodTypes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let args: Vec<&str> = self.args.iter().map(|(spelled, _)| *spelled).collect();
        f.debug_struct("MethodTypes")
            .field("name", &self.name)
            .field("args", &args)
            .field("ret", &self.ret.0)
            .finish()
    }
}

/// One type of a method, traced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeSchema {
    /// The type as written in the source, for messages (it is not part of the fingerprint,
    /// unless the type could not be traced).
    pub spelled: String,
    /// Its structure.
    pub shape: Shape,
}

/// One method of a schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MethodSchema {
    /// The method's name.
    pub name: String,
    /// Its arguments, in order.
    pub args: Vec<TypeSchema>,
    /// What a caller receives.
    pub ret: TypeSchema,
}

/// The structure of a process type's method table: what the handshake compares, and sends
/// so that a mismatch can say what differs.
///
/// Built once per process type (the macro caches it), in the manager and in the process
/// alike, by tracing each type through serde (see [`trace`](super::trace)).
///
/// ```
/// use pm_core::schema::{trace, MethodTypes, Schema};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Rect { w: i64, h: i64 }
///
/// const WIDTH: MethodTypes = MethodTypes {
///     name: "width",
///     args: &[("Rect", trace::<Rect>)],
///     ret: ("i64", trace::<i64>),
/// };
/// let schema = Schema::build(&[WIDTH]);
/// assert_eq!(schema.to_string(), "width(Rect) -> i64; Rect = struct { w: i64, h: i64 }");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    /// The methods, sorted by name.
    pub methods: Vec<MethodSchema>,
    /// Every struct and enum the methods reach, by serde name.
    pub containers: Containers,
    /// The types compared by name, and why they could not be traced (kept on this side:
    /// it is not sent, and not part of the fingerprint).
    #[serde(skip)]
    pub by_name: Vec<String>,
}

impl Schema {
    /// Traces every type of `methods`.
    ///
    /// A type that cannot be traced (its tracer fails, or it reaches a container that has the
    /// same serde name as a different one already traced) becomes [`Shape::Opaque`], compared
    /// by its name as written; [`Schema::by_name`] says which and why.
    pub fn build(methods: &[MethodTypes]) -> Schema {
        let mut schema = Schema {
            methods: Vec::with_capacity(methods.len()),
            containers: Containers::new(),
            by_name: Vec::new(),
        };
        // In name order, so that which of two clashing types is traced (and which is compared
        // by name) does not depend on the order of the methods in the source.
        let mut methods: Vec<&MethodTypes> = methods.iter().collect();
        methods.sort_by_key(|method| method.name);
        for method in methods {
            let args = method
                .args
                .iter()
                .enumerate()
                .map(|(i, (spelled, trace))| {
                    schema.add(method.name, &format!("argument {}", i + 1), spelled, *trace)
                })
                .collect();
            let (spelled, trace) = method.ret;
            let ret = schema.add(method.name, "the return type", spelled, trace);
            schema.methods.push(MethodSchema {
                name: method.name.to_owned(),
                args,
                ret,
            });
        }
        schema
    }

    fn add(
        &mut self,
        method: &str,
        what: &str,
        spelled: &str,
        trace: fn() -> Traced,
    ) -> TypeSchema {
        // Tracing runs the type's own `Deserialize`: a panic in it is a reason to compare the
        // type by name, not a panic of the spawn.
        let traced = std::panic::catch_unwind(trace)
            .unwrap_or_else(|_| Err("its Deserialize panicked on a made-up value".into()));
        let traced = traced.and_then(|(shape, containers)| {
            for (name, container) in &containers {
                if self
                    .containers
                    .get(name)
                    .is_some_and(|known| known != container)
                {
                    return Err(format!(
                        "another type of this process is also named `{name}` by serde"
                    ));
                }
            }
            self.containers.extend(containers);
            Ok(shape)
        });
        let shape = traced.unwrap_or_else(|reason| {
            self.by_name
                .push(format!("method `{method}`, {what} (`{spelled}`): {reason}"));
            Shape::Opaque(spelled.to_owned())
        });
        TypeSchema {
            spelled: spelled.to_owned(),
            shape,
        }
    }

    /// The fingerprint the handshake compares: a hash of the schema's structure (each
    /// method's name and shapes, by name, then every container), encoded unambiguously, so two
    /// builds agree exactly when their method tables have the same structure. How the types
    /// are spelled does not count, except for types compared by name.
    pub fn fingerprint(&self) -> u64 {
        let methods: Vec<(&str, Vec<&Shape>, &Shape)> = self
            .methods
            .iter()
            .map(|m| {
                (
                    m.name.as_str(),
                    m.args.iter().map(|a| &a.shape).collect(),
                    &m.ret.shape,
                )
            })
            .collect();
        // Encoding plain data cannot fail; should it, the text form still separates tables.
        let encoded = rmp_serde::to_vec(&(methods, &self.containers))
            .unwrap_or_else(|_| self.to_string().into_bytes());
        fnv1a(0xcbf2_9ce4_8422_2325, &encoded)
    }

    /// The schema as sent in the handshake (MessagePack).
    pub fn to_bytes(&self) -> Option<bytes::Bytes> {
        rmp_serde::to_vec(self).ok().map(bytes::Bytes::from)
    }

    /// A schema sent in the handshake, or `None` if these bytes are not one this build can
    /// read (a peer from a later release may send shapes it does not know).
    pub fn from_bytes(bytes: &[u8]) -> Option<Schema> {
        rmp_serde::from_slice(bytes).ok()
    }

    /// The method named `name`.
    pub fn method(&self, name: &str) -> Option<&MethodSchema> {
        self.methods.iter().find(|method| method.name == name)
    }
}

/// The canonical text of a schema: `name(arg, arg) -> ret;` per method, then
/// `Name = structure;` per container, all on one line.
impl std::fmt::Display for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        let mut separate = |f: &mut std::fmt::Formatter<'_>| {
            if !std::mem::take(&mut first) {
                f.write_str("; ")?;
            }
            Ok::<(), std::fmt::Error>(())
        };
        for method in &self.methods {
            separate(f)?;
            write!(f, "{}(", method.name)?;
            for (i, arg) in method.args.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{}", arg.shape)?;
            }
            write!(f, ") -> {}", method.ret.shape)?;
        }
        for (name, container) in &self.containers {
            separate(f)?;
            write!(f, "{name} = {container}")?;
        }
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::super::trace;
    use super::*;

    mod v1 {
        #[derive(serde::Serialize, serde::Deserialize)]
        pub(super) struct Rect {
            pub(super) w: i64,
            pub(super) h: i64,
        }
    }
    mod v2 {
        #[derive(serde::Serialize, serde::Deserialize)]
        pub(super) struct Rect {
            pub(super) h: i64,
            pub(super) w: i64,
        }
    }

    fn width(arg: TypeTracer) -> Schema {
        let args: &'static [(&'static str, TypeTracer)] = Box::leak(Box::new([("Rect", arg)]));
        Schema::build(&[MethodTypes {
            name: "width",
            args,
            ret: ("i64", trace::<i64>),
        }])
    }

    #[test]
    fn the_same_types_spelled_differently_have_the_same_fingerprint() {
        let short = Schema::build(&[MethodTypes {
            name: "len",
            args: &[("Vec<u8>", trace::<Vec<u8>>)],
            ret: ("u64", trace::<u64>),
        }]);
        let long = Schema::build(&[MethodTypes {
            name: "len",
            args: &[("std::vec::Vec<u8>", trace::<std::vec::Vec<u8>>)],
            ret: ("u64", trace::<core::primitive::u64>),
        }]);
        assert_eq!(short.fingerprint(), long.fingerprint());
    }

    #[test]
    fn swapped_fields_of_the_same_type_change_the_fingerprint() {
        let (a, b) = (width(trace::<v1::Rect>), width(trace::<v2::Rect>));
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(
            a.to_string(),
            "width(Rect) -> i64; Rect = struct { w: i64, h: i64 }"
        );
    }

    #[test]
    fn method_order_does_not_change_the_fingerprint() {
        let add = MethodTypes {
            name: "add",
            args: &[("i64", trace::<i64>)],
            ret: ("i64", trace::<i64>),
        };
        let neg = MethodTypes {
            name: "neg",
            args: &[],
            ret: ("i64", trace::<i64>),
        };
        assert_eq!(
            Schema::build(&[add, neg]).fingerprint(),
            Schema::build(&[neg, add]).fingerprint()
        );
    }

    #[test]
    fn an_untraceable_type_is_compared_by_its_name_and_said_so() {
        let schema = Schema::build(&[MethodTypes {
            name: "count",
            args: &[("Name", trace::<super::super::trace::tests::Name>)],
            ret: ("()", trace::<()>),
        }]);
        assert_eq!(
            schema.methods[0].args[0].shape,
            Shape::Opaque("Name".into())
        );
        assert_eq!(schema.by_name.len(), 1);
        assert!(
            schema.by_name[0].contains("method `count`, argument 1"),
            "{:?}",
            schema.by_name
        );
    }
}
