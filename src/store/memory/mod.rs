//! [`MemoryStore`]: records in this process, on a sharded map.

mod packed;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry as MapEntry;
use tokio::sync::Notify;
use tokio::time::Instant;

use bytes::Bytes;

use packed::PackedRecord;

use super::{
    ClaimOutcome, FencingToken, Fingerprint, KeyDigest, KeyState, Record, RecordedResponse, Store,
    StoreError, StoreErrorKind, WaitSettled,
};

/// Number of expiry queues; a power of two so a digest byte picks one.
const EXPIRY_SHARDS: usize = 64;
/// Expired entries removed, at most, by each claim: more than a claim adds, so
/// the store keeps up with its own expiry without a background task.
const SWEEP_PER_CLAIM: usize = 4;
/// Live claims looked past, at most, to make room for one new key when full.
const EVICTION_SCAN: usize = 64;
/// Bodies up to this size are packed into the record's one allocation; larger
/// ones are kept as the response's own `Bytes`, without a copy.
const INLINE_BODY: usize = 4096;

/// The default store: records in this process's memory, on a [`DashMap`].
///
/// Right for one process. Replicas behind a load balancer each have their own
/// memory, so they need a shared store (Redis or Postgres) to run a key once.
///
/// - **Expiry** runs inside the store: every claim of a key the store does not
///   hold removes up to a few expired entries from a per-shard expiry queue
///   (no global lock, no scan of the map), and
///   [`purge_expired`](Self::purge_expired) removes them all.
/// - **Capacity** is optional ([`with_capacity`](Self::with_capacity)). When the
///   store is full, a new key first removes an expired entry, else evicts the
///   completed record closest to expiry in its expiry queue (one of 64, chosen
///   by the key's digest; the next ones if that queue has none). In-flight
///   claims are never evicted. If none can be evicted, the claim fails with
///   [`StoreErrorKind::CapacityExhausted`] and the layer answers 503. Concurrent claims may overshoot the bound by at most
///   their number. An evicted key has lost its protection: a late retry with it
///   runs again, so size the store for the keys one TTL brings.
/// - **Time** is Tokio's clock, so tests can pause and advance it.
/// - **Memory** is kept small: a map slot is 32 bytes (a 16-byte share of
///   the key's digest and a two-word entry); a record is one allocation
///   holding its deadline, fingerprint, status, headers and (up to 4 KiB)
///   body, packed (a common header's name is one byte, a length under 128
///   is one byte); a larger body is kept as the response's own `Bytes`, not
///   copied. About 290 bytes per record of a 100-byte response, measured by
///   `benches/programs/memory_per_record.rs` in the repository: 192 for the
///   record, about 70 for its map slot and 25 for its place in the expiry
///   queues, at a million records.
///
/// ```
/// use std::time::Duration;
/// use tower_idempotency::{IdempotencyLayer, MemoryStore};
///
/// let store = MemoryStore::with_capacity(1_000_000);
/// let layer = IdempotencyLayer::new(store.clone()).ttl(Duration::from_secs(3600));
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    entries: DashMap<MapKey, Entry, DigestHash>,
    /// Deadlines of entries, one min-queue per shard of digests. Every entry
    /// has an item no later than its deadline: scheduled by its claim, moved
    /// on by the sweep when the entry's deadline has moved later (a record, a
    /// renewal). An item may be stale (its entry left); the sweep checks the
    /// entry itself.
    expiry: Box<[Mutex<ExpiryQueue>]>,
    /// Number of entries (kept here: `DashMap::len` locks every shard).
    len: AtomicUsize,
    capacity: Option<usize>,
    next_token: AtomicU64,
    /// Time zero of the store's ticks.
    epoch: Instant,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            entries: DashMap::with_hasher(DigestHash),
            expiry: (0..EXPIRY_SHARDS).map(|_| Mutex::default()).collect(),
            len: AtomicUsize::new(0),
            capacity: None,
            next_token: AtomicU64::new(1),
            epoch: Instant::now(),
        }
    }
}

/// Nanoseconds since the store's epoch, on Tokio's clock: eight bytes where an
/// `Instant` takes sixteen.
type Tick = u64;

