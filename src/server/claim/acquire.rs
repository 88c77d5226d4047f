//! Asking the store for a key: one claim, or, when the layer waits for
//! requests in flight, claims repeated until the key settles or the wait
//! bound passes. The waiting schedule is the layer's: a store that can tell
//! when a key settles wakes the waiter; any other is polled with backoff.
//! With joining on, a waiter also watches for the key's response to start
//! streaming in this process, and joins it.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;

use crate::server::config::Shared;
use crate::server::join::{
    HeadState, LiveHead, RelayedHead, RelayedResponse, Watcher, relayed_head,
};
use crate::store::timeout::within;
use crate::store::{ClaimOutcome, Fingerprint, KeyDigest, Store, StoreError, WaitSettled};

/// The first pause between two claims of a key in flight, for a store that
/// cannot tell when a key settles; doubled after each claim, up to
/// [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(10);
/// The longest pause between two claims of a key in flight.
const MAX_POLL: Duration = Duration::from_secs(1);

/// What asking the store for a key came to.
#[derive(Debug)]
pub(crate) enum Acquired {
    /// The store's last answer, and when that claim was sent.
    Answered(Result<ClaimOutcome, StoreError>, Instant),
    /// The key's response is streaming in this process: this request joins
    /// it, with this head.
    Joined(Arc<LiveHead>, Watcher),
    /// The key's response is streaming on another replica: this request
    /// joins it through the store's relay.
    Relayed(Box<RelayedResponse>),
    /// The key's response outgrew the recording limit as it streamed: it
    /// cannot be joined, and will not be replayed.
    TooLargeToJoin,
}

/// Claims `key`; if it is in flight for the same request and the layer is
/// set to wait, waits for it to settle (or, joining, for its response to
/// start) and claims again, until the wait bound.
pub(crate) async fn acquire<St: Store>(
    shared: &Shared<St>,
    key: &KeyDigest,
    fingerprint: &Fingerprint,
) -> Acquired {
    let claimed_at = Instant::now();
    let outcome = claim_once(shared, key, fingerprint).await;
    match shared.config.wait_in_flight {
        Some(bound) if in_flight_for(&outcome, fingerprint) => {
            // Boxed: the waiting loop takes no room in every request's future.
            Box::pin(wait_and_claim(shared, key, fingerprint, claimed_at + bound)).await
        }
        _ => Acquired::Answered(outcome, claimed_at),
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
/// `deadline`. Joining, it watches for the key's response to start here
/// meanwhile, and joins it as soon as its head is known.
async fn wait_and_claim<St: Store>(
    shared: &Shared<St>,
    key: &KeyDigest,
    fingerprint: &Fingerprint,
    deadline: Instant,
) -> Acquired {
    let mut poll = FIRST_POLL;
    let mut watcher: Option<Watcher> = None;
    // Joining across replicas: the response may be streaming elsewhere.
    let relay = shared
        .config
        .joins
        .as_ref()
        .and_then(|_| shared.store.join_relay());
    let mut remote = relay.map(|relay| {
        relay.get().start();
        Box::pin(relayed_head(relay, *key, *fingerprint))
    });
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if watcher.is_none() {
            watcher = shared
                .config
                .joins
                .as_ref()
                .map(|board| board.watch(key, fingerprint));
        }
        let settle = settle(shared, key, remaining, &mut poll);
        let settled = match first_of(watcher.as_ref(), remote.as_mut(), settle).await {
            Event::Here(HeadState::Joinable(head)) => {
                if let Some(watching) = watcher.take() {
                    return Acquired::Joined(head, watching);
                }
                continue;
            }
            Event::Here(HeadState::TooLarge) | Event::Elsewhere(RelayedHead::TooLarge) => {
                return Acquired::TooLargeToJoin;
            }
            Event::Here(HeadState::Gone) => {
                // The response broke off (its claim is released or soon
                // will be): watch afresh, and ask the store.
                watcher = None;
                Ok(())
            }
            Event::Elsewhere(RelayedHead::Joinable(response)) => {
                return Acquired::Relayed(response);
            }
            Event::Settled(settled) => settled,
        };
        if let Err(error) = settled {
            return Acquired::Answered(Err(error), Instant::now());
        }
        let claimed_at = Instant::now();
        let outcome = claim_once(shared, key, fingerprint).await;
        if !in_flight_for(&outcome, fingerprint) || Instant::now() >= deadline {
            return Acquired::Answered(outcome, claimed_at);
        }
    }
}

/// What came first while a joiner waited.
enum Event<T> {
    /// The response's head, or its end, in this process.
    Here(HeadState),
    /// The response's head in the store's relay.
    Elsewhere(RelayedHead),
    /// The store's wait (or the poll's pause) ended.
    Settled(T),
}

/// Waits for the first of: the head of the response `watcher` waits on, its
/// head in the relay, and `settle`.
async fn first_of<R, S>(
    watcher: Option<&Watcher>,
    remote: Option<&mut Pin<Box<R>>>,
    settle: S,
) -> Event<S::Output>
where
    R: Future<Output = RelayedHead>,
    S: Future,
{
    let mut here = pin!(async {
        match watcher {
            Some(watcher) => watcher.head().await,
            None => std::future::pending().await,
        }
    });
    let mut remote = remote;
    let mut settle = pin!(settle);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(state) = here.as_mut().poll(cx) {
            return Poll::Ready(Event::Here(state));
        }
        if let Some(remote) = remote.as_mut()
            && let Poll::Ready(head) = remote.as_mut().poll(cx)
        {
            return Poll::Ready(Event::Elsewhere(head));
        }
        settle.as_mut().poll(cx).map(Event::Settled)
    })
    .await
}

/// Waits, at most `remaining`, for the store to say `key` settled; for a
/// store that cannot say, sleeps `poll` and doubles it.
async fn settle<St: Store>(
    shared: &Shared<St>,
    key: &KeyDigest,
    remaining: Duration,
    poll: &mut Duration,
) -> Result<(), StoreError> {
    let waited = within(
        remaining + shared.config.store_timeout,
        shared.store.wait_settled(key, remaining),
    )
    .await?;
    if waited == WaitSettled::Unsupported {
        tokio::time::sleep((*poll).min(remaining)).await;
        *poll = (*poll * 2).min(MAX_POLL);
    }
    Ok(())
}
