//! The two 32-byte names a store keeps: [`KeyDigest`] (which key) and
//! [`Fingerprint`] (which request). A store treats both as opaque bytes; the
//! server side derives them.

use std::fmt::{self, Write};

/// The name a store keeps for a key: SHA-256 of the tenant's scope and the
/// key, so the raw key and tenant never reach the store.
///
/// A store only compares, hashes and spells it; the server side derives it
/// (see `KeyDigest::new` with the `server` feature).
///
/// ```
/// use tower_idempotency::store::KeyDigest;
///
/// let digest = KeyDigest::from_bytes([0xab; 32]);
/// assert_eq!(format!("{digest:x}"), "ab".repeat(32));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyDigest([u8; 32]);

impl KeyDigest {
    /// Makes a digest from its 32 bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Returns the 32 bytes of the digest.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Spells the digest as 64 lowercase hex digits, for stores keyed by text:
/// `write!(key, "{prefix}{digest:x}")` builds a key in one buffer.
impl fmt::LowerHex for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyDigest(")?;
        write_hex(f, &self.0[..8])?;
        write!(f, "..)")
    }
}

/// What makes two requests under one key "the same": SHA-256 of the method,
/// the path with query, any chosen headers and the body. A retry must carry
/// the fingerprint its key was recorded with to be replayed.
///
/// Comparison takes the same time whatever the bytes, so it leaks nothing
/// through timing.
///
/// ```
/// use tower_idempotency::Fingerprint;
///
/// let stored = Fingerprint::from_bytes([7; 32]);
/// assert_eq!(stored, Fingerprint::from_bytes(*stored.as_bytes()));
/// assert_eq!(format!("{stored:x}"), "07".repeat(32));
/// ```
#[derive(Clone, Copy, Eq)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// Makes a fingerprint from its 32 bytes, as a store reads them back.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Returns the 32 bytes of the digest.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl PartialEq for Fingerprint {
    fn eq(&self, other: &Self) -> bool {
        constant_time_eq(&self.0, &other.0)
    }
}

/// Spells the fingerprint as 64 lowercase hex digits.
impl fmt::LowerHex for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint(")?;
        write_hex(f, &self.0[..8])?;
        write!(f, "..)")
    }
}

/// Compares two digests without an early exit.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Writes `bytes` as lowercase hex, two digits a byte, with no allocation.
fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        f.write_char(char::from(DIGITS[usize::from(byte >> 4)]))?;
        f.write_char(char::from(DIGITS[usize::from(byte & 0x0f)]))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_spells_every_byte_in_order() {
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = (i * 8 + 1) as u8;
        }
        let expected: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(format!("{:x}", KeyDigest::from_bytes(bytes)), expected);
        assert_eq!(format!("{:x}", Fingerprint::from_bytes(bytes)), expected);
        assert_eq!(
            format!("{:?}", KeyDigest::from_bytes(bytes)),
            format!("KeyDigest({}..)", &expected[..16])
        );
    }

    #[test]
    fn fingerprints_compare_by_every_byte() {
        let a = Fingerprint::from_bytes([1; 32]);
        let mut last = [1; 32];
        last[31] = 2;
        assert_eq!(a, Fingerprint::from_bytes([1; 32]));
        assert_ne!(a, Fingerprint::from_bytes(last));
    }
}
