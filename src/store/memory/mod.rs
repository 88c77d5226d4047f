//! [`MemoryStore`]: records in this process, in sharded hash tables.

mod packed;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry as TableEntry;
use tokio::sync::Notify;
use tokio::time::Instant;

use bytes::Bytes;

use packed::PackedRecord;

use super::{
    ClaimOutcome, FencingToken, Fingerprint, KeyDigest, KeyState, Record, RecordedResponse, Store,
    StoreError, StoreErrorKind, WaitSettled,
};

/// Number of shards, each a table and its expiry queue under one lock; a
/// power of two, so that a byte of the digest picks one.
const SHARDS: usize = 64;
/// Expired entries removed, at most, by each claim: more than a claim adds, so
/// the store keeps up with its own expiry without a background task.
const SWEEP_PER_CLAIM: usize = 4;
/// Live claims looked past, at most, to make room for one new key when full.
const EVICTION_SCAN: usize = 64;
/// Bodies up to this size are packed into the record's one allocation; larger
/// ones are kept as the response's own `Bytes`, without a copy.
const INLINE_BODY: usize = 4096;

/// The default store: records in this process's memory, in sharded hash
/// tables.
///
/// Right for one process. Replicas behind a load balancer each have their own
/// memory, so they need a shared store (Redis or Postgres) to run a key once.
///
/// - **Expiry** runs inside the store: every claim of a key the store does not
///   hold removes up to a few expired entries from a per-shard expiry queue
///   (no global lock, no scan of the tables), and
///   [`purge_expired`](Self::purge_expired) removes them all.
/// - **Capacity** is optional ([`with_capacity`](Self::with_capacity)). When the
///   store is full, a new key first removes an expired entry, else evicts the
///   completed record closest to expiry in its shard's expiry queue (one of
///   64, chosen by the key's digest; the next ones if that queue has none). In-flight
///   claims are never evicted. If none can be evicted, the claim fails with
///   [`StoreErrorKind::CapacityExhausted`] and the layer answers 503. Concurrent claims may overshoot the bound by at most
///   their number. An evicted key has lost its protection: a late retry with it
///   runs again, so size the store for the keys one TTL brings.
/// - **Time** is Tokio's clock, so tests can pause and advance it.
/// - **Memory** is kept small: a table slot is 16 bytes (the entry, which
///   holds its own key: a 16-byte share of the key's digest); a record is
///   one allocation holding its key, deadline, fingerprint, status, headers
///   and (up to 4 KiB) body, packed (a common header line such as
///   `content-type: application/json` is one byte, a common header name is
///   one byte, a length under 128 is one byte); a larger body is kept as the
///   response's own `Bytes`, not copied. About 230 bytes per record of a
///   100-byte response, measured by `benches/programs/memory_per_record.rs`
///   in the repository at a million records: 176 for the record, about 36
///   for its table slot and 17 for its place in the expiry queues.
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
    shards: Box<[Shard]>,
    /// Number of entries, over all shards (kept here so that a claim does not
    /// lock every shard to count them).
    len: AtomicUsize,
    capacity: Option<usize>,
    next_token: AtomicU64,
    /// Time zero of the store's ticks.
    epoch: Instant,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            len: AtomicUsize::new(0),
            capacity: None,
            next_token: AtomicU64::new(1),
            epoch: Instant::now(),
        }
    }
}

/// One shard of the store: its table and its expiry queue, under one lock, so
/// that a claim adds its entry and its expiry item (and sweeps) in one write.
/// Aligned so that two shards' locks never share a cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard(RwLock<Table>);

