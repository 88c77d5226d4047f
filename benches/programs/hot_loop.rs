//! One path of the in-process app, in a loop, for a profiler: nothing else
//! runs in the process (no other group's setup, no prefilled store).
//!
//! ```text
//! cargo build --profile profiling --bench hot_loop
//! perf record -e cpu-clock -g target/profiling/deps/hot_loop-HASH fresh 500000
//! ```
//!
//! Paths: `bare`, `no_key`, `fresh`, `replay`; a third argument
//! `axum_bodies` (with `--features axum`) keeps axum's bodies.

#[path = "../support/app.rs"]
mod support;

use std::time::Instant;

use support::{app, call, json_body, request};
use tower_idempotency::{IdempotencyLayer, MemoryStore};

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "fresh".to_owned());
    let n: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(500_000);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => panic!("runtime: {error}"),
    };
    let body = json_body(1024);
    let axum_bodies = args.next().is_some_and(|arg| arg == "axum_bodies");
    if axum_bodies && cfg!(not(feature = "axum")) {
        panic!("axum_bodies needs --features axum");
    }
    let layer = IdempotencyLayer::new(MemoryStore::new());
    let router = match path.as_str() {
        "bare" => app().with_state(()),
        #[cfg(feature = "axum")]
        _ if axum_bodies => app().layer(layer.axum_bodies()).with_state(()),
        _ => app().layer(layer).with_state(()),
    };
    runtime.block_on(async {
        call(&router, request("/orders", Some("replayed"), &body)).await;
        let start = Instant::now();
        for i in 0..n {
            let key = match path.as_str() {
                "fresh" => Some(format!("fresh-{i}")),
                "replay" => Some("replayed".to_owned()),
                _ => None,
            };
            call(&router, request("/orders", key.as_deref(), &body)).await;
        }
        let per = start.elapsed().as_secs_f64() / n as f64;
        println!("{path}: {:.2} µs per request", per * 1e6);
    });
}
