//! [`FencingToken`]: proof that a caller still owns its claim.

#[cfg(any(feature = "redis", feature = "postgres"))]
use std::hash::{BuildHasher, Hasher, RandomState};
#[cfg(any(feature = "redis", feature = "postgres"))]
use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(any(feature = "redis", feature = "postgres"))]
use std::time::{SystemTime, UNIX_EPOCH};

/// Proof of ownership of a claim. A store hands out a new token on every
/// successful claim, never the same one twice for a key, and accepts
/// `record`, `release` and `renew` only with the current owner's token.
///
/// ```
/// use tower_idempotency::store::FencingToken;
///
/// let token = FencingToken::new(42);
/// assert_eq!(token.get(), 42);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FencingToken(u64);

impl FencingToken {
    /// Makes a token from the number a store keeps.
    pub const fn new(value: u64) -> Self {
        Self(value)
    }

    /// Returns the number a store keeps.
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// A token no other claim of a key will have, for the networked stores: 64
/// bits from a randomly keyed hash of a process counter and the time. Two
/// claims of one key collide with odds of 2^-64; a store keeps no counter, so
/// a key that expired and is claimed again can never be handed an old
/// owner's token by a counter reset.
#[cfg(any(feature = "redis", feature = "postgres"))]
pub(crate) fn new_token() -> FencingToken {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    hasher.write_u128(nanos);
    FencingToken::new(hasher.finish())
}

#[cfg(all(test, any(feature = "redis", feature = "postgres")))]
mod tests {
    use super::*;

    #[test]
    fn tokens_do_not_repeat() {
        let tokens: std::collections::HashSet<_> = (0..10_000).map(|_| new_token()).collect();
        assert_eq!(tokens.len(), 10_000);
    }
}
