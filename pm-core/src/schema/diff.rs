//! What differs between a client's schema and a process's: the first difference, in words.

use std::collections::BTreeSet;

use super::build::{MethodSchema, Schema};
use super::shape::{Container, Containers, Shape, Variant};

impl Schema {
    /// The first difference between this schema (the client's) and `process`'s, as a
    /// sentence naming the method, the argument or return type, and the first field, variant
    /// or type that differs; `None` when they have the same structure.
    ///
    /// ```text
    /// method `place_order`: argument 1 (Order): field 2 is `quantity: u32` in the process, `qty: u32` in the client
    /// ```
    pub fn difference(&self, process: &Schema) -> Option<String> {
        for client_method in &self.methods {
            let Some(process_method) = process.method(&client_method.name) else {
                return Some(format!(
                    "method `{}` is in the client but not in the process",
                    client_method.name
                ));
            };
            if let Some(difference) =
                method_difference(client_method, self, process_method, process)
            {
                return Some(format!("method `{}`: {difference}", client_method.name));
            }
        }
        process
            .methods
            .iter()
            .find(|method| self.method(&method.name).is_none())
            .map(|method| {
                format!(
                    "method `{}` is in the process but not in the client",
                    method.name
                )
            })
    }
}

fn method_difference(
    client: &MethodSchema,
    client_schema: &Schema,
    process: &MethodSchema,
    process_schema: &Schema,
) -> Option<String> {
    let sides = Sides {
        client: &client_schema.containers,
        process: &process_schema.containers,
    };
    if client.args.len() != process.args.len() {
        return Some(format!(
            "it takes {} arguments in the process, {} in the client",
            process.args.len(),
            client.args.len()
        ));
    }
    for (i, (c, p)) in client.args.iter().zip(&process.args).enumerate() {
        if let Some(difference) = sides.compare(&c.shape, &p.shape, &mut BTreeSet::new()) {
            return Some(format!("argument {} ({}): {difference}", i + 1, p.shape));
        }
    }
    sides
        .compare(&client.ret.shape, &process.ret.shape, &mut BTreeSet::new())
        .map(|difference| format!("the return type ({}): {difference}", process.ret.shape))
}

/// The containers of both sides.
struct Sides<'a> {
    client: &'a Containers,
    process: &'a Containers,
}

fn differs(what: &str, process: impl std::fmt::Display, client: impl std::fmt::Display) -> String {
    format!("{what} `{process}` in the process, `{client}` in the client")
}

