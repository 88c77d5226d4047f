//! The client side: one key per logical call, the same on every retry.
//!
//! The server layer only helps if clients send the same key on every attempt
//! of one action and a new key for each new action. Two pieces do that for any
//! client built on `tower` (hyper-util's `Client`, or anything with a
//! `Service<http::Request<B>>` adapter):
//!
//! - [`SetIdempotencyKeyLayer`] gives every `POST` or `PATCH` call that has no
//!   `Idempotency-Key` a fresh random one (a version 4 UUID from the system's
//!   random number generator) and leaves a call that has one untouched. The
//!   call's key comes back in the response's extensions as a [`SentKey`].
//! - [`RetryPolicy`], for `tower::retry::RetryLayer`, retries what a retry can
//!   fix (connection errors, `409 idempotency_key_in_progress` after its
//!   `Retry-After`, `502`, `503`, `504`), never what it cannot (`409
//!   idempotency_key_payload_mismatch`, `400`, `413`), at most a few times, with
//!   backoff and jitter.
//!
//! # The order of layers
//!
//! The key layer goes **outside** the retry layer. A retry layer repeats the
//! request it was given; if the key is already in it, every attempt carries
//! that key:
//!
//! ```text
//! SetIdempotencyKeyLayer        one key per call
//!   RetryLayer(RetryPolicy)     repeats the request, key included
//!     TimeoutLayer              (optional) bounds each attempt
//!       the HTTP client
//! ```
//!
//! The other way round, each attempt would get a new key and the server would
//! run each one: the duplicate the key exists to prevent. [`RetryPolicy`]
//! refuses to repeat a `POST` or `PATCH` that has no key, so a stack built in
//! the wrong order sends each call once instead of twice.
//!
//! A timeout inside the retry layer gives up on one attempt and lets the next
//! one ask again (the server, running the first to completion, answers it
//! with the replay or a 409 in progress); a timeout outside it bounds the
//! whole call, waits included. A call that fails that way returns an error,
//! not a response, so no [`SentKey`]: to be able to try it again later, give
//! it a key of your own up front (the layer keeps it) and send that key again;
//! the action still happens at most once.
//!
//! # Example
//!
//! A retry policy that clones the request, under the key layer: the transport
//! here loses the first attempt, and both attempts carry one key.
//!
//! ```
//! use std::future::{Ready, ready};
//! use std::sync::{Arc, Mutex};
//!
//! use http::{HeaderValue, Request, Response, StatusCode};
//! use tower::retry::{Policy, RetryLayer};
//! use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};
//! use tower_idempotency::client::{SentKey, SetIdempotencyKeyLayer};
//!
//! /// Retries errors, up to two more times, with a clone of the request.
//! #[derive(Clone)]
//! struct ThreeTries(u8);
//!
//! impl<B: Clone, Res, E> Policy<Request<B>, Res, E> for ThreeTries {
//!     type Future = Ready<()>;
//!
//!     fn retry(&mut self, _: &mut Request<B>, result: &mut Result<Res, E>) -> Option<Ready<()>> {
//!         (result.is_err() && self.0 < 2).then(|| {
//!             self.0 += 1;
//!             ready(())
//!         })
//!     }
//!
//!     fn clone_request(&mut self, request: &Request<B>) -> Option<Request<B>> {
//!         // The clone has the headers, so the key the outer layer set.
//!         Some(request.clone())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let seen: Arc<Mutex<Vec<HeaderValue>>> = Arc::default();
//! let transport = service_fn({
//!     let seen = Arc::clone(&seen);
//!     move |request: Request<String>| {
//!         let mut seen = seen.lock().unwrap();
//!         seen.push(request.headers()["idempotency-key"].clone());
//!         let first_attempt = seen.len() == 1;
//!         async move {
//!             if first_attempt {
//!                 return Err::<Response<String>, BoxError>("connection reset".into());
//!             }
//!             Ok(Response::builder().status(StatusCode::CREATED).body(String::new())?)
//!         }
//!     }
//! });
//!
//! let client = ServiceBuilder::new()
//!     .layer(SetIdempotencyKeyLayer::new()) // outside: one key per call
//!     .layer(RetryLayer::new(ThreeTries(0))) // inside: repeats it
//!     .service(transport);
//!
//! let request = Request::post("https://api.example/orders").body(r#"{"sku":"tea"}"#.to_owned())?;
//! let response = client.oneshot(request).await?;
//!
//! assert_eq!(response.status(), StatusCode::CREATED);
//! let key = response.extensions().get::<SentKey>().expect("a POST gets a key");
//! let seen = seen.lock().unwrap();
//! assert_eq!(*seen, [key.header_value().clone(), key.header_value().clone()]);
//! # Ok(())
//! # }
//! ```
//!
//! In an application, use [`RetryPolicy`] rather than a hand-written policy.
//! Over hyper-util's client (the README's snippet):
//!
//! ```
//! use http_body_util::Full;
//! use hyper::body::Bytes;
//! use hyper_util::{client::legacy::Client, rt::TokioExecutor};
//! use tower::{ServiceBuilder, retry::RetryLayer};
//! use tower_idempotency::client::{RetryPolicy, SetIdempotencyKeyLayer};
//!
//! let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
//! let client = ServiceBuilder::new()
//!     .layer(SetIdempotencyKeyLayer::new()) // outside: one key per call
//!     .layer(RetryLayer::new(RetryPolicy::new())) // inside: each attempt repeats it
//!     .service(http);
//! ```
//!
//! `examples/client_retry.rs` runs this stack, with a timeout per attempt,
//! against `examples/orders.rs` and prints every attempt.
//!
//! # What the layer does not do
//!
//! - It does not check a key the caller set: that is the server's job, and
//!   the server answers `400 idempotency_key_invalid` with a reason.
//! - It does not remember keys across calls. To retry an action later (after a
//!   restart, say), keep the [`SentKey`] and send it again in the header: the
//!   layer leaves a request's own key alone.

mod future;
mod key_config;
mod layer;
mod random;
mod retry;
mod retry_after;
mod sent_key;
mod service;

pub use future::ResponseFuture;
pub use layer::SetIdempotencyKeyLayer;
pub use random::KeyGenerationError;
pub use retry::RetryPolicy;
pub use sent_key::SentKey;
pub use service::SetIdempotencyKey;
