//! The store conformance suite: what every [`Store`] must do, written once,
//! for the stores of this crate and for yours (feature `conformance`).
//!
//! A store that passes it claims atomically (one winner of many concurrent
//! claims), returns records byte for byte, fences stale owners off with its
//! tokens, and expires leases and records on time. Run it from a test of your
//! own, with a store that is empty or whose keys nothing else uses (each
//! check uses keys of its own, made fresh per run):
//!
//! ```
//! use tower_idempotency::MemoryStore;
//! use tower_idempotency::store::conformance;
//!
//! # // A doc-test is no #[tokio::test]; this runtime stands for one.
//! # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
//! // In your tests: #[tokio::test(flavor = "multi_thread")] async fn conforms() { ... }
//! conformance::run_all(|| async { MemoryStore::new() }).await;
//! # });
//! ```
//!
//! Every check panics with what went wrong, as a test should. To give each
//! check a test of its own, call [`Check::run`] for each of [`Check::ALL`].
//!
//! Time is waited for with `tokio::time::sleep`: a store on Tokio's clock (as
//! the memory store is) can run the suite on a paused clock, instant and
//! exact; a store with a clock of its own (a server's) runs it in real time,
//! about seven seconds in all, with margins well clear of scheduling noise.
//! The race check spawns tasks: a multi-threaded runtime makes it hardest.
#![allow(clippy::panic, clippy::expect_used)]

use std::future::Future;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use tokio::sync::Barrier;
use tokio::time::sleep;

use super::{
    ClaimOutcome, FencingToken, Fingerprint, KeyDigest, KeyState, Record, RecordedResponse, Store,
    StoreError, StoreErrorKind,
};

/// One check of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Check {
    /// Of 64 concurrent claims of one key, exactly one wins; the others see it in flight.
    ClaimRaceHasOneWinner,
    /// A key never seen is claimed.
    AFreshKeyIsClaimed,
    /// A claimed key is in flight for every caller, with the owner's fingerprint.
    AnInFlightKeyReportsItsFingerprint,
    /// A record (every byte value, multi-valued headers) comes back exactly, to any caller.
    ARecordIsReturnedByteForByte,
    /// A tombstone (a record without a response) comes back as one.
    ATombstoneRoundTrips,
    /// A released key can be claimed again, under a new token.
    ReleaseFreesTheKeyForANewToken,
    /// A token whose claim was recorded can record, release and renew nothing more.
    ASettledTokenCanDoNothingMore,
    /// What happens to one key leaves another alone.
    KeysAreIndependent,
    /// A lease that runs out frees the key. (Waits about a second.)
    ALapsedLeaseFreesTheKey,
    /// A record is forgotten after its TTL. (Waits about a second.)
    ARecordExpiresAfterItsTtl,
    /// An owner whose lease ran out is refused everything, before and after a
    /// new owner claims. (Waits about a second.)
    AStaleOwnerIsFencedOff,
    /// Renewal keeps a key held past its first lease, and it lapses once
    /// renewal stops. (Waits about three seconds.)
    RenewalExtendsTheLease,
    /// `inspect` tells each state apart: absent, in flight with its lease,
    /// completed with its status and TTL, a tombstone, and absent again
    /// after a release.
    InspectTellsEachState,
    /// `forget` frees a completed key for a new claim, and a forgotten
    /// claim's owner can record, renew and release nothing more.
    ForgetFreesTheKeyAndFencesItsOwner,
    /// A `forget` racing its key's `record` wins either way round: the record
    /// lands first and is forgotten, or is refused; the key ends free, never
    /// holding part of a record (32 races on keys of their own).
    AForgetRacingARecordLeavesNoHalfState,
}

