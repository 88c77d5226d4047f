//! [`IdempotencyLayer`]: the configuration, and the builder setters.

use std::fmt;
use std::fmt::Display;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, Method, StatusCode};
use tower_layer::Layer;

use super::bodies::LayerBodies;
use super::config::Config;
use super::outcome::OutcomeReport;
use super::profile::Profile;
use super::request::{ExtensionScope, HeaderScope, ScopeFn};
use super::response::Rejection;
use super::service::Idempotency;
use crate::store::Store;

/// Applies [`Idempotency`] to a service: the first request with a key runs,
/// its retries get the recorded answer.
///
/// Every setter takes and returns the layer, and has a default:
///
/// | setter | default |
/// | --- | --- |
/// | [`methods`](Self::methods) | `POST`, `PATCH` |
/// | [`header_name`](Self::header_name) | `Idempotency-Key` |
/// | [`require_key`](Self::require_key) | `false`: a request without a key passes through |
/// | [`scope`](Self::scope), [`scope_by_header`](Self::scope_by_header), [`scope_by_extension`](Self::scope_by_extension) | one global scope |
/// | [`fingerprint_header`](Self::fingerprint_header) | none: method, path, query and body only |
/// | [`canonical_json`](Self::canonical_json) | `false`: the body's raw bytes |
/// | [`request_body_limit`](Self::request_body_limit) | 1 MiB |
/// | [`response_record_limit`](Self::response_record_limit) | 1 MiB |
/// | [`ttl`](Self::ttl) | 24 hours |
/// | [`lease`](Self::lease) | 30 seconds |
/// | [`store_timeout`](Self::store_timeout) | 2 seconds |
/// | [`record_policy`](Self::record_policy) | [`default_record_policy`](super::default_record_policy) |
/// | [`wait_in_flight`](Self::wait_in_flight) | none: 409 in-progress at once |
/// | [`join_in_flight`](Self::join_in_flight) | off: a retry never joins a response as it streams |
/// | [`run_to_completion`](Self::run_to_completion) | `true`: dropped requests finish in the background |
/// | [`on_outcome`](Self::on_outcome) | none |
/// | [`retry_after`](Self::retry_after) | 1 second |
/// | [`profile`](Self::profile) | [`Profile::Default`]: 409 for a payload mismatch |
/// | [`fail_open`](Self::fail_open) | `false`: 503 when the store fails |
/// | [`retry_hints`](Self::retry_hints) | `true`: `Stripe-Should-Retry` and `x-should-retry` on the layer's rejections |
///
/// ```
/// use std::time::Duration;
/// use axum::{Router, routing::post};
/// use tower_idempotency::{IdempotencyLayer, MemoryStore};
///
/// async fn create() -> &'static str { "created" }
///
/// let layer = IdempotencyLayer::new(MemoryStore::new())
///     .ttl(Duration::from_secs(24 * 3600))
///     .scope_by_header(http::HeaderName::from_static("x-api-key"));
/// let app: Router = Router::new().route("/orders", post(create)).layer(layer);
/// ```
pub struct IdempotencyLayer<St, M = LayerBodies> {
    config: Config,
    store: Arc<St>,
    bodies: PhantomData<fn() -> M>,
}

impl<St: Store> IdempotencyLayer<St> {
    /// Creates a layer that keeps its records in `store`, with the defaults above.
    pub fn new(store: St) -> Self {
        Self::from_shared_store(Arc::new(store))
    }

    /// Creates a layer on a store already shared with other code (to inspect or purge
    /// it, say).
    pub fn from_shared_store(store: Arc<St>) -> Self {
        Self {
            config: Config::default(),
            store,
            bodies: PhantomData,
        }
    }
}

