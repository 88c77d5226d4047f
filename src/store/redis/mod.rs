//! [`RedisStore`]: records in Redis, shared by every replica.

mod call;
mod relay;
mod scripts;

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Client, FromRedisValue, IntoConnectionInfo, RedisError};

use self::call::{Connection, Replication, ScriptCall, millis, record_key, unavailable};
use self::relay::RedisRelay;
use self::scripts::{
    CLAIM_SCRIPT, FORGET_SCRIPT, INSPECT_SCRIPT, RECORD_SCRIPT, RELEASE_SCRIPT, RENEW_SCRIPT,
};
use super::codec;
use super::{
    ClaimOutcome, FencingToken, Fingerprint, JoinRelay, KeyDigest, KeyState, Record, Store,
    StoreError, StoreErrorKind, new_token,
};

/// The default key prefix.
const DEFAULT_PREFIX: &str = "idempotency:";
/// The default bound on each call.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a joiner on another replica reads the response it joined.
const DEFAULT_JOIN_POLL: Duration = Duration::from_millis(5);

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
/// - **Redis Cluster** too ([`connect_cluster`](Self::connect_cluster),
///   [`from_cluster`](Self::from_cluster)): one key per operation, so each
///   goes to its key's primary; redirections during resharding and the
///   promoted replica after a failover are followed by the connection.
/// - **Replicated claims** (off by default,
///   [`replicas_acked`](Self::replicas_acked)): each write acknowledged by
///   replicas before the service runs, so a failover loses no claim.
/// - **Waiting** for an in-flight key polls with backoff (the trait's default).
/// - **Joining across replicas** (with the layer's `join_in_flight`): a
///   retry that reaches another replica joins the response as it streams.
///   The joiner announces itself on the channel `<prefix>join`, which every
///   replica's store listens to with one connection of its own; the replica
///   producing the response then copies it into a Redis stream,
///   `<prefix><digest>:live` (a head, a batch of chunks per entry, an end;
///   at most the recording limit, kept a lease and a minute after the last
///   write), which the joiner reads every
///   [`join_poll_interval`](Self::join_poll_interval). A response nobody
///   joins costs nothing. Stores made with [`connect`](Self::connect),
///   [`open`](Self::open) and [`connect_cluster`](Self::connect_cluster) do
///   this; a store made with [`new`](Self::new) or
///   [`from_cluster`](Self::from_cluster) has no client to listen with, so
///   its retries on other replicas wait for the record instead.
/// - **Failures**: each call is bounded by [`timeout`](Self::timeout) (default
///   2 s) on top of the layer's own store timeout; a dead Redis answers with an
///   error, the layer with 503 (or fail-open), and the connection manager
///   reconnects by itself when Redis is back.
///
/// **TLS** (feature `redis-rustls`, rustls with ring): `rediss://` URLs work
/// in [`connect`](Self::connect) and [`connect_cluster`](Self::connect_cluster),
/// the certificate checked against the platform's root store (which reads
/// `SSL_CERT_FILE` and `SSL_CERT_DIR`: point them at a private CA's
/// certificate). `rediss://host:port/#insecure` encrypts without checking
/// the certificate: for a test server's self-signed one, never in
/// production. For client certificates or a CA given as bytes, build the
/// client yourself with the `redis` crate (re-exported in
/// [`clients`](super::clients), so its version is the store's) and hand its
/// connection to [`new`](Self::new) or [`from_cluster`](Self::from_cluster).
///
/// On a managed Redis Cluster (the services' "cluster mode"), pass the
/// nodes or the configuration endpoint to
/// [`connect_cluster`](Self::connect_cluster); where the service requires
/// auth or settings of its own, build a `redis::cluster::ClusterClient` with
/// them and hand its connection to [`from_cluster`](Self::from_cluster). Turn on
/// [`replicas_acked`](Self::replicas_acked) where a second execution after a
/// failover would cost money.
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
    connection: Connection,
    prefix: String,
    timeout: Duration,
    replication: Option<Replication>,
    /// Where to listen for joiners on other replicas (none: no relay).
    listen_on: Vec<Client>,
    join_poll: Duration,
    /// The relay, made on first use from the settings above.
    relay: Arc<OnceLock<JoinRelay>>,
}

/// Fewer replicas acknowledged a write than the store was set to require.
#[derive(Debug, thiserror::Error)]
#[error("the write was acknowledged by {acknowledged} of the {required} replicas required")]
struct NotReplicated {
    acknowledged: i64,
    required: u32,
}

