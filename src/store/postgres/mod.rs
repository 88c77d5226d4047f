//! [`PostgresStore`]: durable records in PostgreSQL, for long retention.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use http::StatusCode;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Socket};

mod claim;
#[cfg(feature = "postgres-rustls")]
mod tls;
#[cfg(feature = "sqlx")]
mod with_sqlx;
mod with_tokio_postgres;

pub use self::claim::{CompletionError, PostgresClaim};

use super::codec;
use super::timeout::within;
use super::{
    ClaimLoan, ClaimOutcome, FencingToken, Fingerprint, KeyDigest, KeyState, Record,
    RecordedResponse, Store, StoreError, StoreErrorKind, new_token,
};

/// The default table name.
const DEFAULT_TABLE: &str = "tower_idempotency";
/// The default bound on each call.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// The default number of rows [`PostgresStore::purge_expired`] deletes per call.
const DEFAULT_PURGE_BATCH: i64 = 1000;

/// A table name that is not a plain SQL identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid table name {0:?}: use `table` or `schema.table`, each part 1 to 63 \
     characters of a-z, 0-9 and _, not starting with a digit"
)]
pub struct InvalidTableName(String);

/// A durable store in PostgreSQL: records survive restarts, replicas sharing
/// one database run each key once, and retention windows of 7 to 30 days cost
/// disk, not memory.
///
/// - **Client**: `tokio-postgres` through a `deadpool-postgres` pool, which
///   replaces broken connections by itself, so the store recovers after a
///   database restart. Hand in your own pool with [`new`](Self::new) (the
///   crates are re-exported in [`clients`](super::clients)), or let
///   [`connect`](Self::connect) make one from a URL; TLS as the URL's
///   `sslmode` says, with the feature `postgres-rustls`, or with a connector
///   of your own through [`connect_with_tls`](Self::connect_with_tls).
/// - **One clock**: every lease and expiry is computed and compared with the
///   database's `now()`, so replicas whose clocks disagree still agree on when
///   a lease ends.
/// - **One statement per operation**: claiming is one `INSERT ... ON CONFLICT
///   ... DO UPDATE ... WHERE <expired>` that also returns the record the key
///   holds, so a replay costs one round trip; recording, releasing and renewing
///   are one fenced `UPDATE` or `DELETE` each. (A claim that loses a race to a
///   claim committed while it ran sees no row, and runs once more.)
///   Statements are prepared once per pooled connection.
/// - **Bounded storage**: expired rows are deleted in bounded batches by
///   [`purge_expired`](Self::purge_expired), or by a background
///   [`Sweeper`](Self::spawn_sweeper).
/// - **Byte-exact**: headers and bodies are `bytea`.
/// - **Joining** (the layer's `join_in_flight`) works within each process:
///   a retry on the replica streaming the response joins it there. A retry
///   that reaches another replica waits for the record instead (polling with
///   backoff, up to the join bound) and replays it whole once the original
///   ends: PostgreSQL carries no live copy between replicas. Use
///   [`RedisStore`](super::RedisStore), or route a key's retries to one
///   replica, where live joining across replicas matters.
///
/// # Schema
///
/// [`migrate`](Self::migrate) creates it if missing (under an advisory lock,
/// so replicas starting together do not trip over each other). To run your
/// own migrations, with `tower_idempotency` as the table name:
///
/// ```sql
/// CREATE TABLE IF NOT EXISTS tower_idempotency (
///     key         bytea       PRIMARY KEY,  -- SHA-256 of (scope, key)
///     fingerprint bytea       NOT NULL,     -- SHA-256 of the request
///     token       bigint      NOT NULL,     -- fencing token of the claim
///     completed   boolean     NOT NULL,     -- false: in flight
///     expires_at  timestamptz NOT NULL,     -- end of the lease, or of the TTL
///     status      smallint,                 -- NULL for a tombstone
///     headers     bytea,
///     body        bytea
/// );
/// CREATE INDEX IF NOT EXISTS tower_idempotency_expires_at
///     ON tower_idempotency (expires_at);
/// ```
///
/// ```no_run
/// use std::time::Duration;
/// use tower_idempotency::IdempotencyLayer;
/// use tower_idempotency::store::PostgresStore;
///
/// # async fn example() -> Result<(), tower_idempotency::store::StoreError> {
/// let store = PostgresStore::connect("postgres://postgres@127.0.0.1:5432/app").await?;
/// store.migrate().await?;
/// let _sweeper = store.spawn_sweeper(Duration::from_secs(60));
/// let layer = IdempotencyLayer::new(store).ttl(Duration::from_secs(30 * 24 * 3600));
/// # Ok(()) }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    table: String,
    timeout: Duration,
    purge_batch: i64,
    sql: Statements,
}