fn ticks(duration: Duration) -> Tick {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// The map's key: the first 128 bits of the (scope, key) digest. Two keys
/// share it with odds of 2^-128 per pair (a billion keys: about 10^-21), and it
/// cannot be chosen to collide (it is a SHA-256). Half the size of the whole
/// digest, in every map slot and every expiry item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct MapKey([u8; 16]);

impl MapKey {
    fn of(digest: &KeyDigest) -> Self {
        let mut key = [0; 16];
        key.copy_from_slice(&digest.as_bytes()[..16]);
        Self(key)
    }
}

/// Hashes a [`MapKey`] by its first eight bytes: it is already a SHA-256,
/// uniformly spread, so hashing it again (SipHash, the map's default) would be
/// work for nothing. Keys are digests of (scope, key), so a client cannot
/// choose them to collide.
#[derive(Debug, Clone, Copy, Default)]
struct DigestHash;

impl std::hash::BuildHasher for DigestHash {
    type Hasher = DigestHasher;

    fn build_hasher(&self) -> DigestHasher {
        DigestHasher(0)
    }
}

/// The hasher of [`DigestHash`]: the first eight bytes written (a digest),
/// mixed with anything else written (the length prefix of the array).
#[derive(Debug)]
struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = self.0.rotate_left(5) ^ n as u64;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Deadlines, earliest first.
type ExpiryQueue = BinaryHeap<Reverse<(Tick, MapKey)>>;

/// What the store holds for a key, until its deadline (the end of the lease,
/// or of the TTL). Two words, so that a map slot (key and entry) is 32 bytes:
/// the common case, a record with a small body, is one allocation holding
/// its deadline too; the rest is boxed.
#[derive(Debug)]
enum Entry {
    Record(PackedRecord),
    Boxed(Box<Boxed>),
}

/// What an [`Entry`] holds, seen through its layout.
enum Held<'a> {
    InFlight(&'a InFlight),
    /// The packed record, and the body if the entry keeps it apart.
    Record(&'a PackedRecord, Option<&'a Bytes>),
}

/// The entries that do not fit two words.
#[derive(Debug)]
enum Boxed {
    InFlight(InFlight),
    /// A record whose body is larger than [`INLINE_BODY`]: the body stays the
    /// response's own `Bytes`, without a copy.
    LargeRecord(PackedRecord, Bytes),
}

#[derive(Debug)]
struct InFlight {
    deadline: Tick,
    fingerprint: Fingerprint,
    token: FencingToken,
    /// Requests waiting for this claim to settle; told when the entry is
    /// replaced or removed.
    waiters: Waiters,
}

/// The requests waiting on an in-flight claim: made by the first waiter, and
/// woken when the claim's entry is dropped, whatever replaced or removed it
/// (a record, a release, a new owner after a lapse, a sweep).
#[derive(Debug, Default)]
struct Waiters(Option<Arc<Notify>>);

impl Drop for Waiters {
    fn drop(&mut self) {
        if let Some(notify) = &self.0 {
            notify.notify_waiters();
        }
    }
}

impl Entry {
    fn in_flight(deadline: Tick, fingerprint: Fingerprint, token: FencingToken) -> Self {
        Self::Boxed(Box::new(Boxed::InFlight(InFlight {
            deadline,
            fingerprint,
            token,
            waiters: Waiters::default(),
        })))
    }

    fn record(record: &Record, deadline: Tick) -> Self {
        match &record.response {
            Some(response) if response.body.len() > INLINE_BODY => {
                let head = RecordedResponse {
                    status: response.status,
                    headers: response.headers.clone(),
                    body: Bytes::new(),
                };
                let packed = PackedRecord::new(&record.fingerprint, Some(&head), deadline);
                Self::Boxed(Box::new(Boxed::LargeRecord(packed, response.body.clone())))
            }
            response => Self::Record(PackedRecord::new(
                &record.fingerprint,
                response.as_ref(),
                deadline,
            )),
        }
    }

    /// What the entry holds, whichever way it is laid out.
    fn held(&self) -> Held<'_> {
        match self {
            Self::Record(packed) => Held::Record(packed, None),
            Self::Boxed(boxed) => match &**boxed {
                Boxed::InFlight(in_flight) => Held::InFlight(in_flight),
                Boxed::LargeRecord(packed, body) => Held::Record(packed, Some(body)),
            },
        }
    }

    fn as_in_flight_mut(&mut self) -> Option<&mut InFlight> {
        match self {
            Self::Boxed(boxed) => match &mut **boxed {
                Boxed::InFlight(in_flight) => Some(in_flight),
                Boxed::LargeRecord(..) => None,
            },
            Self::Record(_) => None,
        }
    }

    fn deadline(&self) -> Tick {
        match self.held() {
            Held::InFlight(in_flight) => in_flight.deadline,
            Held::Record(packed, _) => packed.deadline(),
        }
    }

    fn is_live(&self, now: Tick) -> bool {
        self.deadline() > now
    }

    /// What a claim of this live entry answers.
    fn outcome(&self) -> Result<ClaimOutcome, StoreError> {
        Ok(match self.held() {
            Held::InFlight(in_flight) => ClaimOutcome::InFlight {
                fingerprint: in_flight.fingerprint,
            },
            Held::Record(packed, large_body) => ClaimOutcome::Completed(packed.unpack(large_body)?),
        })
    }

    /// Whether `token` owns this entry's live lease.
    fn is_owned_by(&self, token: FencingToken, now: Tick) -> bool {
        matches!(self.held(), Held::InFlight(in_flight) if in_flight.token == token)
            && self.is_live(now)
    }
}