/// A connection could not be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to Redis at {address}: {cause}")]
struct CannotConnect {
    /// The address, without credentials.
    address: String,
    cause: String,
}

impl RedisStore {
    /// Creates a store on a connection you made (with your own TLS, auth and
    /// reconnection settings).
    pub fn new(connection: ConnectionManager) -> Self {
        Self::on(Connection::Single(connection))
    }

    /// Creates a store on a Redis Cluster connection you made (with your own
    /// TLS, auth, timeouts and retry settings). Each operation touches one
    /// key, so the cluster routes it to the key's primary, and redirections
    /// (`MOVED`, `ASK`) during resharding or after a failover are followed by
    /// the connection.
    pub fn from_cluster(connection: ClusterConnection) -> Self {
        Self::on(Connection::Cluster(connection))
    }

    fn on(connection: Connection) -> Self {
        Self {
            connection,
            prefix: DEFAULT_PREFIX.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            replication: None,
            listen_on: Vec::new(),
            join_poll: DEFAULT_JOIN_POLL,
            relay: Arc::default(),
        }
    }

    /// Listens for joiners on other replicas through `clients`.
    fn listening_on(mut self, clients: Vec<Client>) -> Self {
        self.listen_on = clients;
        self.relay = Arc::default();
        self
    }

    /// Connects to the Redis at `url` (`redis://host:port/db`, or
    /// `rediss://` for TLS with the feature `redis-rustls`) and checks that
    /// it answers, within 2 seconds; the error names the address and the
    /// cause.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let client = Client::open(url).map_err(unavailable)?;
        let address = client.get_connection_info().addr().to_string();
        // One plain attempt first: the connection manager retries with
        // backoff, which would hide the cause ("connection refused") behind
        // the time limit.
        bounded_connect(&address, client.get_multiplexed_async_connection()).await?;
        let connecting = ConnectionManager::new_with_config(client.clone(), manager_config());
        let connection = bounded_connect(&address, connecting).await?;
        Ok(Self::new(connection).listening_on(vec![client]))
    }

    /// Connects to the Redis Cluster that `seeds` (`redis://host:port` of one
    /// or more of its nodes) belong to, within 2 seconds; the error names the
    /// seeds and the cause.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), tower_idempotency::store::StoreError> {
    /// use tower_idempotency::store::RedisStore;
    ///
    /// let store = RedisStore::connect_cluster(["redis://10.0.0.1:6379", "redis://10.0.0.2:6379"])
    ///     .await?
    ///     .prefix("orders-api:");
    /// # Ok(()) }
    /// ```
    pub async fn connect_cluster<T: IntoConnectionInfo>(
        seeds: impl IntoIterator<Item = T>,
    ) -> Result<Self, StoreError> {
        let seeds = seeds
            .into_iter()
            .map(IntoConnectionInfo::into_connection_info)
            .collect::<Result<Vec<_>, _>>()
            .map_err(unavailable)?;
        let address = seeds
            .iter()
            .map(|seed| seed.addr().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let listen_on = seeds
            .iter()
            .map(|seed| Client::open(seed.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(unavailable)?;
        let client = ClusterClient::builder(seeds)
            .connection_timeout(DEFAULT_TIMEOUT)
            .response_timeout(DEFAULT_TIMEOUT)
            .build()
            .map_err(unavailable)?;
        let connection = bounded_connect(&address, client.get_async_connection()).await?;
        Ok(Self::from_cluster(connection).listening_on(listen_on))
    }

    /// Creates a store for the Redis at `url` that connects on its first call, so an
    /// application can start while Redis is down (its requests get 503 until
    /// Redis answers).
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let client = Client::open(url).map_err(unavailable)?;
        let connection = ConnectionManager::new_lazy_with_config(client.clone(), manager_config())
            .map_err(unavailable)?;
        Ok(Self::new(connection).listening_on(vec![client]))
    }

    /// Sets the prefix of every key the store writes. Default: `idempotency:`.
    ///
    /// On a cluster the prefix needs no hash tag (`{...}`): every operation
    /// touches one key, so keys are free to spread over every slot.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self.relay = Arc::default();
        self
    }

    /// Sets the bound on each call to Redis. Default: 2 seconds.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self.relay = Arc::default();
        self
    }

    /// Sets how often a retry that joined a response streaming on another
    /// replica reads what is new: the longest a chunk waits in Redis
    /// before the joiner asks for it (then one round trip brings it).
    /// Default: 5 ms. Each joiner costs one `XRANGE` per interval while
    /// it waits; nobody else pays anything.
    #[must_use]
    pub fn join_poll_interval(mut self, interval: Duration) -> Self {
        self.join_poll = interval.max(Duration::from_millis(1));
        self.relay = Arc::default();
        self
    }

    /// Replicated claims: every claim, record and renewal must be
    /// acknowledged by `replicas` replicas of the key's primary, waiting at
    /// most `wait` (Redis `WAIT`, sent with the script in one round trip, on
    /// the same connection to the same node). Default: off.
    ///
    /// A claim that fewer replicas acknowledge is a store failure (503, or
    /// the request runs unprotected with fail-open) and the service does not
    /// run; the store gives the claim back at once. A record that fewer
    /// replicas acknowledge is sent again while the lease lasts. So a primary
    /// killed at any moment, its replica promoted, has every claim and record
    /// the layer acted on.
    ///
    /// What it does not give: `WAIT` makes no write synchronous, so a
    /// replica that acknowledged may still lose the write if it fails too;
    /// a failover that promotes a replica that did not acknowledge (the
    /// cluster prefers the most up-to-date one, but a partition can force
    /// another) can lose writes; and a partitioned primary keeps accepting
    /// writes until `cluster-node-timeout` or `min-replicas-to-write` stops
    /// it (set `min-replicas-to-write` on the server to bound that window).
    /// Keep `wait` below the store timeout: each write waits up to it while a
    /// replica is down.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), tower_idempotency::store::StoreError> {
    /// use std::time::Duration;
    /// use tower_idempotency::store::RedisStore;
    ///
    /// let store = RedisStore::connect("redis://127.0.0.1:6379")
    ///     .await?
    ///     .replicas_acked(1, Duration::from_millis(500));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn replicas_acked(mut self, replicas: u32, wait: Duration) -> Self {
        self.replication = (replicas > 0).then_some(Replication {
            replicas,
            timeout: wait,
        });
        self
    }

    fn redis_key(&self, key: &KeyDigest) -> String {
        record_key(&self.prefix, key)
    }

    /// Runs one script call (with `WAIT` when `replicate` and replicated
    /// claims are on), bounded by the store's timeout. Returns its answer and
    /// how many replicas acknowledged, if that was asked.
    async fn run<T: FromRedisValue>(
        &self,
        call: &ScriptCall,
        replicate: bool,
    ) -> Result<(T, Option<i64>), StoreError> {
        let replication = self.replication.filter(|_| replicate);
        self.connection
            .script(call, replication, self.timeout)
            .await
    }

    /// Runs a write that answers 1 if the token owned the claim, 0 if not,
    /// and checks its replication.
    async fn run_fenced(&self, call: &ScriptCall) -> Result<(), StoreError> {
        match self.run::<i64>(call, true).await? {
            (1, acknowledged) => self.check_replicated(acknowledged),
            _ => Err(StoreErrorKind::LeaseLost.into()),
        }
    }

    /// A write that fewer replicas acknowledged than required is a failure.
    fn check_replicated(&self, acknowledged: Option<i64>) -> Result<(), StoreError> {
        match (self.replication, acknowledged) {
            (Some(replication), Some(acknowledged))
                if acknowledged < i64::from(replication.replicas) =>
            {
                Err(StoreError::with_source(
                    StoreErrorKind::Unavailable,
                    NotReplicated {
                        acknowledged,
                        required: replication.replicas,
                    },
                ))
            }
            _ => Ok(()),
        }
    }
}

