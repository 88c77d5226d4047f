//! [`MemoryStore`]: records in this process, on a sharded map.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry as MapEntry;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{ClaimOutcome, FencingToken, KeyDigest, Record, Store, StoreError, StoreErrorKind};
use crate::fingerprint::Fingerprint;

/// Number of expiry queues; a power of two so a digest byte picks one.
const EXPIRY_SHARDS: usize = 64;
/// Expired entries removed, at most, by each claim: more than a claim adds, so
/// the store keeps up with its own expiry without a background task.
const SWEEP_PER_CLAIM: usize = 4;
/// Live claims looked past, at most, to make room for one new key when full.
const EVICTION_SCAN: usize = 64;

/// The default store: records in this process's memory, on a [`DashMap`].
///
/// Right for one process. Replicas behind a load balancer each have their own
/// memory, so they need a shared store (Redis or Postgres) to run a key once.
///
/// - **Expiry** runs inside the store: every claim removes up to a few expired
///   entries from a per-shard expiry queue (no global lock, no scan of the
///   map), and [`purge_expired`](Self::purge_expired) removes them all.
/// - **Capacity** is optional ([`with_capacity`](Self::with_capacity)). When the
///   store is full, a new key first removes an expired entry, else evicts the
///   completed record closest to expiry in its expiry queue (one of 64, chosen
///   by the key's digest; the next ones if that queue has none). In-flight
///   claims are never evicted. If none can be evicted, the claim fails with [`StoreErrorKind::CapacityExhausted`] and
///   the layer answers 503. Concurrent claims may overshoot the bound by at most
///   their number. An evicted key has lost its protection: a late retry with it
///   runs again, so size the store for the keys one TTL brings.
/// - **Time** is Tokio's clock, so tests can pause and advance it.
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
    entries: DashMap<KeyDigest, Entry, DigestHash>,
    /// Deadlines of entries, one min-queue per shard of digests. An item may be
    /// stale (its entry moved to a later deadline or left); removal checks the
    /// entry itself.
    expiry: Box<[Mutex<ExpiryQueue>]>,
    /// Number of entries (kept here: `DashMap::len` locks every shard).
    len: AtomicUsize,
    capacity: Option<usize>,
    next_token: AtomicU64,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            entries: DashMap::with_hasher(DigestHash),
            expiry: (0..EXPIRY_SHARDS).map(|_| Mutex::default()).collect(),
            len: AtomicUsize::new(0),
            capacity: None,
            next_token: AtomicU64::new(1),
        }
    }
}

/// Hashes a [`KeyDigest`] by its first eight bytes: it is already a SHA-256,
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
type ExpiryQueue = BinaryHeap<Reverse<(Instant, KeyDigest)>>;

#[derive(Debug)]
enum Entry {
    InFlight {
        fingerprint: Fingerprint,
        token: FencingToken,
        lease_until: Instant,
        /// Requests waiting for this claim to settle; told when the entry is
        /// replaced or removed.
        waiters: Waiters,
    },
    Completed {
        record: Record,
        expires_at: Instant,
    },
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
    fn deadline(&self) -> Instant {
        match self {
            Self::InFlight { lease_until, .. } => *lease_until,
            Self::Completed { expires_at, .. } => *expires_at,
        }
    }

    fn is_live(&self, now: Instant) -> bool {
        self.deadline() > now
    }

    /// Whether `token` owns this entry's live lease.
    fn is_owned_by(&self, token: FencingToken, now: Instant) -> bool {
        matches!(self, Self::InFlight { token: owner, lease_until, .. }
            if *owner == token && *lease_until > now)
    }
}

impl MemoryStore {
    /// An unbounded store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding about `capacity` keys at most (see the type's docs for
    /// what is evicted).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                capacity: Some(capacity),
                ..Inner::default()
            }),
        }
    }

    /// Number of keys held, in flight or completed (expired ones included until
    /// they are removed).
    pub fn len(&self) -> usize {
        self.inner.len.load(Ordering::Relaxed)
    }

    /// Whether the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every expired record and lapsed claim now; returns how many.
    pub fn purge_expired(&self) -> usize {
        let now = Instant::now();
        (0..EXPIRY_SHARDS)
            .map(|shard| self.inner.sweep(shard, now, usize::MAX))
            .sum()
    }
}

impl Inner {
    fn shard_of(key: &KeyDigest) -> usize {
        usize::from(key.as_bytes()[0]) % EXPIRY_SHARDS
    }

    fn queue(&self, shard: usize) -> MutexGuard<'_, ExpiryQueue> {
        // A panic while holding the lock leaves the heap valid, so poisoning
        // is ignored.
        self.expiry[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn schedule(&self, key: KeyDigest, deadline: Instant) {
        self.queue(Self::shard_of(&key))
            .push(Reverse((deadline, key)));
    }

    fn remove_if(&self, key: &KeyDigest, f: impl FnOnce(&Entry) -> bool) -> bool {
        let removed = self.entries.remove_if(key, |_, entry| f(entry)).is_some();
        if removed {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
        removed
    }

    /// Removes up to `max` expired entries of one shard.
    fn sweep(&self, shard: usize, now: Instant, max: usize) -> usize {
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
            }
        }
        removed
    }