/// The statements, written once for the table name.
#[derive(Clone)]
struct Statements {
    claim: String,
    record: String,
    release: String,
    renew: String,
    purge: String,
    inspect: String,
    forget: String,
    /// The handler's completion, in its own transaction (see
    /// [`PostgresClaim`]); shared with every claim lent.
    complete: Arc<str>,
}

impl Statements {
    fn new(table: &str) -> Self {
        // A live in-flight claim of `token` ($2) on `key` ($1).
        let owned = "key = $1 AND token = $2 AND NOT completed AND expires_at > now()";
        Self {
            // Inserts a claim, or takes over an expired row. When the row is
            // live, nothing is written and the second branch reads it.
            claim: format!(
                "WITH claimed AS (
                    INSERT INTO {table} AS held
                        (key, fingerprint, token, completed, expires_at)
                    VALUES ($1, $2, $3, false, now() + $4::bigint * interval '1 millisecond')
                    ON CONFLICT (key) DO UPDATE SET
                        fingerprint = EXCLUDED.fingerprint, token = EXCLUDED.token,
                        completed = false, expires_at = EXCLUDED.expires_at,
                        status = NULL, headers = NULL, body = NULL
                    WHERE held.expires_at <= now()
                    RETURNING true AS claimed
                )
                SELECT true, NULL::bytea, NULL::boolean, NULL::smallint, NULL::bytea, NULL::bytea
                    FROM claimed
                UNION ALL
                SELECT false, fingerprint, completed, status, headers, body FROM {table}
                    WHERE key = $1 AND expires_at > now() AND NOT EXISTS (SELECT FROM claimed)"
            ),
            record: format!(
                "UPDATE {table} SET completed = true, status = $3, headers = $4, body = $5,
                    expires_at = now() + $6::bigint * interval '1 millisecond'
                    WHERE {owned}"
            ),
            release: format!("DELETE FROM {table} WHERE {owned}"),
            inspect: format!(
                "SELECT completed, status IS NOT NULL, status,
                    greatest(ceil(extract(epoch FROM expires_at - now()) * 1000), 0)::bigint
                    FROM {table} WHERE key = $1 AND expires_at > now()"
            ),
            forget: format!("DELETE FROM {table} WHERE key = $1 RETURNING expires_at > now()"),
            // As `record`, fenced by the database's clock at the statement,
            // not `now()`: in the handler's transaction, `now()` is when the
            // transaction began, maybe before the lease lapsed.
            complete: format!(
                "UPDATE {table} SET completed = true, status = $3, headers = $4, body = $5,
                    expires_at = clock_timestamp() + $6::bigint * interval '1 millisecond'
                    WHERE key = $1 AND token = $2 AND NOT completed
                        AND expires_at > clock_timestamp()"
            )
            .into(),
            renew: format!(
                "UPDATE {table} SET expires_at = now() + $3::bigint * interval '1 millisecond'
                    WHERE {owned}"
            ),
            purge: format!(
                "DELETE FROM {table} WHERE key IN (
                    SELECT key FROM {table} WHERE expires_at <= now()
                    ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)"
            ),
        }
    }
}

