//! Resident memory per recorded key: records `N` keys (default 500000) through
//! the layer, each with a ~100-byte response, and prints how much the
//! process's resident set grew per record (read from `/proc/self/status`).
//!
//! ```text
//! cargo bench --bench memory_per_record -- 500000
//! ```

use std::error::Error;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::routing::post;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_idempotency::{IdempotencyLayer, MemoryStore};

/// The handler's answer: 100 bytes.
const RESPONSE: &str = r#"{"id":1,"status":"created","amount":1999,"currency":"eur","note":"one hundred bytes of response!!!"}"#;

fn resident_bytes() -> Result<u64, Box<dyn Error>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .ok_or("no VmRSS in /proc/self/status")?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .ok_or("malformed VmRSS")?
        .parse()?;
    Ok(kib * 1024)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    // `cargo bench` adds flags of its own (`--bench`): the count is the one
    // argument that is not a flag.
    let n: usize = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with('-'))
        .map_or(Ok(500_000), |n| n.parse())?;
    let store = Arc::new(MemoryStore::new());
    let app: Router = Router::new()
        .route(
            "/orders",
            post(|| async { (StatusCode::CREATED, RESPONSE) }),
        )
        .layer(IdempotencyLayer::from_shared_store(store.clone()))
        .with_state(());
    // Warm up the runtime and allocator before the first reading.
    let request = |key: String| {
        Request::post("/orders")
            .header("idempotency-key", key)
            .body(Body::from("{}"))
    };
    let response = app.clone().oneshot(request("warm".to_owned())?).await?;
    response.into_body().collect().await?;
    let before = resident_bytes()?;
    for i in 0..n {
        let response = app
            .clone()
            .oneshot(request(format!("key-{i:012}"))?)
            .await?;
        response.into_body().collect().await?;
    }
    let after = resident_bytes()?;
    let per_record = (after.saturating_sub(before)) as f64 / n as f64;
    println!(
        "{n} records of {} response bytes: resident set grew {:.1} MiB, {per_record:.0} bytes per record \
         ({:.0} bytes over the response body); store holds {} keys",
        RESPONSE.len(),
        (after - before) as f64 / (1024.0 * 1024.0),
        per_record - RESPONSE.len() as f64,
        store.len(),
    );
    Ok(())
}
