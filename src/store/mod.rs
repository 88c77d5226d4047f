//! Where records live: the [`Store`] trait and the types it speaks.
//!
//! A store answers one question atomically, "who owns this key?", through
//! [`Store::claim`], and then lets the owner [`record`](Store::record) the
//! outcome, [`release`](Store::release) the key, or [`renew`](Store::renew) its
//! lease. Every call after the claim carries the owner's [`FencingToken`]: a
//! store refuses it with [`StoreErrorKind::LeaseLost`] once the key has passed
//! to another owner, so a late finisher never overwrites a newer record.
//!
//! A store knows records, digests and tokens, and nothing of HTTP requests:
//! keys arrive as a [`KeyDigest`] and requests as a [`Fingerprint`], two
//! opaque 32-byte values the layer derives.
//!
//! # Operating a store
//!
//! "What happened to key K of tenant T?" [`Store::inspect`] answers it with a
//! [`KeyState`]; [`Store::forget`] frees a key stuck behind a bug (read its
//! warning first). Both take the digest the layer derives from the tenant's
//! [`Scope`](crate::Scope) and the key. Behind your own authentication, with
//! axum:
//!
//! ```
//! use axum::extract::{Path, State};
//! use axum::http::{HeaderMap, StatusCode};
//! use axum::routing::get;
//! use axum::Router;
//! use tower_idempotency::store::{KeyDigest, Store};
//! use tower_idempotency::{IdempotencyKey, MemoryStore, Scope};
//!
//! /// The digest of `key` for `tenant`, as a layer scoped by tenant
//! /// (`scope_by_header(x-api-key)`, say) derives it.
//! fn digest(tenant: &str, key: &str) -> Result<KeyDigest, StatusCode> {
//!     let key = IdempotencyKey::parse(key.as_bytes()).map_err(|_| StatusCode::BAD_REQUEST)?;
//!     Ok(KeyDigest::new(&Scope::new(tenant.to_owned()), &key))
//! }
//!
//! /// Your own check of the operator's credentials.
//! fn authorized(headers: &HeaderMap) -> Result<(), StatusCode> {
//!     match headers.get("x-admin-token") {
//!         Some(token) if token == "change-me" => Ok(()),
//!         _ => Err(StatusCode::UNAUTHORIZED),
//!     }
//! }
//!
//! async fn inspect(
//!     State(store): State<MemoryStore>,
//!     headers: HeaderMap,
//!     Path((tenant, key)): Path<(String, String)>,
//! ) -> Result<String, StatusCode> {
//!     authorized(&headers)?;
//!     let state = store.inspect(&digest(&tenant, &key)?).await;
//!     state
//!         .map(|state| format!("{state:?}"))
//!         .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)
//! }
//!
//! async fn forget(
//!     State(store): State<MemoryStore>,
//!     headers: HeaderMap,
//!     Path((tenant, key)): Path<(String, String)>,
//! ) -> Result<StatusCode, StatusCode> {
//!     authorized(&headers)?;
//!     match store.forget(&digest(&tenant, &key)?).await {
//!         Ok(true) => Ok(StatusCode::NO_CONTENT),
//!         Ok(false) => Ok(StatusCode::NOT_FOUND),
//!         Err(_) => Err(StatusCode::SERVICE_UNAVAILABLE),
//!     }
//! }
//!
//! let store = MemoryStore::new();
//! // The same store (a clone shares it) as the layer's.
//! let layer = tower_idempotency::IdempotencyLayer::new(store.clone());
//! let admin: Router = Router::new()
//!     .route("/admin/idempotency/{tenant}/{key}", get(inspect).delete(forget))
//!     .with_state(store);
//! ```

use std::future::Future;
use std::time::Duration;

#[cfg(any(feature = "redis", feature = "postgres"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "redis", feature = "postgres"))))]
pub mod clients;
#[cfg(any(feature = "redis", feature = "postgres", feature = "fuzzing"))]
pub(crate) mod codec;
#[cfg(feature = "conformance")]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;
mod digest;
mod error;
mod kept_headers;
mod key_state;
mod loan;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
mod record;
#[cfg(feature = "redis")]
pub(crate) mod redis;
pub(crate) mod relay;
pub(crate) mod timeout;
mod token;

