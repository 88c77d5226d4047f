//! Which conventions the layer's answers follow.

/// The conventions of the layer's own answers.
///
/// [`Profile::Default`] follows Stripe's widely used behaviour;
/// [`Profile::Ietf`] follows the IETF draft
/// `draft-ietf-httpapi-idempotency-key-header` (version 07) where it differs.
///
/// How the draft differs from our defaults, and what the IETF profile does
/// about each difference:
///
/// | the draft says | our default | IETF profile |
/// | --- | --- | --- |
/// | a key reused with a different payload gets **422** | 409 | **422** `idempotency_key_payload_mismatch` |
/// | the key MUST be an sf-string (`"abc"`) | bare and quoted keys both accepted | the same: the MUST binds clients, and refusing bare keys would help no one |
/// | a retry after completion gets the previous result, "success or an error" | 5xx, 408, 425 and 429 are not recorded (nor 401 and 415, refusals of headers outside the fingerprint): the retry runs again | the same: the draft leaves other errors to the server's documentation, and a replayed 503 would keep a client from ever succeeding |
/// | a fingerprint MAY be used | always used | the same |
/// | errors described with RFC 7807 problem details | RFC 9457 (which obsoletes 7807; same format) | the same |
///
/// Where the draft agrees with our defaults (400 for a missing or repeated
/// key, 409 for a request in progress, a published expiry policy: the TTL),
/// both profiles behave alike.
///
/// ```
/// use tower_idempotency::{IdempotencyLayer, MemoryStore, Profile};
///
/// let layer = IdempotencyLayer::new(MemoryStore::new()).profile(Profile::Ietf);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Profile {
    /// Stripe-like answers: 409 for a payload mismatch.
    #[default]
    Default,
    /// The IETF draft's answers: 422 for a payload mismatch.
    Ietf,
}
