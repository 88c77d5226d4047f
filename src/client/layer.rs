//! `SetIdempotencyKeyLayer`: which calls get a key, and in which header.

use std::sync::Arc;

use http::{HeaderName, Method, Request};
use tower_layer::Layer;

use super::random::{self, KeyGenerationError};
use super::sent_key::SentKey;
use super::service::SetIdempotencyKey;
use crate::IDEMPOTENCY_KEY;
use crate::method_set::MethodSet;

/// Gives every call with a covered method its own `Idempotency-Key`, unless it
/// already has one; wraps a client in [`SetIdempotencyKey`].
///
/// A call that comes with a key keeps it, whatever its method, and that key
/// is the one reported as [`SentKey`]. A call with another method and no key
/// goes out without one, and its response carries no `SentKey`.
///
/// Place it **outside** the retry layer, so the key is set once per call and
/// every attempt repeats it (the [module docs](super) show the order and why).
///
/// | Setting | Default |
/// |---|---|
/// | [`methods`](Self::methods) | `POST`, `PATCH` |
/// | [`header_name`](Self::header_name) | `Idempotency-Key` |
///
/// ```
/// use http::{HeaderName, Method};
/// use tower_idempotency::client::SetIdempotencyKeyLayer;
///
/// let layer = SetIdempotencyKeyLayer::new()
///     .methods([Method::POST, Method::PATCH, Method::PUT])
///     .header_name(HeaderName::from_static("x-idempotency-key"));
/// ```
#[derive(Debug, Clone)]
pub struct SetIdempotencyKeyLayer {
    config: Arc<KeyConfig>,
}

/// What [`SetIdempotencyKey`] needs per call; shared, never copied per request.
#[derive(Debug, Clone)]
pub(crate) struct KeyConfig {
    methods: MethodSet,
    header: HeaderName,
}

impl SetIdempotencyKeyLayer {
    /// Keys for `POST` and `PATCH`, in `Idempotency-Key`.
    pub fn new() -> Self {
        Self {
            config: Arc::new(KeyConfig {
                methods: [Method::POST, Method::PATCH].into_iter().collect(),
                header: IDEMPOTENCY_KEY,
            }),
        }
    }

    /// Sets the methods whose calls get a key. Default: `POST`, `PATCH`.
    #[must_use]
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        Arc::make_mut(&mut self.config).methods = methods.into_iter().collect();
        self
    }

    /// Sets the header that carries the key. Default: `Idempotency-Key`. Give the
    /// [`RetryPolicy`](super::RetryPolicy) the same name.
    #[must_use]
    pub fn header_name(mut self, name: HeaderName) -> Self {
        Arc::make_mut(&mut self.config).header = name;
        self
    }
}

impl Default for SetIdempotencyKeyLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for SetIdempotencyKeyLayer {
    type Service = SetIdempotencyKey<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SetIdempotencyKey::new(inner, Arc::clone(&self.config))
    }
}

impl KeyConfig {
    /// The key this request goes out with: its own if it has one (whatever
    /// its method), a fresh one (written into the header) if its method is
    /// covered, none otherwise.
    pub(crate) fn apply<B>(
        &self,
        request: &mut Request<B>,
    ) -> Result<Option<SentKey>, KeyGenerationError> {
        if let Some(value) = request.headers().get(&self.header) {
            return Ok(Some(SentKey::given(value.clone())));
        }
        if !self.methods.contains(request.method()) {
            return Ok(None);
        }
        let value = random::fresh_key()?;
        request
            .headers_mut()
            .insert(self.header.clone(), value.clone());
        Ok(Some(SentKey::generated(value)))
    }
}