impl MemoryStore {
    /// Creates an unbounded store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates a store holding about `capacity` keys at most (see the type's docs for
    /// what is evicted).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                capacity: Some(capacity),
                ..Inner::default()
            }),
        }
    }

    /// Counts the keys held, in flight or completed (expired ones included until
    /// they are removed).
    pub fn len(&self) -> usize {
        self.inner.len.load(Ordering::Relaxed)
    }

    /// Tells whether the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every expired record and lapsed claim now; returns how many.
    pub fn purge_expired(&self) -> usize {
        let now = self.inner.now();
        (0..EXPIRY_SHARDS)
            .map(|shard| self.inner.sweep(shard, now, usize::MAX))
            .sum()
    }
}

impl Inner {
    fn now(&self) -> Tick {
        ticks(Instant::now().saturating_duration_since(self.epoch))
    }

    fn shard_of(key: &MapKey) -> usize {
        usize::from(key.0[0]) % EXPIRY_SHARDS
    }

    fn queue(&self, shard: usize) -> MutexGuard<'_, ExpiryQueue> {
        // A panic while holding the lock leaves the heap valid, so poisoning
        // is ignored.
        self.expiry[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn schedule(&self, key: MapKey, deadline: Tick) {
        self.queue(Self::shard_of(&key))
            .push(Reverse((deadline, key)));
    }

    fn remove_if(&self, key: &MapKey, f: impl FnOnce(&Entry) -> bool) -> bool {
        let removed = self.entries.remove_if(key, |_, entry| f(entry)).is_some();
        if removed {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
        removed
    }

    /// Removes up to `max` expired entries of one shard.
    fn sweep(&self, shard: usize, now: Tick, max: usize) -> usize {
        let mut queue = self.queue(shard);
        let mut removed = 0;
        for _ in 0..max {
            match queue.peek() {
                Some(Reverse((deadline, _))) if *deadline <= now => {}
                _ => break,
            }
            let Some(Reverse((_, key))) = queue.pop() else {
                break;
            };
            if self.remove_if(&key, |entry| !entry.is_live(now)) {
                removed += 1;
            } else if let Some(entry) = self.entries.get(&key) {
                // Recorded or renewed since: its one item moves to its deadline.
                queue.push(Reverse((entry.deadline(), key)));
            }
        }
        removed
    }

    /// Makes room for one key: removes an expired entry or evicts the completed
    /// record closest to expiry in a queue, trying the queue `key` falls in
    /// first, then the next ones, looking past at most [`EVICTION_SCAN`] live
    /// claims in all.
    fn make_room(&self, key: &MapKey, now: Tick) -> bool {
        let first = Self::shard_of(key);
        let mut budget = EVICTION_SCAN;
        (0..EXPIRY_SHARDS)
            .any(|i| budget > 0 && self.evict_one((first + i) % EXPIRY_SHARDS, now, &mut budget))
    }

    fn evict_one(&self, shard: usize, now: Tick, budget: &mut usize) -> bool {
        let mut queue = self.queue(shard);
        let mut kept = Vec::new();
        let mut evicted = false;
        while *budget > 0 {
            let Some(Reverse((deadline, key))) = queue.pop() else {
                break;
            };
            let removed = self.remove_if(&key, |entry| {
                !entry.is_live(now) || matches!(entry.held(), Held::Record(..))
            });
            if removed {
                evicted = true;
                break;
            }
            // A live claim, or a stale item: keep it for its own deadline.
            if self.entries.contains_key(&key) {
                kept.push(Reverse((deadline, key)));
                *budget -= 1;
            }
        }
        queue.extend(kept);
        evicted
    }

    fn is_full(&self) -> bool {
        self.capacity
            .is_some_and(|capacity| self.len.load(Ordering::Relaxed) >= capacity)
    }

    fn claim(
        &self,
        key: &MapKey,
        fingerprint: &Fingerprint,
        lease: Duration,
    ) -> Result<MapClaim, StoreError> {
        let now = self.now();
        // A key that is held (the common retry: a record to replay) is
        // answered under the shard's read lock, so concurrent replays of one
        // key share it instead of queueing for the write lock; nothing is
        // added, so nothing is swept.
        if let Some(held) = self.entries.get(key).filter(|held| held.is_live(now)) {
            return Ok(MapClaim::Done(held.outcome()?));
        }
        self.sweep(Self::shard_of(key), now, SWEEP_PER_CLAIM);
        let lease_until = now.saturating_add(ticks(lease));
        let in_flight = |token| Entry::in_flight(lease_until, *fingerprint, token);
        let token = match self.entries.entry(*key) {
            MapEntry::Occupied(mut occupied) => {
                let held = occupied.get();
                if held.is_live(now) {
                    // Taken between the read and the write lock.
                    return Ok(MapClaim::Done(held.outcome()?));
                }
                let token = self.new_token();
                occupied.insert(in_flight(token));
                token
            }
            MapEntry::Vacant(vacant) => {
                if self.is_full() {
                    return Ok(MapClaim::Full);
                }
                let token = self.new_token();
                vacant.insert(in_flight(token));
                self.len.fetch_add(1, Ordering::Relaxed);
                token
            }
        };
        self.schedule(*key, lease_until);
        Ok(MapClaim::Done(ClaimOutcome::Claimed(token)))
    }

    /// The waiters of `key` if it is in flight under a live lease: a
    /// notification handle, the owner's token and the end of its lease.
    fn waiters(&self, key: &MapKey, now: Tick) -> Option<(Arc<Notify>, FencingToken, Tick)> {
        let mut entry = self.entries.get_mut(key)?;
        let in_flight = entry
            .as_in_flight_mut()
            .filter(|in_flight| in_flight.deadline > now)?;
        let notify = in_flight.waiters.0.get_or_insert_with(Arc::default);
        Some((Arc::clone(notify), in_flight.token, in_flight.deadline))
    }

    fn new_token(&self) -> FencingToken {
        FencingToken::new(self.next_token.fetch_add(1, Ordering::Relaxed))
    }

    /// Applies `f` to the entry if `token` owns its lease, live at `now`.
    fn with_owned(
        &self,
        key: &MapKey,
        token: FencingToken,
        now: Tick,
        f: impl FnOnce(&mut Entry),
    ) -> Result<(), StoreError> {
        let mut entry = self
            .entries
            .get_mut(key)
            .filter(|entry| entry.is_owned_by(token, now))
            .ok_or(StoreErrorKind::LeaseLost)?;
        // The entry keeps the one expiry item its claim scheduled: a record or
        // a renewal only moves its deadline later, and the sweep moves the
        // item when it comes due. One item per entry, not one per update.
        f(&mut entry);
        Ok(())
    }
}

/// A claim as the map saw it: done, or blocked by a full store.
enum MapClaim {
    Done(ClaimOutcome),
    Full,
}

impl Store for MemoryStore {
    async fn claim(
        &self,
        key: &KeyDigest,
        fingerprint: &Fingerprint,
        lease: Duration,
    ) -> Result<ClaimOutcome, StoreError> {
        let key = &MapKey::of(key);
        match self.inner.claim(key, fingerprint, lease)? {
            MapClaim::Done(outcome) => return Ok(outcome),
            MapClaim::Full => {}
        }
        if !self.inner.make_room(key, self.inner.now()) {
            return Err(StoreErrorKind::CapacityExhausted.into());
        }
        match self.inner.claim(key, fingerprint, lease)? {
            MapClaim::Done(outcome) => Ok(outcome),
            MapClaim::Full => Err(StoreErrorKind::CapacityExhausted.into()),
        }
    }

    async fn record(
        &self,
        key: &KeyDigest,
        token: FencingToken,
        record: &Record,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        // Packed before the shard's lock is taken; the TTL runs from now,
        // the one reading of the clock for both.
        let now = self.inner.now();
        let packed = Entry::record(record, now.saturating_add(ticks(ttl)));
        self.inner
            .with_owned(&MapKey::of(key), token, now, |entry| *entry = packed)
    }

    async fn release(&self, key: &KeyDigest, token: FencingToken) -> Result<(), StoreError> {
        let now = self.inner.now();
        if self
            .inner
            .remove_if(&MapKey::of(key), |entry| entry.is_owned_by(token, now))
        {
            Ok(())
        } else {
            Err(StoreErrorKind::LeaseLost.into())
        }
    }

    async fn renew(
        &self,
        key: &KeyDigest,
        token: FencingToken,
        lease: Duration,
    ) -> Result<(), StoreError> {
        let now = self.inner.now();
        self.inner
            .with_owned(&MapKey::of(key), token, now, |entry| {
                if let Some(in_flight) = entry.as_in_flight_mut() {
                    in_flight.deadline = now.saturating_add(ticks(lease));
                }
            })
    }

    /// Returns as soon as the claim settles: the waiter is told, not polling.
    async fn wait_settled(
        &self,
        key: &KeyDigest,
        max: Duration,
    ) -> Result<WaitSettled, StoreError> {
        let now = self.inner.now();
        let key = &MapKey::of(key);
        let Some((notify, token, lease_until)) = self.inner.waiters(key, now) else {
            return Ok(WaitSettled::Notified);
        };
        let notified = notify.notified();
        let mut notified = std::pin::pin!(notified);
        notified.as_mut().enable();
        // Settled between the look-up and the registration: no need to wait.
        if !self
            .inner
            .entries
            .get(key)
            .is_some_and(|entry| entry.is_owned_by(token, now))
        {
            return Ok(WaitSettled::Notified);
        }
        // A lapse tells no one: wake at the end of the lease at the latest.
        let wait = max.min(Duration::from_nanos(lease_until.saturating_sub(now)));
        let _ = tokio::time::timeout(wait, notified).await;
        Ok(WaitSettled::Notified)
    }

    async fn inspect(&self, key: &KeyDigest) -> Result<KeyState, StoreError> {
        let now = self.inner.now();
        let Some(entry) = self.inner.entries.get(&MapKey::of(key)) else {
            return Ok(KeyState::Absent);
        };
        if !entry.is_live(now) {
            return Ok(KeyState::Absent);
        }
        let left = Duration::from_nanos(entry.deadline() - now);
        Ok(match entry.held() {
            Held::InFlight(_) => KeyState::InFlight { lease_left: left },
            Held::Record(packed, large_body) => match packed.unpack(large_body)?.response {
                Some(response) => KeyState::Completed {
                    status: response.status,
                    expires_in: left,
                },
                None => KeyState::Tombstone { expires_in: left },
            },
        })
    }

    async fn forget(&self, key: &KeyDigest) -> Result<bool, StoreError> {
        let now = self.inner.now();
        let mut live = false;
        self.inner.remove_if(&MapKey::of(key), |entry| {
            live = entry.is_live(now);
            true
        });
        Ok(live)
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue, StatusCode};

    use super::*;

    const FP: Fingerprint = Fingerprint::from_bytes([7; 32]);
    const LEASE: Duration = Duration::from_secs(30);
    const TTL: Duration = Duration::from_secs(60);

    fn record(body_len: usize) -> Record {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        Record {
            fingerprint: FP,
            response: Some(RecordedResponse {
                status: StatusCode::CREATED,
                headers,
                body: Bytes::from((0..body_len).map(|i| (i % 251) as u8).collect::<Vec<_>>()),
            }),
        }
    }

    async fn recorded(store: &MemoryStore, id: u8, record: &Record) -> KeyDigest {
        let key = KeyDigest::from_bytes([id; 32]);
        let ClaimOutcome::Claimed(token) = store.claim(&key, &FP, LEASE).await.unwrap() else {
            panic!("not claimed");
        };
        store.record(&key, token, record, TTL).await.unwrap();
        key
    }

    #[test]
    fn an_entry_is_two_words() {
        assert_eq!(std::mem::size_of::<Entry>(), 16);
    }

    #[tokio::test(start_paused = true)]
    async fn every_layout_replays_its_record_until_its_deadline() {
        let store = MemoryStore::new();
        let tombstone = Record {
            fingerprint: FP,
            response: None,
        };
        let cases = [
            ("empty", record(0)),
            ("inline", record(INLINE_BODY)),
            ("large", record(INLINE_BODY + 1)),
            ("tombstone", tombstone),
        ];
        let mut keys = Vec::new();
        for (id, (name, record)) in (0..).zip(&cases) {
            let key = recorded(&store, id, record).await;
            let entry = store.inner.entries.get(&MapKey::of(&key)).unwrap();
            let large = matches!(entry.held(), Held::Record(_, Some(_)));
            assert_eq!(
                large,
                *name == "large",
                "{name}: the body is kept apart only when large"
            );
            drop(entry);
            keys.push(key);
        }
        tokio::time::advance(TTL - Duration::from_millis(1)).await;
        for ((name, record), key) in cases.iter().zip(&keys) {
            let outcome = store.claim(key, &FP, LEASE).await.unwrap();
            assert_eq!(outcome, ClaimOutcome::Completed(record.clone()), "{name}");
            let state = store.inspect(key).await.unwrap();
            let expires_in = match state {
                KeyState::Completed { expires_in, .. } | KeyState::Tombstone { expires_in } => {
                    expires_in
                }
                other => panic!("{name}: {other:?}"),
            };
            assert_eq!(expires_in, Duration::from_millis(1), "{name}");
        }
        tokio::time::advance(Duration::from_millis(1)).await;
        for ((name, _), key) in cases.iter().zip(&keys) {
            assert_eq!(
                store.inspect(key).await.unwrap(),
                KeyState::Absent,
                "{name}"
            );
            let outcome = store.claim(key, &FP, LEASE).await.unwrap();
            assert!(
                matches!(outcome, ClaimOutcome::Claimed(_)),
                "{name}: {outcome:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_large_body_is_replayed_without_a_copy() {
        let store = MemoryStore::new();
        let record = record(64 * 1024);
        let key = recorded(&store, 1, &record).await;
        let ClaimOutcome::Completed(replayed) = store.claim(&key, &FP, LEASE).await.unwrap() else {
            panic!("not completed");
        };
        let (Some(original), Some(replayed)) = (&record.response, &replayed.response) else {
            panic!("no response");
        };
        assert_eq!(replayed.body.as_ptr(), original.body.as_ptr());
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_moves_the_lease_of_the_claim_it_owns() {
        let store = MemoryStore::new();
        let key = KeyDigest::from_bytes([9; 32]);
        let ClaimOutcome::Claimed(token) = store.claim(&key, &FP, LEASE).await.unwrap() else {
            panic!("not claimed");
        };
        tokio::time::advance(LEASE - Duration::from_secs(1)).await;
        store.renew(&key, token, LEASE).await.unwrap();
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            store.inspect(&key).await.unwrap(),
            KeyState::InFlight {
                lease_left: LEASE - Duration::from_secs(2)
            }
        );
    }
}