impl Check {
    /// Every check, in the order [`run_all`] runs them.
    pub const ALL: &'static [Check] = &[
        Check::ClaimRaceHasOneWinner,
        Check::AFreshKeyIsClaimed,
        Check::AnInFlightKeyReportsItsFingerprint,
        Check::ARecordIsReturnedByteForByte,
        Check::ATombstoneRoundTrips,
        Check::ReleaseFreesTheKeyForANewToken,
        Check::ASettledTokenCanDoNothingMore,
        Check::KeysAreIndependent,
        Check::ALapsedLeaseFreesTheKey,
        Check::ARecordExpiresAfterItsTtl,
        Check::AStaleOwnerIsFencedOff,
        Check::RenewalExtendsTheLease,
        Check::InspectTellsEachState,
        Check::ForgetFreesTheKeyAndFencesItsOwner,
        Check::AForgetRacingARecordLeavesNoHalfState,
    ];

    /// Returns the check's name, as a test name (`a_stale_owner_is_fenced_off`).
    pub fn name(self) -> &'static str {
        match self {
            Check::ClaimRaceHasOneWinner => "claim_race_has_one_winner",
            Check::AFreshKeyIsClaimed => "a_fresh_key_is_claimed",
            Check::AnInFlightKeyReportsItsFingerprint => "an_in_flight_key_reports_its_fingerprint",
            Check::ARecordIsReturnedByteForByte => "a_record_is_returned_byte_for_byte",
            Check::ATombstoneRoundTrips => "a_tombstone_round_trips",
            Check::ReleaseFreesTheKeyForANewToken => "release_frees_the_key_for_a_new_token",
            Check::ASettledTokenCanDoNothingMore => "a_settled_token_can_do_nothing_more",
            Check::KeysAreIndependent => "keys_are_independent",
            Check::ALapsedLeaseFreesTheKey => "a_lapsed_lease_frees_the_key",
            Check::ARecordExpiresAfterItsTtl => "a_record_expires_after_its_ttl",
            Check::AStaleOwnerIsFencedOff => "a_stale_owner_is_fenced_off",
            Check::RenewalExtendsTheLease => "renewal_extends_the_lease",
            Check::InspectTellsEachState => "inspect_tells_each_state",
            Check::ForgetFreesTheKeyAndFencesItsOwner => {
                "forget_frees_the_key_and_fences_its_owner"
            }
            Check::AForgetRacingARecordLeavesNoHalfState => {
                "a_forget_racing_a_record_leaves_no_half_state"
            }
        }
    }

    /// Tells whether the check waits for a lease or a TTL to run out, so it takes
    /// a second or more on a real clock.
    pub fn waits(self) -> bool {
        matches!(
            self,
            Check::ALapsedLeaseFreesTheKey
                | Check::ARecordExpiresAfterItsTtl
                | Check::AStaleOwnerIsFencedOff
                | Check::RenewalExtendsTheLease
        )
    }

    /// Runs the check against `store`, and panics with what went wrong if the
    /// store fails it.
    pub async fn run<St: Store>(self, store: Arc<St>) {
        match self {
            Check::ClaimRaceHasOneWinner => claim_race_has_one_winner(store).await,
            Check::AFreshKeyIsClaimed => a_fresh_key_is_claimed(store).await,
            Check::AnInFlightKeyReportsItsFingerprint => {
                an_in_flight_key_reports_its_fingerprint(store).await
            }
            Check::ARecordIsReturnedByteForByte => a_record_is_returned_byte_for_byte(store).await,
            Check::ATombstoneRoundTrips => a_tombstone_round_trips(store).await,
            Check::ReleaseFreesTheKeyForANewToken => {
                release_frees_the_key_for_a_new_token(store).await
            }
            Check::ASettledTokenCanDoNothingMore => {
                a_settled_token_can_do_nothing_more(store).await
            }
            Check::KeysAreIndependent => keys_are_independent(store).await,
            Check::ALapsedLeaseFreesTheKey => a_lapsed_lease_frees_the_key(store).await,
            Check::ARecordExpiresAfterItsTtl => a_record_expires_after_its_ttl(store).await,
            Check::AStaleOwnerIsFencedOff => a_stale_owner_is_fenced_off(store).await,
            Check::RenewalExtendsTheLease => renewal_extends_the_lease(store).await,
            Check::InspectTellsEachState => inspect_tells_each_state(store).await,
            Check::ForgetFreesTheKeyAndFencesItsOwner => {
                forget_frees_the_key_and_fences_its_owner(store).await
            }
            Check::AForgetRacingARecordLeavesNoHalfState => {
                a_forget_racing_a_record_leaves_no_half_state(store).await
            }
        }
    }
}

/// Runs every check, each against a store fresh from `make`, and panics at
/// the first that fails, naming it.
pub async fn run_all<St, F, Fut>(mut make: F)
where
    St: Store,
    F: FnMut() -> Fut,
    Fut: Future<Output = St>,
{
    for check in Check::ALL {
        let store = Arc::new(make().await);
        check.run(store).await;
    }
}

