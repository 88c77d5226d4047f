//! Waiting for an in-flight key (an option): retries wait for
//! the outcome and replay it, up to a bound.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::common::{FaultyStore, PollingStore, gated_app, post_json, send};
use http::{StatusCode, header};
use tokio::time::Instant;
use tower_idempotency::IdempotencyLayer;

const WAITERS: usize = 50;

#[tokio::test(start_paused = true)]
async fn fifty_waiters_all_receive_the_one_replay_by_notification() {
    let store = FaultyStore::default();
    let layer = IdempotencyLayer::new(store.clone()).wait_in_flight(Duration::from_secs(60));
    let (app, runs, gate) = gated_app(layer);
    let owner = tokio::spawn({
        let app = app.clone();
        async move { send(&app, post_json("k1", "a")).await }
    });
    gate.started.notified().await;
    let waiters: Vec<_> = (0..WAITERS)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { send(&app, post_json("k1", "a")).await })
        })
        .collect();
    // Every waiter is parked in the store's wait before the owner finishes.
    while store.waits.load(Ordering::SeqCst) < WAITERS {
        store.waited.notified().await;
    }
    let released_at = Instant::now();
    gate.finish.notify_one();
    let original = owner.await.unwrap();
    assert_eq!(original.status, StatusCode::CREATED);
    for waiter in waiters {
        let answer = waiter.await.unwrap();
        assert!(answer.is_replay(), "{answer:?}");
        assert_eq!(answer.body, original.body);
    }
    assert_eq!(runs.count(), 1);
    // Woken by the record itself: no timer had to fire (the clock is paused
    // and only moves when a timer is due).
    assert_eq!(released_at.elapsed(), Duration::ZERO);
    assert_eq!(
        store.waits.load(Ordering::SeqCst),
        WAITERS,
        "one wait each, no polling"
    );
}

#[tokio::test(start_paused = true)]
async fn past_the_bound_a_waiter_gets_409_with_retry_after() {
    let bound = Duration::from_secs(5);
    let layer = IdempotencyLayer::new(tower_idempotency::MemoryStore::new()).wait_in_flight(bound);
    let (app, runs, gate) = gated_app(layer);
    let owner = tokio::spawn({
        let app = app.clone();
        async move { send(&app, post_json("k1", "a")).await }
    });
    gate.started.notified().await;
    let started = Instant::now();
    let answer = send(&app, post_json("k1", "a")).await;
    answer.assert_problem(409, "idempotency_key_in_progress");
    assert!(answer.headers.contains_key(header::RETRY_AFTER));
    assert_eq!(started.elapsed(), bound);
    // A different request under the key does not wait: mismatch at once.
    let started = Instant::now();
    send(&app, post_json("k1", "b"))
        .await
        .assert_problem(409, "idempotency_key_payload_mismatch");
    assert_eq!(started.elapsed(), Duration::ZERO);
    gate.finish.notify_one();
    owner.await.unwrap();
    assert_eq!(runs.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn when_the_owner_fails_one_waiter_runs_and_the_others_replay_it() {
    let store = FaultyStore::default();
    let layer = IdempotencyLayer::new(store.clone()).wait_in_flight(Duration::from_secs(60));
    let (app, runs, gate) = crate::common::first_run_blocks(layer, StatusCode::SERVICE_UNAVAILABLE);
    let owner = tokio::spawn({
        let app = app.clone();
        async move { send(&app, post_json("k1", "a")).await }
    });
    gate.started.notified().await;
    let waiters: Vec<_> = (0..10)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { send(&app, post_json("k1", "a")).await })
        })
        .collect();
    while store.waits.load(Ordering::SeqCst) < 10 {
        store.waited.notified().await;
    }
    gate.finish.notify_one();
    assert_eq!(owner.await.unwrap().status, StatusCode::SERVICE_UNAVAILABLE);
    let mut fresh = 0;
    for waiter in waiters {
        let answer = waiter.await.unwrap();
        assert_eq!(answer.status, StatusCode::CREATED);
        assert_eq!(answer.body, "owner 2");
        fresh += usize::from(!answer.is_replay());
    }
    assert_eq!(fresh, 1, "one waiter ran, the rest replayed it");
    assert_eq!(runs.count(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_store_without_notification_is_polled_with_backoff() {
    let store = PollingStore::default();
    let layer = IdempotencyLayer::new(store).wait_in_flight(Duration::from_secs(60));
    let (app, runs, gate) = gated_app(layer);
    let owner = tokio::spawn({
        let app = app.clone();
        async move { send(&app, post_json("k1", "a")).await }
    });
    gate.started.notified().await;
    let waiter = tokio::spawn({
        let app = app.clone();
        async move { send(&app, post_json("k1", "a")).await }
    });
    // Let the waiter poll for a while (the paused clock advances by itself).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!waiter.is_finished());
    gate.finish.notify_one();
    owner.await.unwrap();
    let started = Instant::now();
    let answer = waiter.await.unwrap();
    assert!(answer.is_replay());
    // Found at its next poll, at most one backoff step (1 s) later.
    assert!(started.elapsed() <= Duration::from_secs(1));
    assert_eq!(runs.count(), 1);
}
