//! What a store keeps and answers: [`Record`], [`RecordedResponse`] and
//! [`ClaimOutcome`].

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use super::{FencingToken, Fingerprint};

/// A response as recorded for replay: status, headers (without hop-by-hop and
/// credential headers) and the whole body.
///
/// ```
/// use bytes::Bytes;
/// use http::{HeaderMap, StatusCode};
/// use tower_idempotency::Fingerprint;
/// use tower_idempotency::store::{Record, RecordedResponse};
///
/// let record = Record {
///     fingerprint: Fingerprint::from_bytes([0; 32]),
///     response: Some(RecordedResponse {
///         status: StatusCode::CREATED,
///         headers: HeaderMap::new(),
///         body: Bytes::from_static(b"{\"id\":1}"),
///     }),
/// };
/// assert!(record.response.is_some(), "a tombstone would be None");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedResponse {
    /// The status sent.
    pub status: StatusCode,
    /// The headers to replay, multi-valued headers kept whole.
    pub headers: HeaderMap,
    /// The body, byte for byte.
    pub body: Bytes,
}

/// What a completed key holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The fingerprint of the request that produced the record.
    pub fingerprint: Fingerprint,
    /// The response to replay, or `None` for a tombstone: the response was
    /// delivered but was too large to record, so the key can never be
    /// replayed (`idempotency_response_not_replayable`) until it expires.
    pub response: Option<RecordedResponse>,
}

/// What [`Store::claim`](super::Store::claim) found, decided atomically.
///
/// ```
/// # async fn example() -> Result<(), tower_idempotency::store::StoreError> {
/// use std::time::Duration;
/// use tower_idempotency::store::{ClaimOutcome, KeyDigest, MemoryStore, Store};
/// use tower_idempotency::{Fingerprint, IdempotencyKey, Scope};
///
/// let store = MemoryStore::new();
/// let key = KeyDigest::new(&Scope::global(), &IdempotencyKey::parse(b"k").unwrap());
/// let fingerprint = Fingerprint::from_bytes([1; 32]);
/// let lease = Duration::from_secs(30);
/// assert!(matches!(store.claim(&key, &fingerprint, lease).await?, ClaimOutcome::Claimed(_)));
/// assert_eq!(
///     store.claim(&key, &fingerprint, lease).await?,
///     ClaimOutcome::InFlight { fingerprint }
/// );
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClaimOutcome {
    /// The key was free (absent or expired) and is now claimed by the caller,
    /// with a lease, under this token.
    Claimed(FencingToken),
    /// Another owner holds a live lease on the key.
    InFlight {
        /// The fingerprint of the request being worked on.
        fingerprint: Fingerprint,
    },
    /// The key holds a completed record.
    Completed(Record),
}
