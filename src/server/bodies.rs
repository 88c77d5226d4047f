//! The body types on either side of the layer: what the wrapped service
//! receives, and what the layer answers with.
//!
//! By default the service receives a [`RequestBody`] and the layer answers
//! with a [`ResponseBody`], whatever the server's body types are. With the
//! `axum` feature, [`AxumBodies`] keeps axum's own `Body` on both sides, so a
//! request the layer does not protect reaches the router, and its response
//! the client, without being boxed again.

#[cfg(feature = "axum")]
use bytes::Bytes;
#[cfg(feature = "axum")]
use http_body::Body;

#[cfg(feature = "axum")]
use super::BoxError;
use super::request::RequestBody;
use super::response::ResponseBody;

mod sealed {
    pub trait Sealed: 'static {}
}

/// The request body a wrapped service receives, for a server whose
/// request body is `ReqB`. Implemented by [`LayerBodies`] (the default)
/// and, with the `axum` feature, [`AxumBodies`]; sealed.
pub trait RequestBodies<ReqB>: sealed::Sealed {
    /// The body the wrapped service receives.
    type Request;

    /// A request the layer does not protect: its body as it came.
    #[doc(hidden)]
    fn passed(body: ReqB) -> Self::Request;

    /// A protected request: its body as the layer read it.
    #[doc(hidden)]
    fn buffered(body: RequestBody<ReqB>) -> Self::Request;
}

/// The response body the layer answers with, for a service whose response
/// body is `ResB`. Implemented by [`LayerBodies`] (the default) and, with
/// the `axum` feature, [`AxumBodies`]; sealed.
pub trait ResponseBodies<ResB>: sealed::Sealed {
    /// The body the layer answers with.
    type Response;

    /// The service's response to a request the layer does not protect.
    #[doc(hidden)]
    fn passed(body: ResB) -> Self::Response;

    /// Any other response: recorded, replayed, joined or the layer's own.
    #[doc(hidden)]
    fn answered(body: ResponseBody<ResB>) -> Self::Response;
}

/// The default bodies: the wrapped service receives a [`RequestBody`], the
/// layer answers with a [`ResponseBody`], for any server and service body
/// types (hyper, axum, tower-http's wrappers).
#[derive(Debug, Clone, Copy, Default)]
pub struct LayerBodies;

impl sealed::Sealed for LayerBodies {}

impl<ReqB> RequestBodies<ReqB> for LayerBodies {
    type Request = RequestBody<ReqB>;

    fn passed(body: ReqB) -> RequestBody<ReqB> {
        RequestBody::streaming(body)
    }

    fn buffered(body: RequestBody<ReqB>) -> RequestBody<ReqB> {
        body
    }
}

impl<ResB> ResponseBodies<ResB> for LayerBodies {
    type Response = ResponseBody<ResB>;

    fn passed(body: ResB) -> ResponseBody<ResB> {
        ResponseBody::inner(body)
    }

    fn answered(body: ResponseBody<ResB>) -> ResponseBody<ResB> {
        body
    }
}

/// axum's own `Body` on both sides of the layer (feature `axum`): chosen
/// with [`IdempotencyLayer::axum_bodies`](super::IdempotencyLayer::axum_bodies).
///
/// An axum router boxes every body that is not its `Body`. With
/// [`LayerBodies`] that is two boxes for every request, keyed or not (the
/// [`RequestBody`] on its way to the handler, the [`ResponseBody`] on its
/// way out); with `AxumBodies` a request without a key (or with a method
/// the layer does not cover) passes through untouched, and a protected one
/// pays the same two boxes as before. What the handler and the client see
/// is the same either way.
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
#[derive(Debug, Clone, Copy, Default)]
pub struct AxumBodies;

#[cfg(feature = "axum")]
impl sealed::Sealed for AxumBodies {}

#[cfg(feature = "axum")]
impl RequestBodies<axum_core::body::Body> for AxumBodies {
    type Request = axum_core::body::Body;

    fn passed(body: axum_core::body::Body) -> axum_core::body::Body {
        body
    }

    fn buffered(body: RequestBody<axum_core::body::Body>) -> axum_core::body::Body {
        axum_core::body::Body::new(body)
    }
}

#[cfg(feature = "axum")]
impl<ResB> ResponseBodies<ResB> for AxumBodies
where
    ResB: Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Response = axum_core::body::Body;

    /// Unboxed when the service's body is axum's own, as a router's is.
    fn passed(body: ResB) -> axum_core::body::Body {
        axum_core::body::Body::new(body)
    }

    fn answered(body: ResponseBody<ResB>) -> axum_core::body::Body {
        axum_core::body::Body::new(body)
    }
}
