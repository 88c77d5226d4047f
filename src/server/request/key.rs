//! The `Idempotency-Key` value: parsing and validation.

use std::fmt;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::header_values::header_values;

/// The longest key accepted, in characters (after unquoting).
pub(crate) const MAX_KEY_LEN: usize = 256;

/// A validated idempotency key, as the client sent it (unquoted if it came as an
/// RFC 8941 sf-string).
///
/// The layer puts the key of every request it protects into the request
/// extensions, so a handler can derive keys for its own downstream calls. A
/// request without a key passes through the layer untouched (unless the layer
/// has [`require_key`](crate::IdempotencyLayer::require_key) on), so it has no
/// key in its extensions: take the extension as an `Option`, or axum answers
/// such a request with 500 ("Missing request extension").
///
/// ```
/// use axum::Extension;
/// use axum::http::StatusCode;
/// use tower_idempotency::IdempotencyKey;
///
/// async fn create_payment(key: Option<Extension<IdempotencyKey>>) -> (StatusCode, String) {
///     match key {
///         // The bank call gets a key of its own, stable across our client's retries.
///         Some(Extension(key)) => (StatusCode::CREATED, format!("{key}-charge")),
///         None => (StatusCode::BAD_REQUEST, "send an Idempotency-Key".to_owned()),
///     }
/// }
/// # let _ = axum::Router::<()>::new().route("/payments", axum::routing::post(create_payment));
/// ```
///
/// With `require_key(true)` every request that reaches the handler on a
/// covered method has a key, and `Extension<IdempotencyKey>` may be taken
/// as it is.
///
/// Rules: 1 to 256 characters of printable ASCII (0x20 to 0x7E). A value
/// written as an sf-string (`"abc"`, with `\"` and `\\` escapes) is unquoted
/// first, so `"abc"` and `abc` are the same key. Spaces around the whole field
/// value are not part of the key (RFC 8941 parsing discards them).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(Box<str>);

/// Why a header value is not a valid idempotency key.
///
/// ```
/// use tower_idempotency::{IdempotencyKey, InvalidKey};
///
/// assert_eq!(IdempotencyKey::parse(b"\"open"), Err(InvalidKey::MalformedQuotedString));
/// assert_eq!(IdempotencyKey::parse(&[b'k'; 257]), Err(InvalidKey::TooLong));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidKey {
    /// The key is empty.
    #[error("the idempotency key is empty")]
    Empty,
    /// The key is longer than 256 characters.
    #[error("the idempotency key is longer than {MAX_KEY_LEN} characters")]
    TooLong,
    /// The key holds a byte outside printable ASCII (0x20 to 0x7E).
    #[error("the idempotency key holds a character outside printable ASCII")]
    InvalidCharacter,
    /// The value starts with a double quote but is not a well-formed sf-string.
    #[error("the idempotency key is not a well-formed quoted string")]
    MalformedQuotedString,
    /// The request carries the header more than once.
    #[error("the request carries more than one idempotency key header")]
    MultipleHeaders,
}

impl IdempotencyKey {
    /// Parses a key from the raw bytes of a header value.
    ///
    /// ```
    /// use tower_idempotency::IdempotencyKey;
    ///
    /// let bare = IdempotencyKey::parse(b"order-42").unwrap();
    /// let quoted = IdempotencyKey::parse(br#""order-42""#).unwrap();
    /// assert_eq!(bare, quoted);
    /// assert!(IdempotencyKey::parse(b"").is_err());
    /// ```
    pub fn parse(value: &[u8]) -> Result<Self, InvalidKey> {
        let value = trim_spaces(value);
        let key = match value.first() {
            Some(b'"') => unquote(value)?,
            _ => {
                check_printable(value)?;
                std::str::from_utf8(value)
                    .map_err(|_| InvalidKey::InvalidCharacter)?
                    .to_owned()
            }
        };
        if key.is_empty() {
            return Err(InvalidKey::Empty);
        }
        if key.len() > MAX_KEY_LEN {
            return Err(InvalidKey::TooLong);
        }
        Ok(Self(key.into_boxed_str()))
    }

    /// Returns the key, unquoted.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The key a request carries under `name`: `None` without the header, an
/// error if it is invalid or repeated.
pub(crate) fn key_from_headers(
    headers: &HeaderMap,
    name: &HeaderName,
) -> Result<Option<IdempotencyKey>, InvalidKey> {
    let mut values = header_values(headers, name);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(InvalidKey::MultipleHeaders);
    }
    IdempotencyKey::try_from(value).map(Some)
}

impl TryFrom<&HeaderValue> for IdempotencyKey {
    type Error = InvalidKey;

    fn try_from(value: &HeaderValue) -> Result<Self, Self::Error> {
        Self::parse(value.as_bytes())
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("IdempotencyKey").field(&self.0).finish()
    }
}

