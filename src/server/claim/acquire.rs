//! Asking the store for a key: one claim, or, when the layer waits for
//! requests in flight, claims repeated until the key settles or the wait
//! bound passes. The waiting schedule is the layer's: a store that can tell
//! when a key settles wakes the waiter; any other is polled with backoff.

use std::time::Duration;

use tokio::time::Instant;

use crate::server::config::Shared;
use crate::store::timeout::within;
use crate::store::{ClaimOutcome, Fingerprint, KeyDigest, Store, StoreError, WaitSettled};

/// The first pause between two claims of a key in flight, for a store that
/// cannot tell when a key settles; doubled after each claim, up to
/// [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(10);
/// The longest pause between two claims of a key in flight.
const MAX_POLL: Duration = Duration::from_secs(1);

/// Claims `key`; if it is in flight for the same request and the layer is
/// set to wait, waits for it to settle and claims again, until the wait
/// bound. Returns the last outcome and when that claim was sent.
pub(crate) async fn acquire<St: Store>(
    shared: &Shared<St>,
    key: &KeyDigest,
    fingerprint: &Fingerprint,
) -> (Result<ClaimOutcome, StoreError>, Instant) {
    let claimed_at = Instant::now();
    let outcome = claim_once(shared, key, fingerprint).await;
    match shared.config.wait_in_flight {
        Some(bound) if in_flight_for(&outcome, fingerprint) => {
            // Boxed: the waiting loop takes no room in every request's future.
            Box::pin(wait_and_claim(shared, key, fingerprint, claimed_at + bound)).await
        }
        _ => (outcome, claimed_at),
    }
}

/// One claim, bounded by the store timeout.
async fn claim_once<St: Store>(
    shared: &Shared<St>,
    key: &KeyDigest,
    fingerprint: &Fingerprint,
) -> Result<ClaimOutcome, StoreError> {
    let lease = shared.config.lease;
    shared
        .bounded(shared.store.claim(key, fingerprint, lease))
        .await
}

/// Whether the store says another request with this fingerprint holds the key.
fn in_flight_for(outcome: &Result<ClaimOutcome, StoreError>, fingerprint: &Fingerprint) -> bool {
    matches!(outcome, Ok(ClaimOutcome::InFlight { fingerprint: theirs }) if theirs == fingerprint)
}

/// Waits for the in-flight claim of `key` to settle and claims again, until
/// `deadline`.
async fn wait_and_claim<St: Store>(
    shared: &Shared<St>,
    key: &KeyDigest,
    fingerprint: &Fingerprint,
    deadline: Instant,
) -> (Result<ClaimOutcome, StoreError>, Instant) {
    let mut poll = FIRST_POLL;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let waited = within(
            remaining + shared.config.store_timeout,
            shared.store.wait_settled(key, remaining),
        )
        .await;
        match waited {
            Ok(WaitSettled::Notified) => {}
            Ok(WaitSettled::Unsupported) => {
                tokio::time::sleep(poll.min(remaining)).await;
                poll = (poll * 2).min(MAX_POLL);
            }
            Err(error) => return (Err(error), Instant::now()),
        }
        let claimed_at = Instant::now();
        let outcome = claim_once(shared, key, fingerprint).await;
        if !in_flight_for(&outcome, fingerprint) || Instant::now() >= deadline {
            return (outcome, claimed_at);
        }
    }
}
