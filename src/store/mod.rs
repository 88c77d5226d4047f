//! Where records live: the [`Store`] trait and the types it speaks.
//!
//! A store answers one question atomically, "who owns this key?", through
//! [`Store::claim`], and then lets the owner [`record`](Store::record) the
//! outcome, [`release`](Store::release) the key, or [`renew`](Store::renew) its
//! lease. Every call after the claim carries the owner's [`FencingToken`]: a
//! store refuses it with [`StoreErrorKind::LeaseLost`] once the key has passed
//! to another owner, so a late finisher never overwrites a newer record.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use sha2::{Digest, Sha256};

use crate::fingerprint::{Fingerprint, Framer};
use crate::key::IdempotencyKey;
use crate::scope::Scope;

pub(crate) mod codec;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
pub(crate) mod redis;
#[cfg(any(feature = "redis", feature = "postgres"))]
mod token;

#[cfg(feature = "postgres")]
pub use self::postgres::{InvalidTableName, PostgresStore, Sweeper};
#[cfg(feature = "redis")]
pub use self::redis::RedisStore;
pub use memory::MemoryStore;

/// SHA-256 of (scope, key): the only name a store ever sees for a key, so the
/// raw key and tenant never reach the store.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyDigest([u8; 32]);

/// Domain separation from every other digest the crate computes.
const KEY_DIGEST_TAG: &[u8] = b"tower-idempotency/key/v1";

impl KeyDigest {
    /// The digest of `key` in `scope`.
    ///
    /// ```
    /// use tower_idempotency::{IdempotencyKey, Scope, store::KeyDigest};
    ///
    /// let key = IdempotencyKey::parse(b"order-1").unwrap();
    /// assert_ne!(
    ///     KeyDigest::new(&Scope::new("tenant-a"), &key),
    ///     KeyDigest::new(&Scope::new("tenant-b"), &key),
    /// );
    /// ```
    pub fn new(scope: &Scope, key: &IdempotencyKey) -> Self {
        let mut hasher = Framer(Sha256::new());
        hasher.0.update(KEY_DIGEST_TAG);
        match scope.name() {
            None => hasher.0.update([0]),
            Some(name) => {
                hasher.0.update([1]);
                hasher.field(name);
            }
        }
        hasher.field(key.as_str().as_bytes());
        Self(hasher.0.finalize().into())
    }

    /// A digest from its 32 bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes of the digest.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The digest as 64 lowercase hex digits, for stores keyed by text.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|byte| format!("{byte:02x}")).collect()
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyDigest({})", &self.to_hex()[..16])
    }
}

/// Proof of ownership of a claim. A store hands out a new token on every
/// successful claim, never the same one twice for a key, and accepts
/// `record`, `release` and `renew` only with the current owner's token.
///
/// ```
/// use tower_idempotency::store::FencingToken;
///
/// let token = FencingToken::new(42);
/// assert_eq!(token.get(), 42);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FencingToken(u64);

impl FencingToken {
    /// A token from the number a store keeps.
    pub const fn new(value: u64) -> Self {
        Self(value)
    }

    /// The number a store keeps.
    pub const fn get(self) -> u64 {
        self.0
    }
}

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

/// What [`Store::claim`] found, decided atomically.
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

/// A store call that failed: a [kind](StoreErrorKind) to act on, and the
/// client's own error as its source.
///
/// ```
/// use tower_idempotency::store::{StoreError, StoreErrorKind};
///
/// let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "down");
/// let error = StoreError::with_source(StoreErrorKind::Unavailable, refused);
/// assert_eq!(error.kind(), StoreErrorKind::Unavailable);
/// assert!(std::error::Error::source(&error).is_some());
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{kind}")]
pub struct StoreError {
    kind: StoreErrorKind,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// What kind of failure a [`StoreError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The store could not be reached or failed to answer.
    #[error("the idempotency store is unavailable")]
    Unavailable,
    /// The store did not answer within the store timeout.
    #[error("the idempotency store did not answer in time")]
    Timeout,
    /// The caller's fencing token is no longer the key's owner: the lease ran
    /// out and the key was released, claimed again or completed by another.
    #[error("the claim's lease was lost to another owner")]
    LeaseLost,
    /// The store is full and nothing could be evicted.
    #[error("the idempotency store is at capacity")]
    CapacityExhausted,
    /// The store holds bytes it cannot decode.
    #[error("the idempotency store holds a record it cannot decode")]
    Corrupt,
}

impl StoreError {
    /// An error of `kind` with no underlying cause.
    pub fn new(kind: StoreErrorKind) -> Self {
        Self { kind, source: None }
    }

    /// An error of `kind` caused by `source` (a client or driver error).
    pub fn with_source(
        kind: StoreErrorKind,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            kind,
            source: Some(source.into()),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }
}

/// Runs one store call, failing with [`StoreErrorKind::Timeout`] past `timeout`.
pub(crate) fn within<F>(timeout: Duration, call: F) -> Within<F> {
    Within {
        call,
        timeout,
        timer: None,
    }
}

