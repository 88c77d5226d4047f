//! `SetIdempotencyKey`: the service that sets the key and reports it.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::BoxError;
use tower_service::Service;

use super::future::ResponseFuture;
use super::key_config::KeyConfig;

/// A client that sends each call with a covered method under one
/// `Idempotency-Key`: the request's own, or a fresh random one. Made by
/// [`SetIdempotencyKeyLayer`](super::SetIdempotencyKeyLayer).
///
/// The key goes into the request's header and, as a
/// [`SentKey`](super::SentKey), into the request's and the response's
/// extensions. Errors are boxed (as tower's `Timeout` does): the inner
/// client's errors pass through unchanged inside the box, and when the
/// system's random number generator fails the call is not sent at all and
/// fails with a [`KeyGenerationError`](super::KeyGenerationError).
#[derive(Debug, Clone)]
pub struct SetIdempotencyKey<S> {
    inner: S,
    config: Arc<KeyConfig>,
}

impl<S> SetIdempotencyKey<S> {
    pub(crate) fn new(inner: S, config: Arc<KeyConfig>) -> Self {
        Self { inner, config }
    }

    /// Returns a reference to the wrapped client.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Returns a mutable reference to the wrapped client.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the service, returning the wrapped client.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, ResBody> Service<Request<B>> for SetIdempotencyKey<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        match self.config.apply(&mut request) {
            Ok(key) => {
                if let Some(key) = &key {
                    request.extensions_mut().insert(key.clone());
                }
                ResponseFuture::called(self.inner.call(request), key)
            }
            Err(error) => ResponseFuture::failed(error.into()),
        }
    }
}
