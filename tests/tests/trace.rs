//! Trace context crosses the process boundary: with `Monitoring::tracing` on, the process
//! sees the caller's trace id and runs the call in a child span of the caller's, under every
//! isolation and transport, for single processes and pools; with it off, nothing is carried.

use pm_runtime::prelude::*;
use pm_runtime::trace::{self, TraceContext};
use pm_tests::{SeenTrace, Tracer};

const TRACER: &str = env!("CARGO_BIN_EXE_test-tracer");

fn manager(isolation: Isolation, transport: TransportKind, tracing: bool) -> ProcessManager {
    ProcessManager::new(ProcessManagerConfig {
        isolation,
        transport,
        monitoring: Monitoring {
            tracing,
            ..Default::default()
        },
        ..Default::default()
    })
}

fn assert_child_of(seen: Option<SeenTrace>, caller: &TraceContext) {
    let seen = seen.expect("the call carried a trace context");
    assert_eq!(seen.trace_id, caller.trace_id().to_string());
    assert_eq!(seen.parent_id, Some(caller.span_id().to_string()));
    assert_ne!(seen.span_id, caller.span_id().to_string());
}

macro_rules! across {
    ($name:ident, $isolation:expr, $transport:expr) => {
        #[tokio::test]
        async fn $name() {
            let pm = manager($isolation, $transport, true);
            let tracer = pm
                .spawn::<Tracer>(TRACER, SpawnOptions::default())
                .await
                .expect("spawn");
            let caller = TraceContext::new_root();
            let seen = trace::scope(caller, tracer.seen()).await.expect("call");
            assert_child_of(seen, &caller);
            pm.shutdown().await.expect("shutdown");
        }
    };
}

across!(
    the_callers_trace_id_reaches_a_child_over_ipc,
    Isolation::Child,
    TransportKind::Ipc
);
across!(
    the_callers_trace_id_reaches_a_child_over_unix,
    Isolation::Child,
    TransportKind::Unix
);
across!(
    the_callers_trace_id_reaches_a_child_over_tcp,
    Isolation::Child,
    TransportKind::Tcp
);
across!(
    the_callers_trace_id_reaches_a_child_over_http,
    Isolation::Child,
    TransportKind::Http
);
across!(
    the_callers_trace_id_reaches_a_worker_over_channels,
    Isolation::Worker,
    TransportKind::Ipc
);
across!(
    the_callers_trace_id_reaches_a_worker_over_tcp,
    Isolation::Worker,
    TransportKind::Tcp
);
across!(
    the_callers_trace_id_reaches_an_inline_process,
    Isolation::None,
    TransportKind::Ipc
);
across!(
    the_callers_trace_id_reaches_an_inline_process_over_http,
    Isolation::None,
    TransportKind::Http
);

#[tokio::test]
async fn a_call_outside_any_trace_starts_a_new_trace_of_its_own() {
    let pm = manager(Isolation::Worker, TransportKind::Ipc, true);
    let tracer = pm
        .spawn::<Tracer>(TRACER, SpawnOptions::default())
        .await
        .expect("spawn");
    let first = tracer.seen().await.expect("call").expect("a context");
    let second = tracer.seen().await.expect("call").expect("a context");
    assert_ne!(first.trace_id, second.trace_id);
    assert!(first.parent_id.is_some());
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn with_tracing_off_a_call_carries_no_trace_context_even_inside_a_scope() {
    let pm = manager(Isolation::Child, TransportKind::Ipc, false);
    let tracer = pm
        .spawn::<Tracer>(TRACER, SpawnOptions::default())
        .await
        .expect("spawn");
    let seen = trace::scope(TraceContext::new_root(), tracer.seen())
        .await
        .expect("call");
    assert_eq!(seen, None);
    pm.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_pool_carries_the_callers_trace_context_to_whichever_member_serves_the_call() {
    let pm = manager(Isolation::Child, TransportKind::Ipc, true);
    let pool = pm_tests::pool_of::<Tracer>(&pm, TRACER, 2).await;
    let caller = TraceContext::new_root();
    for _ in 0..4 {
        let seen = trace::scope(caller, pool.seen()).await.expect("call");
        assert_child_of(seen, &caller);
    }
    pm.shutdown().await.expect("shutdown");
}