pin_project_lite::pin_project! {
    /// A store call with a deadline. The call is polled before a timer is
    /// set, so a call that is ready at once (every memory store call) reads no
    /// clock and registers no timer; the timer is boxed, so it takes no room
    /// in the futures that await this one.
    pub(crate) struct Within<F> {
        #[pin]
        call: F,
        timeout: Duration,
        timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    }
}

impl<F, T> Future for Within<F>
where
    F: Future<Output = Result<T, StoreError>>,
{
    type Output = Result<T, StoreError>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        if let std::task::Poll::Ready(result) = this.call.poll(cx) {
            return std::task::Poll::Ready(result);
        }
        let timeout = *this.timeout;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match timer.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => {
                std::task::Poll::Ready(Err(StoreErrorKind::Timeout.into()))
            }
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

impl From<StoreErrorKind> for StoreError {
    fn from(kind: StoreErrorKind) -> Self {
        Self::new(kind)
    }
}

/// A place to keep idempotency records, shared by every replica that must
/// agree on who owns a key.
///
/// Each method is one atomic step; a store never implements a claim as a read
/// followed by a write. Times are durations, so each store measures them with
/// one clock of its own (the memory store's is Tokio's, which tests can pause).
///
/// A store must:
/// - in [`claim`](Self::claim), treat an expired record or a lapsed lease as
///   absent, and of many concurrent claims of one key let exactly one win;
/// - hand out a token never handed out before for that key on each win;
/// - in [`record`](Self::record), [`release`](Self::release) and
///   [`renew`](Self::renew), act only if the token is the key's current
///   in-flight owner, and answer [`StoreErrorKind::LeaseLost`] otherwise.
///
/// Run the conformance suite in `tests/store_conformance/` against a new
/// store. A store can also wrap another, to count or to fail on purpose:
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::time::Duration;
/// use tower_idempotency::store::{
///     ClaimOutcome, FencingToken, KeyDigest, MemoryStore, Record, Store, StoreError,
/// };
/// use tower_idempotency::Fingerprint;
///
/// /// A memory store that counts the claims it is asked for.
/// #[derive(Default)]
/// struct Counting {
///     inner: MemoryStore,
///     claims: AtomicU64,
/// }
///
/// impl Store for Counting {
///     async fn claim(
///         &self,
///         key: &KeyDigest,
///         fingerprint: &Fingerprint,
///         lease: Duration,
///     ) -> Result<ClaimOutcome, StoreError> {
///         self.claims.fetch_add(1, Ordering::Relaxed);
///         self.inner.claim(key, fingerprint, lease).await
///     }
///
///     async fn record(
///         &self,
///         key: &KeyDigest,
///         token: FencingToken,
///         record: &Record,
///         ttl: Duration,
///     ) -> Result<(), StoreError> {
///         self.inner.record(key, token, record, ttl).await
///     }
///
///     async fn release(&self, key: &KeyDigest, token: FencingToken) -> Result<(), StoreError> {
///         self.inner.release(key, token).await
///     }
///
///     async fn renew(
///         &self,
///         key: &KeyDigest,
///         token: FencingToken,
///         lease: Duration,
///     ) -> Result<(), StoreError> {
///         self.inner.renew(key, token, lease).await
///     }
/// }
///
/// let layer = tower_idempotency::IdempotencyLayer::new(Counting::default());
/// ```
pub trait Store: Send + Sync + 'static {
    /// Claims `key` for a request with `fingerprint`, holding it for `lease`,
    /// unless the key is in flight or completed: then says which.
    fn claim(
        &self,
        key: &KeyDigest,
        fingerprint: &Fingerprint,
        lease: Duration,
    ) -> impl Future<Output = Result<ClaimOutcome, StoreError>> + Send;

    /// Completes the claim held under `token` with `record`, kept for `ttl`.
    fn record(
        &self,
        key: &KeyDigest,
        token: FencingToken,
        record: &Record,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Gives up the claim held under `token` without a record, so the next
    /// request with the key runs again.
    fn release(
        &self,
        key: &KeyDigest,
        token: FencingToken,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Extends the lease of the claim held under `token` to `lease` from now.
    fn renew(
        &self,
        key: &KeyDigest,
        token: FencingToken,
        lease: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Waits, at most `max`, for the in-flight claim on `key` to settle
    /// (recorded, released, or lapsed), so that a request waiting for it can
    /// claim again and get the outcome. `attempt` counts the waits of this
    /// request so far, from 0. Returning early is allowed: the caller claims
    /// again and, if the key is still in flight, waits again.
    ///
    /// The default polls with backoff, right for a networked store: it sleeps
    /// 10 ms doubled per attempt, at most 1 s (and at most `max`). A store that
    /// can be told when a key settles overrides it to return at once (the
    /// memory store does).
    fn wait_settled(
        &self,
        key: &KeyDigest,
        attempt: u32,
        max: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = key;
        let backoff = Duration::from_millis(10)
            .saturating_mul(1 << attempt.min(7))
            .min(Duration::from_secs(1));
        async move {
            tokio::time::sleep(backoff.min(max)).await;
            Ok(())
        }
    }
}