impl Shard {
    // A panic while holding the lock leaves the table and the heap valid, so
    // poisoning is ignored.
    fn read(&self) -> RwLockReadGuard<'_, Table> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Table> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Nanoseconds since the store's epoch, on Tokio's clock: eight bytes where an
/// `Instant` takes sixteen.
type Tick = u64;

fn ticks(duration: Duration) -> Tick {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// An entry's key: the first 128 bits of the (scope, key) digest. Two keys
/// share it with odds of 2^-128 per pair (a billion keys: about 10^-21), and it
/// cannot be chosen to collide (it is a SHA-256). Half the size of the whole
/// digest, and kept in the entry itself, not beside it in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MapKey([u8; 16]);

impl MapKey {
    fn of(digest: &KeyDigest) -> Self {
        let mut key = [0; 16];
        key.copy_from_slice(&digest.as_bytes()[..16]);
        Self(key)
    }

    const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Its two halves, as words.
    fn words(&self) -> (u64, u64) {
        let (mut low, mut high) = ([0; 8], [0; 8]);
        low.copy_from_slice(&self.0[..8]);
        high.copy_from_slice(&self.0[8..]);
        (u64::from_le_bytes(low), u64::from_le_bytes(high))
    }

    /// Its shard: one of its bytes (a client can make its keys share a
    /// shard, which only puts them behind one lock).
    fn shard(&self) -> usize {
        usize::from(self.0[8]) % SHARDS
    }
}

/// The secret a table hashes its keys with. Keys are SHA-256 digests, so
/// their bits are spread already, but a client who knows how a key's digest
/// is made could search for keys whose digests share the bits that pick a
/// bucket, and pile them up in one probe sequence (hash flooding). Mixed
/// with a secret drawn for each table, those bits are unknown to a client.
#[derive(Clone, Copy)]
struct Seed(u64, u64);

/// Not shown: a secret has no place in a log line.
impl std::fmt::Debug for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seed(..)")
    }
}

impl Seed {
    /// A seed from the process's random hash keys.
    fn random() -> Self {
        let state = RandomState::new();
        Self(state.hash_one(0_u8), state.hash_one(1_u8))
    }

    /// A key's hash: both halves, each mixed with the secret, multiplied as
    /// 128 bits and folded (the product's high half depends on every bit of
    /// both; cheap: one multiplication).
    fn hash(self, key: &MapKey) -> u64 {
        let (low, high) = key.words();
        let product = u128::from(low ^ self.0) * u128::from(high ^ self.1);
        (product as u64) ^ ((product >> 64) as u64)
    }
}

/// A shard's entries, and when they end.
#[derive(Debug)]
struct Table {
    entries: HashTable<Entry>,
    /// Deadlines of entries, earliest first. Every entry has an item no later
    /// than its deadline: scheduled by its claim, moved on by the sweep when
    /// the entry's deadline has moved later (a record, a renewal). An item
    /// may be stale (its entry left); the sweep checks the entry itself.
    expiry: ExpiryQueue,
    seed: Seed,
}

impl Default for Table {
    fn default() -> Self {
        Self::with_seed(Seed::random())
    }
}

/// An item of an expiry queue: a deadline, and the entry's hash (not its
/// key, so that an item is 16 bytes, not 24). Should two entries of a shard
/// share a hash (odds of 2^-64 per pair), an item may find the other one:
/// the sweep still removes only an entry past its deadline, so the worst it
/// does is remove one of them later than it could.
type ExpiryQueue = BinaryHeap<Reverse<(Tick, u64)>>;

impl Table {
    fn with_seed(seed: Seed) -> Self {
        Self {
            entries: HashTable::new(),
            expiry: ExpiryQueue::new(),
            seed,
        }
    }

    fn hash(&self, key: &MapKey) -> u64 {
        self.seed.hash(key)
    }

    fn hash_of(&self, entry: &Entry) -> u64 {
        self.seed.hash(&entry.key())
    }

    fn find(&self, key: &MapKey) -> Option<&Entry> {
        self.entries
            .find(self.hash(key), |entry| entry.has_key(key))
    }

    fn find_mut(&mut self, key: &MapKey) -> Option<&mut Entry> {
        let hash = self.hash(key);
        self.entries.find_mut(hash, |entry| entry.has_key(key))
    }

