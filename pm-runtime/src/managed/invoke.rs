//! The calls made through a handle: wait for a live incarnation, call, record.

use super::*;

impl Invoke for Managed {
    fn invoke<'a>(
        &'a self,
        method: &'static str,
        args: &'a [u8],
        timeout: Option<Duration>,
    ) -> BoxFuture<'a, Result<Frame, Error>> {
        if self.monitoring.tracing {
            let context = crate::trace::outgoing();
            let span = crate::trace::caller_span(&self.name, method, &context);
            return Box::pin(
                self.call_once(method, args, timeout, Some(context))
                    .instrument(span),
            );
        }
        Box::pin(self.call_once(method, args, timeout, None))
    }

    fn max_frame(&self) -> usize {
        self.spec.limits.max_frame_size
    }
}

impl Managed {
    /// One call: the live connection, then the call on it, recorded in the statistics.
    async fn call_once(
        &self,
        method: &'static str,
        args: &[u8],
        timeout: Option<Duration>,
        trace: Option<TraceContext>,
    ) -> Result<Frame, Error> {
        let started = Instant::now();
        let timeout = timeout.or(self.default_timeout);
        let link = match self.live_link() {
            Some(link) => link,
            // Boxed: the wait is rare, and its future would make every call's larger.
            None => Box::pin(self.wait_for_link(method, started, timeout)).await,
        };
        let result = match link {
            Ok(conn) => {
                let remaining = timeout.map(|t| t.saturating_sub(started.elapsed()));
                conn.call(method, args, remaining, trace.as_ref()).await
            }
            Err(err) => Err(err),
        };
        self.stats.conclude(method, started, timeout, result)
    }

    /// The live connection or the reason there will be none, when either is known without
    /// waiting: the common case, a running process, needs no subscription.
    fn live_link(&self) -> Option<Result<Arc<RpcConnection>, Error>> {
        match &*self.link.borrow() {
            Link::Up(conn) if !conn.is_closed() => Some(Ok(conn.clone())),
            Link::Gone(err) => Some(Err(err.clone())),
            _ => None,
        }
    }

    /// The live connection, waiting through a (re)start until the call's deadline.
    async fn wait_for_link(
        &self,
        method: &str,
        started: Instant,
        timeout: Option<Duration>,
    ) -> Result<Arc<RpcConnection>, Error> {
        let mut link = self.link.subscribe();
        loop {
            match &*link.borrow_and_update() {
                Link::Up(conn) if !conn.is_closed() => return Ok(conn.clone()),
                Link::Gone(err) => return Err(err.clone()),
                _ => {}
            }
            // A deadline too far away to represent is no deadline.
            let due = timeout.and_then(|limit| started.checked_add(limit));
            let changed = match (timeout, due) {
                (Some(limit), Some(due)) => {
                    match tokio::time::timeout_at(due.into(), link.changed()).await {
                        Ok(changed) => changed,
                        Err(_) => {
                            return Err(Error::Timeout {
                                method: method.to_owned(),
                                after: limit,
                            })
                        }
                    }
                }
                _ => link.changed().await,
            };
            if changed.is_err() {
                return Err(self.unavailable("its manager is gone"));
            }
        }
    }
}
