//! Key floods: a client sending a great many distinct keys cannot grow the
//! memory store past its capacity, and claims in flight are never evicted.

use std::sync::Arc;

use crate::common::{gated_app, orders_app, post_json, send};
use http::StatusCode;
use tower_idempotency::{IdempotencyLayer, MemoryStore};

fn peak_resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn a_flood_of_distinct_keys_stays_within_capacity_and_keeps_claims_in_flight() {
    const CAPACITY: usize = 5_000;
    const FLOOD: usize = 100_000;
    let store = Arc::new(MemoryStore::with_capacity(CAPACITY));
    // One app holds two claims in flight; another, on the same store, takes
    // the flood.
    let (held_app, _, gate) = gated_app(IdempotencyLayer::from_shared_store(store.clone()));
    let (flood_app, runs) = orders_app(IdempotencyLayer::from_shared_store(store.clone()));
    let held: Vec<_> = ["held-1", "held-2"]
        .into_iter()
        .map(|key| {
            let app = held_app.clone();
            tokio::spawn(async move { send(&app, post_json(key, "a")).await })
        })
        .collect();
    for _ in 0..2 {
        gate.started.notified().await;
    }
    let mut refused = 0;
    for i in 0..FLOOD {
        let answer = send(&flood_app, post_json(&format!("flood-{i}"), "x")).await;
        match answer.status {
            StatusCode::CREATED => {}
            _ => {
                answer.assert_problem(503, "idempotency_store_unavailable");
                refused += 1;
            }
        }
        assert!(
            store.len() <= CAPACITY + 2,
            "the bound holds: {}",
            store.len()
        );
    }
    assert_eq!(refused, 0, "completed records made room for every new key");
    assert!(
        store.len() <= CAPACITY + 2,
        "the bound holds: {} keys held",
        store.len()
    );
    // The claims in flight survived the flood.
    for key in ["held-1", "held-2"] {
        send(&held_app, post_json(key, "a"))
            .await
            .assert_problem(409, "idempotency_key_in_progress");
    }
    for _ in 0..2 {
        gate.finish.notify_one();
    }
    for task in held {
        assert_eq!(task.await.unwrap().status, StatusCode::CREATED);
    }
    assert_eq!(runs.count(), FLOOD);
    eprintln!(
        "flood: {FLOOD} distinct keys, capacity {CAPACITY}, {} held at the end, peak resident {} MiB",
        store.len(),
        peak_resident_kib() / 1024
    );
}
