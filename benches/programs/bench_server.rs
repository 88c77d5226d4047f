//! The server of the HTTP benchmark (`benches/http/run.sh`): one axum app on
//! a Tokio runtime with 2 worker threads, where `POST /bare` is the bare
//! handler and `POST /orders` the same handler behind `IdempotencyLayer`
//! (memory store). Listens on `ADDR` (default `127.0.0.1:3100`).
//!
//! ```text
//! cargo bench --bench bench_server -- serve
//! ```
//!
//! Without `serve` it only says how to run it, so that a plain `cargo bench`
//! does not start a server that never ends.

use std::error::Error;

use axum::Router;
use axum::routing::post;
use bytes::Bytes;
use http::StatusCode;
use tower_idempotency::{IdempotencyLayer, MemoryStore};

/// The handler's answer: ~100 bytes.
const RESPONSE: &str =
    r#"{"id":12345,"status":"created","amount":1999,"currency":"eur","note":"a benchmark order"}"#;

async fn create(_body: Bytes) -> (StatusCode, &'static str) {
    (StatusCode::CREATED, RESPONSE)
}

fn main() -> Result<(), Box<dyn Error>> {
    if !std::env::args().any(|arg| arg == "serve") {
        println!("bench_server: run it with `cargo bench --bench bench_server -- serve`");
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3100".to_owned());
        // Routes added after `layer` are not behind it.
        let app = Router::new()
            .route("/orders", post(create))
            .layer(IdempotencyLayer::new(MemoryStore::new()))
            .route("/bare", post(create));
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        println!(
            "bench server listening on http://{}",
            listener.local_addr()?
        );
        axum::serve(listener, app).await?;
        Ok(())
    })
}