/// Waits for a connection at most the default timeout.
async fn bounded_connect<C>(
    address: &str,
    connecting: impl std::future::Future<Output = Result<C, RedisError>>,
) -> Result<C, StoreError> {
    let failed = |cause: String| {
        StoreError::with_source(
            StoreErrorKind::Unavailable,
            CannotConnect {
                address: address.to_owned(),
                cause,
            },
        )
    };
    match tokio::time::timeout(DEFAULT_TIMEOUT, connecting).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(failed(error.to_string())),
        Err(_) => Err(failed(format!(
            "no answer within {} ms",
            DEFAULT_TIMEOUT.as_millis()
        ))),
    }
}

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(DEFAULT_TIMEOUT))
        .set_response_timeout(Some(DEFAULT_TIMEOUT))
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
        let redis_key = self.redis_key(key);
        let call = ScriptCall::new(&CLAIM_SCRIPT, &redis_key)
            .arg(&fingerprint.as_bytes()[..])
            .arg(token.get().to_string())
            .arg(millis(lease));
        match self.run::<Option<Vec<u8>>>(&call, true).await? {
            (None, acknowledged) => match self.check_replicated(acknowledged) {
                Ok(()) => Ok(ClaimOutcome::Claimed(token)),
                Err(error) => {
                    // Not replicated: give the claim back, so that no one
                    // waits a lease for a request that never runs.
                    let release =
                        ScriptCall::new(&RELEASE_SCRIPT, &redis_key).arg(token.get().to_string());
                    let _ = self.run::<i64>(&release, false).await;
                    Err(error)
                }
            },
            // A read: what it found was written (and acknowledged) by the
            // request that wrote it.
            (Some(held), _) => decode_held(held),
        }
    }

    async fn record(
        &self,
        key: &KeyDigest,
        token: FencingToken,
        record: &Record,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut value = Vec::with_capacity(33 + codec::encoded_len(record.response.as_ref()));
        value.push(b'C');
        value.extend_from_slice(record.fingerprint.as_bytes());
        codec::encode(record.response.as_ref(), &mut value);
        let call = ScriptCall::new(&RECORD_SCRIPT, &self.redis_key(key))
            .arg(token.get().to_string())
            .arg(value)
            .arg(millis(ttl));
        self.run_fenced(&call).await
    }

    async fn release(&self, key: &KeyDigest, token: FencingToken) -> Result<(), StoreError> {
        let call =
            ScriptCall::new(&RELEASE_SCRIPT, &self.redis_key(key)).arg(token.get().to_string());
        match self.run::<i64>(&call, false).await? {
            (1, _) => Ok(()),
            _ => Err(StoreErrorKind::LeaseLost.into()),
        }
    }

    async fn renew(
        &self,
        key: &KeyDigest,
        token: FencingToken,
        lease: Duration,
    ) -> Result<(), StoreError> {
        let call = ScriptCall::new(&RENEW_SCRIPT, &self.redis_key(key))
            .arg(token.get().to_string())
            .arg(millis(lease));
        self.run_fenced(&call).await
    }

    /// One round trip: the value and its time to live, read in one script.
    async fn inspect(&self, key: &KeyDigest) -> Result<KeyState, StoreError> {
        let call = ScriptCall::new(&INSPECT_SCRIPT, &self.redis_key(key));
        let (held, _): (Option<(Vec<u8>, i64)>, _) = self.run(&call, false).await?;
        let Some((held, ttl_ms)) = held else {
            return Ok(KeyState::Absent);
        };
        // A key without an expiry (-1) was not written by this store.
        let left =
            Duration::from_millis(u64::try_from(ttl_ms).map_err(|_| StoreErrorKind::Corrupt)?);
        Ok(match decode_held(held)? {
            ClaimOutcome::InFlight { .. } => KeyState::InFlight { lease_left: left },
            ClaimOutcome::Completed(Record {
                response: Some(response),
                ..
            }) => KeyState::Completed {
                status: response.status,
                expires_in: left,
            },
            ClaimOutcome::Completed(Record { response: None, .. }) => {
                KeyState::Tombstone { expires_in: left }
            }
            ClaimOutcome::Claimed(_) => return Err(StoreErrorKind::Corrupt.into()),
        })
    }

    /// The relay of a store made with [`connect`](Self::connect),
    /// [`open`](Self::open) or [`connect_cluster`](Self::connect_cluster).
    fn join_relay(&self) -> Option<JoinRelay> {
        if self.listen_on.is_empty() {
            return None;
        }
        let relay = self.relay.get_or_init(|| {
            JoinRelay::new(Arc::new(RedisRelay::new(
                self.connection.clone(),
                self.prefix.clone(),
                self.timeout,
                self.join_poll,
                self.listen_on.clone(),
            )))
        });
        Some(relay.clone())
    }

    /// One `DEL`, acknowledged by the replicas when replicated claims are on.
    async fn forget(&self, key: &KeyDigest) -> Result<bool, StoreError> {
        let call = ScriptCall::new(&FORGET_SCRIPT, &self.redis_key(key));
        let (deleted, acknowledged): (i64, _) = self.run(&call, true).await?;
        self.check_replicated(acknowledged)?;
        Ok(deleted == 1)
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let connection = match self.connection {
            Connection::Single(_) => "single",
            Connection::Cluster(_) => "cluster",
        };
        f.debug_struct("RedisStore")
            .field("connection", &connection)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("replication", &self.replication)
            .field("join_poll_interval", &self.join_poll)
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