impl PostgresStore {
    /// Creates a store on a pool you made, with the table `tower_idempotency`.
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            table: DEFAULT_TABLE.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            purge_batch: DEFAULT_PURGE_BATCH,
            sql: Statements::new(DEFAULT_TABLE),
        }
    }

    /// Creates a store with a pool of up to 16 connections to the database at `url`
    /// (`postgres://user@host:port/db`), checked by one connection within 2
    /// seconds; the error names the address and the cause.
    ///
    /// TLS follows the URL's `sslmode`, as libpq reads it: `disable` never,
    /// `prefer` (the default) when the server offers it, `require` always,
    /// in both cases encrypted without checking the server's certificate.
    /// TLS needs the feature `postgres-rustls`; without it, `prefer`
    /// connects in the clear and `require` is refused with an error that
    /// says so. To check the certificate (against your provider's CA, say),
    /// bring your own connector: [`connect_with_tls`](Self::connect_with_tls).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|error| StoreError::with_source(StoreErrorKind::Unavailable, error))?;
        if config.get_ssl_mode() == tokio_postgres::config::SslMode::Disable {
            return Self::connect_config(config, NoTls).await;
        }
        #[cfg(feature = "postgres-rustls")]
        {
            Self::connect_config(config, tls::encrypt_only()?).await
        }
        #[cfg(not(feature = "postgres-rustls"))]
        {
            if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
                return Err(StoreError::with_source(
                    StoreErrorKind::Unavailable,
                    CannotConnect {
                        address: addresses(&config),
                        cause: "sslmode=require needs TLS: build with the feature \
                                `postgres-rustls`"
                            .to_owned(),
                    },
                ));
            }
            Self::connect_config(config, NoTls).await
        }
    }

    /// As [`connect`](Self::connect), with a TLS connector of your own: one
    /// that checks the server's certificate against the CA you trust, for
    /// example `tokio_postgres_rustls::MakeRustlsConnect` (0.14) over a
    /// `rustls` (0.23) client configuration with your roots. The URL's
    /// `sslmode` still says whether TLS is used.
    ///
    /// ```no_run
    /// use tower_idempotency::store::PostgresStore;
    ///
    /// # async fn example() -> Result<(), tower_idempotency::store::StoreError> {
    /// // NoTls, or a connector that verifies, such as tokio-postgres-rustls's.
    /// let tls = tokio_postgres::NoTls;
    /// let store = PostgresStore::connect_with_tls("postgres://app@db:5432/app", tls).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_with_tls<T>(url: &str, tls: T) -> Result<Self, StoreError>
    where
        T: MakeTlsConnect<Socket> + Clone + Sync + Send + 'static,
        T::Stream: Sync + Send,
        T::TlsConnect: Sync + Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|error| StoreError::with_source(StoreErrorKind::Unavailable, error))?;
        Self::connect_config(config, tls).await
    }

    async fn connect_config<T>(config: tokio_postgres::Config, tls: T) -> Result<Self, StoreError>
    where
        T: MakeTlsConnect<Socket> + Clone + Sync + Send + 'static,
        T::Stream: Sync + Send,
        T::TlsConnect: Sync + Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        let manager = Manager::from_config(
            config.clone(),
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(16)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(DEFAULT_TIMEOUT))
            .create_timeout(Some(DEFAULT_TIMEOUT))
            .build()
            .map_err(|error| StoreError::with_source(StoreErrorKind::Unavailable, error))?;
        let address = addresses(&config);
        let cannot_connect = |cause: String| {
            StoreError::with_source(
                StoreErrorKind::Unavailable,
                CannotConnect { address, cause },
            )
        };
        // The pool bounds the wait and the creation by the default timeout
        // too; this bound holds whatever the pool does.
        match tokio::time::timeout(DEFAULT_TIMEOUT, pool.get()).await {
            Ok(Ok(connection)) => drop(connection),
            Ok(Err(error)) => return Err(cannot_connect(innermost(&error))),
            Err(_) => {
                let limit = DEFAULT_TIMEOUT.as_millis();
                return Err(cannot_connect(format!("no answer within {limit} ms")));
            }
        }
        Ok(Self::new(pool))
    }

    /// Sets the table the records live in: `table` or `schema.table`, plain
    /// lowercase identifiers only. Default: `tower_idempotency`.
    pub fn table(mut self, table: &str) -> Result<Self, InvalidTableName> {
        let valid_part = |part: &str| {
            (1..=63).contains(&part.len())
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                && !part.as_bytes()[0].is_ascii_digit()
        };
        let parts: Vec<&str> = table.split('.').collect();
        if parts.len() > 2 || !parts.iter().all(|part| valid_part(part)) {
            return Err(InvalidTableName(table.to_owned()));
        }
        self.table = table.to_owned();
        self.sql = Statements::new(table);
        Ok(self)
    }

    /// Sets the bound on each call to the database. Default: 2 seconds.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets how many expired rows [`purge_expired`](Self::purge_expired) deletes
    /// at most per call. Default: 1000.
    #[must_use]
    pub fn purge_batch(mut self, rows: u32) -> Self {
        self.purge_batch = i64::from(rows.max(1));
        self
    }

    /// Creates the table and its index if they are missing. Safe to run from
    /// every replica at once.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let table = &self.table;
        let index = format!("{}_expires_at", table.replace('.', "_"));
        let lock_name = format!("tower_idempotency:{table}");
        let sql = format!(
            "BEGIN;
             SELECT pg_advisory_xact_lock(hashtext('{lock_name}'));
             CREATE TABLE IF NOT EXISTS {table} (
                 key         bytea       PRIMARY KEY,
                 fingerprint bytea       NOT NULL,
                 token       bigint      NOT NULL,
                 completed   boolean     NOT NULL,
                 expires_at  timestamptz NOT NULL,
                 status      smallint,
                 headers     bytea,
                 body        bytea
             );
             CREATE INDEX IF NOT EXISTS {index} ON {table} (expires_at);
             COMMIT;"
        );
        let client = self.pool.get().await.map_err(unavailable)?;
        self.bounded(async { client.batch_execute(&sql).await.map_err(unavailable) })
            .await
    }

    /// Deletes up to the purge batch of expired rows (oldest first); returns
    /// how many. Rows another call is deleting are skipped, so sweepers on
    /// several replicas share the work.
    pub async fn purge_expired(&self) -> Result<u64, StoreError> {
        self.execute(&self.sql.purge, &[&self.purge_batch]).await
    }

    /// Starts a task that purges expired rows every `interval` (at once again
    /// while a whole batch comes back). It stops when the returned [`Sweeper`]
    /// is dropped.
    pub fn spawn_sweeper(&self, interval: Duration) -> Sweeper {
        let store = self.clone();
        let task = tokio::spawn(async move {
            loop {
                match store.purge_expired().await {
                    Ok(purged) if purged >= store.purge_batch as u64 => continue,
                    Ok(_) => {}
                    Err(error) => {
                        crate::log::warn_store_error!(error, "idempotency sweeper failed to purge");
                    }
                }
                tokio::time::sleep(interval).await;
            }
        });
        Sweeper(task)
    }

    fn bounded<F>(&self, call: F) -> super::timeout::Within<F> {
        within(self.timeout, call)
    }

    /// Runs a prepared statement; returns the rows it touched.
    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        self.bounded(async {
            let client = self.pool.get().await.map_err(unavailable)?;
            let statement = client.prepare_cached(sql).await.map_err(unavailable)?;
            client
                .execute(&statement, params)
                .await
                .map_err(unavailable)
        })
        .await
    }

    /// Runs a prepared statement; returns its rows.
    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        self.bounded(async {
            let client = self.pool.get().await.map_err(unavailable)?;
            let statement = client.prepare_cached(sql).await.map_err(unavailable)?;
            client.query(&statement, params).await.map_err(unavailable)
        })
        .await
    }

    /// Runs a fenced statement: one row touched, or the lease is lost.
    async fn fenced(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<(), StoreError> {
        match self.execute(sql, params).await? {
            1 => Ok(()),
            _ => Err(StoreErrorKind::LeaseLost.into()),
        }
    }
}

