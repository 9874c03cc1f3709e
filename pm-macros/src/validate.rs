//! Validation: every rule of `#[process]`, one check per rule, each error spanned at the
//! offending token. Produces the plan that expansion follows.

use std::collections::HashMap;

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, Ident, ImplItemFn, LitStr, PathArguments, ReturnType, Type};

use crate::ctxt::Ctxt;
use crate::parse::{Args, Model, Role};

/// How a method takes `self`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Shared,
    Exclusive,
}

/// What a public method returns.
pub(crate) enum Returns<'a> {
    /// Nothing (`()`).
    Unit,
    /// A value.
    Value(&'a Type),
    /// `Result<T, E>`: `T` to the caller, `E` as a remote application error.
    Result { ok: &'a Type },
}

/// One argument of a public method.
pub(crate) struct Arg<'a> {
    /// Its name on the client method.
    pub(crate) name: Ident,
    pub(crate) ty: &'a Type,
}

/// A validated `#[public]` method.
pub(crate) struct Public<'a> {
    pub(crate) func: &'a ImplItemFn,
    pub(crate) access: Access,
    pub(crate) args: Vec<Arg<'a>>,
    pub(crate) returns: Returns<'a>,
    /// `#[public(idempotent)]`: a pool may retry the call once on another member.
    pub(crate) idempotent: bool,
}

/// A validated hook (`#[health_check]` or `#[on_shutdown]`).
pub(crate) struct Hook<'a> {
    pub(crate) func: &'a ImplItemFn,
    pub(crate) access: Access,
}

/// A validated `init`.
pub(crate) struct Init<'a> {
    pub(crate) func: &'a ImplItemFn,
    /// The dependencies' type, if `init` takes one.
    pub(crate) config: Option<&'a Type>,
    pub(crate) fallible: bool,
}

/// Everything expansion needs.
pub(crate) struct Plan<'a> {
    pub(crate) name: LitStr,
    /// `None`: the crate's own version (`CARGO_PKG_VERSION`) at expansion.
    pub(crate) version: Option<LitStr>,
    pub(crate) krate: syn::Path,
    pub(crate) self_ty: &'a Type,
    pub(crate) client: Ident,
    pub(crate) publics: Vec<Public<'a>>,
    pub(crate) health: Option<Hook<'a>>,
    pub(crate) shutdown: Vec<Hook<'a>>,
    pub(crate) init: Option<Init<'a>>,
}

/// Checks the model; `None` when any rule is broken (the errors are in `cx`).
pub(crate) fn validate<'a>(cx: &Ctxt, args: Args, model: &Model<'a>) -> Option<Plan<'a>> {
    let name = check_name(cx, args.name, args.reported);
    let version = check_version(cx, args.version);
    check_inherent(cx, model);
    // A generic impl block was just reported; its type's generics need no second error.
    let client = client_ident(
        cx,
        &model.item.self_ty,
        model.item.generics.params.is_empty(),
    );

    let mut publics = Vec::new();
    let mut health: Option<Hook<'a>> = None;
    let mut shutdown = Vec::new();
    let mut seen: HashMap<String, Span> = HashMap::new();
    for marked in &model.marked {
        let func = marked.func;
        check_signature_basics(cx, func, marked.role.attribute());
        let access = check_receiver(cx, func, marked.role.attribute());
        match marked.role {
            Role::Public => {
                let method = func.sig.ident.to_string();
                if seen.insert(method.clone(), func.sig.ident.span()).is_some() {
                    cx.error_spanned_by(
                        &func.sig.ident,
                        format!("a #[public] method named `{method}` is already defined; method names are the wire names and must be unique"),
                    );
                }
                if method.starts_with("__") {
                    cx.error_spanned_by(
                        &func.sig.ident,
                        "method names starting with `__` are reserved for the generated code",
                    );
                }
                let args = check_public_args(cx, func);
                let returns = check_public_return(cx, func);
                if let Some(access) = access {
                    publics.push(Public {
                        func,
                        access,
                        args,
                        returns,
                        idempotent: marked.idempotent,
                    });
                }
            }
            Role::HealthCheck => {
                check_no_args(cx, func, "#[health_check]");
                check_health_return(cx, func);
                if health.is_some() {
                    cx.error_spanned_by(
                        marked.attr,
                        "only one #[health_check] is allowed per process; combine the checks into one `HealthStatus` with `with_check`",
                    );
                } else if let Some(access) = access {
                    health = Some(Hook { func, access });
                }
            }
            Role::OnShutdown => {
                check_no_args(cx, func, "#[on_shutdown]");
                check_unit_return(cx, func);
                if let Some(access) = access {
                    shutdown.push(Hook { func, access });
                }
            }
        }
    }
    let init = model
        .init
        .and_then(|func| check_init(cx, func, &model.item.self_ty));

    Some(Plan {
        name: name?,
        version: version.ok()?,
        krate: args
            .krate
            .unwrap_or_else(|| syn::parse_quote!(::pm_runtime)),
        self_ty: &model.item.self_ty,
        client: client?,
        publics,
        health,
        shutdown,
        init,
    })
}

