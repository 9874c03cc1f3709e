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
/// ```
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
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), pm_runtime::Error> {
/// // In a process binary, `main` is `pm_runtime::process_main!(Calculator);`. Here the type
/// // runs in this program instead:
/// let pm = ProcessManager::new(ProcessManagerConfig::default());
/// let calc = pm.spawn_linked::<Calculator>(SpawnOptions::default()).await?;
/// assert_eq!(calc.add(5, 3).await?, 8);
/// pm.shutdown().await?;
/// # Ok(())
/// # }
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
///
/// `#[public(idempotent)]` also lets a pool retry the call once on another member when the
/// member it ran on died with the call in flight. A method returning `Result<T, E>` delivers
/// `E` to the caller as `Error::Remote`, with `E`'s `Display` as its message.
///
/// ```
/// use pm_runtime::prelude::*;
///
/// #[derive(Default)]
/// pub struct Counter { total: u64 }
///
/// #[process(name = "counter")]
/// impl Counter {
///     /// `&mut self`: calls to it run one at a time.
///     #[public]
///     pub async fn add(&mut self, n: u64) -> u64 { self.total += n; self.total }
///
///     /// Safe to run twice, so a pool may retry it on another member.
///     #[public(idempotent)]
///     pub async fn total(&self) -> u64 { self.total }
///
///     #[public]
///     pub async fn checked_div(&self, a: u64, b: u64) -> Result<u64, String> {
///         a.checked_div(b).ok_or_else(|| format!("cannot divide {a} by zero"))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), pm_runtime::Error> {
/// let pm = ProcessManager::new(ProcessManagerConfig::default());
/// let counter = pm.spawn_linked::<Counter>(SpawnOptions::default()).await?;
/// counter.add(2).await?;
/// assert_eq!(counter.add(3).await?, 5);
/// assert_eq!(counter.total().await?, 5);
/// let refused = counter.checked_div(1, 0).await.unwrap_err();
/// assert!(refused.to_string().contains("cannot divide 1 by zero"));
/// pm.shutdown().await?;
/// # Ok(())
/// # }
/// ```
#[proc_macro_attribute]
pub fn public(_args: TokenStream, item: TokenStream) -> TokenStream {
    misplaced("public", item)
}

/// Marks the health check of a `#[process]` block: `async fn(&self) -> HealthStatus`, at most
/// one. The manager polls it when `Monitoring::health_check` is enabled, and restarts the
/// process after `failure_threshold` failures in a row; `ProcessManager::get_health` asks it
/// at once. A check that panics or overruns its timeout counts as `Unhealthy`. Only
/// meaningful inside `#[process]`.
///
/// ```
/// use pm_runtime::prelude::*;
///
/// #[derive(Default)]
/// pub struct Cache { entries: std::sync::Mutex<Vec<String>> }
///
/// #[process(name = "cache")]
/// impl Cache {
///     #[health_check]
///     async fn health(&self) -> HealthStatus {
///         let len = self.entries.lock().map(|e| e.len()).unwrap_or(usize::MAX);
///         if len < 10_000 {
///             HealthStatus::healthy()
///         } else {
///             HealthStatus::degraded().with_check("size", CheckStatus::Warn, Some(format!("{len} entries")))
///         }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), pm_runtime::Error> {
/// let pm = ProcessManager::new(ProcessManagerConfig::default());
/// let cache = pm.spawn_linked::<Cache>(SpawnOptions::default()).await?;
/// assert_eq!(pm.get_health(cache.id()).await?.status, HealthState::Healthy);
/// pm.shutdown().await?;
/// # Ok(())
/// # }
/// ```
#[proc_macro_attribute]
pub fn health_check(_args: TokenStream, item: TokenStream) -> TokenStream {
    misplaced("health_check", item)
}

/// Marks a shutdown hook of a `#[process]` block: `async fn(&self)` without arguments, any
/// number of them. On a graceful stop the process stops taking calls, lets those in flight
/// finish, then runs its hooks (each within the stop's grace period; one that panics or hangs
/// holds up neither the others nor the stop). A `kill` runs none. Only meaningful inside
/// `#[process]`.
///
/// ```
/// use pm_runtime::prelude::*;
/// use std::path::PathBuf;
///
/// pub struct Journal { file: PathBuf }
///
/// #[process(name = "journal")]
/// impl Journal {
///     /// Built from `SpawnOptions::dependencies`.
///     async fn init(file: PathBuf) -> Self { Journal { file } }
///
///     #[on_shutdown]
///     async fn flush(&self) {
///         let _ = std::fs::write(&self.file, "flushed");
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), pm_runtime::Error> {
/// let file = std::env::temp_dir().join(format!("journal-doc-{}", std::process::id()));
/// let pm = ProcessManager::new(ProcessManagerConfig::default());
/// let journal = pm
///     .spawn_linked::<Journal>(SpawnOptions::default().dependencies(file.clone()))
///     .await?;
/// pm.stop(journal.id()).await?; // graceful: the hook runs before the process ends
/// assert_eq!(std::fs::read_to_string(&file).ok().as_deref(), Some("flushed"));
/// # let _ = std::fs::remove_file(&file);
/// pm.shutdown().await?;
/// # Ok(())
/// # }
/// ```
#[proc_macro_attribute]
pub fn on_shutdown(_args: TokenStream, item: TokenStream) -> TokenStream {
    misplaced("on_shutdown", item)
}
