//! `KeyConfig`: which calls get a key, and in which header, as every call
//! of a [`SetIdempotencyKey`](super::SetIdempotencyKey) reads it.

use http::{HeaderName, Request};

use super::random::{self, KeyGenerationError};
use super::sent_key::SentKey;
use crate::method_set::MethodSet;

/// What [`SetIdempotencyKey`](super::SetIdempotencyKey) needs per call; shared, never copied per request.
#[derive(Debug, Clone)]
pub(crate) struct KeyConfig {
    pub(super) methods: MethodSet,
    pub(super) header: HeaderName,
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