impl Sides<'_> {
    /// The first difference between two shapes, or `None`. `seen` holds the containers
    /// compared so far, so recursive types end and each container is compared once.
    fn compare(
        &self,
        client: &Shape,
        process: &Shape,
        seen: &mut BTreeSet<String>,
    ) -> Option<String> {
        match (client, process) {
            (Shape::Named(c), Shape::Named(p)) if c == p => {
                if !seen.insert(c.clone()) {
                    return None;
                }
                // Each container is compared once: a second path to it finds nothing new.
                match (self.client.get(c), self.process.get(p)) {
                    (Some(cc), Some(pc)) => self.containers(cc, pc, seen),
                    (None, None) => None,
                    _ => Some(format!("`{c}` is traced on one side only")),
                }
            }
            (Shape::Option(c), Shape::Option(p)) | (Shape::Seq(c), Shape::Seq(p)) => {
                self.inner(client, process, c, p, seen)
            }
            (Shape::Array(c, cn), Shape::Array(p, pn)) if cn == pn => {
                self.inner(client, process, c, p, seen)
            }
            (Shape::Map(ck, cv), Shape::Map(pk, pv)) => self
                .compare(ck, pk, seen)
                .or_else(|| self.compare(cv, pv, seen))
                .map(|difference| format!("in `{process}`: {difference}")),
            (Shape::Tuple(c), Shape::Tuple(p)) if c.len() == p.len() => {
                c.iter().zip(p).enumerate().find_map(|(i, (c, p))| {
                    self.compare(c, p, seen)
                        .map(|difference| format!("element {} of `{process}`: {difference}", i + 1))
                })
            }
            _ if client == process => None,
            _ => Some(differs("it is", process, client)),
        }
    }

    fn inner(
        &self,
        client: &Shape,
        process: &Shape,
        c: &Shape,
        p: &Shape,
        seen: &mut BTreeSet<String>,
    ) -> Option<String> {
        self.compare(c, p, seen).map(|difference| {
            if c == p || matches!((c, p), (Shape::Named(a), Shape::Named(b)) if a == b) {
                format!("in `{process}`: {difference}")
            } else {
                differs("it is", process, client)
            }
        })
    }

    fn containers(
        &self,
        client: &Container,
        process: &Container,
        seen: &mut BTreeSet<String>,
    ) -> Option<String> {
        match (client, process) {
            (Container::Struct(c), Container::Struct(p)) => self.fields(c, p, "field", seen),
            (Container::Tuple(c), Container::Tuple(p)) => {
                let name = |items: &[Shape]| -> Vec<(String, Shape)> {
                    items.iter().map(|s| (String::new(), s.clone())).collect()
                };
                self.fields(&name(c), &name(p), "field", seen)
            }
            (Container::Newtype(c), Container::Newtype(p)) => self.compare(c, p, seen),
            (Container::Enum(c), Container::Enum(p)) => {
                for i in 0..c.len().max(p.len()) {
                    match (c.get(i), p.get(i)) {
                        (Some((cn, cv)), Some((pn, pv))) if cn == pn => {
                            if let Some(difference) = self.variant(cv, pv, seen) {
                                return Some(format!("variant {} (`{pn}`): {difference}", i + 1));
                            }
                        }
                        (c, p) => {
                            let show = |v: Option<&(String, Variant)>| {
                                v.map_or("absent".to_owned(), |(name, variant)| {
                                    format!("{name}{variant}")
                                })
                            };
                            return Some(differs(
                                &format!("variant {} is", i + 1),
                                show(p),
                                show(c),
                            ));
                        }
                    }
                }
                None
            }
            _ if client == process => None,
            _ => Some(differs("it is", process, client)),
        }
    }

    fn variant(
        &self,
        client: &Variant,
        process: &Variant,
        seen: &mut BTreeSet<String>,
    ) -> Option<String> {
        match (client, process) {
            (Variant::Unit, Variant::Unit) => None,
            (Variant::Newtype(c), Variant::Newtype(p)) => self.compare(c, p, seen),
            (Variant::Tuple(c), Variant::Tuple(p)) => {
                let name = |items: &[Shape]| -> Vec<(String, Shape)> {
                    items.iter().map(|s| (String::new(), s.clone())).collect()
                };
                self.fields(&name(c), &name(p), "field", seen)
            }
            (Variant::Struct(c), Variant::Struct(p)) => self.fields(c, p, "field", seen),
            _ => Some(differs("it is", format!("{process}"), format!("{client}"))),
        }
    }

    /// Fields in order: the first one whose name or shape differs.
    fn fields(
        &self,
        client: &[(String, Shape)],
        process: &[(String, Shape)],
        what: &str,
        seen: &mut BTreeSet<String>,
    ) -> Option<String> {
        let show = |field: Option<&(String, Shape)>| match field {
            None => "absent".to_owned(),
            Some((name, shape)) if name.is_empty() => shape.to_string(),
            Some((name, shape)) => format!("{name}: {shape}"),
        };
        for i in 0..client.len().max(process.len()) {
            let (c, p) = (client.get(i), process.get(i));
            match (c, p) {
                (Some((cn, cs)), Some((pn, ps))) if cn == pn => {
                    if let Some(difference) = self.compare(cs, ps, seen) {
                        let label = if pn.is_empty() {
                            ps.to_string()
                        } else {
                            format!("{pn}: {ps}")
                        };
                        // A field whose own shape differs says so directly; one whose type
                        // differs deeper down names the path to it.
                        if top_level(cs, ps) {
                            return Some(differs(
                                &format!("{what} {} is", i + 1),
                                show(p),
                                show(c),
                            ));
                        }
                        return Some(format!("{what} {} (`{label}`): {difference}", i + 1));
                    }
                }
                _ => return Some(differs(&format!("{what} {} is", i + 1), show(p), show(c))),
            }
        }
        None
    }
}