pub use self::digest::{Fingerprint, KeyDigest};
pub use self::error::{StoreError, StoreErrorKind};
pub(crate) use self::kept_headers::recordable_headers;
pub use self::key_state::KeyState;
pub use self::loan::{ClaimLoan, CompletionFlag};
#[cfg(feature = "postgres")]
pub use self::postgres::{
    CompletionError, InvalidTableName, PostgresClaim, PostgresStore, Sweeper,
};
pub use self::record::{ClaimOutcome, Record, RecordedResponse};
#[cfg(feature = "redis")]
pub use self::redis::RedisStore;
pub use self::relay::JoinRelay;
pub use self::token::FencingToken;
#[cfg(any(feature = "redis", feature = "postgres"))]
pub(crate) use self::token::new_token;
pub use memory::MemoryStore;

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
/// Prove a new store with the conformance suite (feature `conformance`),
/// from a test of your own:
///
/// ```ignore
/// #[tokio::test(flavor = "multi_thread")]
/// async fn my_store_conforms() {
///     tower_idempotency::store::conformance::run_all(|| async { MyStore::connect().await }).await;
/// }
/// ```
///
/// It checks the three rules above, records byte for byte, and lease and TTL
/// expiry; see the `conformance` module for one test per check. A store can
/// also wrap another, to count or to fail on purpose:
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
    /// (recorded, released, or lapsed), if this store can tell when that
    /// happens: a request waiting for the key then claims again at once.
    ///
    /// The default answers [`WaitSettled::Unsupported`] at once, right for a
    /// store that cannot be told (most networked stores): the layer then
    /// polls with a backoff of its own. A store that can be told (the memory
    /// store) overrides it, and answers [`WaitSettled::Notified`] when the key
    /// settled or `max` passed. Returning early is allowed: the caller claims
    /// again and, if the key is still in flight, waits again.
    fn wait_settled(
        &self,
        key: &KeyDigest,
        max: Duration,
    ) -> impl Future<Output = Result<WaitSettled, StoreError>> + Send {
        let _ = (key, max);
        std::future::ready(Ok(WaitSettled::Unsupported))
    }

    /// Lends the service its claim, just before the service is called: a
    /// store whose records the service can complete itself puts a handle for
    /// that into `extensions` (the request's), built from `loan`.
    ///
    /// The default lends nothing. [`PostgresStore`] lends a
    /// [`PostgresClaim`], with which the handler completes the record in its
    /// own database transaction. A store that wraps another must pass this
    /// call on, or the handle is not lent.
    fn lend_claim(&self, loan: ClaimLoan<'_>, extensions: &mut http::Extensions) {
        let _ = (loan, extensions);
    }

    /// Hands out this store's way of carrying a response in flight to
    /// joiners on other replicas, if it has one (see
    /// `IdempotencyLayer::join_in_flight`). The layer asks once per request
    /// that joins or is joined.
    ///
    /// The default has none: a response is joined in its own process only,
    /// and retries on other replicas wait for the record. [`RedisStore`] has
    /// one. A store that wraps another must pass this call on.
    fn join_relay(&self) -> Option<JoinRelay> {
        None
    }

    /// Tells an operator what the store holds for `key`: nothing, a claim in
    /// flight and its lease, a record and its status, or a tombstone, each
    /// with the time it has left. It reads; it changes nothing.
    ///
    /// The key is the digest the layer derives; make it with
    /// [`KeyDigest::new`] from the [`Scope`](crate::Scope) your scope
    /// function gives the tenant's requests and the key as sent. Every store
    /// of this crate implements it (as the conformance suite checks); the
    /// default answers [`StoreErrorKind::Unsupported`].
    ///
    /// ```
    /// use tower_idempotency::store::{KeyDigest, KeyState, Store};
    /// use tower_idempotency::{IdempotencyKey, MemoryStore, Scope};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let store = MemoryStore::new();
    /// let key = IdempotencyKey::parse(b"order-42").unwrap();
    /// let digest = KeyDigest::new(&Scope::new("tenant-7"), &key);
    /// assert_eq!(store.inspect(&digest).await.unwrap(), KeyState::Absent);
    /// # });
    /// ```
    fn inspect(
        &self,
        key: &KeyDigest,
    ) -> impl Future<Output = Result<KeyState, StoreError>> + Send {
        let _ = key;
        std::future::ready(Err(StoreErrorKind::Unsupported.into()))
    }

    /// Forgets whatever the store holds for `key`, at once and atomically,
    /// so the next request with the key runs afresh; answers whether a live
    /// claim or record was there.
    ///
    /// # Warning
    ///
    /// Forgetting gives up the protection for that key: a retry of a request
    /// that already ran runs it again (a second order, a second charge). Use
    /// it for a key stuck behind a bug, or one a client must be able to
    /// reuse, once you know what the first request did. A request still in
    /// flight when its key is forgotten finishes, but its record is refused
    /// (its token no longer owns the key), so the forget is never undone by a
    /// late record.
    ///
    /// The default answers [`StoreErrorKind::Unsupported`].
    fn forget(&self, key: &KeyDigest) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let _ = key;
        std::future::ready(Err(StoreErrorKind::Unsupported.into()))
    }
}

/// What [`Store::wait_settled`] could do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WaitSettled {
    /// The store waited: the key settled, or the time allowed passed.
    Notified,
    /// The store cannot tell when a key settles; the caller polls instead.
    Unsupported,
}
