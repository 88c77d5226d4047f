//! Fencing tokens for the networked stores, made by the client.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::FencingToken;

/// A token no other claim of a key will have: 64 bits from a randomly keyed
/// hash of a process counter and the time. Two claims of one key collide with
/// odds of 2^-64; a store keeps no counter, so a key that expired and is
/// claimed again can never be handed an old owner's token by a counter reset.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_do_not_repeat() {
        let tokens: std::collections::HashSet<_> = (0..10_000).map(|_| new_token()).collect();
        assert_eq!(tokens.len(), 10_000);
    }
}
