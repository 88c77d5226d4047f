//! [`ClaimLoan`]: a won claim, as the layer lends it to the service through
//! [`Store::lend_claim`](super::Store::lend_claim), and the [`CompletionFlag`]
//! that tells the layer the service completed the record itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{FencingToken, KeyDigest};

/// A claim the layer won for a request, shown to the store just before the
/// service is called, so that the store can put into the request's extensions
/// a handle with which the service completes the record itself (as
/// [`PostgresStore`](super::PostgresStore) does, inside the service's own
/// database transaction).
#[derive(Debug)]
pub struct ClaimLoan<'a> {
    key: &'a KeyDigest,
    token: FencingToken,
    ttl: Duration,
    record_limit: usize,
    flag: &'a mut Option<CompletionFlag>,
}

impl<'a> ClaimLoan<'a> {
    pub(crate) fn new(
        key: &'a KeyDigest,
        token: FencingToken,
        ttl: Duration,
        record_limit: usize,
        flag: &'a mut Option<CompletionFlag>,
    ) -> Self {
        Self {
            key,
            token,
            ttl,
            record_limit,
            flag,
        }
    }

    /// The digest of the claimed (scope, key).
    pub fn key(&self) -> &KeyDigest {
        self.key
    }

    /// The claim's fencing token.
    pub fn token(&self) -> FencingToken {
        self.token
    }

    /// How long the record is to be kept once complete.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The largest response body the layer records; a larger one leaves a
    /// tombstone instead.
    pub fn response_record_limit(&self) -> usize {
        self.record_limit
    }

    /// The flag the service's handle sets once it has completed the record.
    /// Asking for it tells the layer to look at it: once it is set, the layer
    /// neither renews the lease nor records the response again.
    pub fn completion_flag(&mut self) -> CompletionFlag {
        self.flag
            .get_or_insert_with(CompletionFlag::default)
            .clone()
    }
}

/// Set by the service's handle once the record was completed in the
/// service's own transaction, and read by the layer when the service answers.
///
/// Set means "a completion statement succeeded"; the transaction that ran it
/// may still have rolled back. The layer then does what is right either way:
/// it records nothing (a committed record stands), and it releases the key
/// only for an answer its policy does not record (an error, a 5xx), which is
/// a no-op if the record was committed.
#[derive(Debug, Clone, Default)]
pub struct CompletionFlag(Arc<AtomicBool>);

impl CompletionFlag {
    /// Marks the record completed.
    pub fn set(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Tells whether the record was completed.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}
