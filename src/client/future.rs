//! The response future of `SetIdempotencyKey`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;
use tower::BoxError;

use super::sent_key::SentKey;

pin_project! {
    /// The response future of [`SetIdempotencyKey`](super::SetIdempotencyKey):
    /// the inner client's, with the call's [`SentKey`] added to the
    /// response's extensions.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    #[derive(Debug)]
    enum State<F> {
        Called { #[pin] future: F, key: Option<SentKey> },
        Failed { error: Option<BoxError> },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn called(future: F, key: Option<SentKey>) -> Self {
        Self {
            state: State::Called { future, key },
        }
    }

    pub(crate) fn failed(error: BoxError) -> Self {
        Self {
            state: State::Failed { error: Some(error) },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<B>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called { future, key } => {
                let mut response = ready!(future.poll(cx)).map_err(Into::into)?;
                if let Some(key) = key.take() {
                    response.extensions_mut().insert(key);
                }
                Poll::Ready(Ok(response))
            }
            StateProj::Failed { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| "the response future was polled after it finished".into()))),
        }
    }
}
