//! How the store talks to Redis: the connection (one Redis or a cluster),
//! one script call on one key (with `WAIT` for replicated claims), and the
//! conversions every call shares.

use std::fmt::Write;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{
    Cmd, ErrorKind, FromRedisValue, Pipeline, RedisError, Script, ServerErrorKind, ToRedisArgs,
};

use crate::store::timeout::within;
use crate::store::{KeyDigest, StoreError, StoreErrorKind};

/// Where the store's commands go: one Redis, or a Redis Cluster.
#[derive(Clone)]
pub(super) enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Connection {
    /// Runs `call` (followed by `WAIT` when `replication` is set), bounded
    /// by `timeout`; answers its answer and how many replicas acknowledged.
    pub(super) async fn script<T: FromRedisValue>(
        &self,
        call: &ScriptCall,
        replication: Option<Replication>,
        timeout: Duration,
    ) -> Result<(T, Option<i64>), StoreError> {
        within(timeout, async {
            match self {
                Self::Single(connection) => call.run(&mut connection.clone(), replication).await,
                Self::Cluster(connection) => call.run(&mut connection.clone(), replication).await,
            }
            .map_err(unavailable)
        })
        .await
    }

    /// Sends `pipeline`, bounded by `timeout`.
    pub(super) async fn pipeline<T: FromRedisValue>(
        &self,
        pipeline: &Pipeline,
        timeout: Duration,
    ) -> Result<T, StoreError> {
        within(timeout, async {
            match self {
                Self::Single(connection) => pipeline.query_async(&mut connection.clone()).await,
                Self::Cluster(connection) => pipeline.query_async(&mut connection.clone()).await,
            }
            .map_err(unavailable)
        })
        .await
    }
}

/// The Redis key of `key`'s record: the prefix and the digest's 64 hex
/// digits.
pub(super) fn record_key(prefix: &str, key: &KeyDigest) -> String {
    let mut name = String::with_capacity(prefix.len() + 64);
    // Writing to a String cannot fail.
    let _ = write!(name, "{prefix}{key:x}");
    name
}

/// Replicated claims: how many replicas must acknowledge each write, and how
/// long Redis may wait for them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Replication {
    pub(super) replicas: u32,
    pub(super) timeout: Duration,
}

/// One call of a script on one key, as `EVALSHA`.
pub(super) struct ScriptCall {
    script: &'static Script,
    command: Cmd,
}

impl ScriptCall {
    pub(super) fn new(script: &'static Script, key: &str) -> Self {
        let mut command = redis::cmd("EVALSHA");
        command.arg(script.get_hash()).arg(1).arg(key);
        Self { script, command }
    }

    pub(super) fn arg(mut self, arg: impl ToRedisArgs) -> Self {
        self.command.arg(arg);
        self
    }

    /// Sends the call (followed by `WAIT` on the same connection, in one
    /// round trip, when `replication` is set), loading the script first if
    /// the node has not seen it.
    pub(super) async fn run<T: FromRedisValue, C: ConnectionLike>(
        &self,
        connection: &mut C,
        replication: Option<Replication>,
    ) -> Result<(T, Option<i64>), RedisError> {
        match self.send(connection, replication).await {
            Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.script.load_async(connection).await?;
                self.send(connection, replication).await
            }
            answer => answer,
        }
    }

    async fn send<T: FromRedisValue, C: ConnectionLike>(
        &self,
        connection: &mut C,
        replication: Option<Replication>,
    ) -> Result<(T, Option<i64>), RedisError> {
        let Some(replication) = replication else {
            return Ok((self.command.query_async(connection).await?, None));
        };
        let mut pipeline = redis::pipe();
        pipeline
            .add_command(self.command.clone())
            .cmd("WAIT")
            .arg(replication.replicas)
            .arg(millis(replication.timeout));
        let (answer, acknowledged): (T, i64) = pipeline.query_async(connection).await?;
        Ok((answer, Some(acknowledged)))
    }
}

pub(super) fn unavailable(error: RedisError) -> StoreError {
    StoreError::with_source(StoreErrorKind::Unavailable, error)
}

pub(super) fn millis(duration: Duration) -> u64 {
    // Redis refuses 0 ms; round up to at least 1.
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}
