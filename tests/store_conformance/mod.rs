//! The store conformance suite: what every [`Store`] must do, written once and
//! run against each store by [`store_conformance!`].
//!
//! Time is waited for with `tokio::time::sleep`: a store on Tokio's clock runs
//! these tests with a paused clock (instant and exact); a networked store runs
//! them in real time, with margins well clear of scheduling noise.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use tokio::sync::Barrier;
use tokio::time::sleep;
use tower_idempotency::store::{
    ClaimOutcome, FencingToken, KeyDigest, Record, RecordedResponse, Store, StoreErrorKind,
};
use tower_idempotency::{Fingerprint, IdempotencyKey, Scope};

/// Generates one `#[tokio::test]` per conformance check for a store.
///
/// `$make` is an async fn returning `Option<store>`: `None` skips (a server that
/// is not there, when that is allowed). `clock = paused` for stores on Tokio's
/// clock, `clock = real` for stores with a clock of their own.
#[macro_export]
macro_rules! store_conformance {
    (make = $make:path, clock = paused) => {
        $crate::store_conformance!(@tests $make, #[tokio::test(start_paused = true)]);
    };
    (make = $make:path, clock = real) => {
        $crate::store_conformance!(@tests $make, #[tokio::test]);
    };
    (@tests $make:path, #[$timed:meta]) => {
        $crate::store_conformance!(@test $make, #[tokio::test(flavor = "multi_thread", worker_threads = 4)], claim_race_has_one_winner);
        $crate::store_conformance!(@test $make, #[tokio::test], a_fresh_key_is_claimed);
        $crate::store_conformance!(@test $make, #[tokio::test], an_in_flight_key_reports_its_fingerprint);
        $crate::store_conformance!(@test $make, #[tokio::test], a_record_is_returned_byte_for_byte);
        $crate::store_conformance!(@test $make, #[tokio::test], a_tombstone_round_trips);
        $crate::store_conformance!(@test $make, #[tokio::test], release_frees_the_key_for_a_new_token);
        $crate::store_conformance!(@test $make, #[tokio::test], a_settled_token_can_do_nothing_more);
        $crate::store_conformance!(@test $make, #[tokio::test], keys_are_independent);
        $crate::store_conformance!(@test $make, #[$timed], a_lapsed_lease_frees_the_key);
        $crate::store_conformance!(@test $make, #[$timed], a_record_expires_after_its_ttl);
        $crate::store_conformance!(@test $make, #[$timed], a_stale_owner_is_fenced_off);
        $crate::store_conformance!(@test $make, #[$timed], renewal_extends_the_lease);
    };
    (@test $make:path, #[$attr:meta], $name:ident) => {
        #[$attr]
        async fn $name() {
            let Some(store) = $make().await else { return };
            $crate::store_conformance::$name(std::sync::Arc::new(store)).await;
        }
    };
}

/// A key no other test (or test run) uses.
pub fn unique_key(name: &str) -> KeyDigest {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let scope = Scope::new(format!("{name}-{}-{nanos}", std::process::id()));
    KeyDigest::new(&scope, &IdempotencyKey::parse(b"conformance").unwrap())
}

const FP_A: Fingerprint = Fingerprint::from_bytes([0xA1; 32]);
const FP_B: Fingerprint = Fingerprint::from_bytes([0xB2; 32]);
const LEASE: Duration = Duration::from_secs(30);
/// Short enough that a networked store forgets the suite's keys soon.
const TTL: Duration = Duration::from_secs(120);
/// Short times for the timed checks, and a wait safely past them.
const SHORT: Duration = Duration::from_millis(400);
const PAST_SHORT: Duration = Duration::from_millis(900);

/// A response using every byte value and a multi-valued header.
pub fn sample_response() -> RecordedResponse {
    let mut headers = HeaderMap::new();
    headers.insert("location", HeaderValue::from_static("/orders/1"));
    headers.append("vary", HeaderValue::from_static("accept"));
    headers.append("vary", HeaderValue::from_static("accept-encoding"));
    headers.insert(
        "x-opaque",
        HeaderValue::from_bytes(b"\x80\xff raw").unwrap(),
    );
    RecordedResponse {
        status: StatusCode::CREATED,
        headers,
        body: Bytes::from((0..=255u8).cycle().take(4096).collect::<Vec<_>>()),
    }
}

async fn claimed<S: Store>(
    store: &S,
    key: &KeyDigest,
    fp: &Fingerprint,
    lease: Duration,
) -> FencingToken {
    match store.claim(key, fp, lease).await.unwrap() {
        ClaimOutcome::Claimed(token) => token,
        other => panic!("expected a claim, got {other:?}"),
    }
}

fn lease_lost<T: std::fmt::Debug>(result: Result<T, tower_idempotency::store::StoreError>) {
    match result {
        Err(error) => assert_eq!(error.kind(), StoreErrorKind::LeaseLost, "{error:?}"),
        Ok(value) => panic!("expected LeaseLost, got Ok({value:?})"),
    }
}

pub async fn claim_race_has_one_winner<S: Store>(store: Arc<S>) {
    const N: usize = 64;
    let key = unique_key("race");
    let barrier = Arc::new(Barrier::new(N));
    let tasks: Vec<_> = (0..N)
        .map(|_| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store.claim(&key, &FP_A, LEASE).await.unwrap()
            })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        match task.await.unwrap() {
            ClaimOutcome::Claimed(_) => winners += 1,
            ClaimOutcome::InFlight { fingerprint } => assert_eq!(fingerprint, FP_A),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners, 1);
}

pub async fn a_fresh_key_is_claimed<S: Store>(store: Arc<S>) {
    let key = unique_key("fresh");
    claimed(&*store, &key, &FP_A, LEASE).await;
}

pub async fn an_in_flight_key_reports_its_fingerprint<S: Store>(store: Arc<S>) {
    let key = unique_key("in-flight");
    claimed(&*store, &key, &FP_A, LEASE).await;
    for fp in [FP_A, FP_B] {
        assert_eq!(
            store.claim(&key, &fp, LEASE).await.unwrap(),
            ClaimOutcome::InFlight { fingerprint: FP_A }
        );
    }
}

pub async fn a_record_is_returned_byte_for_byte<S: Store>(store: Arc<S>) {
    let key = unique_key("record");
    let token = claimed(&*store, &key, &FP_A, LEASE).await;
    let record = Record {
        fingerprint: FP_A,
        response: Some(sample_response()),
    };
    store.record(&key, token, &record, TTL).await.unwrap();
    // Same answer whoever asks: the layer compares fingerprints.
    for fp in [FP_A, FP_B] {
        assert_eq!(
            store.claim(&key, &fp, LEASE).await.unwrap(),
            ClaimOutcome::Completed(record.clone())
        );
    }
}

pub async fn a_tombstone_round_trips<S: Store>(store: Arc<S>) {
    let key = unique_key("tombstone");
    let token = claimed(&*store, &key, &FP_A, LEASE).await;
    let tombstone = Record {
        fingerprint: FP_A,
        response: None,
    };
    store.record(&key, token, &tombstone, TTL).await.unwrap();
    assert_eq!(
        store.claim(&key, &FP_A, LEASE).await.unwrap(),
        ClaimOutcome::Completed(tombstone)
    );
}

pub async fn release_frees_the_key_for_a_new_token<S: Store>(store: Arc<S>) {
    let key = unique_key("release");
    let first = claimed(&*store, &key, &FP_A, LEASE).await;
    store.release(&key, first).await.unwrap();
    let second = claimed(&*store, &key, &FP_B, LEASE).await;
    assert_ne!(first, second, "a token is never handed out twice for a key");
}

pub async fn a_settled_token_can_do_nothing_more<S: Store>(store: Arc<S>) {
    let key = unique_key("settled");
    let token = claimed(&*store, &key, &FP_A, LEASE).await;
    let record = Record {
        fingerprint: FP_A,
        response: Some(sample_response()),
    };
    store.record(&key, token, &record, TTL).await.unwrap();
    let other = Record {
        fingerprint: FP_B,
        response: None,
    };
    lease_lost(store.record(&key, token, &other, TTL).await);
    lease_lost(store.release(&key, token).await);
    lease_lost(store.renew(&key, token, LEASE).await);
    assert_eq!(
        store.claim(&key, &FP_A, LEASE).await.unwrap(),
        ClaimOutcome::Completed(record)
    );
    // A token never issued for the key is refused too.
    lease_lost(store.release(&unique_key("never-claimed"), token).await);
}

pub async fn keys_are_independent<S: Store>(store: Arc<S>) {
    let (a, b) = (unique_key("independent-a"), unique_key("independent-b"));
    let token_a = claimed(&*store, &a, &FP_A, LEASE).await;
    let token_b = claimed(&*store, &b, &FP_A, LEASE).await;
    store.release(&a, token_a).await.unwrap();
    assert_eq!(
        store.claim(&b, &FP_A, LEASE).await.unwrap(),
        ClaimOutcome::InFlight { fingerprint: FP_A }
    );
    store.release(&b, token_b).await.unwrap();
}

pub async fn a_lapsed_lease_frees_the_key<S: Store>(store: Arc<S>) {
    let key = unique_key("lapse");
    claimed(&*store, &key, &FP_A, SHORT).await;
    sleep(PAST_SHORT).await;
    claimed(&*store, &key, &FP_B, LEASE).await;
}

pub async fn a_record_expires_after_its_ttl<S: Store>(store: Arc<S>) {
    let key = unique_key("ttl");
    let token = claimed(&*store, &key, &FP_A, LEASE).await;
    let record = Record {
        fingerprint: FP_A,
        response: Some(sample_response()),
    };
    store.record(&key, token, &record, SHORT).await.unwrap();
    assert!(matches!(
        store.claim(&key, &FP_A, LEASE).await.unwrap(),
        ClaimOutcome::Completed(_)
    ));
    sleep(PAST_SHORT).await;
    claimed(&*store, &key, &FP_B, LEASE).await;
}

pub async fn a_stale_owner_is_fenced_off<S: Store>(store: Arc<S>) {
    let key = unique_key("fencing");
    let stale = claimed(&*store, &key, &FP_A, SHORT).await;
    sleep(PAST_SHORT).await;
    // The lease lapsed: even before anyone else claims, the stale owner can do nothing.
    lease_lost(store.renew(&key, stale, LEASE).await);
    let owner = claimed(&*store, &key, &FP_A, LEASE).await;
    assert_ne!(stale, owner);
    let stale_record = Record {
        fingerprint: FP_A,
        response: None,
    };
    lease_lost(store.record(&key, stale, &stale_record, TTL).await);
    lease_lost(store.release(&key, stale).await);
    lease_lost(store.renew(&key, stale, LEASE).await);
    // The new owner is untouched.
    let record = Record {
        fingerprint: FP_A,
        response: Some(sample_response()),
    };
    store.record(&key, owner, &record, TTL).await.unwrap();
    assert_eq!(
        store.claim(&key, &FP_A, LEASE).await.unwrap(),
        ClaimOutcome::Completed(record)
    );
}

pub async fn renewal_extends_the_lease<S: Store>(store: Arc<S>) {
    let key = unique_key("renew");
    let token = claimed(&*store, &key, &FP_A, SHORT).await;
    // Renew three times, each before the lease runs out: the key stays held
    // well past the first lease.
    for _ in 0..3 {
        sleep(SHORT / 2).await;
        store.renew(&key, token, SHORT).await.unwrap();
    }
    assert_eq!(
        store.claim(&key, &FP_B, LEASE).await.unwrap(),
        ClaimOutcome::InFlight { fingerprint: FP_A }
    );
    sleep(PAST_SHORT).await;
    claimed(&*store, &key, &FP_B, LEASE).await;
}