impl AsRef<str> for IdempotencyKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Drops the spaces RFC 8941 discards around a field value.
fn trim_spaces(value: &[u8]) -> &[u8] {
    let start = value.iter().position(|&b| b != b' ').unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|&b| b != b' ')
        .map_or(start, |i| i + 1);
    &value[start..end]
}

fn check_printable(bytes: &[u8]) -> Result<(), InvalidKey> {
    if bytes.iter().all(|b| (0x20..=0x7E).contains(b)) {
        Ok(())
    } else {
        Err(InvalidKey::InvalidCharacter)
    }
}

/// Unquotes an RFC 8941 sf-string (section 4.2.5): `"` ... `"`, where `\` may
/// only escape `"` or `\`, and nothing follows the closing quote.
fn unquote(value: &[u8]) -> Result<String, InvalidKey> {
    let mut out = String::with_capacity(value.len());
    let mut bytes = value.iter().skip(1);
    while let Some(&b) = bytes.next() {
        match b {
            b'\\' => match bytes.next() {
                Some(&escaped @ (b'"' | b'\\')) => out.push(char::from(escaped)),
                _ => return Err(InvalidKey::MalformedQuotedString),
            },
            b'"' => {
                return if bytes.next().is_none() {
                    Ok(out)
                } else {
                    Err(InvalidKey::MalformedQuotedString)
                };
            }
            0x20..=0x7E => out.push(char::from(b)),
            _ => return Err(InvalidKey::InvalidCharacter),
        }
    }
    // No closing quote.
    Err(InvalidKey::MalformedQuotedString)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_and_quoted_forms_are_the_same_key() {
        let bare = IdempotencyKey::parse(b"abc").unwrap();
        let quoted = IdempotencyKey::parse(b"\"abc\"").unwrap();
        assert_eq!(bare, quoted);
        assert_eq!(quoted.as_str(), "abc");
    }

    #[test]
    fn escapes_are_unquoted() {
        let key = IdempotencyKey::parse(br#""a\"b\\c""#).unwrap();
        assert_eq!(key.as_str(), r#"a"b\c"#);
    }

    #[test]
    fn length_bounds() {
        assert_eq!(IdempotencyKey::parse(b""), Err(InvalidKey::Empty));
        assert_eq!(IdempotencyKey::parse(b"\"\""), Err(InvalidKey::Empty));
        assert_eq!(IdempotencyKey::parse(b"   "), Err(InvalidKey::Empty));
        let max = "k".repeat(MAX_KEY_LEN);
        assert_eq!(IdempotencyKey::parse(max.as_bytes()).unwrap().as_str(), max);
        let over = "k".repeat(MAX_KEY_LEN + 1);
        assert_eq!(
            IdempotencyKey::parse(over.as_bytes()),
            Err(InvalidKey::TooLong)
        );
        // The limit applies to the unquoted key, not to the quotes around it.
        let quoted_max = format!("\"{max}\"");
        assert!(IdempotencyKey::parse(quoted_max.as_bytes()).is_ok());
    }

    #[test]
    fn characters_outside_printable_ascii_are_rejected() {
        for bad in [
            &b"a\tb"[..],
            b"a\x7fb",
            b"caf\xc3\xa9",
            b"a\x00",
            b"\"a\x01\"",
        ] {
            assert_eq!(
                IdempotencyKey::parse(bad),
                Err(InvalidKey::InvalidCharacter),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn malformed_quoted_forms_are_rejected() {
        for bad in [
            &b"\"abc"[..],
            b"\"abc\"x",
            b"\"a\\x\"",
            b"\"abc\\\"",
            b"\"",
            b"\"a\"\"",
        ] {
            assert_eq!(
                IdempotencyKey::parse(bad),
                Err(InvalidKey::MalformedQuotedString),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn one_header_only() {
        let name = HeaderName::from_static("idempotency-key");
        let mut headers = HeaderMap::new();
        assert_eq!(key_from_headers(&headers, &name), Ok(None));
        headers.append(&name, HeaderValue::from_static("a"));
        assert_eq!(
            key_from_headers(&headers, &name).unwrap().unwrap().as_str(),
            "a"
        );
        headers.append(&name, HeaderValue::from_static("a"));
        assert_eq!(
            key_from_headers(&headers, &name),
            Err(InvalidKey::MultipleHeaders)
        );
    }

    #[test]
    fn surrounding_spaces_are_not_part_of_the_key() {
        assert_eq!(IdempotencyKey::parse(b"  abc ").unwrap().as_str(), "abc");
        assert_eq!(IdempotencyKey::parse(b" \" a \" ").unwrap().as_str(), " a ");
        assert_eq!(IdempotencyKey::parse(b"a b").unwrap().as_str(), "a b");
    }
}
