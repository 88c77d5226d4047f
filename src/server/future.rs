//! [`ResponseFuture`]: the future every call of [`Idempotency`](super::Idempotency)
//! returns.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use super::bodies::{LayerBodies, ResponseBodies};
use super::response::{Rejection, RejectionFormat, ResponseBody, rejection_response};

/// The boxed future of a protected request.
pub(crate) type ProtectedFuture<B, E> =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody<B>>, E>> + Send>>;

pin_project! {
    /// Response future of [`Idempotency`](super::Idempotency).
    ///
    /// A request the layer does not protect (another method, no key) costs
    /// no allocation: it holds the inner future as it is. A protected request
    /// runs boxed, since it awaits the body, the store and the service.
    /// `M` says which body type it answers with (see
    /// [`ResponseBodies`](super::ResponseBodies)).
    pub struct ResponseFuture<F, B, E, M = LayerBodies> {
        #[pin]
        kind: Kind<F, B, E>,
        bodies: PhantomData<fn() -> M>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B, E> {
        Passthrough { #[pin] future: F },
        Rejected { rejection: Rejection, retry_hints: bool },
        Protected { future: ProtectedFuture<B, E> },
    }
}

impl<F, B, E, M> ResponseFuture<F, B, E, M> {
    fn of(kind: Kind<F, B, E>) -> Self {
        Self {
            kind,
            bodies: PhantomData,
        }
    }

    pub(crate) fn passthrough(future: F) -> Self {
        Self::of(Kind::Passthrough { future })
    }

    pub(crate) fn rejected(rejection: Rejection, retry_hints: bool) -> Self {
        Self::of(Kind::Rejected {
            rejection,
            retry_hints,
        })
    }

    pub(crate) fn protected(future: ProtectedFuture<B, E>) -> Self {
        Self::of(Kind::Protected { future })
    }
}

impl<F, B, E, M> Future for ResponseFuture<F, B, E, M>
where
    F: Future<Output = Result<Response<B>, E>>,
    M: ResponseBodies<B>,
{
    type Output = Result<Response<M::Response>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = match self.project().kind.project() {
            KindProj::Passthrough { future } => {
                let response = ready!(future.poll(cx))?;
                return Poll::Ready(Ok(response.map(M::passed)));
            }
            KindProj::Rejected {
                rejection,
                retry_hints,
            } => {
                let format = RejectionFormat::hints_only(*retry_hints);
                rejection_response(*rejection, &format)
            }
            KindProj::Protected { future } => ready!(future.as_mut().poll(cx))?,
        };
        Poll::Ready(Ok(response.map(M::answered)))
    }
}

impl<F, B, E, M> fmt::Debug for ResponseFuture<F, B, E, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Passthrough { .. } => "Passthrough",
            Kind::Rejected { .. } => "Rejected",
            Kind::Protected { .. } => "Protected",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}
