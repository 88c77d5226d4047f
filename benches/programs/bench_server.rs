//! The server of the HTTP benchmark (`benches/http/run.sh`): one axum app on
//! a Tokio runtime with 2 worker threads, where `POST /bare` is the bare
//! handler, `POST /orders` the same handler behind `IdempotencyLayer`
//! (memory store) and `POST /floor` the floor (the least any idempotency
//! layer must do, see `benches/support/floor.rs`). Listens on `ADDR` (default
//! `127.0.0.1:3100`).
//!
//! ```text
//! cargo bench --bench bench_server -- serve
//! ```
//!
//! Without `serve` it only says how to run it, so that a plain `cargo bench`
//! does not start a server that never ends.

#[path = "../support/floor.rs"]
mod floor;
#[path = "../support/app.rs"]
mod support;

use std::error::Error;

use axum::routing::post;
use bytes::Bytes;
use http::StatusCode;
use support::RESPONSE;
use tower_idempotency::{IdempotencyLayer, MemoryStore};

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
        let app = support::app()
            .layer(IdempotencyLayer::new(MemoryStore::new()))
            .route(
                "/bare",
                post(|_body: Bytes| async { (StatusCode::CREATED, RESPONSE) }),
            )
            .merge(floor::floor_app("/floor", RESPONSE));
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        println!(
            "bench server listening on http://{}",
            listener.local_addr()?
        );
        axum::serve(listener, app).await?;
        Ok(())
    })
}
