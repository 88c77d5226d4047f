//! The header names the server and the client share.

use http::HeaderName;

/// `Idempotency-Key`: the request header that carries the key, on the server
/// (the default of [`IdempotencyLayer::header_name`](crate::IdempotencyLayer::header_name))
/// and on the client (the header
/// [`SetIdempotencyKeyLayer`](crate::client::SetIdempotencyKeyLayer) sets).
///
/// ```
/// assert_eq!(tower_idempotency::IDEMPOTENCY_KEY, "idempotency-key");
/// ```
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// `Idempotent-Replayed`: the response header, `true`, that marks a replay of
/// a recorded response.
///
/// ```
/// assert_eq!(tower_idempotency::IDEMPOTENT_REPLAYED, "idempotent-replayed");
/// ```
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// `Stripe-Should-Retry`: `true` or `false` on the layer's own rejections,
/// read by Stripe's SDKs to decide whether to retry.
///
/// ```
/// assert_eq!(tower_idempotency::STRIPE_SHOULD_RETRY, "stripe-should-retry");
/// ```
pub const STRIPE_SHOULD_RETRY: HeaderName = HeaderName::from_static("stripe-should-retry");

/// `x-should-retry`: `true` or `false` on the layer's own rejections, read by
/// the SDKs Stainless generates (OpenAI's, Anthropic's and others) to decide
/// whether to retry.
///
/// ```
/// assert_eq!(tower_idempotency::X_SHOULD_RETRY, "x-should-retry");
/// ```
pub const X_SHOULD_RETRY: HeaderName = HeaderName::from_static("x-should-retry");
