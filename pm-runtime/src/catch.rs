//! Turning a panic inside a call into an error value.

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Polls a future and catches a panic raised while polling it.
pub(crate) struct CatchUnwind<F>(pub(crate) F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Err(payload) => Poll::Ready(Err(panic_message(payload.as_ref()))),
        }
    }
}

/// The message of a panic payload (`&str` or `String`), or a placeholder for other payloads.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_while_polling_becomes_an_error_with_its_message() {
        let fut: Pin<Box<dyn Future<Output = u8> + Send>> =
            Box::pin(async { panic!("kaboom {}", 42) });
        assert_eq!(CatchUnwind(fut).await, Err("kaboom 42".to_owned()));
    }

    #[tokio::test]
    async fn a_future_that_completes_is_passed_through() {
        let fut: Pin<Box<dyn Future<Output = u8> + Send>> = Box::pin(async { 7 });
        assert_eq!(CatchUnwind(fut).await, Ok(7));
    }
}