    /// Makes room for one key: removes an expired entry or evicts the completed
    /// record closest to expiry in a queue, trying the queue `key` falls in
    /// first, then the next ones, looking past at most [`EVICTION_SCAN`] live
    /// claims in all.
    fn make_room(&self, key: &KeyDigest, now: Instant) -> bool {
        let first = Self::shard_of(key);
        let mut budget = EVICTION_SCAN;
        (0..EXPIRY_SHARDS)
            .any(|i| budget > 0 && self.evict_one((first + i) % EXPIRY_SHARDS, now, &mut budget))
    }

    fn evict_one(&self, shard: usize, now: Instant, budget: &mut usize) -> bool {
        let mut queue = self.queue(shard);
        let mut kept = Vec::new();
        let mut evicted = false;
        while *budget > 0 {
            let Some(Reverse((deadline, key))) = queue.pop() else {
                break;
            };
            let removed = self.remove_if(&key, |entry| {
                !entry.is_live(now) || matches!(entry, Entry::Completed { .. })
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

    fn claim(&self, key: &KeyDigest, fingerprint: &Fingerprint, lease: Duration) -> MapClaim {
        let now = Instant::now();
        self.sweep(Self::shard_of(key), now, SWEEP_PER_CLAIM);
        let lease_until = now + lease;
        let in_flight = |token| Entry::InFlight {
            fingerprint: *fingerprint,
            token,
            lease_until,
            waiters: Waiters::default(),
        };
        let token = match self.entries.entry(*key) {
            MapEntry::Occupied(mut occupied) => {
                match occupied.get() {
                    Entry::InFlight {
                        fingerprint,
                        lease_until,
                        ..
                    } if *lease_until > now => {
                        return MapClaim::Done(ClaimOutcome::InFlight {
                            fingerprint: *fingerprint,
                        });
                    }
                    Entry::Completed { record, expires_at } if *expires_at > now => {
                        return MapClaim::Done(ClaimOutcome::Completed(record.clone()));
                    }
                    _ => {}
                }
                let token = self.new_token();
                occupied.insert(in_flight(token));
                token
            }
            MapEntry::Vacant(vacant) => {
                if self.is_full() {
                    return MapClaim::Full;
                }
                let token = self.new_token();
                vacant.insert(in_flight(token));
                self.len.fetch_add(1, Ordering::Relaxed);
                token
            }
        };
        self.schedule(*key, lease_until);
        MapClaim::Done(ClaimOutcome::Claimed(token))
    }

    /// The waiters of `key` if it is in flight under a live lease: a
    /// notification handle, the owner's token and the end of its lease.
    fn waiters(
        &self,
        key: &KeyDigest,
        now: Instant,
    ) -> Option<(Arc<Notify>, FencingToken, Instant)> {
        let mut entry = self.entries.get_mut(key)?;
        match &mut *entry {
            Entry::InFlight {
                token,
                lease_until,
                waiters,
                ..
            } if *lease_until > now => {
                let notify = waiters.0.get_or_insert_with(Arc::default);
                Some((Arc::clone(notify), *token, *lease_until))
            }
            _ => None,
        }
    }

    fn new_token(&self) -> FencingToken {
        FencingToken::new(self.next_token.fetch_add(1, Ordering::Relaxed))
    }

    /// Applies `f` to the entry if `token` owns its live lease.
    fn with_owned(
        &self,
        key: &KeyDigest,
        token: FencingToken,
        f: impl FnOnce(&mut Entry, Instant),
    ) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut entry = self
            .entries
            .get_mut(key)
            .filter(|entry| entry.is_owned_by(token, now))
            .ok_or(StoreErrorKind::LeaseLost)?;
        f(&mut entry, now);
        let deadline = entry.deadline();
        drop(entry);
        self.schedule(*key, deadline);
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
        match self.inner.claim(key, fingerprint, lease) {
            MapClaim::Done(outcome) => return Ok(outcome),
            MapClaim::Full => {}
        }
        if !self.inner.make_room(key, Instant::now()) {
            return Err(StoreErrorKind::CapacityExhausted.into());
        }
        match self.inner.claim(key, fingerprint, lease) {
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
        self.inner.with_owned(key, token, |entry, now| {
            *entry = Entry::Completed {
                record: record.clone(),
                expires_at: now + ttl,
            };
        })
    }

    async fn release(&self, key: &KeyDigest, token: FencingToken) -> Result<(), StoreError> {
        let now = Instant::now();
        if self
            .inner
            .remove_if(key, |entry| entry.is_owned_by(token, now))
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
        self.inner.with_owned(key, token, |entry, now| {
            if let Entry::InFlight { lease_until, .. } = entry {
                *lease_until = now + lease;
            }
        })
    }

    /// Returns as soon as the claim settles: the waiter is told, not polling.
    async fn wait_settled(
        &self,
        key: &KeyDigest,
        _attempt: u32,
        max: Duration,
    ) -> Result<(), StoreError> {
        let now = Instant::now();
        let Some((notify, token, lease_until)) = self.inner.waiters(key, now) else {
            return Ok(());
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
            return Ok(());
        }
        // A lapse tells no one: wake at the end of the lease at the latest.
        let wait = max.min(lease_until.saturating_duration_since(now));
        let _ = tokio::time::timeout(wait, notified).await;
        Ok(())
    }
}
