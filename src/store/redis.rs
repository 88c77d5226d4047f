//! [`RedisStore`]: records in Redis, shared by every replica.

use std::fmt::{self, Write};
use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError, Script};

use super::codec;
use super::timeout::within;
use super::{
    ClaimOutcome, FencingToken, Fingerprint, KeyDigest, Record, Store, StoreError, StoreErrorKind,
    new_token,
};

/// Claims a free key, or returns what it holds. One round trip.
///
/// A key's value is one binary string: `F` or `C`, the 32-byte fingerprint,
/// then the owner's token (in flight, as decimal text) or the encoded record
/// (completed). An in-flight key expires with its lease, a completed one with
/// its TTL: Redis itself forgets them (`PX`).
const CLAIM: &str = r"
local held = redis.call('GET', KEYS[1])
if held then return held end
redis.call('SET', KEYS[1], 'F' .. ARGV[1] .. ARGV[2], 'PX', ARGV[3])
return false
";

/// Shared prologue: is ARGV[1] the token of the live in-flight claim?
macro_rules! owned_by_token {
    ($then:literal) => {
        concat!(
            r"
local held = redis.call('GET', KEYS[1])
if not held or string.sub(held, 1, 1) ~= 'F' or string.sub(held, 34) ~= ARGV[1] then
  return 0
end
",
            $then,
            "\nreturn 1\n"
        )
    };
}

/// Completes the claim of token ARGV[1] with the record ARGV[2] for ARGV[3] ms.
const RECORD: &str = owned_by_token!("redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])");
/// Deletes the claim of token ARGV[1].
const RELEASE: &str = owned_by_token!("redis.call('DEL', KEYS[1])");
/// Extends the lease of token ARGV[1] to ARGV[2] ms from now.
const RENEW: &str = owned_by_token!("redis.call('PEXPIRE', KEYS[1], ARGV[2])");

static CLAIM_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(CLAIM));
static RECORD_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RECORD));
static RELEASE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE));
static RENEW_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RENEW));

/// The default key prefix.
const DEFAULT_PREFIX: &str = "idempotency:";
/// The default bound on each call.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// A store in Redis, for several replicas behind a load balancer: replicas
/// that share one Redis run each key once between them.
///
/// - **Atomic and fenced inside Redis.** Each operation is one Lua script on
///   one key, so claiming, recording, releasing and renewing are each one round
///   trip, and none reads then writes from the client. A claim of a completed
///   key answers with the record, so a replay costs one round trip in all.
///   (The first call of each script after Redis starts or its script cache is
///   flushed costs one more round trip to load it.)
/// - **Expiry is Redis expiry** (`PX`): an in-flight key lives for its lease, a
///   completed one for its TTL; nothing needs sweeping. A lapsed lease is
///   simply gone, so a stale owner's late record finds no claim of its own.
/// - **Compact and binary-safe.** A key is the prefix and the 64 hex digits of
///   the (scope, key) digest; its value one binary string holding the
///   fingerprint and the record, body as raw bytes.
/// - **One key per operation**, so Redis Cluster can serve it. (Tested here
///   against a single Redis only.)
/// - **Waiting** for an in-flight key polls with backoff (the trait's default).
/// - **Failures**: each call is bounded by [`timeout`](Self::timeout) (default
///   2 s) on top of the layer's own store timeout; a dead Redis answers with an
///   error, the layer with 503 (or fail-open), and the connection manager
///   reconnects by itself when Redis is back.
///
/// ```no_run
/// use tower_idempotency::IdempotencyLayer;
/// use tower_idempotency::store::RedisStore;
///
/// # async fn example() -> Result<(), tower_idempotency::store::StoreError> {
/// let store = RedisStore::connect("redis://127.0.0.1:6379").await?.prefix("orders-api:");
/// let layer = IdempotencyLayer::new(store);
/// # Ok(()) }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    prefix: String,
    timeout: Duration,
}

impl RedisStore {
    /// Creates a store on a connection you made (with your own TLS, auth and
    /// reconnection settings).
    pub fn new(connection: ConnectionManager) -> Self {
        Self {
            connection,
            prefix: DEFAULT_PREFIX.to_owned(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Connects to the Redis at `url` (`redis://host:port/db`) and checks that
    /// it answers.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let client = Client::open(url).map_err(unavailable)?;
        let connection = ConnectionManager::new_with_config(client, manager_config())
            .await
            .map_err(unavailable)?;
        Ok(Self::new(connection))
    }

    /// Creates a store for the Redis at `url` that connects on its first call, so an
    /// application can start while Redis is down (its requests get 503 until
    /// Redis answers).
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let client = Client::open(url).map_err(unavailable)?;
        let connection = ConnectionManager::new_lazy_with_config(client, manager_config())
            .map_err(unavailable)?;
        Ok(Self::new(connection))
    }

    /// Sets the prefix of every key the store writes. Default: `idempotency:`.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the bound on each call to Redis. Default: 2 seconds.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn redis_key(&self, key: &KeyDigest) -> String {
        let mut redis_key = String::with_capacity(self.prefix.len() + 64);
        // Writing to a String cannot fail.
        let _ = write!(redis_key, "{}{key:x}", self.prefix);
        redis_key
    }

