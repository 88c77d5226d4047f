//! What the example servers share: reading settings from the environment,
//! choosing the store from it, and reporting a failure to start.

#![allow(dead_code, unreachable_pub)]

use std::env;
use std::error::Error;
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use tower_idempotency::{MemoryStore, Store};

/// An example server, served on whichever store the environment names.
pub trait Server {
    /// Serves on `store` until the process ends.
    fn serve<St: Store>(self, store: St) -> impl Future<Output = Result<(), Box<dyn Error>>>;
}

/// Serves `server` on the store the environment names: Redis Cluster with
/// `REDIS_CLUSTER_URLS`, Redis with `REDIS_URL`, PostgreSQL with
/// `DATABASE_URL` (table `TABLE_NAME`, default `default_name`), else memory.
/// Redis keys go under `KEY_PREFIX` (default `default_name` with dashes
/// for underscores, and a colon: `orders_example` gives `orders-example:`).
pub async fn serve_on_chosen_store(
    server: impl Server,
    default_name: &str,
) -> Result<(), Box<dyn Error>> {
    if let Ok(urls) = env::var("REDIS_CLUSTER_URLS") {
        redis::serve_cluster(server, &urls, default_name).await
    } else if let Ok(url) = env::var("REDIS_URL") {
        redis::serve(server, &url, default_name).await
    } else if let Ok(url) = env::var("DATABASE_URL") {
        postgres::serve(server, &url, default_name).await
    } else {
        server.serve(MemoryStore::new()).await
    }
}

/// Reads `name` from the environment, if set.
pub fn env_opt<T: FromStr>(name: &str) -> Result<Option<T>, Box<dyn Error>>
where
    T::Err: Error + 'static,
{
    match env::var(name) {
        Ok(value) => Ok(Some(
            value.parse().map_err(|e| format!("{name}={value}: {e}"))?,
        )),
        Err(env::VarError::NotPresent) => Ok(None),
        Err(error) => Err(format!("{name}: {error}").into()),
    }
}

/// Reads `name` from the environment, or `default`.
pub fn env_or<T: FromStr>(name: &str, default: T) -> Result<T, Box<dyn Error>>
where
    T::Err: Error + 'static,
{
    Ok(env_opt(name)?.unwrap_or(default))
}

/// The settings every example layer reads: `TTL_SECS` (default 86400),
/// `LEASE_SECS` and `STORE_TIMEOUT_MS` (default: the layer's).
pub fn layer_settings<St: Store>(
    layer: tower_idempotency::IdempotencyLayer<St>,
) -> Result<tower_idempotency::IdempotencyLayer<St>, Box<dyn Error>> {
    let mut layer = layer
        .scope_by_header(http::HeaderName::from_static("x-api-key"))
        .ttl(Duration::from_secs(env_or("TTL_SECS", 86_400)?));
    if let Some(lease) = env_opt::<u64>("LEASE_SECS")? {
        layer = layer.lease(Duration::from_secs(lease));
    }
    if let Some(timeout) = env_opt::<u64>("STORE_TIMEOUT_MS")? {
        layer = layer.store_timeout(Duration::from_millis(timeout));
    }
    Ok(layer)
}

/// Prints a failure to start as one line, the error and its causes (what
/// failed, where and why), and answers the exit code.
pub fn exit_code(example: &str, served: Result<(), Box<dyn Error>>) -> std::process::ExitCode {
    let Err(error) = served else {
        return std::process::ExitCode::SUCCESS;
    };
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        message.push_str(": ");
        message.push_str(&error.to_string());
        cause = error.source();
    }
    eprintln!("{example} example: {message}");
    std::process::ExitCode::FAILURE
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;

    pub async fn serve(
        server: impl Server,
        url: &str,
        default_name: &str,
    ) -> Result<(), Box<dyn Error>> {
        let table = env::var("TABLE_NAME").unwrap_or_else(|_| default_name.to_owned());
        let mut store = tower_idempotency::store::PostgresStore::connect(url)
            .await?
            .table(&table)?;
        if let Some(timeout) = env_opt::<u64>("STORE_TIMEOUT_MS")? {
            store = store.timeout(Duration::from_millis(timeout));
        }
        store.migrate().await?;
        // Expired records are deleted in batches, once a minute.
        let _sweeper = store.spawn_sweeper(Duration::from_secs(60));
        server.serve(store).await
    }
}

#[cfg(not(feature = "postgres"))]
mod postgres {
    use super::*;

    pub async fn serve(_: impl Server, _: &str, _: &str) -> Result<(), Box<dyn Error>> {
        Err(
            "DATABASE_URL is set, but this example was built without PostgreSQL: \
             run it with `--features postgres`, or unset DATABASE_URL"
                .into(),
        )
    }
}

#[cfg(feature = "redis")]
mod redis {
    use super::*;
    use tower_idempotency::store::RedisStore;

    pub async fn serve(
        server: impl Server,
        url: &str,
        default_name: &str,
    ) -> Result<(), Box<dyn Error>> {
        let store = RedisStore::connect(url).await?;
        server.serve(settings(store, default_name)?).await
    }

    pub async fn serve_cluster(
        server: impl Server,
        urls: &str,
        default_name: &str,
    ) -> Result<(), Box<dyn Error>> {
        let seeds: Vec<&str> = urls.split(',').map(str::trim).collect();
        let store = RedisStore::connect_cluster(seeds).await?;
        server.serve(settings(store, default_name)?).await
    }

    /// The key prefix, timeout and replicated claims of a Redis store, from
    /// the environment.
    fn settings(store: RedisStore, default_name: &str) -> Result<RedisStore, Box<dyn Error>> {
        let prefix = env::var("KEY_PREFIX")
            .unwrap_or_else(|_| format!("{}:", default_name.replace('_', "-")));
        let mut store = store.prefix(prefix);
        let timeout = env_opt::<u64>("STORE_TIMEOUT_MS")?.map(Duration::from_millis);
        if let Some(timeout) = timeout {
            store = store.timeout(timeout);
        }
        let replicas: u32 = env_or("REDIS_REPLICAS_ACKED", 0)?;
        if replicas > 0 {
            // Below the store timeout, so a claim that waits in vain still
            // answers 503 rather than timing out.
            let default_wait = timeout.map_or(Duration::from_millis(500), |timeout| timeout / 2);
            let wait = env_opt::<u64>("REDIS_WAIT_TIMEOUT_MS")?
                .map_or(default_wait, Duration::from_millis);
            store = store.replicas_acked(replicas, wait);
        }
        Ok(store)
    }
}

#[cfg(not(feature = "redis"))]
mod redis {
    use super::*;

    pub async fn serve(_: impl Server, _: &str, _: &str) -> Result<(), Box<dyn Error>> {
        Err(
            "REDIS_URL is set, but this example was built without Redis: \
             run it with `--features redis`, or unset REDIS_URL"
                .into(),
        )
    }

    pub async fn serve_cluster(_: impl Server, _: &str, _: &str) -> Result<(), Box<dyn Error>> {
        Err(
            "REDIS_CLUSTER_URLS is set, but this example was built without Redis: \
             run it with `--features redis`, or unset REDIS_CLUSTER_URLS"
                .into(),
        )
    }
}