/// A key no other check, test or run uses: 32 bytes from randomly keyed
/// hashes of `name` and a process counter.
fn unique_key(name: &str) -> KeyDigest {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut bytes = [0u8; 32];
    for chunk in bytes.chunks_mut(8) {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write(name.as_bytes());
        hasher.write_u64(count);
        chunk.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    KeyDigest::from_bytes(bytes)
}

const FP_A: Fingerprint = Fingerprint::from_bytes([0xA1; 32]);
const FP_B: Fingerprint = Fingerprint::from_bytes([0xB2; 32]);
const LEASE: Duration = Duration::from_secs(30);
/// Short enough that a networked store forgets the suite's keys soon.
const TTL: Duration = Duration::from_secs(120);
/// Short times for the timed checks, and a wait safely past them.
const SHORT: Duration = Duration::from_millis(400);
const PAST_SHORT: Duration = Duration::from_millis(900);

/// The value of a store call that must succeed; panics with the error.
fn ok<T>(result: Result<T, StoreError>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => panic!("the store call failed: {error:?}"),
    }
}

/// A response using every byte value and a multi-valued header.
fn sample_response() -> RecordedResponse {
    let mut headers = HeaderMap::new();
    headers.insert("location", HeaderValue::from_static("/orders/1"));
    headers.append("vary", HeaderValue::from_static("accept"));
    headers.append("vary", HeaderValue::from_static("accept-encoding"));
    headers.insert(
        "x-opaque",
        HeaderValue::from_bytes(b"\x80\xff raw").expect("a valid header value"),
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
    match ok(store.claim(key, fp, lease).await) {
        ClaimOutcome::Claimed(token) => token,
        other => panic!("expected a claim, got {other:?}"),
    }
}

fn lease_lost<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    match result {
        Err(error) => assert_eq!(error.kind(), StoreErrorKind::LeaseLost, "{error:?}"),
        Ok(value) => panic!("expected LeaseLost, got Ok({value:?})"),
    }
}

async fn claim_race_has_one_winner<S: Store>(store: Arc<S>) {
    const N: usize = 64;
    let key = unique_key("race");
    let barrier = Arc::new(Barrier::new(N));
    let tasks: Vec<_> = (0..N)
        .map(|_| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                ok(store.claim(&key, &FP_A, LEASE).await)
            })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        match task.await.expect("a claiming task panicked") {
            ClaimOutcome::Claimed(_) => winners += 1,
            ClaimOutcome::InFlight { fingerprint } => assert_eq!(fingerprint, FP_A),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners, 1);
}

async fn a_fresh_key_is_claimed<S: Store>(store: Arc<S>) {
    let key = unique_key("fresh");
    claimed(&*store, &key, &FP_A, LEASE).await;
}

async fn an_in_flight_key_reports_its_fingerprint<S: Store>(store: Arc<S>) {
    let key = unique_key("in-flight");
    claimed(&*store, &key, &FP_A, LEASE).await;
    for fp in [FP_A, FP_B] {
        assert_eq!(
            ok(store.claim(&key, &fp, LEASE).await),
            ClaimOutcome::InFlight { fingerprint: FP_A }
        );
    }
}

async fn a_record_is_returned_byte_for_byte<S: Store>(store: Arc<S>) {
    let key = unique_key("record");
    let token = claimed(&*store, &key, &FP_A, LEASE).await;
    let record = Record {
        fingerprint: FP_A,
        response: Some(sample_response()),
    };
    ok(store.record(&key, token, &record, TTL).await);
    // Same answer whoever asks: the layer compares fingerprints.
    for fp in [FP_A, FP_B] {
        assert_eq!(
            ok(store.claim(&key, &fp, LEASE).await),
            ClaimOutcome::Completed(record.clone())
        );
    }
}

async fn a_tombstone_round_trips<S: Store>(store: Arc<S>) {
    let key = unique_key("tombstone");
    let token = claimed(&*store, &key, &FP_A, LEASE).await;
    let tombstone = Record {
        fingerprint: FP_A,
        response: None,
    };
    ok(store.record(&key, token, &tombstone, TTL).await);
    assert_eq!(
        ok(store.claim(&key, &FP_A, LEASE).await),
        ClaimOutcome::Completed(tombstone)
    );
}

