//! The key a call sent, kept in its extensions for logging.

use std::fmt::{self, Write as _};

use http::HeaderValue;

/// The `Idempotency-Key` one call sent, on every attempt.
///
/// [`SetIdempotencyKey`](super::SetIdempotencyKey) puts it in the request's
/// extensions (so layers inside it, a logger or a retry policy, can read it)
/// and in the response's extensions, so the caller can log which key a result
/// belongs to, or reuse it to retry the same action later.
///
/// ```
/// use http::HeaderValue;
/// use tower_idempotency::client::SentKey;
///
/// # fn log(response: &http::Response<()>) {
/// if let Some(key) = response.extensions().get::<SentKey>() {
///     println!("order created under key {key}");
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SentKey {
    value: HeaderValue,
    generated: bool,
}

impl SentKey {
    pub(crate) fn generated(value: HeaderValue) -> Self {
        Self {
            value,
            generated: true,
        }
    }

    pub(crate) fn given(value: HeaderValue) -> Self {
        Self {
            value,
            generated: false,
        }
    }

    /// Returns the header value, exactly as sent (a generated key is a quoted UUID:
    /// `"6f1c2d3e-..."`).
    pub fn header_value(&self) -> &HeaderValue {
        &self.value
    }

    /// Tells whether the layer made this key (`true`) or the request came with it.
    pub fn is_generated(&self) -> bool {
        self.generated
    }
}

/// Writes the key as sent; bytes outside visible ASCII (possible only in a
/// caller's own key) are written as `\xNN`.
impl fmt::Display for SentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &byte in self.value.as_bytes() {
            if (0x20..=0x7e).contains(&byte) {
                f.write_char(char::from(byte))?;
            } else {
                write!(f, "\\x{byte:02x}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_visible_ascii_as_is_and_escapes_the_rest() {
        let key = SentKey::generated(HeaderValue::from_static("\"abc-123\""));
        assert_eq!(key.to_string(), "\"abc-123\"");
        let key = SentKey::given(HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
        assert_eq!(key.to_string(), "caf\\xc3\\xa9");
        assert!(!key.is_generated());
    }
}
