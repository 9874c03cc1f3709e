//! Trace context across processes.
//!
//! With [`Monitoring::tracing`](crate::Monitoring) on, every call carries the caller's trace
//! context to the process in the W3C `traceparent` shape ([`TraceContext`]), under every
//! isolation and transport. The process runs the call in a `tracing` span named `call` whose
//! fields are `process`, `method`, `trace_id`, `span_id` and `parent_id` (the caller's span),
//! so everything the method logs carries the trace id, and calls the method makes to other
//! processes continue the same trace.
//!
//! The caller's context is the one [`scope`] set for the current task; a call made outside
//! any scope starts a new trace (one per call). Inside a method serving a traced call,
//! [`current`] is the process's span for that call.
//!
//! ```
//! # async fn demo() {
//! use pm_runtime::trace::{self, TraceContext};
//!
//! // For instance, the context an HTTP request arrived with.
//! let incoming = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
//!     .expect("a valid traceparent");
//! trace::scope(incoming, async {
//!     assert_eq!(trace::current(), Some(incoming));
//!     // Calls made here carry `incoming` to the process.
//! })
//! .await;
//! assert_eq!(trace::current(), None);
//! # }
//! ```
//!
//! The context is task-local: a task spawned inside a scope does not inherit it; wrap its
//! future in [`scope`] with [`current`] to carry it along.

use std::future::Future;

pub use pm_core::trace::{SpanId, TraceContext, TraceId, TraceParseError};
use tracing::Instrument;

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// The trace context of the current task, if a [`scope`] (or a traced call being served) set
/// one.
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(|ctx| *ctx).ok()
}

/// Runs `future` with `context` as the current trace context: calls it makes to processes
/// carry `context` (when their process has tracing on).
pub async fn scope<F: Future>(context: TraceContext, future: F) -> F::Output {
    CURRENT.scope(context, future).await
}

/// The context an outgoing call carries: the current one, or a new trace.
pub(crate) fn outgoing() -> TraceContext {
    current().unwrap_or_else(TraceContext::new_root)
}

/// The caller's span for a traced call, so the caller's own output for it names the trace.
pub(crate) fn caller_span(process: &str, method: &str, context: &TraceContext) -> tracing::Span {
    tracing::info_span!(
        "call",
        process,
        method,
        trace_id = %context.trace_id(),
        span_id = %context.span_id()
    )
}

/// Runs the process's side of a traced call: in a span that is a child of the caller's, with
/// that span as the current context.
pub(crate) fn serve_in<F: Future>(
    process: &'static str,
    method: &str,
    caller: TraceContext,
    future: F,
) -> impl Future<Output = F::Output> {
    let context = caller.child();
    let span = tracing::info_span!(
        "call",
        process,
        method,
        trace_id = %context.trace_id(),
        span_id = %context.span_id(),
        parent_id = %caller.span_id()
    );
    CURRENT.scope(context, future).instrument(span)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_scope_sets_the_current_context_only_inside_it() {
        assert_eq!(current(), None);
        let ctx = TraceContext::new_root();
        let seen = scope(ctx, async { current() }).await;
        assert_eq!(seen, Some(ctx));
        assert_eq!(current(), None);
    }

    #[tokio::test]
    async fn serving_a_call_makes_a_child_of_the_callers_context_current() {
        let caller = TraceContext::new_root();
        let seen = serve_in("p", "m", caller, async { current() })
            .await
            .expect("a context");
        assert_eq!(seen.trace_id(), caller.trace_id());
        assert_eq!(seen.parent_id(), Some(caller.span_id()));
        assert_ne!(seen.span_id(), caller.span_id());
    }

    #[test]
    fn outside_any_scope_each_outgoing_call_starts_a_new_trace() {
        assert_ne!(outgoing().trace_id(), outgoing().trace_id());
    }
}