async fn release_frees_the_key_for_a_new_token<S: Store>(store: Arc<S>) {
    let key = unique_key("release");
    let first = claimed(&*store, &key, &FP_A, LEASE).await;
    ok(store.release(&key, first).await);
    let second = claimed(&*store, &key, &FP_B, LEASE).await;
    assert_ne!(first, second, "a token is never handed out twice for a key");
}

async fn a_settled_token_can_do_nothing_more<S: Store>(store: Arc<S>) {
    let key = unique_key("settled");
    let token = claimed(&*store, &key, &FP_A, LEASE).await;
    let record = Record {
        fingerprint: FP_A,
        response: Some(sample_response()),
    };
    ok(store.record(&key, token, &record, TTL).await);
    let other = Record {
        fingerprint: FP_B,
        response: None,
    };
    lease_lost(store.record(&key, token, &other, TTL).await);
    lease_lost(store.release(&key, token).await);
    lease_lost(store.renew(&key, token, LEASE).await);
    assert_eq!(
        ok(store.claim(&key, &FP_A, LEASE).await),
        ClaimOutcome::Completed(record)
    );
    // A token never issued for the key is refused too.
    lease_lost(store.release(&unique_key("never-claimed"), token).await);
}

async fn keys_are_independent<S: Store>(store: Arc<S>) {
    let (a, b) = (unique_key("independent-a"), unique_key("independent-b"));
    let token_a = claimed(&*store, &a, &FP_A, LEASE).await;
    let token_b = claimed(&*store, &b, &FP_A, LEASE).await;
    ok(store.release(&a, token_a).await);
    assert_eq!(
        ok(store.claim(&b, &FP_A, LEASE).await),
        ClaimOutcome::InFlight { fingerprint: FP_A }
    );
    ok(store.release(&b, token_b).await);
}

async fn a_lapsed_lease_frees_the_key<S: Store>(store: Arc<S>) {
    let key = unique_key("lapse");
    claimed(&*store, &key, &FP_A, SHORT).await;
    sleep(PAST_SHORT).await;
    claimed(&*store, &key, &FP_B, LEASE).await;
}

async fn a_record_expires_after_its_ttl<S: Store>(store: Arc<S>) {
    let key = unique_key("ttl");
    let token = claimed(&*store, &key, &FP_A, LEASE).await;
    let record = Record {
        fingerprint: FP_A,
        response: Some(sample_response()),
    };
    ok(store.record(&key, token, &record, SHORT).await);
    assert!(matches!(
        ok(store.claim(&key, &FP_A, LEASE).await),
        ClaimOutcome::Completed(_)
    ));
    sleep(PAST_SHORT).await;
    claimed(&*store, &key, &FP_B, LEASE).await;
}

async fn a_stale_owner_is_fenced_off<S: Store>(store: Arc<S>) {
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
    ok(store.record(&key, owner, &record, TTL).await);
    assert_eq!(
        ok(store.claim(&key, &FP_A, LEASE).await),
        ClaimOutcome::Completed(record)
    );
}

async fn renewal_extends_the_lease<S: Store>(store: Arc<S>) {
    let key = unique_key("renew");
    let token = claimed(&*store, &key, &FP_A, SHORT).await;
    // Renew three times, each before the lease runs out: the key stays held
    // well past the first lease.
    for _ in 0..3 {
        sleep(SHORT / 2).await;
        ok(store.renew(&key, token, SHORT).await);
    }
    assert_eq!(
        ok(store.claim(&key, &FP_B, LEASE).await),
        ClaimOutcome::InFlight { fingerprint: FP_A }
    );
    sleep(PAST_SHORT).await;
    claimed(&*store, &key, &FP_B, LEASE).await;
}

