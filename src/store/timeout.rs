//! The deadline every store call runs under.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::{StoreError, StoreErrorKind};

/// Runs one store call, failing with [`StoreErrorKind::Timeout`] past `timeout`.
pub(crate) fn within<F>(timeout: Duration, call: F) -> Within<F> {
    Within {
        call,
        timeout,
        timer: None,
    }
}

pin_project! {
    /// A store call with a deadline. The call is polled before a timer is
    /// set, so a call that is ready at once (every memory store call) reads no
    /// clock and registers no timer; the timer is boxed, so it takes no room
    /// in the futures that await this one.
    pub(crate) struct Within<F> {
        #[pin]
        call: F,
        timeout: Duration,
        timer: Option<Pin<Box<Sleep>>>,
    }
}

impl<F, T> Future for Within<F>
where
    F: Future<Output = Result<T, StoreError>>,
{
    type Output = Result<T, StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(result) = this.call.poll(cx) {
            return Poll::Ready(result);
        }
        let timeout = *this.timeout;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(StoreErrorKind::Timeout.into())),
            Poll::Pending => Poll::Pending,
        }
    }
}