/// `reported`: an argument error was already reported, which likely explains a missing key.
fn check_name(cx: &Ctxt, name: Option<LitStr>, reported: bool) -> Option<LitStr> {
    let Some(name) = name else {
        if !reported {
            cx.syn_error(syn::Error::new(
                Span::call_site(),
                "#[process] needs a name: add `name = \"...\"`, e.g. #[process(name = \"calculator\", version = \"1.0.0\")]",
            ));
        }
        return None;
    };
    let value = name.value();
    let valid = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        cx.error_spanned_by(
            &name,
            format!("{value:?} is not a valid process name: use only ASCII letters, digits, `-`, `_` and `.` (e.g. \"my-calc\")"),
        );
        return None;
    }
    Some(name)
}

/// `MAJOR.MINOR.PATCH`, optionally followed by `-pre` and/or `+build`.
fn is_semver(version: &str) -> bool {
    let core = version.split(['-', '+']).next().unwrap_or("");
    let rest = &version[core.len()..];
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '+' | '.'))
        && (rest.is_empty() || rest.len() > 1)
}

/// The version as written, `Ok(None)` when absent (the crate's version is used), or `Err`
/// when it is not a version (reported in `cx`).
fn check_version(cx: &Ctxt, version: Option<LitStr>) -> Result<Option<LitStr>, ()> {
    let Some(version) = version else {
        return Ok(None);
    };
    if !is_semver(&version.value()) {
        cx.error_spanned_by(
            &version,
            format!(
                "{:?} is not a valid process version: write `MAJOR.MINOR.PATCH` (e.g. \"1.0.0\" or \"2.1.0-beta.1\")",
                version.value()
            ),
        );
        return Err(());
    }
    Ok(Some(version))
}

fn check_inherent(cx: &Ctxt, model: &Model<'_>) {
    let item = model.item;
    if let Some((_, path, _)) = &item.trait_ {
        cx.error_spanned_by(
            path,
            "#[process] goes on an inherent impl block (`impl MyType { ... }`), not on a trait impl",
        );
    }
    if !item.generics.params.is_empty() {
        cx.error_spanned_by(
            &item.generics,
            "#[process] does not support generic impl blocks: a process binary needs one concrete type",
        );
    }
    if let Some(unsafety) = &item.unsafety {
        cx.error_spanned_by(unsafety, "#[process] does not go on an `unsafe impl`");
    }
}

