//! Parsing: the attribute's arguments and a borrowed model of the `impl` block.

use proc_macro2::{Span, TokenStream};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, Expr, ExprLit, ImplItem, ImplItemFn, ItemImpl, Lit, LitStr, Meta, Token};

use crate::ctxt::Ctxt;

/// The keys `#[process(...)]` accepts.
pub(crate) const KEYS: &str = "`name`, `version`, `crate`";

/// The arguments of `#[process(...)]`.
#[derive(Default)]
pub(crate) struct Args {
    pub(crate) name: Option<LitStr>,
    pub(crate) version: Option<LitStr>,
    pub(crate) krate: Option<syn::Path>,
    /// An error was already reported for the arguments (an unknown, duplicate or malformed
    /// key); a missing `name` or `version` is then most likely that key, so validation does
    /// not report it again.
    pub(crate) reported: bool,
}

/// The number of single-character edits between two short strings.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// The known word an unknown word is most likely a typo of (at most two edits away).
fn closest(unknown: &str, known: &[&'static str]) -> Option<&'static str> {
    known
        .iter()
        .map(|word| (edit_distance(unknown, word), *word))
        .filter(|(distance, _)| *distance <= 2)
        .min()
        .map(|(_, word)| word)
}

/// The known key an unknown key is most likely a typo of.
fn closest_key(unknown: &str) -> Option<&'static str> {
    closest(unknown, &["name", "version", "crate"])
}

/// A path as the user wrote it, without the spaces `to_string` puts between tokens.
fn path_text(path: &syn::Path) -> String {
    quote::ToTokens::to_token_stream(path)
        .to_string()
        .replace(' ', "")
}

fn string_value(cx: &Ctxt, key: &str, value: &Expr) -> Option<LitStr> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Some(lit.clone()),
        other => {
            cx.error_spanned_by(
                other,
                format!("`{key}` takes a string literal, e.g. `{key} = \"...\"`"),
            );
            None
        }
    }
}

/// Parses `name = "...", version = "...", crate = "..."`, reporting unknown, duplicate and
/// malformed keys.
pub(crate) fn parse_args(cx: &Ctxt, tokens: TokenStream) -> Args {
    let mut args = Args::default();
    let metas = match Punctuated::<Meta, Token![,]>::parse_terminated.parse2(tokens) {
        Ok(metas) => metas,
        Err(err) => {
            cx.syn_error(syn::Error::new(
                err.span(),
                format!("expected `key = \"value\"` pairs with the keys {KEYS}: {err}"),
            ));
            args.reported = true;
            return args;
        }
    };
    for meta in metas {
        let Meta::NameValue(pair) = &meta else {
            cx.error_spanned_by(
                &meta,
                format!("expected `key = \"value\"`; the keys are {KEYS}"),
            );
            args.reported = true;
            continue;
        };
        let key = pair
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        match key.as_str() {
            "name" | "version" | "crate" => {}
            _ => {
                let shown = path_text(&pair.path);
                let message = match closest_key(&shown) {
                    Some(known) => {
                        format!(
                            "unknown key `{shown}`: did you mean `{known}`? The keys are {KEYS}"
                        )
                    }
                    None => format!("unknown key `{shown}`; the keys are {KEYS}"),
                };
                cx.error_spanned_by(&pair.path, message);
                args.reported = true;
                continue;
            }
        }
        let Some(value) = string_value(cx, &key, &pair.value) else {
            args.reported = true;
            continue;
        };
        let duplicate = match key.as_str() {
            "name" => args.name.replace(value).is_some(),
            "version" => args.version.replace(value).is_some(),
            _ => match value.parse::<syn::Path>() {
                Ok(path) => args.krate.replace(path).is_some(),
                Err(_) => {
                    cx.error_spanned_by(
                        &value,
                        "`crate` takes a path, e.g. `crate = \"my_crate::pm\"`",
                    );
                    args.reported = true;
                    false
                }
            },
        };
        if duplicate {
            cx.error_spanned_by(
                &pair.path,
                format!("`{key}` is given twice; keep one `{key} = \"...\"`"),
            );
            args.reported = true;
        }
    }
    args
}

/// What a marked method is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Public,
    HealthCheck,
    OnShutdown,
}

impl Role {
    pub(crate) fn attribute(self) -> &'static str {
        match self {
            Role::Public => "#[public]",
            Role::HealthCheck => "#[health_check]",
            Role::OnShutdown => "#[on_shutdown]",
        }
    }
}

fn role_of(attr: &Attribute) -> Option<Role> {
    let last = attr.path().segments.last()?;
    match last.ident.to_string().as_str() {
        "public" => Some(Role::Public),
        "health_check" => Some(Role::HealthCheck),
        "on_shutdown" => Some(Role::OnShutdown),
        _ => None,
    }
}

/// A method carrying one of our attributes.
pub(crate) struct Marked<'a> {
    pub(crate) func: &'a ImplItemFn,
    pub(crate) role: Role,
    pub(crate) attr: &'a Attribute,
    /// `#[public(idempotent)]`; always `false` for the other roles.
    pub(crate) idempotent: bool,
}

/// The one option `#[public(...)]` accepts.
const IDEMPOTENT: &str = "idempotent";

