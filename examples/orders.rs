//! An orders API behind `IdempotencyLayer`, to try the layer by hand and to
//! drive black-box tests.
//!
//! ```text
//! cargo run --example orders
//! curl -i -X POST localhost:3000/orders -H 'Idempotency-Key: k1' -d '{"sku":"tea"}'
//! ```
//!
//! Environment: `ADDR` (default `127.0.0.1:3000`), `TTL_SECS` (default 86400),
//! `LEASE_SECS` (default: the layer's, 30), `STORE_TIMEOUT_MS` (default: the
//! layer's, 2000), `RETRY_HINTS` (default `true`: the layer's rejections say
//! whether to retry, for the SDKs that read it). Keys are scoped by the
//! `X-Api-Key` header.
//!
//! The store is in memory, unless `REDIS_URL` is set (build with
//! `--features redis`; keys under `KEY_PREFIX`, default `orders-example:`),
//! `REDIS_CLUSTER_URLS` is set (comma-separated seed nodes of a Redis
//! Cluster, `redis://127.0.0.1:7000,...`), or
//! `DATABASE_URL` is set (build with `--features postgres`; table
//! `TABLE_NAME`, default `orders_example`, created if missing). Two instances
//! on two ports sharing one Redis or PostgreSQL make one order per key between
//! them. With Redis, `REDIS_REPLICAS_ACKED=N` (default 0) turns on
//! replicated claims acknowledged by N replicas, waiting at most
//! `REDIS_WAIT_TIMEOUT_MS` (default: half the store timeout, or 500 ms). Run to
//! completion is on (the layer's default): a client that hangs up during
//! `?delay_ms=5000` still gets its order on retry, made once.

use std::env;
use std::error::Error;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::header::{CONTENT_TYPE, LOCATION};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use tower_idempotency::{IdempotencyLayer, MemoryStore, Store};

/// Every order created, in order, as the JSON text it was answered with; an
/// order's id is its position plus one.
#[derive(Clone, Default)]
struct Orders(Arc<Mutex<Vec<String>>>);

#[derive(Deserialize)]
struct CreateOptions {
    delay_ms: Option<u64>,
    #[serde(default)]
    fail: bool,
}

/// A JSON response of `status` with the JSON text `json`.
fn json_response(status: StatusCode, json: String) -> Response {
    (status, [(CONTENT_TYPE, "application/json")], json).into_response()
}