/// Whether two shapes differ at their top (different kinds or names), rather than inside a
/// container they share.
fn top_level(client: &Shape, process: &Shape) -> bool {
    match (client, process) {
        (Shape::Named(c), Shape::Named(p)) => c != p,
        (Shape::Option(c), Shape::Option(p)) | (Shape::Seq(c), Shape::Seq(p)) => top_level(c, p),
        (Shape::Array(c, cn), Shape::Array(p, pn)) => cn != pn || top_level(c, p),
        (Shape::Map(ck, cv), Shape::Map(pk, pv)) => top_level(ck, pk) || top_level(cv, pv),
        (Shape::Tuple(c), Shape::Tuple(p)) => {
            c.len() != p.len() || c.iter().zip(p).any(|(c, p)| top_level(c, p))
        }
        (c, p) => c != p,
    }
}

#[cfg(test)]
mod tests {
    use super::super::build::{MethodTypes, TypeTracer};
    use super::super::trace::trace;
    use super::*;

    fn schema(name: &'static str, arg: (&'static str, TypeTracer)) -> Schema {
        let args: &'static [(&'static str, TypeTracer)] = Box::leak(Box::new([arg]));
        Schema::build(&[MethodTypes {
            name,
            args,
            ret: ("()", trace::<()>),
        }])
    }

    mod process {
        #[derive(serde::Serialize, serde::Deserialize)]
        pub(super) struct Order {
            pub(super) item: String,
            pub(super) quantity: u32,
        }
        #[derive(serde::Serialize, serde::Deserialize)]
        pub(super) struct Outer {
            pub(super) middle: Middle,
        }
        #[derive(serde::Serialize, serde::Deserialize)]
        pub(super) struct Middle {
            pub(super) leaves: Vec<Leaf>,
        }
        #[derive(serde::Serialize, serde::Deserialize)]
        pub(super) enum Leaf {
            Small(i32),
            Big,
        }
    }
    mod client {
        #[derive(serde::Serialize, serde::Deserialize)]
        pub(super) struct Order {
            pub(super) item: String,
            pub(super) qty: u32,
        }
        #[derive(serde::Serialize, serde::Deserialize)]
        pub(super) struct Outer {
            pub(super) middle: Middle,
        }
        #[derive(serde::Serialize, serde::Deserialize)]
        pub(super) struct Middle {
            pub(super) leaves: Vec<Leaf>,
        }
        #[derive(serde::Serialize, serde::Deserialize)]
        pub(super) enum Leaf {
            Small(i64),
            Big,
        }
    }

    #[test]
    fn a_renamed_field_is_named_with_its_position_on_both_sides() {
        let c = schema("place_order", ("Order", trace::<client::Order>));
        let p = schema("place_order", ("Order", trace::<process::Order>));
        assert_eq!(
            c.difference(&p).as_deref(),
            Some(
                "method `place_order`: argument 1 (Order): field 2 is `quantity: u32` in the \
                 process, `qty: u32` in the client"
            )
        );
        assert_eq!(p.difference(&p), None);
    }

    #[test]
    fn a_type_changed_three_levels_down_is_reached_by_its_path() {
        let c = schema("plant", ("Outer", trace::<client::Outer>));
        let p = schema("plant", ("Outer", trace::<process::Outer>));
        assert_eq!(
            c.difference(&p).as_deref(),
            Some(
                "method `plant`: argument 1 (Outer): field 1 (`middle: Middle`): field 1 \
                 (`leaves: Vec<Leaf>`): in `Vec<Leaf>`: variant 1 (`Small`): it is `i32` in the \
                 process, `i64` in the client"
            )
        );
    }

    #[test]
    fn a_method_on_one_side_only_is_named() {
        let c = schema("a", ("u8", trace::<u8>));
        let p = schema("b", ("u8", trace::<u8>));
        assert_eq!(
            c.difference(&p).as_deref(),
            Some("method `a` is in the client but not in the process")
        );
    }
}