/// `<Type>Client`, or `None` (reported when `report`) when the type is not a plain name.
pub(crate) fn client_ident(cx: &Ctxt, self_ty: &Type, report: bool) -> Option<Ident> {
    if let Type::Path(path) = self_ty {
        if path.qself.is_none() {
            if let Some(last) = path.path.segments.last() {
                if matches!(last.arguments, PathArguments::None) {
                    return Some(Ident::new(
                        &format!("{}Client", last.ident),
                        last.ident.span(),
                    ));
                }
            }
        }
    }
    if report {
        cx.error_spanned_by(
            self_ty,
            "#[process] needs a plain type name here (`impl Calculator`), without generics",
        );
    }
    None
}

fn check_signature_basics(cx: &Ctxt, func: &ImplItemFn, role: &str) {
    let sig = &func.sig;
    if sig.asyncness.is_none() {
        cx.error_spanned_by(
            sig.fn_token,
            format!(
                "{role} methods must be `async`: write `async fn {}`",
                sig.ident
            ),
        );
    }
    let params = &sig.generics.params;
    if params
        .iter()
        .all(|param| matches!(param, syn::GenericParam::Lifetime(_)))
    {
        if !params.is_empty() {
            cx.error_spanned_by(
                params,
                format!(
                    "{role} methods cannot have lifetime parameters: remove `<{}>` and take `&self` or `&mut self` (arguments are owned values)",
                    params
                        .iter()
                        .map(|param| quote::ToTokens::to_token_stream(param).to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
    } else {
        cx.error_spanned_by(
            params,
            format!("{role} methods cannot be generic: the process decodes the arguments into concrete types, so replace the type parameters with concrete types"),
        );
    }
    if let Some(clause) = &sig.generics.where_clause {
        cx.error_spanned_by(
            clause,
            format!("{role} methods cannot have a `where` clause"),
        );
    }
    if let Some(unsafety) = &sig.unsafety {
        cx.error_spanned_by(unsafety, format!("{role} methods cannot be `unsafe`"));
    }
    if let Some(abi) = &sig.abi {
        cx.error_spanned_by(abi, format!("{role} methods cannot declare an ABI"));
    }
    if let Some(variadic) = &sig.variadic {
        cx.error_spanned_by(variadic, format!("{role} methods cannot be variadic"));
    }
}

fn check_receiver(cx: &Ctxt, func: &ImplItemFn, role: &str) -> Option<Access> {
    let Some(receiver) = func.sig.receiver() else {
        cx.error_spanned_by(
            &func.sig.ident,
            format!(
                "{role} methods take `&self` or `&mut self`: add it as the first parameter, `async fn {}(&self, ...)`",
                func.sig.ident
            ),
        );
        return None;
    };
    if receiver.colon_token.is_some() {
        cx.error_spanned_by(
            receiver,
            format!("{role} methods take `&self` or `&mut self`, not a typed `self`"),
        );
        return None;
    }
    let Some((_, lifetime)) = &receiver.reference else {
        cx.error_spanned_by(
            receiver,
            format!("{role} methods take `&self` or `&mut self`: the process keeps its instance, so `self` cannot be moved"),
        );
        return None;
    };
    // A lifetime declared on the method itself was already reported with its generics.
    let declared_here = |lifetime: &syn::Lifetime| {
        func.sig
            .generics
            .lifetimes()
            .any(|def| def.lifetime == *lifetime)
    };
    if let Some(lifetime) = lifetime.as_ref().filter(|l| !declared_here(l)) {
        let plain = if receiver.mutability.is_some() {
            "&mut self"
        } else {
            "&self"
        };
        cx.error_spanned_by(
            lifetime,
            format!("{role} methods take `&self` or `&mut self` without a named lifetime: write `{plain}`"),
        );
    }
    Some(if receiver.mutability.is_some() {
        Access::Exclusive
    } else {
        Access::Shared
    })
}

fn typed_args(func: &ImplItemFn) -> impl Iterator<Item = &syn::PatType> {
    func.sig.inputs.iter().filter_map(|arg| match arg {
        FnArg::Typed(pat) => Some(pat),
        FnArg::Receiver(_) => None,
    })
}

/// Reports borrowed, `impl Trait` and trait-object types anywhere inside `ty`.
fn check_owned(cx: &Ctxt, ty: &Type, what: &str) {
    match ty {
        Type::Reference(reference) => {
            let hint = match &*reference.elem {
                Type::Path(p) if p.path.is_ident("str") => "take `String` instead of `&str`",
                Type::Slice(_) => "take `Vec<T>` instead of `&[T]`",
                _ => "take the value itself, not a reference",
            };
            cx.error_spanned_by(
                reference,
                format!("{what} cross a process boundary and must be owned: {hint}"),
            );
        }
        Type::ImplTrait(imp) => cx.error_spanned_by(
            imp,
            format!("{what} cannot be `impl Trait`: the other side must know the concrete type to decode"),
        ),
        Type::TraitObject(obj) => cx.error_spanned_by(
            obj,
            format!("{what} cannot be trait objects: use a concrete type that is Serialize + Deserialize"),
        ),
        Type::Ptr(ptr) => cx.error_spanned_by(
            ptr,
            format!("{what} cannot be raw pointers: they mean nothing in another process"),
        ),
        Type::BareFn(f) => cx.error_spanned_by(
            f,
            format!("{what} cannot be function pointers: they mean nothing in another process"),
        ),
        Type::Infer(i) => cx.error_spanned_by(i, format!("{what} need explicit types")),
        Type::Paren(p) => check_owned(cx, &p.elem, what),
        Type::Group(g) => check_owned(cx, &g.elem, what),
        Type::Array(a) => check_owned(cx, &a.elem, what),
        Type::Slice(s) => check_owned(cx, &s.elem, what),
        Type::Tuple(t) => t.elems.iter().for_each(|e| check_owned(cx, e, what)),
        Type::Path(p) => {
            for segment in &p.path.segments {
                if let PathArguments::AngleBracketed(args) = &segment.arguments {
                    for arg in &args.args {
                        match arg {
                            GenericArgument::Type(inner) => check_owned(cx, inner, what),
                            GenericArgument::Lifetime(l) => cx.error_spanned_by(
                                l,
                                format!("{what} cross a process boundary and cannot borrow: remove the lifetime"),
                            ),
                            _ => {}
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

fn check_public_args<'a>(cx: &Ctxt, func: &'a ImplItemFn) -> Vec<Arg<'a>> {
    typed_args(func)
        .enumerate()
        .map(|(index, pat)| {
            check_owned(cx, &pat.ty, "arguments of #[public] methods");
            let name = match &*pat.pat {
                syn::Pat::Ident(ident) if ident.subpat.is_none() => {
                    Ident::new(&ident.ident.to_string(), ident.ident.span())
                }
                other => Ident::new(&format!("arg{index}"), other.span()),
            };
            Arg { name, ty: &pat.ty }
        })
        .collect()
}

/// `Result<T, E>` (by its last path segment, with two type arguments): `(T, E)`.
pub(crate) fn result_parts(ty: &Type) -> Option<(&Type, &Type)> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let mut types = args.args.iter().filter_map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    });
    let ok = types.next()?;
    let err = types.next()?;
    types.next().is_none().then_some((ok, err))
}

fn check_public_return<'a>(cx: &Ctxt, func: &'a ImplItemFn) -> Returns<'a> {
    match &func.sig.output {
        ReturnType::Default => Returns::Unit,
        ReturnType::Type(_, ty) => {
            check_owned(cx, ty, "return types of #[public] methods");
            match result_parts(ty) {
                Some((ok, _)) => Returns::Result { ok },
                None => Returns::Value(ty),
            }
        }
    }
}

fn check_no_args(cx: &Ctxt, func: &ImplItemFn, role: &str) {
    if let Some(first) = typed_args(func).next() {
        cx.error_spanned_by(
            first,
            format!("{role} methods take no arguments besides `&self`"),
        );
    }
}

fn last_segment_is(ty: &Type, name: &str) -> bool {
    match ty {
        Type::Path(path) => path
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == name && matches!(s.arguments, PathArguments::None)),
        _ => false,
    }
}

fn check_health_return(cx: &Ctxt, func: &ImplItemFn) {
    match &func.sig.output {
        ReturnType::Type(_, ty) if last_segment_is(ty, "HealthStatus") => {}
        ReturnType::Type(_, ty) => cx.error_spanned_by(
            ty,
            "#[health_check] methods return `HealthStatus` (e.g. `HealthStatus::healthy()`)",
        ),
        ReturnType::Default => cx.error_spanned_by(
            &func.sig,
            "#[health_check] methods return `HealthStatus`: add `-> HealthStatus`",
        ),
    }
}

fn check_unit_return(cx: &Ctxt, func: &ImplItemFn) {
    if let ReturnType::Type(_, ty) = &func.sig.output {
        let unit = matches!(&**ty, Type::Tuple(t) if t.elems.is_empty());
        if !unit {
            cx.error_spanned_by(
                ty,
                "#[on_shutdown] methods return nothing; log or handle failures inside the hook",
            );
        }
    }
}

fn is_self_type(ty: &Type, self_ty: &Type) -> bool {
    if last_segment_is(ty, "Self") {
        return true;
    }
    match (ty, self_ty) {
        (Type::Path(a), Type::Path(b)) => {
            a.path.segments.last().map(|s| &s.ident) == b.path.segments.last().map(|s| &s.ident)
        }
        _ => false,
    }
}

fn check_init<'a>(cx: &Ctxt, func: &'a ImplItemFn, self_ty: &Type) -> Option<Init<'a>> {
    let sig = &func.sig;
    let mut ok = true;
    if sig.asyncness.is_none() {
        cx.error_spanned_by(
            sig.fn_token,
            "`init` must be `async`: write `async fn init(config: C) -> Result<Self, E>`",
        );
        ok = false;
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        cx.error_spanned_by(
            &sig.generics,
            "`init` cannot be generic: the dependencies need one concrete type",
        );
        ok = false;
    }
    let args: Vec<&syn::PatType> = typed_args(func).collect();
    if args.len() > 1 {
        cx.error_spanned_by(
            args[1],
            "`init` takes at most one argument, the dependencies; bundle several values in a struct or tuple",
        );
        ok = false;
    }
    let config = args.first().map(|pat| {
        check_owned(cx, &pat.ty, "`init`'s dependencies");
        &*pat.ty
    });
    let fallible = match &sig.output {
        ReturnType::Type(_, ty) if is_self_type(ty, self_ty) => false,
        ReturnType::Type(_, ty) => match result_parts(ty) {
            Some((inner, _)) if is_self_type(inner, self_ty) => true,
            _ => {
                cx.error_spanned_by(
                    ty,
                    "`init` returns `Self` or `Result<Self, E>` (with `E: Display`)",
                );
                ok = false;
                false
            }
        },
        ReturnType::Default => {
            cx.error_spanned_by(
                &sig.ident,
                "`init` returns `Self` or `Result<Self, E>` (with `E: Display`)",
            );
            ok = false;
            false
        }
    };
    ok.then_some(Init {
        func,
        config,
        fallible,
    })
}

#[cfg(test)]
mod tests {
    use super::is_semver;

    #[test]
    fn semver_versions_are_recognised() {
        for good in ["1.0.0", "0.10.3", "2.1.0-beta.1", "1.0.0+build.5"] {
            assert!(is_semver(good), "{good}");
        }
        for bad in ["", "1", "1.0", "v1.0.0", "1.0.0.0", "1.x.0", "1.0.0-"] {
            assert!(!is_semver(bad), "{bad}");
        }
    }
}
