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