async fn create_order(
    State(orders): State<Orders>,
    Query(options): Query<CreateOptions>,
    body: Bytes,
) -> Response {
    if let Some(delay) = options.delay_ms {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if options.fail {
        return (StatusCode::INTERNAL_SERVER_ERROR, "injected failure").into_response();
    }
    // The order is echoed as the very JSON text sent: parsed into numbers,
    // a float could come back with other last digits.
    let order: &RawValue = match serde_json::from_slice(&body) {
        Ok(order) => order,
        Err(error) => {
            return (StatusCode::BAD_REQUEST, format!("invalid JSON: {error}")).into_response();
        }
    };
    let (id, created) = {
        let mut orders = orders.0.lock().unwrap_or_else(|e| e.into_inner());
        let id = orders.len() + 1;
        let created = format!(r#"{{"id":{id},"order":{}}}"#, order.get());
        orders.push(created.clone());
        (id, created)
    };
    let mut response = json_response(StatusCode::CREATED, created);
    if let Ok(location) = HeaderValue::from_str(&format!("/orders/{id}")) {
        response.headers_mut().insert(LOCATION, location);
    }
    response
}

async fn list_orders(State(orders): State<Orders>) -> Response {
    let orders = orders.0.lock().unwrap_or_else(|e| e.into_inner());
    json_response(StatusCode::OK, format!("[{}]", orders.join(",")))
}

/// The app: routes, state and the idempotency layer on the given store.
fn app<St: Store>(store: St) -> Result<Router, Box<dyn Error>> {
    let mut layer = IdempotencyLayer::new(store)
        .scope_by_header(HeaderName::from_static("x-api-key"))
        .ttl(Duration::from_secs(env_or("TTL_SECS", 86_400)?));
    if let Some(lease) = env_opt::<u64>("LEASE_SECS")? {
        layer = layer.lease(Duration::from_secs(lease));
    }
    if let Some(timeout) = env_opt::<u64>("STORE_TIMEOUT_MS")? {
        layer = layer.store_timeout(Duration::from_millis(timeout));
    }
    if let Some(hints) = env_opt::<bool>("RETRY_HINTS")? {
        layer = layer.retry_hints(hints);
    }
    Ok(Router::new()
        .route("/orders", post(create_order).get(list_orders))
        .layer(layer)
        .with_state(Orders::default()))
}

fn env_opt<T: FromStr>(name: &str) -> Result<Option<T>, Box<dyn Error>>
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

fn env_or<T: FromStr>(name: &str, default: T) -> Result<T, Box<dyn Error>>
where
    T::Err: Error + 'static,
{
    Ok(env_opt(name)?.unwrap_or(default))
}

async fn serve<St: Store>(store: St) -> Result<(), Box<dyn Error>> {
    let addr = env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let app = app(store)?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "orders example listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let served = if let Ok(urls) = env::var("REDIS_CLUSTER_URLS") {
        serve_redis_cluster(&urls).await
    } else if let Ok(url) = env::var("REDIS_URL") {
        serve_redis(&url).await
    } else if let Ok(url) = env::var("DATABASE_URL") {
        serve_postgres(&url).await
    } else {
        serve(MemoryStore::new()).await
    };
    match served {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // The error and its causes, one line: what failed, where and why.
            let mut message = error.to_string();
            let mut cause = error.source();
            while let Some(error) = cause {
                message.push_str(": ");
                message.push_str(&error.to_string());
                cause = error.source();
            }
            eprintln!("orders example: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "postgres")]
async fn serve_postgres(url: &str) -> Result<(), Box<dyn Error>> {
    let table = env::var("TABLE_NAME").unwrap_or_else(|_| "orders_example".to_owned());
    let mut store = tower_idempotency::store::PostgresStore::connect(url)
        .await?
        .table(&table)?;
    if let Some(timeout) = env_opt::<u64>("STORE_TIMEOUT_MS")? {
        store = store.timeout(Duration::from_millis(timeout));
    }
    store.migrate().await?;
    // Expired records are deleted in batches, once a minute.
    let _sweeper = store.spawn_sweeper(Duration::from_secs(60));
    serve(store).await
}

#[cfg(not(feature = "postgres"))]
async fn serve_postgres(_url: &str) -> Result<(), Box<dyn Error>> {
    Err(
        "DATABASE_URL is set, but this example was built without PostgreSQL: \
         run it with `--features postgres`, or unset DATABASE_URL"
            .into(),
    )
}

#[cfg(feature = "redis")]
async fn serve_redis(url: &str) -> Result<(), Box<dyn Error>> {
    let store = tower_idempotency::store::RedisStore::connect(url).await?;
    serve(redis_settings(store)?).await
}

#[cfg(feature = "redis")]
async fn serve_redis_cluster(urls: &str) -> Result<(), Box<dyn Error>> {
    let seeds: Vec<&str> = urls.split(',').map(str::trim).collect();
    let store = tower_idempotency::store::RedisStore::connect_cluster(seeds).await?;
    serve(redis_settings(store)?).await
}

/// The key prefix, timeout and replicated claims of a Redis store, from the
/// environment.
#[cfg(feature = "redis")]
fn redis_settings(
    store: tower_idempotency::store::RedisStore,
) -> Result<tower_idempotency::store::RedisStore, Box<dyn Error>> {
    let prefix = env::var("KEY_PREFIX").unwrap_or_else(|_| "orders-example:".to_owned());
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
        let wait =
            env_opt::<u64>("REDIS_WAIT_TIMEOUT_MS")?.map_or(default_wait, Duration::from_millis);
        store = store.replicas_acked(replicas, wait);
    }
    Ok(store)
}

#[cfg(not(feature = "redis"))]
async fn serve_redis(_url: &str) -> Result<(), Box<dyn Error>> {
    Err(
        "REDIS_URL is set, but this example was built without Redis: \
         run it with `--features redis`, or unset REDIS_URL"
            .into(),
    )
}

#[cfg(not(feature = "redis"))]
async fn serve_redis_cluster(_urls: &str) -> Result<(), Box<dyn Error>> {
    Err(
        "REDIS_CLUSTER_URLS is set, but this example was built without Redis: \
         run it with `--features redis`, or unset REDIS_CLUSTER_URLS"
            .into(),
    )
}
