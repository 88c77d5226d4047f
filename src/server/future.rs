//! [`ResponseFuture`]: the future every call of [`Idempotency`](super::Idempotency)
//! returns.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

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
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        kind: Kind<F, B, E>,
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

impl<F, B, E> ResponseFuture<F, B, E> {
    pub(crate) fn passthrough(future: F) -> Self {
        Self {
            kind: Kind::Passthrough { future },
        }
    }

    pub(crate) fn rejected(rejection: Rejection, retry_hints: bool) -> Self {
        Self {
            kind: Kind::Rejected {
                rejection,
                retry_hints,
            },
        }
    }

    pub(crate) fn protected(future: ProtectedFuture<B, E>) -> Self {
        Self {
            kind: Kind::Protected { future },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Passthrough { future } => {
                let response = ready!(future.poll(cx))?;
                Poll::Ready(Ok(response.map(ResponseBody::inner)))
            }
            KindProj::Rejected {
                rejection,
                retry_hints,
            } => {
                let format = RejectionFormat::hints_only(*retry_hints);
                Poll::Ready(Ok(rejection_response(*rejection, &format)))
            }
            KindProj::Protected { future } => future.as_mut().poll(cx),
        }
    }
}

impl<F, B, E> fmt::Debug for ResponseFuture<F, B, E> {
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
