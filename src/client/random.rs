//! Randomness for the client side: fresh keys and backoff jitter, both from
//! the operating system's generator.

use http::HeaderValue;

/// The operating system's random number generator failed, so no key could be
/// made for a call. The call is not sent: sending it without a key, or with a
/// guessable one, would give up the guarantee silently.
#[derive(Debug, thiserror::Error)]
#[error("no random Idempotency-Key could be made: the system's random number generator failed")]
pub struct KeyGenerationError {
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

/// A fresh key: a random (version 4) UUID, written as an RFC 8941 sf-string
/// (`"6f1c...-..."`), the form the IETF draft uses. Servers that take the
/// quoted form (as ours does) unquote it; others keep the quotes as part of an
/// opaque key, which is just as unique and the same on every retry.
pub(crate) fn fresh_key() -> Result<HeaderValue, KeyGenerationError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|error| KeyGenerationError {
        source: Box::new(error),
    })?;
    uuid_v4(bytes).map_err(|error| KeyGenerationError {
        source: Box::new(error),
    })
}

/// Lays 128 random bits out as a version 4, variant 1 UUID (RFC 9562),
/// quoted.
fn uuid_v4(mut bytes: [u8; 16]) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut text = [0u8; 38];
    text[0] = b'"';
    text[37] = b'"';
    let mut at = 1;
    for (index, byte) in bytes.iter().enumerate() {
        if matches!(index, 4 | 6 | 8 | 10) {
            text[at] = b'-';
            at += 1;
        }
        text[at] = HEX[usize::from(byte >> 4)];
        text[at + 1] = HEX[usize::from(byte & 0x0f)];
        at += 2;
    }
    // Quotes, hyphens and hex digits only: always a valid header value.
    HeaderValue::from_bytes(&text)
}

/// A uniformly random fraction in `[0, 1)`, or one half if the system's
/// generator fails (the backoff then loses its jitter, not its bound).
pub(crate) fn unit_fraction() -> f64 {
    match getrandom::u64() {
        // The top 53 bits fill an f64 mantissa exactly.
        Ok(bits) => (bits >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lays_out_a_quoted_version_4_uuid() {
        let key = uuid_v4([0xff; 16]).unwrap();
        assert_eq!(key, "\"ffffffff-ffff-4fff-bfff-ffffffffffff\"");
        let key = uuid_v4([0x00; 16]).unwrap();
        assert_eq!(key, "\"00000000-0000-4000-8000-000000000000\"");
        let key = uuid_v4([
            0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
            0xcd, 0xef,
        ])
        .unwrap();
        assert_eq!(key, "\"01234567-89ab-4def-8123-456789abcdef\"");
    }

    #[test]
    fn fresh_keys_differ() {
        let keys: std::collections::HashSet<_> = (0..1000)
            .map(|_| fresh_key().expect("the OS generator works here"))
            .collect();
        assert_eq!(keys.len(), 1000);
    }

    #[test]
    fn fractions_stay_in_the_unit_interval() {
        for _ in 0..1000 {
            let fraction = unit_fraction();
            assert!((0.0..1.0).contains(&fraction), "{fraction}");
        }
    }
}
