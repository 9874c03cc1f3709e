//! The JSON side of the HTTP transport: `POST /call/{method}` and `GET /health`, for people
//! and non-Rust clients.
//!
//! A JSON array of arguments is transcoded to MessagePack and dispatched through the same
//! table as every other call; the MessagePack reply is transcoded back to JSON. Structs
//! travel as arrays in MessagePack, so they come back as JSON arrays; JSON objects are
//! accepted as arguments for struct parameters.

use std::panic::AssertUnwindSafe;

use bytes::Bytes;
use pm_core::wire::HEADER_LEN;
use pm_core::{RemoteError, RemoteErrorKind};
use pm_transport::{HttpApi, HttpError};

use crate::catch::{panic_message, CatchUnwind};
use crate::process::{BoxFuture, Process, ReplyTo};
use crate::rpc::server::SharedInstance;

/// How long `GET /health` waits for the process's `#[health_check]`: the default of
/// `HealthCheckConfig::timeout`, which a manager's polling uses.
const HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves one process type's JSON endpoints over its shared instance.
///
/// JSON calls share one bound on calls in flight (`limits.max_in_flight`, across all HTTP
/// connections): a call over the bound is answered `503` at once instead of queueing, so a
/// flood of requests costs no more memory than the bound allows.
pub(crate) struct ProcessApi<P: Process> {
    instance: SharedInstance<P>,
    max_frame: usize,
    permits: tokio::sync::Semaphore,
    max_in_flight: usize,
}

impl<P: Process> ProcessApi<P> {
    pub(crate) fn new(instance: SharedInstance<P>, max_frame: usize, max_in_flight: usize) -> Self {
        Self {
            instance,
            max_frame,
            permits: tokio::sync::Semaphore::new(max_in_flight),
            max_in_flight,
        }
    }
}

fn status_of(error: &RemoteError) -> u16 {
    match error.kind {
        RemoteErrorKind::UnknownMethod => 404,
        RemoteErrorKind::InvalidArguments => 400,
        RemoteErrorKind::TooLarge => 413,
        RemoteErrorKind::Application => 422,
        RemoteErrorKind::DeadlineExceeded => 504,
        RemoteErrorKind::ShuttingDown | RemoteErrorKind::InitFailed => 503,
        RemoteErrorKind::Panic | RemoteErrorKind::Cancelled | RemoteErrorKind::Internal => 500,
    }
}

impl<P: Process> HttpApi for ProcessApi<P> {
    fn call(
        &self,
        method: String,
        args: serde_json::Value,
    ) -> BoxFuture<'_, Result<serde_json::Value, HttpError>> {
        Box::pin(async move {
            let cell = self
                .instance
                .get()
                .ok_or_else(|| HttpError::new(503, "the process has not been initialised yet"))?;
            if method.starts_with('$') {
                return Err(HttpError::new(404, format!("no method `{method}`")));
            }
            let _permit = self.permits.try_acquire().map_err(|_| {
                HttpError::new(
                    503,
                    format!(
                        "too many calls in flight (the limit is {}); retry later",
                        self.max_in_flight
                    ),
                )
            })?;
            // The arguments travel as the tuple of a method's parameters; the tuple of none is
            // `()`, which MessagePack writes as nil, not as an empty array.
            let args = if args.as_array().is_some_and(Vec::is_empty) {
                rmp_serde::to_vec(&())
            } else {
                rmp_serde::to_vec(&args)
            }
            .map_err(|err| HttpError::new(400, format!("arguments: {err}")))?;
            let reply = ReplyTo {
                id: 0,
                max_frame: self.max_frame,
            };
            let started = std::panic::catch_unwind(AssertUnwindSafe(|| {
                P::__dispatch(cell, &method, Bytes::from(args), reply)
            }));
            let future = match started {
                Ok(Some(future)) => future,
                Ok(None) => {
                    return Err(HttpError::new(
                        404,
                        format!("process `{}` has no method `{method}`", P::NAME),
                    ))
                }
                Err(panic) => return Err(HttpError::new(500, panic_message(panic.as_ref()))),
            };
            match CatchUnwind(future).await {
                Ok(Ok(frame)) => {
                    rmp_serde::from_slice(&frame.wire()[HEADER_LEN..]).map_err(|err| {
                        HttpError::new(500, format!("the reply is not JSON-able: {err}"))
                    })
                }
                Ok(Err(error)) => Err(HttpError::new(status_of(&error), error.message)),
                Err(panic) => Err(HttpError::new(500, panic)),
            }
        })
    }

    fn health(&self) -> BoxFuture<'_, pm_transport::HealthReport> {
        Box::pin(async move {
            let status = match self.instance.get() {
                // A check that panics or overruns its time is an unhealthy answer, as the
                // manager's own polling counts it, never a dropped or hung request.
                Some(cell) => {
                    match tokio::time::timeout(HEALTH_TIMEOUT, CatchUnwind(P::__health(cell))).await
                    {
                        Ok(Ok(status)) => status,
                        Ok(Err(panic)) => pm_core::HealthStatus::unhealthy().with_check(
                            "health_check",
                            pm_core::CheckStatus::Fail,
                            Some(format!("the health check panicked: {panic}")),
                        ),
                        Err(_) => pm_core::HealthStatus::unhealthy().with_check(
                            "health_check",
                            pm_core::CheckStatus::Fail,
                            Some(format!(
                                "the health check took longer than {HEALTH_TIMEOUT:?}"
                            )),
                        ),
                    }
                }
                None => pm_core::HealthStatus::degraded().with_check(
                    "init",
                    pm_core::CheckStatus::Warn,
                    Some("not initialised yet".into()),
                ),
            };
            pm_transport::HealthReport {
                serving: status.status != pm_core::HealthState::Unhealthy,
                body: serde_json::to_value(&status).unwrap_or(serde_json::Value::Null),
            }
        })
    }
}
