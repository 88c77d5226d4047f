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

#[path = "shared/mod.rs"]
mod shared;

use std::env;
use std::error::Error;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::header::{CONTENT_TYPE, LOCATION};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use tower_idempotency::{IdempotencyLayer, Store};

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
    let mut layer = shared::layer_settings(IdempotencyLayer::new(store))?;
    if let Some(hints) = shared::env_opt::<bool>("RETRY_HINTS")? {
        layer = layer.retry_hints(hints);
    }
    Ok(Router::new()
        .route("/orders", post(create_order).get(list_orders))
        .layer(layer)
        .with_state(Orders::default()))
}

/// The orders server, on whichever store the environment names.
struct OrdersServer;

impl shared::Server for OrdersServer {
    async fn serve<St: Store>(self, store: St) -> Result<(), Box<dyn Error>> {
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
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let served = shared::serve_on_chosen_store(OrdersServer, "orders_example").await;
    shared::exit_code("orders", served)
}
