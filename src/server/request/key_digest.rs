//! The name a store keeps for a key: the digest of (scope, key).

use sha2::{Digest, Sha256};

use super::fingerprint::Framer;
use super::key::IdempotencyKey;
use super::scope::Scope;
use crate::store::KeyDigest;

/// Domain separation from every other digest the crate computes.
const KEY_DIGEST_TAG: &[u8] = b"tower-idempotency/key/v1";

impl KeyDigest {
    /// Derives the digest of `key` in `scope`: SHA-256 over both, framed so that no
    /// two (scope, key) pairs digest alike, and apart from every other digest
    /// the crate computes.
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
        Self::from_bytes(hasher.0.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(scope: Scope, key: &str) -> KeyDigest {
        KeyDigest::new(&scope, &IdempotencyKey::parse(key.as_bytes()).unwrap())
    }

    #[test]
    fn scope_and_key_each_matter_and_cannot_be_shifted() {
        assert_eq!(digest(Scope::global(), "k"), digest(Scope::global(), "k"));
        assert_ne!(digest(Scope::global(), "k"), digest(Scope::new("a"), "k"));
        assert_ne!(digest(Scope::new("ab"), "c"), digest(Scope::new("a"), "bc"));
        // The global scope is not a scope named "".
        assert_ne!(digest(Scope::global(), "k"), digest(Scope::new(""), "k"));
    }
}