async fn inspect_tells_each_state<S: Store>(store: Arc<S>) {
    let key = unique_key("inspect");
    assert_eq!(
        ok(store.inspect(&key).await),
        KeyState::Absent,
        "a fresh key"
    );
    let token = claimed(&*store, &key, &FP_A, LEASE).await;
    match ok(store.inspect(&key).await) {
        KeyState::InFlight { lease_left } => {
            assert!(
                lease_left <= LEASE,
                "{lease_left:?} is longer than the lease"
            );
            assert!(
                lease_left > LEASE / 2,
                "{lease_left:?} left of a {LEASE:?} lease"
            );
        }
        other => panic!("expected in flight, got {other:?}"),
    }
    let record = Record {
        fingerprint: FP_A,
        response: Some(sample_response()),
    };
    ok(store.record(&key, token, &record, TTL).await);
    match ok(store.inspect(&key).await) {
        KeyState::Completed { status, expires_in } => {
            assert_eq!(status, StatusCode::CREATED);
            assert!(expires_in <= TTL && expires_in > TTL / 2, "{expires_in:?}");
        }
        other => panic!("expected completed, got {other:?}"),
    }
    // Inspecting changed nothing: the record still replays.
    assert!(matches!(
        ok(store.claim(&key, &FP_A, LEASE).await),
        ClaimOutcome::Completed(_)
    ));

    let tombstone = unique_key("inspect-tombstone");
    let token = claimed(&*store, &tombstone, &FP_A, LEASE).await;
    let empty = Record {
        fingerprint: FP_A,
        response: None,
    };
    ok(store.record(&tombstone, token, &empty, TTL).await);
    match ok(store.inspect(&tombstone).await) {
        KeyState::Tombstone { expires_in } => {
            assert!(expires_in <= TTL && expires_in > TTL / 2, "{expires_in:?}");
        }
        other => panic!("expected a tombstone, got {other:?}"),
    }

    let released = unique_key("inspect-released");
    let token = claimed(&*store, &released, &FP_A, LEASE).await;
    ok(store.release(&released, token).await);
    assert_eq!(
        ok(store.inspect(&released).await),
        KeyState::Absent,
        "released"
    );
}

async fn forget_frees_the_key_and_fences_its_owner<S: Store>(store: Arc<S>) {
    let key = unique_key("forget");
    assert!(!ok(store.forget(&key).await), "nothing to forget yet");
    let token = claimed(&*store, &key, &FP_A, LEASE).await;
    let record = Record {
        fingerprint: FP_A,
        response: Some(sample_response()),
    };
    ok(store.record(&key, token, &record, TTL).await);
    assert!(ok(store.forget(&key).await), "a record was there");
    assert_eq!(ok(store.inspect(&key).await), KeyState::Absent);
    // The next request runs afresh, even with another fingerprint.
    claimed(&*store, &key, &FP_B, LEASE).await;

    // A claim forgotten while its owner works: the owner's late record is
    // refused, and does not bring the key back.
    let in_flight = unique_key("forget-in-flight");
    let owner = claimed(&*store, &in_flight, &FP_A, LEASE).await;
    assert!(ok(store.forget(&in_flight).await));
    lease_lost(store.record(&in_flight, owner, &record, TTL).await);
    lease_lost(store.renew(&in_flight, owner, LEASE).await);
    lease_lost(store.release(&in_flight, owner).await);
    assert_eq!(ok(store.inspect(&in_flight).await), KeyState::Absent);
}

async fn a_forget_racing_a_record_leaves_no_half_state<S: Store>(store: Arc<S>) {
    let record = Record {
        fingerprint: FP_A,
        response: Some(sample_response()),
    };
    for round in 0..32 {
        let key = unique_key(&format!("forget-race-{round}"));
        let token = claimed(&*store, &key, &FP_A, LEASE).await;
        let barrier = Arc::new(Barrier::new(2));
        let recording = tokio::spawn({
            let (store, barrier, record) = (store.clone(), barrier.clone(), record.clone());
            async move {
                barrier.wait().await;
                store.record(&key, token, &record, TTL).await
            }
        });
        let forgetting = tokio::spawn({
            let (store, barrier) = (store.clone(), barrier.clone());
            async move {
                barrier.wait().await;
                store.forget(&key).await
            }
        });
        let recorded = recording.await.expect("the recording task panicked");
        let forgot = ok(forgetting.await.expect("the forgetting task panicked"));
        // Either way round, the forget found the claim or the record.
        assert!(forgot, "round {round}: nothing to forget");
        // The record landed first, or was refused: never half of it.
        if let Err(error) = &recorded {
            assert_eq!(
                error.kind(),
                StoreErrorKind::LeaseLost,
                "round {round}: {error:?}"
            );
        }
        // Whichever came first, the key ends free.
        match ok(store.claim(&key, &FP_B, LEASE).await) {
            ClaimOutcome::Claimed(_) => {}
            ClaimOutcome::Completed(_) => {
                panic!("round {round}: a record written after the forget stands")
            }
            other => panic!("round {round}: the key is not free after a forget: {other:?}"),
        }
    }
}