    /// Runs one script, bounded by the store's timeout.
    async fn run<T: redis::FromRedisValue>(
        &self,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut connection = self.connection.clone();
        within(self.timeout, async {
            invocation
                .invoke_async(&mut connection)
                .await
                .map_err(unavailable)
        })
        .await
    }

    /// Runs a script that answers 1 if the token owned the claim, 0 if not.
    async fn run_fenced(&self, invocation: redis::ScriptInvocation<'_>) -> Result<(), StoreError> {
        match self.run::<i64>(invocation).await? {
            1 => Ok(()),
            _ => Err(StoreErrorKind::LeaseLost.into()),
        }
    }
}

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(DEFAULT_TIMEOUT))
        .set_response_timeout(Some(DEFAULT_TIMEOUT))
}

fn unavailable(error: RedisError) -> StoreError {
    StoreError::with_source(StoreErrorKind::Unavailable, error)
}

fn millis(duration: Duration) -> u64 {
    // Redis refuses 0 ms; round up to at least 1.
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// What a claim found in a key's value.
pub(crate) fn decode_held(held: Vec<u8>) -> Result<ClaimOutcome, StoreError> {
    let corrupt = || StoreError::new(StoreErrorKind::Corrupt);
    let held = Bytes::from(held);
    if held.len() < 33 {
        return Err(corrupt());
    }
    let mut fingerprint = [0; 32];
    fingerprint.copy_from_slice(&held[1..33]);
    let fingerprint = Fingerprint::from_bytes(fingerprint);
    match held[0] {
        b'F' => Ok(ClaimOutcome::InFlight { fingerprint }),
        b'C' => Ok(ClaimOutcome::Completed(Record {
            fingerprint,
            response: codec::decode(held.slice(33..))?,
        })),
        _ => Err(corrupt()),
    }
}

impl Store for RedisStore {
    async fn claim(
        &self,
        key: &KeyDigest,
        fingerprint: &Fingerprint,
        lease: Duration,
    ) -> Result<ClaimOutcome, StoreError> {
        let token = new_token();
        let mut invocation = CLAIM_SCRIPT.prepare_invoke();
        invocation
            .key(self.redis_key(key))
            .arg(&fingerprint.as_bytes()[..])
            .arg(token.get().to_string())
            .arg(millis(lease));
        match self.run::<Option<Vec<u8>>>(invocation).await? {
            None => Ok(ClaimOutcome::Claimed(token)),
            Some(held) => decode_held(held),
        }
    }

    async fn record(
        &self,
        key: &KeyDigest,
        token: FencingToken,
        record: &Record,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut value = Vec::new();
        value.push(b'C');
        value.extend_from_slice(record.fingerprint.as_bytes());
        codec::encode(record.response.as_ref(), &mut value);
        let mut invocation = RECORD_SCRIPT.prepare_invoke();
        invocation
            .key(self.redis_key(key))
            .arg(token.get().to_string())
            .arg(value)
            .arg(millis(ttl));
        self.run_fenced(invocation).await
    }

    async fn release(&self, key: &KeyDigest, token: FencingToken) -> Result<(), StoreError> {
        let mut invocation = RELEASE_SCRIPT.prepare_invoke();
        invocation
            .key(self.redis_key(key))
            .arg(token.get().to_string());
        self.run_fenced(invocation).await
    }

    async fn renew(
        &self,
        key: &KeyDigest,
        token: FencingToken,
        lease: Duration,
    ) -> Result<(), StoreError> {
        let mut invocation = RENEW_SCRIPT.prepare_invoke();
        invocation
            .key(self.redis_key(key))
            .arg(token.get().to_string())
            .arg(millis(lease));
        self.run_fenced(invocation).await
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_values_decode_or_are_refused() {
        let mut in_flight = vec![b'F'];
        in_flight.extend_from_slice(&[9; 32]);
        in_flight.extend_from_slice(b"12345");
        assert_eq!(
            decode_held(in_flight).unwrap(),
            ClaimOutcome::InFlight {
                fingerprint: Fingerprint::from_bytes([9; 32])
            }
        );
        for bad in [vec![], vec![b'F'; 10], vec![b'X'; 40], {
            let mut v = vec![b'C'];
            v.extend_from_slice(&[0; 32]);
            v.push(7);
            v
        }] {
            assert!(decode_held(bad).is_err());
        }
    }
}
