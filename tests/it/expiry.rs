//! Time: the TTL of records and the lease of claims, with a paused clock, and
//! fencing of a stale owner.

use std::sync::Arc;
use std::time::Duration;

use crate::common::{post_json, send};
use http::StatusCode;
use tower_idempotency::{IdempotencyLayer, MemoryStore};

#[tokio::test(start_paused = true)]
async fn a_record_lives_for_the_ttl_then_the_key_runs_again() {
    let store = Arc::new(MemoryStore::new());
    let layer = IdempotencyLayer::from_shared_store(store.clone()).ttl(Duration::from_secs(60));
    let (app, runs) = crate::common::orders_app(layer);
    send(&app, post_json("k1", "a")).await;
    tokio::time::advance(Duration::from_secs(59)).await;
    assert!(send(&app, post_json("k1", "a")).await.is_replay());
    tokio::time::advance(Duration::from_secs(2)).await;
    let after = send(&app, post_json("k1", "a")).await;
    assert!(!after.is_replay());
    assert_eq!(after.body, "order 2: a");
    // Past the TTL the key is free for any request, not just the same one.
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(
        send(&app, post_json("k1", "other")).await.status,
        StatusCode::CREATED
    );
    assert_eq!(runs.count(), 3);
}

#[tokio::test(start_paused = true)]
async fn expired_records_are_removed_by_the_store() {
    let store = Arc::new(MemoryStore::new());
    let layer = IdempotencyLayer::from_shared_store(store.clone()).ttl(Duration::from_secs(60));
    let (app, _) = crate::common::orders_app(layer);
    for i in 0..100 {
        send(&app, post_json(&format!("old-{i}"), "a")).await;
    }
    assert_eq!(store.len(), 100);
    tokio::time::advance(Duration::from_secs(61)).await;
    // New traffic sweeps old records as it goes, without a lookup of them.
    for i in 0..100 {
        send(&app, post_json(&format!("new-{i}"), "a")).await;
    }
    let held = store.len();
    assert!(held < 200, "sweeping kept up: {held} held");
    assert_eq!(store.purge_expired(), held - 100);
    assert_eq!(store.len(), 100, "only the new records remain");
    for i in 0..100 {
        assert!(
            send(&app, post_json(&format!("new-{i}"), "a"))
                .await
                .is_replay()
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_lapsed_lease_lets_the_next_retry_claim_and_fences_the_stale_owner() {
    let layer = IdempotencyLayer::new(MemoryStore::new()).lease(Duration::from_secs(10));
    let (app, runs, gate) = crate::common::first_run_blocks(layer, StatusCode::CREATED);
    let stale = tokio::spawn({
        let app = app.clone();
        async move { send(&app, post_json("k1", "a")).await }
    });
    gate.started.notified().await;

    // Within the lease: in progress.
    tokio::time::advance(Duration::from_secs(9)).await;
    send(&app, post_json("k1", "a"))
        .await
        .assert_problem(409, "idempotency_key_in_progress");

    // Past the lease (no renewal yet): the retry claims the key and runs.
    tokio::time::advance(Duration::from_secs(2)).await;
    let new_owner = send(&app, post_json("k1", "a")).await;
    assert_eq!(new_owner.body, "owner 2");

    // The stale owner finishes late: its response reaches its own client, but
    // its record is refused, so the new owner's record stands.
    gate.finish.notify_one();
    assert_eq!(stale.await.unwrap().body, "owner 1");
    let replay = send(&app, post_json("k1", "a")).await;
    assert!(replay.is_replay());
    assert_eq!(replay.body, "owner 2");
    assert_eq!(runs.count(), 2);
}
