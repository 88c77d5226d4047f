//! `MemoryStore`: what only the memory store does (the conformance suite runs
//! against it in the `stores` test binary).

use std::time::Duration;

use tower_idempotency::MemoryStore;
use tower_idempotency::store::{ClaimOutcome, Record, Store, StoreErrorKind};

use crate::common::{sample_response, unique_key};

const FP: tower_idempotency::Fingerprint = tower_idempotency::Fingerprint::from_bytes([7; 32]);
const LEASE: Duration = Duration::from_secs(30);
const TTL: Duration = Duration::from_secs(3600);

async fn complete(store: &MemoryStore, name: &str) {
    let key = unique_key(name);
    let ClaimOutcome::Claimed(token) = store.claim(&key, &FP, LEASE).await.unwrap() else {
        panic!("not claimed");
    };
    let record = Record {
        fingerprint: FP,
        response: Some(sample_response()),
    };
    store.record(&key, token, &record, TTL).await.unwrap();
}

#[tokio::test]
async fn at_capacity_a_new_key_evicts_a_completed_record() {
    let store = MemoryStore::with_capacity(8);
    for i in 0..8 {
        complete(&store, &format!("old-{i}")).await;
    }
    assert_eq!(store.len(), 8);
    for i in 0..100 {
        complete(&store, &format!("new-{i}")).await;
        assert!(store.len() <= 8, "the bound holds: {}", store.len());
    }
}

#[tokio::test]
async fn in_flight_claims_are_never_evicted() {
    let store = MemoryStore::with_capacity(4);
    let held: Vec<_> = (0..4).map(|i| unique_key(&format!("held-{i}"))).collect();
    for key in &held {
        assert!(matches!(
            store.claim(key, &FP, LEASE).await.unwrap(),
            ClaimOutcome::Claimed(_)
        ));
    }
    // Full of live claims: a new key is refused, none is evicted.
    let refused = store
        .claim(&unique_key("newcomer"), &FP, LEASE)
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), StoreErrorKind::CapacityExhausted);
    for key in &held {
        assert_eq!(
            store.claim(key, &FP, LEASE).await.unwrap(),
            ClaimOutcome::InFlight { fingerprint: FP }
        );
    }
}

#[tokio::test(start_paused = true)]
async fn at_capacity_expired_entries_make_room_first() {
    let store = MemoryStore::with_capacity(4);
    let lapsed: Vec<_> = (0..4).map(|i| unique_key(&format!("lapsed-{i}"))).collect();
    for key in &lapsed {
        store.claim(key, &FP, Duration::from_secs(1)).await.unwrap();
    }
    tokio::time::advance(Duration::from_secs(2)).await;
    for i in 0..4 {
        let key = unique_key(&format!("fresh-{i}"));
        assert!(matches!(
            store.claim(&key, &FP, LEASE).await.unwrap(),
            ClaimOutcome::Claimed(_)
        ));
    }
    assert!(store.len() <= 4);
}