/// A background purge of expired rows; dropping it stops the task.
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
#[derive(Debug)]
pub struct Sweeper(tokio::task::JoinHandle<()>);

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A connection could not be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to PostgreSQL at {address}: {cause}")]
struct CannotConnect {
    /// Host and port of each address the URL names, without credentials.
    address: String,
    cause: String,
}

/// The hosts and ports a configuration names, for error messages.
fn addresses(config: &tokio_postgres::Config) -> String {
    let ports = config.get_ports();
    config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let host = match host {
                tokio_postgres::config::Host::Tcp(host) => host.clone(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            };
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            format!("{host}:{port}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The deepest cause of an error: a pool's error repeats its driver's.
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut deepest = error;
    while let Some(source) = deepest.source() {
        deepest = source;
    }
    deepest.to_string()
}

fn unavailable(error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::with_source(StoreErrorKind::Unavailable, error)
}

/// The status, headers and body columns of a record: all `NULL` for a
/// tombstone.
fn row_values(
    response: Option<&RecordedResponse>,
) -> (Option<i16>, Option<Vec<u8>>, Option<&[u8]>) {
    match response {
        None => (None, None, None),
        Some(response) => {
            let mut headers = Vec::new();
            codec::encode_headers(&response.headers, &mut headers);
            let status = i16::try_from(response.status.as_u16()).ok();
            (status, Some(headers), Some(&response.body[..]))
        }
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis())
        .unwrap_or(i64::MAX)
        .max(1)
}

/// A claim's answer, from the row the claim statement returned.
fn decode_claim(
    row: &tokio_postgres::Row,
    token: FencingToken,
) -> Result<ClaimOutcome, StoreError> {
    let corrupt = |_| StoreError::new(StoreErrorKind::Corrupt);
    let claimed: bool = row.try_get(0).map_err(corrupt)?;
    if claimed {
        return Ok(ClaimOutcome::Claimed(token));
    }
    let fingerprint: Vec<u8> = row.try_get(1).map_err(corrupt)?;
    let fingerprint = <[u8; 32]>::try_from(fingerprint.as_slice())
        .map(Fingerprint::from_bytes)
        .map_err(|_| StoreError::new(StoreErrorKind::Corrupt))?;
    let completed: bool = row.try_get(2).map_err(corrupt)?;
    if !completed {
        return Ok(ClaimOutcome::InFlight { fingerprint });
    }
    let status: Option<i16> = row.try_get(3).map_err(corrupt)?;
    let headers: Option<Vec<u8>> = row.try_get(4).map_err(corrupt)?;
    let body: Option<Vec<u8>> = row.try_get(5).map_err(corrupt)?;
    let response = match (status, headers, body) {
        (None, _, _) => None,
        (Some(status), Some(headers), Some(body)) => {
            let status = u16::try_from(status)
                .ok()
                .and_then(|status| StatusCode::from_u16(status).ok())
                .ok_or(StoreErrorKind::Corrupt)?;
            let mut headers = Bytes::from(headers);
            let decoded = codec::decode_headers(&mut headers)?;
            if !headers.is_empty() {
                return Err(StoreErrorKind::Corrupt.into());
            }
            Some(RecordedResponse {
                status,
                headers: decoded,
                body: Bytes::from(body),
            })
        }
        _ => return Err(StoreErrorKind::Corrupt.into()),
    };
    Ok(ClaimOutcome::Completed(Record {
        fingerprint,
        response,
    }))
}

impl Store for PostgresStore {
    async fn claim(
        &self,
        key: &KeyDigest,
        fingerprint: &Fingerprint,
        lease: Duration,
    ) -> Result<ClaimOutcome, StoreError> {
        let token = new_token();
        let (key_bytes, fp_bytes) = (&key.as_bytes()[..], &fingerprint.as_bytes()[..]);
        let token_value = token.get() as i64;
        let lease_ms = millis(lease);
        // No row comes back only when another claim of the key committed
        // while this statement ran, too late for its snapshot: run it again,
        // with a fresh snapshot that sees that claim.
        for _ in 0..3 {
            let rows = self
                .query(
                    &self.sql.claim,
                    &[&key_bytes, &fp_bytes, &token_value, &lease_ms],
                )
                .await?;
            if let Some(row) = rows.first() {
                return decode_claim(row, token);
            }
        }
        Err(StoreErrorKind::Unavailable.into())
    }

    async fn record(
        &self,
        key: &KeyDigest,
        token: FencingToken,
        record: &Record,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let (status, headers, body) = row_values(record.response.as_ref());
        let token_value = token.get() as i64;
        let ttl_ms = millis(ttl);
        self.fenced(
            &self.sql.record,
            &[
                &&key.as_bytes()[..],
                &token_value,
                &status,
                &headers,
                &body,
                &ttl_ms,
            ],
        )
        .await
    }

    async fn release(&self, key: &KeyDigest, token: FencingToken) -> Result<(), StoreError> {
        let token_value = token.get() as i64;
        self.fenced(&self.sql.release, &[&&key.as_bytes()[..], &token_value])
            .await
    }

    async fn renew(
        &self,
        key: &KeyDigest,
        token: FencingToken,
        lease: Duration,
    ) -> Result<(), StoreError> {
        let token_value = token.get() as i64;
        let lease_ms = millis(lease);
        self.fenced(
            &self.sql.renew,
            &[&&key.as_bytes()[..], &token_value, &lease_ms],
        )
        .await
    }

    /// One statement: the row, if live, and the time it has left.
    async fn inspect(&self, key: &KeyDigest) -> Result<KeyState, StoreError> {
        let rows = self
            .query(&self.sql.inspect, &[&&key.as_bytes()[..]])
            .await?;
        let Some(row) = rows.first() else {
            return Ok(KeyState::Absent);
        };
        let corrupt = |_| StoreError::new(StoreErrorKind::Corrupt);
        let completed: bool = row.try_get(0).map_err(corrupt)?;
        let answered: bool = row.try_get(1).map_err(corrupt)?;
        let left_ms: i64 = row.try_get(3).map_err(corrupt)?;
        let left = Duration::from_millis(u64::try_from(left_ms).unwrap_or(0));
        if !completed {
            return Ok(KeyState::InFlight { lease_left: left });
        }
        if !answered {
            return Ok(KeyState::Tombstone { expires_in: left });
        }
        let status: i16 = row.try_get(2).map_err(corrupt)?;
        let status = u16::try_from(status)
            .ok()
            .and_then(|status| StatusCode::from_u16(status).ok())
            .ok_or(StoreErrorKind::Corrupt)?;
        Ok(KeyState::Completed {
            status,
            expires_in: left,
        })
    }

    /// One `DELETE` of the key's row, whatever it holds.
    async fn forget(&self, key: &KeyDigest) -> Result<bool, StoreError> {
        let rows = self
            .query(&self.sql.forget, &[&&key.as_bytes()[..]])
            .await?;
        let corrupt = |_| StoreError::new(StoreErrorKind::Corrupt);
        match rows.first() {
            Some(row) => row.try_get(0).map_err(corrupt),
            None => Ok(false),
        }
    }

    /// Lends the handler a [`PostgresClaim`], to complete the record in its
    /// own transaction.
    fn lend_claim(&self, loan: ClaimLoan<'_>, extensions: &mut http::Extensions) {
        extensions.insert(PostgresClaim::new(loan, Arc::clone(&self.sql.complete)));
    }
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("table", &self.table)
            .field("timeout", &self.timeout)
            .field("purge_batch", &self.purge_batch)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_validated() {
        let store = || {
            PostgresStore::new(
                Pool::builder(Manager::from_config(
                    tokio_postgres::Config::new(),
                    NoTls,
                    ManagerConfig::default(),
                ))
                .runtime(Runtime::Tokio1)
                .build()
                .unwrap(),
            )
        };
        for good in ["records", "idem_2", "app.records", "_x"] {
            assert!(store().table(good).is_ok(), "{good}");
        }
        let long = "a".repeat(64);
        for bad in [
            "",
            "Records",
            "1abc",
            "a-b",
            "a.b.c",
            "a;drop table x",
            "a b",
            ".a",
            "a.",
            &long,
            "\"quoted\"",
        ] {
            assert!(store().table(bad).is_err(), "{bad}");
        }
    }
}
