//! A handler that calls a payment provider with a key derived from the
//! request's `IdempotencyKey`: the client's retries reach the handler once,
//! and the handler's own retries of the provider call reuse one provider key.
//!
//! ```text
//! cargo run --example downstream_key
//! ```

use std::error::Error;

use axum::routing::post;
use axum::{Extension, Router};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_idempotency::{IdempotencyKey, IdempotencyLayer, MemoryStore};

/// Stands in for a payment provider's client that takes its own idempotency
/// key (as Stripe's does).
async fn charge_provider(provider_key: &str, amount: u64) -> String {
    format!("charged {amount} under provider key {provider_key}")
}

/// A payment needs a key: the layer requires one (`require_key`), so every
/// POST that reaches this handler has its `IdempotencyKey` extension. Without
/// `require_key`, take `Option<Extension<IdempotencyKey>>`: a request without
/// a key passes through the layer, and a bare `Extension` would make axum
/// answer it with 500.
async fn pay(Extension(key): Extension<IdempotencyKey>) -> (StatusCode, String) {
    // Stable across the client's retries, distinct per downstream call.
    let provider_key = format!("{key}-charge");
    (
        StatusCode::CREATED,
        charge_provider(&provider_key, 1999).await,
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let app: Router = Router::new()
        .route("/payments", post(pay))
        .layer(IdempotencyLayer::new(MemoryStore::new()).require_key(true))
        .with_state(());
    for attempt in 1..=2 {
        let request = Request::post("/payments")
            .header("idempotency-key", "order-42")
            .body(axum::body::Body::from("{}"))?;
        let response = app.clone().oneshot(request).await?;
        let replayed = response.headers().contains_key("idempotent-replayed");
        let body = response.into_body().collect().await?.to_bytes();
        println!(
            "attempt {attempt}: {} (replayed: {replayed})",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(())
}
