//! The server side: [`IdempotencyLayer`] and the [`Idempotency`] service it
//! makes, with the bodies and future they use.
//!
//! The parts, in the order a request meets them:
//!
//! - the request analysis (key, buffered body, fingerprint, scope, and the
//!   digest that names the record);
//! - the middleware ([`IdempotencyLayer`], its configuration, the
//!   [`Idempotency`] service, its [`ResponseFuture`]) and the decision it
//!   takes from the store's answer;
//! - a claim's life (asking the store, the lease, the work under the claim);
//! - joining a response in flight (the live copy a streaming response feeds
//!   and its joiners read);
//! - the response ([`ResponseBody`], what is recorded, replays, rejections);
//! - outcome reporting ([`Outcome`], [`OutcomeReport`]).
//!
//! The most used items are also at the crate root; the body and future types
//! live here only, so they are never confused with the client's.

mod bodies;
mod claim;
mod config;
mod content_length;
mod decision;
mod future;
mod join;
mod layer;
mod outcome;
mod profile;
mod request;
mod response;
mod service;

#[cfg(feature = "axum")]
pub use self::bodies::AxumBodies;
pub use self::bodies::{LayerBodies, RequestBodies, ResponseBodies};
pub use self::future::ResponseFuture;
pub use self::join::JoinInterrupted;
pub use self::layer::IdempotencyLayer;
pub use self::outcome::{Outcome, OutcomeReport};
pub use self::profile::Profile;
pub use self::request::{IdempotencyKey, InvalidKey, RequestBody, Scope, ScopeFn};
pub use self::response::{ResponseBody, default_record_policy};
pub use self::service::Idempotency;

/// The error type of [`ResponseBody`]: the service body's own error, boxed,
/// or a [`JoinInterrupted`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[cfg(feature = "fuzzing")]
pub(crate) use self::request::canonicalize;