impl<St: Store, M> IdempotencyLayer<St, M> {
    /// Keeps axum's own `Body` on both sides of the layer (feature `axum`):
    /// the router's handlers receive it and the layer answers with it, so a
    /// request without a key (or with a method the layer does not cover)
    /// passes through without its body or its response's body being boxed
    /// again. Handlers and clients see the same requests and responses as
    /// without it. For axum routers only: the wrapped service must take
    /// `Request<axum::body::Body>`, as a `Router` and its routes do.
    ///
    /// ```
    /// use axum::{Router, routing::post};
    /// use tower_idempotency::{IdempotencyLayer, MemoryStore};
    ///
    /// async fn create() -> &'static str { "created" }
    ///
    /// let layer = IdempotencyLayer::new(MemoryStore::new()).axum_bodies();
    /// let app: Router = Router::new().route("/orders", post(create)).layer(layer);
    /// ```
    #[cfg(feature = "axum")]
    #[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
    #[must_use]
    pub fn axum_bodies(self) -> IdempotencyLayer<St, super::AxumBodies> {
        IdempotencyLayer {
            config: self.config,
            store: self.store,
            bodies: PhantomData,
        }
    }

    /// Sets the methods the layer protects; requests with other methods pass
    /// through untouched, key or not. Default: `POST` and `PATCH`.
    #[must_use]
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.config.methods = methods.into_iter().collect();
        self
    }

    /// Sets the header that carries the key. Default: `Idempotency-Key`.
    #[must_use]
    pub fn header_name(mut self, name: HeaderName) -> Self {
        self.config.header = name;
        self
    }

    /// Sets whether a request with a protected method must carry a key: if so, one
    /// without gets 400 `idempotency_key_missing`. Default: `false`, it passes
    /// through unprotected.
    #[must_use]
    pub fn require_key(mut self, require: bool) -> Self {
        self.config.require_key = require;
        self
    }

    /// Maps each request to a tenant [`Scope`](super::Scope) with a function of the request
    /// head, so tenants never see each other's records.
    ///
    /// # Warning
    ///
    /// The default puts every request in one global scope: two clients that
    /// send the same key share one record, and the second gets the first one's
    /// response. Scope keys by tenant whenever clients are not all trusted
    /// alike, or when they choose their own keys.
    ///
    /// ```
    /// use tower_idempotency::{IdempotencyLayer, MemoryStore, Scope};
    ///
    /// let layer = IdempotencyLayer::new(MemoryStore::new()).scope(|parts: &http::request::Parts| {
    ///     match parts.uri.path().split('/').nth(2) {
    ///         Some(account) => Scope::new(account.to_owned()),
    ///         None => Scope::global(),
    ///     }
    /// });
    /// ```
    #[must_use]
    pub fn scope(mut self, scope: impl ScopeFn) -> Self {
        self.config.scope = Arc::new(scope);
        self
    }

    /// Scopes keys by the value of a request header, such as an API key. A
    /// request without the header is in the global scope.
    ///
    /// # Warning
    ///
    /// The header must be one your own authentication checks: a client that can
    /// set any value can choose another tenant's scope.
    #[must_use]
    pub fn scope_by_header(mut self, name: HeaderName) -> Self {
        self.config.scope = Arc::new(HeaderScope(name));
        self
    }

    /// Scopes keys by a typed request extension, set by an authentication
    /// layer that runs before this one, formatted with `Display`. A request
    /// without the extension is in the global scope.
    ///
    /// ```
    /// use std::fmt;
    /// use tower_idempotency::{IdempotencyLayer, MemoryStore};
    ///
    /// #[derive(Clone)]
    /// struct AccountId(u64);
    /// impl fmt::Display for AccountId {
    ///     fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    ///         write!(f, "acct_{}", self.0)
    ///     }
    /// }
    ///
    /// let layer = IdempotencyLayer::new(MemoryStore::new()).scope_by_extension::<AccountId>();
    /// ```
    #[must_use]
    pub fn scope_by_extension<T>(mut self) -> Self
    where
        T: Display + Send + Sync + 'static,
    {
        self.config.scope = Arc::new(ExtensionScope::<T>::new());
        self
    }

    /// Adds a request header to the fingerprint, so a retry with another value
    /// of it is a mismatch. Call once per header.
    #[must_use]
    pub fn fingerprint_header(mut self, name: HeaderName) -> Self {
        self.config.fingerprint.headers.push(name);
        let headers = &self.config.fingerprint.headers;
        self.config.rejections.fingerprinted_headers(headers);
        self
    }

    /// Fingerprints a JSON body by its canonical form, so the same document
    /// with other key order or whitespace is the same request. Numbers compare
    /// as written (`1` and `1.0` differ), never as floats. A body that is not
    /// valid JSON (or nests deeper than 128 levels) is fingerprinted as raw
    /// bytes, whatever its `Content-Type`. Default: `false`, raw bytes.
    #[must_use]
    pub fn canonical_json(mut self, canonical: bool) -> Self {
        self.config.fingerprint.canonical_json = canonical;
        self
    }

    /// Sets the largest request body the layer reads to fingerprint; larger ones get
    /// 413 `idempotency_request_too_large` without reaching the service.
    /// Default: 1 MiB.
    #[must_use]
    pub fn request_body_limit(mut self, bytes: usize) -> Self {
        self.config.request_body_limit = bytes;
        self
    }

    /// Sets the largest response body recorded for replay. A larger one is still
    /// delivered whole, but its key then holds a tombstone and its retries get
    /// 409 `idempotency_response_not_replayable`. Default: 1 MiB.
    #[must_use]
    pub fn response_record_limit(mut self, bytes: usize) -> Self {
        self.config.response_record_limit = bytes;
        self
    }

    /// Sets how long a completed record is kept and replayed; after it the key may
    /// be used again. Default: 24 hours.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.config.ttl = ttl;
        self
    }

    /// Sets how long a claim holds its key without an answer. A process that dies
    /// holding a claim blocks its key for at most this long. Default: 30
    /// seconds.
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.config.lease = lease;
        self
    }

    /// Sets the longest wait for any one store call; past it the call counts as a
    /// store failure. Default: 2 seconds.
    #[must_use]
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.config.store_timeout = timeout;
        self
    }

    /// Sets which response statuses are recorded; the others release the claim so a
    /// retry runs again. Default: [`default_record_policy`](super::default_record_policy).
    ///
    /// ```
    /// use http::StatusCode;
    /// use tower_idempotency::{IdempotencyLayer, MemoryStore, default_record_policy};
    ///
    /// // Also let clients retry a 409 from the handler itself.
    /// let layer = IdempotencyLayer::new(MemoryStore::new())
    ///     .record_policy(|status| status != StatusCode::CONFLICT && default_record_policy(status));
    /// ```
    #[must_use]
    pub fn record_policy(
        mut self,
        policy: impl Fn(StatusCode) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.config.record_policy = Arc::new(policy);
        self
    }

    /// Makes a retry that finds its key in flight (same request) wait for the
    /// outcome, up to `bound`, and replay it, instead of answering 409 at
    /// once. Past the bound it gets 409 `idempotency_key_in_progress` with
    /// `Retry-After`. If the running request fails and releases the key, one
    /// waiter claims it and runs the service. The memory store wakes waiters
    /// the moment the key settles; other stores are polled with backoff (10 ms
    /// doubling to 1 s). Default: no wait.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_idempotency::{IdempotencyLayer, MemoryStore};
    ///
    /// let layer = IdempotencyLayer::new(MemoryStore::new()).wait_in_flight(Duration::from_secs(10));
    /// ```
    #[must_use]
    pub fn wait_in_flight(mut self, bound: Duration) -> Self {
        self.config.wait_in_flight = Some(bound);
        self
    }

    /// Makes a retry that finds its key in flight (same request) join the
    /// response as it streams, instead of answering 409: it waits, up to
    /// `bound`, for the response's head, then answers with the same status
    /// and headers plus `Idempotent-Replayed: true`, and a body that is the
    /// original body byte for byte: what was produced so far at once, then
    /// each chunk as the service produces it, ending when the original ends
    /// (once its record is made). This includes
    /// [`wait_in_flight(bound)`](Self::wait_in_flight): a key whose response
    /// has not started waits for it, and one that settles meanwhile is
    /// replayed.
    ///
    /// The case in point is a long generation streamed as server-sent
    /// events: the client gives up after 20 seconds, retries with its key,
    /// and reads the same stream from its first event, live, while the
    /// generation runs once.
    ///
    /// - Any number of retries join one response and share one copy of it
    ///   (no copy per joiner), bounded by the
    ///   [recording limit](Self::response_record_limit). A response that
    ///   outgrows it cuts its joiners, and later ones get 409
    ///   `idempotency_response_not_replayable`, as replays would.
    /// - If the original breaks off (its body fails, its lease is lost, its
    ///   work is dropped with [`run_to_completion`](Self::run_to_completion)
    ///   off), every joined body ends with a [`JoinInterrupted`] error, so the
    ///   server cuts the connection: a joiner never takes a part for the
    ///   whole. The key is released as usual, and the next retry runs again.
    /// - The original's client going away changes nothing for joiners while
    ///   run to completion is on (the default).
    /// - Joining happens within one layer, in one process: the response and
    ///   its joiners share memory, whatever the store. A retry that reaches
    ///   another replica waits for the record and replays it (up to
    ///   `bound`), as with [`wait_in_flight`](Self::wait_in_flight).
    /// - A joiner is sent what was produced so far when the original produces
    ///   its next chunk, or at its next lease renewal if that comes first.
    /// - A response nobody joins pays one atomic load per chunk for this, and
    ///   no task, channel or allocation.
    ///
    /// Default: off.
    ///
    /// ```
    /// use std::time::Duration;
    /// use axum::{Router, body::Body, routing::post};
    /// use tower_idempotency::{IdempotencyLayer, MemoryStore};
    ///
    /// async fn generate(prompt: String) -> Body {
    ///     let events = (0..3).map(move |i| {
    ///         Ok::<_, std::convert::Infallible>(format!("data: {prompt} {i}\n\n"))
    ///     });
    ///     Body::from_stream(futures_util::stream::iter(events))
    /// }
    ///
    /// let layer = IdempotencyLayer::new(MemoryStore::new())
    ///     .join_in_flight(Duration::from_secs(30));
    /// let app: Router = Router::new().route("/v1/generations", post(generate)).layer(layer);
    /// ```
    ///
    /// [`JoinInterrupted`]: crate::server::JoinInterrupted
    #[must_use]
    pub fn join_in_flight(mut self, bound: Duration) -> Self {
        self.config.wait_in_flight = Some(bound);
        self.config.joins = Some(Arc::default());
        self
    }

    /// Sets whether work that has started finishes even if its request goes away.
    /// On (the default), a client that disconnects or an outer timeout does
    /// not cancel the work half-way: if the response future is dropped before
    /// the service answers, the service's future goes on running on a task of
    /// its own; if the response body is dropped before its end, the rest is
    /// read in the background. The outcome is recorded, so the client's retry
    /// gets it instead of running the work again. An `Err` or a panic still
    /// releases the claim. Requests that are not dropped pay for no task.
    ///
    /// Off, a dropped response future or body releases the claim, and the next
    /// retry runs the service again.
    ///
    /// # Warning
    ///
    /// On, a `TimeoutLayer` (or any timeout) outside this layer no longer
    /// cancels the handler: it answers the client, but the work goes on to its
    /// end. Bound slow work inside the handler, or put the timeout inside this
    /// layer, if it must be cut short.
    #[must_use]
    pub fn run_to_completion(mut self, run_to_completion: bool) -> Self {
        self.config.run_to_completion = run_to_completion;
        self
    }

    /// Calls `hook` with what became of every covered request (executed,
    /// replayed, mismatch, in progress, rejected, store error) and its timings,
    /// to feed a metrics system. Called on the request's task: keep it quick.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use tower_idempotency::{IdempotencyLayer, MemoryStore, Outcome};
    ///
    /// let replays = Arc::new(AtomicU64::new(0));
    /// let counter = replays.clone();
    /// let layer = IdempotencyLayer::new(MemoryStore::new()).on_outcome(move |report| {
    ///     if report.outcome == Outcome::Replayed {
    ///         counter.fetch_add(1, Ordering::Relaxed);
    ///     }
    /// });
    /// ```
    #[must_use]
    pub fn on_outcome(mut self, hook: impl Fn(&OutcomeReport) + Send + Sync + 'static) -> Self {
        self.config.on_outcome = Some(Arc::new(hook));
        self
    }

    /// Sets the `Retry-After` sent with 409 `idempotency_key_in_progress`, rounded
    /// up to whole seconds. Default: 1 second.
    #[must_use]
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.config.decision.retry_after = after;
        self
    }

    /// Sets the conventions of the layer's answers: [`Profile::Default`] (409 for a
    /// payload mismatch) or [`Profile::Ietf`] (422, as the IETF draft says).
    /// The differences are listed on [`Profile`].
    #[must_use]
    pub fn profile(mut self, profile: Profile) -> Self {
        self.config.decision.mismatch = match profile {
            Profile::Default => Rejection::PayloadMismatch,
            Profile::Ietf => Rejection::PayloadMismatchUnprocessable,
        };
        self
    }

    /// Sets what to do when the store fails or times out: `false` (the default)
    /// answers 503 `idempotency_store_unavailable`; `true` passes the request
    /// through to the service unprotected.
    ///
    /// # Warning
    ///
    /// Failing open trades safety for availability: while the store is down,
    /// retries run the service again, and duplicates (a second order, a second
    /// charge) become possible.
    #[must_use]
    pub fn fail_open(mut self, fail_open: bool) -> Self {
        self.config.decision.fail_open = fail_open;
        self
    }

    /// Sets whether the layer's own rejections say if a retry can succeed, in
    /// the two headers the big SDKs read: `Stripe-Should-Retry` (Stripe's)
    /// and `x-should-retry` (those Stainless generates: OpenAI, Anthropic
    /// and many more). Both SDK families would otherwise retry every 409,
    /// a payload mismatch included, which no retry can fix. Default: `true`.
    ///
    /// | rejection | hint |
    /// | --- | --- |
    /// | `idempotency_key_payload_mismatch`, `idempotency_response_not_replayable`, `idempotency_key_invalid`, `idempotency_key_missing`, `idempotency_request_too_large` | `false` |
    /// | `idempotency_key_in_progress` (with `Retry-After`), `idempotency_store_unavailable` | `true` |
    /// | `idempotency_request_body_unreadable` | none (the client has usually gone) |
    ///
    /// The service's own responses and replays never carry a hint from the
    /// layer. What the SDKs do with `Retry-After` on a 409 in progress:
    /// openai-python 3.57 waits as long as it says, up to 120 s (older
    /// Stainless releases: 60 s), else uses its own backoff; stripe-python
    /// 16.1 does not read it and backs off on its own (0.5 s, doubling).
    /// Measured against the orders example, a mismatch costs both SDKs 4
    /// attempts and 2.6 to 2.8 s without hints, 1 attempt with them. The layer's
    /// `Retry-After` is its [`retry_after`](Self::retry_after) setting, 1 s
    /// by default. [`client::RetryPolicy`](crate::client::RetryPolicy)
    /// (feature `client`) honours both the hint and `Retry-After`.
    ///
    /// ```
    /// use tower_idempotency::{IdempotencyLayer, MemoryStore};
    ///
    /// let layer = IdempotencyLayer::new(MemoryStore::new()).retry_hints(false);
    /// ```
    #[must_use]
    pub fn retry_hints(mut self, hints: bool) -> Self {
        self.config.rejections.retry_hints = hints;
        self
    }
}

impl<St, M> Clone for IdempotencyLayer<St, M> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
            store: Arc::clone(&self.store),
            bodies: PhantomData,
        }
    }
}

impl<St: fmt::Debug, M> fmt::Debug for IdempotencyLayer<St, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyLayer")
            .field("config", &self.config)
            .field("store", &self.store)
            .finish()
    }
}

impl<S, St: Store, M> Layer<S> for IdempotencyLayer<St, M> {
    type Service = Idempotency<S, St, M>;

    fn layer(&self, inner: S) -> Self::Service {
        Idempotency::new(inner, self.config.clone(), Arc::clone(&self.store))
    }
}
