//! `IdempotencyLayer` in a tower-http stack, and why the layers go in this
//! order (outermost first):
//!
//! 1. `TraceLayer`: sees every request and every answer, the layer's own 409s
//!    and 503s included.
//! 2. `TimeoutLayer`: answers the client when a request takes too long. Being
//!    outside the idempotency layer, it does not cancel the handler: with run
//!    to completion (the default) the work finishes and is recorded, so the
//!    client's retry gets it. (Put it inside to cut slow handlers short; its
//!    408 is then not recorded and the retry runs again.)
//! 3. `RequestBodyLimitLayer`: refuses bodies over 2 MiB with 413 before
//!    anything is read. The idempotency layer's own limit (1 MiB here) is
//!    lower, so a protected request over it gets the layer's 413 problem
//!    document, not a read error.
//! 4. `IdempotencyLayer`, then the handler.
//!
//! ```text
//! cargo run --example service_builder
//! curl -i -X POST 'localhost:3002/orders?delay_ms=3000' -H 'Idempotency-Key: k1' -d '{}'
//! ```

use std::error::Error;
use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::routing::post;
use http::StatusCode;
use serde::Deserialize;
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tower_idempotency::{IdempotencyLayer, MemoryStore};

#[derive(Deserialize)]
struct Delay {
    delay_ms: Option<u64>,
}

async fn create(Query(delay): Query<Delay>) -> (StatusCode, &'static str) {
    tokio::time::sleep(Duration::from_millis(delay.delay_ms.unwrap_or(0))).await;
    (StatusCode::CREATED, "created\n")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt().with_target(false).init();
    let stack = ServiceBuilder::new()
        .layer(TraceLayer::new_for_http())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(2),
        ))
        .layer(RequestBodyLimitLayer::new(2 * 1024 * 1024))
        .layer(IdempotencyLayer::new(MemoryStore::new()).request_body_limit(1024 * 1024));
    let app = Router::new().route("/orders", post(create)).layer(stack);
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3002".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "service_builder example listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}
