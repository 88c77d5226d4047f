//! [`KeyState`]: what a store holds for one key, as an operator asks it
//! through [`Store::inspect`](super::Store::inspect).

use std::time::Duration;

use http::StatusCode;

/// What a store holds for one key (a digest of scope and key), as its
/// operator sees it. Times are left from now, by the store's own clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyState {
    /// Nothing: never used, expired, released or forgotten. The next request
    /// with the key runs.
    Absent,
    /// A request holds the key; its lease ends in `lease_left` unless renewed.
    InFlight {
        /// Time left on the lease.
        lease_left: Duration,
    },
    /// Completed: retries replay a response of `status` for `expires_in`
    /// more.
    Completed {
        /// The recorded status.
        status: StatusCode,
        /// Time left before the record expires.
        expires_in: Duration,
    },
    /// Completed with a response too large to record: retries get 409
    /// `idempotency_response_not_replayable` for `expires_in` more.
    Tombstone {
        /// Time left before the tombstone expires.
        expires_in: Duration,
    },
}
