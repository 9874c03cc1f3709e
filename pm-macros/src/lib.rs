//! The `#[process]` attribute of Titan PM.
//!
//! Use it through `pm_runtime` (`use pm_runtime::prelude::*;`), not from this crate: the
//! expansion names `::pm_runtime::__private` paths.
//!
//! The pipeline has one module per step: `parse` reads the attribute and the `impl` block
//! into a borrowed model, `validate` checks every rule and collects every error (each
//! spanned at the offending token), and `expand` writes the client stub and the dispatch
//! table. When validation fails, the original `impl` block is still emitted (minus our helper
//! attributes) beside the errors, so the user sees our errors rather than a cascade.

mod ctxt;
mod expand;
mod parse;
mod validate;

use proc_macro::TokenStream;

/// Turns an inherent `impl` block into a Titan PM process.
///
/// # Attributes
/// - `name = "..."` (required): the process's name, as the manager and the handshake know it.
///   Letters, digits, `-`, `_` and `.`.
/// - `version = "..."` (optional): `MAJOR.MINOR.PATCH`, optionally with `-pre` / `+build`;
///   without it, the version of the crate the block is in (`CARGO_PKG_VERSION`).
///   The handshake refuses a client built for another version.
/// - `crate = "path"` (optional): where `pm_runtime` is, for crates that re-export it.
///
/// # Methods
/// - `#[public]`: callable through the generated client. Must be `async`, take `&self` (calls
///   run concurrently) or `&mut self` (calls are serialised), have no generics, and take and
///   return owned types that are `Serialize + DeserializeOwned`. A method returning
///   `Result<T, E>` (with `E: Serialize + DeserializeOwned + Display`) delivers `T`, or `E` as
///   `Error::Remote`. `#[public(idempotent)]` marks a method that is safe to run twice: a
///   pool retries it once on another member when the member it ran on died with the call in
///   flight (other methods then end with `Error::ProcessExited`).
/// - `#[health_check]`: at most one; `async fn(&self) -> HealthStatus`.
/// - `#[on_shutdown]`: any number; `async fn(&self)` without arguments; run before the
///   process ends.
/// - `async fn init(config: C) -> Result<Self, E>` (or `-> Self`), without a receiver: builds
///   the instance from `SpawnOptions::dependencies`. Without it the type must be `Default`.
///
/// # Generated
/// A `<Type>Client` struct with one `async fn` per `#[public]` method (same name, arguments and
/// docs, returning `Result<T, pm_runtime::Error>`, always taking `&self`), and an impl of
/// `pm_runtime::Process` for the type.
///
/// # Example
/// ```ignore
/// use pm_runtime::prelude::*;
///
/// #[derive(Default)]
/// pub struct Calculator;
///
/// #[process(name = "calculator", version = "1.0.0")]
/// impl Calculator {
///     /// Adds two numbers.
///     #[public]
///     pub async fn add(&self, a: i64, b: i64) -> i64 { a + b }
/// }
/// ```
#[proc_macro_attribute]
pub fn process(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::process(args.into(), item.into()).into()
}

fn misplaced(name: &str, item: TokenStream) -> TokenStream {
    let item: proc_macro2::TokenStream = item.into();
    let message =
        format!("#[{name}] only works on a method inside an `impl` block marked #[process(...)]");
    let error = syn::Error::new(proc_macro2::Span::call_site(), message).to_compile_error();
    quote::quote!(#error #item).into()
}

/// Marks a method of a `#[process]` block as callable through the generated client. Only
/// meaningful inside `#[process]`, which consumes it; anywhere else it is an error.
#[proc_macro_attribute]
pub fn public(_args: TokenStream, item: TokenStream) -> TokenStream {
    misplaced("public", item)
}

/// Marks the health check of a `#[process]` block. Only meaningful inside `#[process]`.
#[proc_macro_attribute]
pub fn health_check(_args: TokenStream, item: TokenStream) -> TokenStream {
    misplaced("health_check", item)
}

/// Marks a shutdown hook of a `#[process]` block. Only meaningful inside `#[process]`.
#[proc_macro_attribute]
pub fn on_shutdown(_args: TokenStream, item: TokenStream) -> TokenStream {
    misplaced("on_shutdown", item)
}