/// Reads the options of a `#[public]` attribute: `true` for `#[public(idempotent)]`, `false`
/// for a bare `#[public]`. Reports every other form at the offending token; what was
/// recognised still counts, so the method's signature is checked as usual.
fn public_options(cx: &Ctxt, attr: &Attribute) -> bool {
    const FORMS: &str = "write `#[public]` or `#[public(idempotent)]`";
    let list = match &attr.meta {
        Meta::Path(_) => return false,
        Meta::NameValue(pair) => {
            let eq = pair.eq_token;
            let value = &pair.value;
            cx.error_spanned_by(
                quote::quote!(#eq #value),
                format!("#[public] takes no value: {FORMS}"),
            );
            return false;
        }
        Meta::List(list) => list,
    };
    if list.tokens.is_empty() {
        cx.syn_error(syn::Error::new(
            list.delimiter.span().join(),
            format!("empty parentheses after #[public]: {FORMS}"),
        ));
        return false;
    }
    let options = match list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated) {
        Ok(options) => options,
        Err(err) => {
            cx.syn_error(syn::Error::new(
                err.span(),
                format!("expected the option `{IDEMPOTENT}` of #[public]: {err}"),
            ));
            return false;
        }
    };
    let mut idempotent = false;
    for option in &options {
        let path = option.path();
        let shown = path_text(path);
        if shown != IDEMPOTENT {
            let message = match closest(&shown, &[IDEMPOTENT]) {
                Some(known) => format!(
                    "unknown option `{shown}` of #[public]: did you mean `{known}`? The only option is `{IDEMPOTENT}`"
                ),
                None => format!(
                    "unknown option `{shown}` of #[public]; the only option is `{IDEMPOTENT}`"
                ),
            };
            cx.error_spanned_by(path, message);
            continue;
        }
        let no_value = format!("`{IDEMPOTENT}` takes no value: write `#[public({IDEMPOTENT})]`");
        match option {
            Meta::NameValue(pair) => {
                let eq = pair.eq_token;
                let value = &pair.value;
                cx.error_spanned_by(quote::quote!(#eq #value), no_value);
            }
            Meta::List(list) => {
                cx.syn_error(syn::Error::new(list.delimiter.span().join(), no_value));
            }
            Meta::Path(_) if idempotent => cx.error_spanned_by(
                path,
                format!("`{IDEMPOTENT}` is given twice: write it once, `#[public({IDEMPOTENT})]`"),
            ),
            Meta::Path(_) => {}
        }
        // Also after a malformed form, so that a later bare `idempotent` counts as a repeat;
        // the value no longer matters once an error is reported.
        idempotent = true;
    }
    idempotent
}

/// The `impl` block, seen through what `#[process]` cares about.
pub(crate) struct Model<'a> {
    pub(crate) item: &'a ItemImpl,
    pub(crate) marked: Vec<Marked<'a>>,
    /// A receiver-less associated `fn init`.
    pub(crate) init: Option<&'a ImplItemFn>,
}

/// Builds the model, reporting attributes that are misused on their own (arguments, two
/// roles on one method).
pub(crate) fn parse_model<'a>(cx: &Ctxt, item: &'a ItemImpl) -> Model<'a> {
    let mut marked = Vec::new();
    let mut init = None;
    for impl_item in &item.items {
        let ImplItem::Fn(func) = impl_item else {
            continue;
        };
        let mut role: Option<(Role, &Attribute, bool)> = None;
        for attr in &func.attrs {
            let Some(this) = role_of(attr) else {
                continue;
            };
            let idempotent = match this {
                Role::Public => public_options(cx, attr),
                Role::HealthCheck | Role::OnShutdown => {
                    if !matches!(attr.meta, Meta::Path(_)) {
                        cx.error_spanned_by(
                            &attr.meta,
                            format!(
                                "{} takes no arguments: write `{}`",
                                this.attribute(),
                                this.attribute()
                            ),
                        );
                    }
                    false
                }
            };
            if let Some((first, _, _)) = role {
                cx.error_spanned_by(
                    attr,
                    format!(
                        "a method has at most one role: it is already {}",
                        first.attribute()
                    ),
                );
                continue;
            }
            role = Some((this, attr, idempotent));
        }
        match role {
            Some((role, attr, idempotent)) => marked.push(Marked {
                func,
                role,
                attr,
                idempotent,
            }),
            None if func.sig.ident == "init" && func.sig.receiver().is_none() => {
                init = Some(func);
            }
            None => {}
        }
    }
    Model { item, marked, init }
}

/// Whether an attribute is one of ours (to strip it from the emitted `impl`).
pub(crate) fn is_ours(attr: &Attribute) -> bool {
    role_of(attr).is_some()
}

/// The span to blame when `#[process]` is on something that is not an inherent `impl`.
pub(crate) fn wrong_item(item: &syn::Item) -> (Span, &'static str) {
    match item {
        syn::Item::Struct(s) => (s.struct_token.span, "a struct"),
        syn::Item::Enum(e) => (e.enum_token.span, "an enum"),
        syn::Item::Trait(t) => (t.trait_token.span, "a trait"),
        syn::Item::Fn(f) => (f.sig.fn_token.span, "a function"),
        syn::Item::Mod(m) => (m.mod_token.span, "a module"),
        other => (other.span(), "this item"),
    }
}

#[cfg(test)]
mod tests {
    use super::{closest, closest_key, edit_distance, IDEMPOTENT};

    #[test]
    fn typos_of_keys_are_recognised() {
        assert_eq!(edit_distance("name", "name"), 0);
        assert_eq!(edit_distance("nmae", "name"), 2);
        assert_eq!(closest_key("nmae"), Some("name"));
        assert_eq!(closest_key("vesion"), Some("version"));
        assert_eq!(closest_key("krate"), Some("crate"));
        assert_eq!(closest_key("timeout"), None);
    }

    #[test]
    fn typos_of_the_public_option_are_recognised() {
        for typo in ["idempotnt", "idempotnet", "idempotence", "Idempotent"] {
            assert_eq!(closest(typo, &[IDEMPOTENT]), Some(IDEMPOTENT), "{typo}");
        }
        assert_eq!(closest("retry", &[IDEMPOTENT]), None);
    }
}
