//! `SetIdempotencyKeyLayer`: which calls get a key, and in which header.

use std::sync::Arc;

use http::{HeaderName, Method};
use tower_layer::Layer;

use super::key_config::KeyConfig;
use super::service::SetIdempotencyKey;
use crate::IDEMPOTENCY_KEY;

/// Gives every call with a covered method its own `Idempotency-Key`, unless it
/// already has one; wraps a client in [`SetIdempotencyKey`].
///
/// A call that comes with a key keeps it, whatever its method, and that key
/// is the one reported as [`SentKey`](super::SentKey). A call with another method and no key
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