    /// The slot of `key` (whose hash is `hash`), held or free.
    fn entry(&mut self, hash: u64, key: &MapKey) -> TableEntry<'_, Entry> {
        let seed = self.seed;
        self.entries.entry(
            hash,
            |entry| entry.has_key(key),
            move |entry| seed.hash(&entry.key()),
        )
    }

    /// Removes the entry of `key` if `f` says so; tells whether it did.
    fn remove_if(&mut self, key: &MapKey, f: impl FnOnce(&Entry) -> bool) -> bool {
        let hash = self.hash(key);
        match self.entries.find_entry(hash, |entry| entry.has_key(key)) {
            Ok(occupied) if f(occupied.get()) => {
                occupied.remove();
                true
            }
            _ => false,
        }
    }

    /// Removes an entry of `hash` for which `f` holds; tells whether it did.
    fn remove_hashed_if(&mut self, hash: u64, f: impl Fn(&Entry) -> bool) -> bool {
        let seed = self.seed;
        match self
            .entries
            .find_entry(hash, |entry| seed.hash(&entry.key()) == hash && f(entry))
        {
            Ok(occupied) => {
                occupied.remove();
                true
            }
            Err(_) => false,
        }
    }

    fn find_hashed(&self, hash: u64) -> Option<&Entry> {
        self.entries.find(hash, |entry| self.hash_of(entry) == hash)
    }

    /// Schedules the entry of `hash` to be looked at by `deadline`.
    fn schedule(&mut self, hash: u64, deadline: Tick) {
        self.expiry.push(Reverse((deadline, hash)));
    }

    /// Removes up to `max` expired entries; returns how many.
    fn sweep(&mut self, now: Tick, max: usize) -> usize {
        let mut removed = 0;
        for _ in 0..max {
            match self.expiry.peek() {
                Some(Reverse((deadline, _))) if *deadline <= now => {}
                _ => break,
            }
            let Some(Reverse((_, hash))) = self.expiry.pop() else {
                break;
            };
            if self.remove_hashed_if(hash, |entry| !entry.is_live(now)) {
                removed += 1;
            } else if let Some(entry) = self.find_hashed(hash) {
                // Recorded or renewed since: its one item moves to its deadline.
                let deadline = entry.deadline();
                self.schedule(hash, deadline);
            }
        }
        removed
    }

    /// Removes an expired entry, or evicts the completed record closest to
    /// expiry, looking past at most `budget` live claims (and counting them
    /// off it); tells whether it removed one.
    fn evict_one(&mut self, now: Tick, budget: &mut usize) -> bool {
        let mut kept = Vec::new();
        let mut evicted = false;
        while *budget > 0 {
            let Some(Reverse((deadline, hash))) = self.expiry.pop() else {
                break;
            };
            let removed = self.remove_hashed_if(hash, |entry| {
                !entry.is_live(now) || matches!(entry.held(), Held::Record(..))
            });
            if removed {
                evicted = true;
                break;
            }
            // A live claim, or a stale item: keep it for its own deadline.
            if self.find_hashed(hash).is_some() {
                kept.push(Reverse((deadline, hash)));
                *budget -= 1;
            }
        }
        self.expiry.extend(kept);
        evicted
    }
}

/// What the store holds for a key, until its deadline (the end of the lease,
/// or of the TTL), its key included. Two words, so that a table slot is 16
/// bytes: the common case, a record with a small body, is one allocation
/// holding its key and deadline too; the rest is boxed.
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
    key: MapKey,
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
    fn in_flight(
        key: MapKey,
        deadline: Tick,
        fingerprint: Fingerprint,
        token: FencingToken,
    ) -> Self {
        Self::Boxed(Box::new(Boxed::InFlight(InFlight {
            key,
            deadline,
            fingerprint,
            token,
            waiters: Waiters::default(),
        })))
    }

    fn record(key: &MapKey, record: &Record, deadline: Tick) -> Self {
        match &record.response {
            Some(response) if response.body.len() > INLINE_BODY => {
                let head = RecordedResponse {
                    status: response.status,
                    headers: response.headers.clone(),
                    body: Bytes::new(),
                };
                let packed = PackedRecord::new(key, &record.fingerprint, Some(&head), deadline);
                Self::Boxed(Box::new(Boxed::LargeRecord(packed, response.body.clone())))
            }
            response => Self::Record(PackedRecord::new(
                key,
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

    fn key(&self) -> MapKey {
        match self.held() {
            Held::InFlight(in_flight) => in_flight.key,
            Held::Record(packed, _) => packed.key(),
        }
    }

    fn has_key(&self, key: &MapKey) -> bool {
        self.key() == *key
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
        (0..SHARDS)
            .map(|shard| self.inner.sweep(shard, now, usize::MAX))
            .sum()
    }
}

impl Inner {
    fn now(&self) -> Tick {
        ticks(Instant::now().saturating_duration_since(self.epoch))
    }

    fn shard(&self, key: &MapKey) -> &Shard {
        &self.shards[key.shard()]
    }

    fn removed(&self, n: usize) {
        if n > 0 {
            self.len.fetch_sub(n, Ordering::Relaxed);
        }
    }

    fn remove_if(&self, key: &MapKey, f: impl FnOnce(&Entry) -> bool) -> bool {
        let removed = self.shard(key).write().remove_if(key, f);
        self.removed(usize::from(removed));
        removed
    }

    /// Removes up to `max` expired entries of one shard.
    fn sweep(&self, shard: usize, now: Tick, max: usize) -> usize {
        let removed = self.shards[shard].write().sweep(now, max);
        self.removed(removed);
        removed
    }

    /// Makes room for one key: removes an expired entry or evicts the completed
    /// record closest to expiry in a shard, trying the shard of `key` first,
    /// then the next ones, looking past at most [`EVICTION_SCAN`] live claims
    /// in all.
    fn make_room(&self, key: &MapKey, now: Tick) -> bool {
        let first = key.shard();
        let mut budget = EVICTION_SCAN;
        let evicted = (0..SHARDS).any(|i| {
            budget > 0
                && self.shards[(first + i) % SHARDS]
                    .write()
                    .evict_one(now, &mut budget)
        });
        self.removed(usize::from(evicted));
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
        let shard = self.shard(key);
        // A key that is held (the common retry: a record to replay) is
        // answered under the shard's read lock, so concurrent replays of one
        // key share it instead of queueing for the write lock; nothing is
        // added, so nothing is swept.
        if let Some(held) = shard.read().find(key).filter(|held| held.is_live(now)) {
            return Ok(MapClaim::Done(held.outcome()?));
        }
        let lease_until = now.saturating_add(ticks(lease));
        let in_flight = |token| Entry::in_flight(*key, lease_until, *fingerprint, token);
        // One write for the sweep, the entry and its expiry item.
        let mut table = shard.write();
        self.removed(table.sweep(now, SWEEP_PER_CLAIM));
        let hash = table.hash(key);
        let token = match table.entry(hash, key) {
            TableEntry::Occupied(mut occupied) => {
                let held = occupied.get();
                if held.is_live(now) {
                    // Taken between the read and the write lock.
                    return Ok(MapClaim::Done(held.outcome()?));
                }
                let token = self.new_token();
                *occupied.get_mut() = in_flight(token);
                token
            }
            TableEntry::Vacant(vacant) => {
                if self.is_full() {
                    return Ok(MapClaim::Full);
                }
                let token = self.new_token();
                vacant.insert(in_flight(token));
                self.len.fetch_add(1, Ordering::Relaxed);
                token
            }
        };
        table.schedule(hash, lease_until);
        Ok(MapClaim::Done(ClaimOutcome::Claimed(token)))
    }

    /// The waiters of `key` if it is in flight under a live lease: a
    /// notification handle, the owner's token and the end of its lease.
    fn waiters(&self, key: &MapKey, now: Tick) -> Option<(Arc<Notify>, FencingToken, Tick)> {
        let mut table = self.shard(key).write();
        let in_flight = table
            .find_mut(key)?
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
        let mut table = self.shard(key).write();
        let entry = table
            .find_mut(key)
            .filter(|entry| entry.is_owned_by(token, now))
            .ok_or(StoreErrorKind::LeaseLost)?;
        // The entry keeps the one expiry item its claim scheduled: a record or
        // a renewal only moves its deadline later, and the sweep moves the
        // item when it comes due. One item per entry, not one per update.
        f(entry);
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
        let key = &MapKey::of(key);
        let packed = Entry::record(key, record, now.saturating_add(ticks(ttl)));
        self.inner
            .with_owned(key, token, now, |entry| *entry = packed)
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
            .shard(key)
            .read()
            .find(key)
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
        let key = &MapKey::of(key);
        let table = self.inner.shard(key).read();
        let Some(entry) = table.find(key) else {
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
            let map_key = MapKey::of(&key);
            let table = store.inner.shard(&map_key).read();
            let entry = table.find(&map_key).unwrap();
            let large = matches!(entry.held(), Held::Record(_, Some(_)));
            assert_eq!(
                large,
                *name == "large",
                "{name}: the body is kept apart only when large"
            );
            drop(table);
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

    fn map_key(low: u64, high: u64) -> MapKey {
        let mut key = [0; 16];
        key[..8].copy_from_slice(&low.to_le_bytes());
        key[8..].copy_from_slice(&high.to_le_bytes());
        MapKey(key)
    }

    /// Two keys with one hash (only a test, which knows the seed, can make
    /// them: it takes 2^-64 odds otherwise): each is still found by its whole
    /// key, and the sweep removes each at its own deadline, never the live
    /// one, whichever of them the table finds first.
    #[test]
    fn keys_sharing_a_hash_are_kept_apart_and_expire_on_their_own() {
        // With a zero seed the hash is the folded product of the halves.
        let (early, late) = (map_key(2, 3), map_key(3, 2));
        for order in [[early, late], [late, early]] {
            let mut table = Table::with_seed(Seed(0, 0));
            assert_eq!(table.hash(&early), table.hash(&late));
            for key in order {
                let (body_len, deadline) = if key == early { (1, 10) } else { (2, 20) };
                let hash = table.hash(&key);
                let TableEntry::Vacant(vacant) = table.entry(hash, &key) else {
                    panic!("held");
                };
                vacant.insert(Entry::record(&key, &record(body_len), deadline));
                table.schedule(hash, deadline);
            }
            let body_of = |table: &Table, key| {
                let Held::Record(packed, _) = table.find(key).unwrap().held() else {
                    panic!("not a record");
                };
                packed.unpack(None).unwrap().response.unwrap().body.len()
            };
            assert_eq!((body_of(&table, &early), body_of(&table, &late)), (1, 2));
            assert_eq!(table.sweep(10, usize::MAX), 1);
            assert!(table.find(&early).is_none());
            assert_eq!(body_of(&table, &late), 2);
            assert_eq!(table.sweep(19, usize::MAX), 0);
            assert_eq!(table.sweep(20, usize::MAX), 1);
            assert!(table.entries.is_empty() && table.expiry.is_empty());
        }
    }

    /// A client who could choose bucket bits would put keys whose digests
    /// share their low bits in one probe sequence; mixed with the seed,
    /// such keys land all over the table.
    #[test]
    fn a_seed_is_not_shown() {
        let shown = format!("{:?}", Seed(0x1234_5678, 0x9abc_def0));
        assert_eq!(shown, "Seed(..)");
    }

    #[test]
    fn keys_sharing_their_low_bits_spread_over_the_buckets() {
        let table = Table::default();
        let buckets: std::collections::HashSet<u64> = (0..256_u64)
            .map(|i| table.hash(&map_key(7, i << 32)) & 0xffff)
            .collect();
        assert!(buckets.len() > 200, "{} buckets of 256 keys", buckets.len());
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
