//! One path of the in-process app, in a loop, for a profiler: nothing else
//! runs in the process (no other group's setup, no prefilled store).
//!
//! ```text
//! cargo build --profile profiling --bench hot_loop
//! perf record -e cpu-clock -g target/profiling/deps/hot_loop-HASH fresh 500000
//! ```
//!
//! Paths: `bare`, `identity` (an identity layer, without a key),
//! `identity_arc` (the same holding an `Arc`, as any layer with shared state
//! does: axum clones the service for every request), `no_key`,
//! `fresh`, `replay`, `floor_fresh`, `floor_replay`; a third argument
//! `axum_bodies` (with `--features axum`) keeps axum's bodies.
//! `HOT_LOOP_TASKS=32` spreads the requests over 32 tasks on 2 workers;
//! `FRESH_FIRST=N` sends N fresh requests first (the heap of a server that
//! has served a while).

#[path = "../support/floor.rs"]
mod floor;
#[path = "../support/app.rs"]
mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::Router;
use bytes::Bytes;

use support::{app, call, json_body, request};
use tower_idempotency::{IdempotencyLayer, MemoryStore};

/// The key of request `i` of a path in run `run`.
fn key_of(path: &str, run: u64, i: u64) -> Option<String> {
    match path {
        "fresh" | "floor_fresh" => Some(format!("fresh-{run}-{i}")),
        "replay" | "floor_replay" => Some("replayed".to_owned()),
        _ => None,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "fresh".to_owned());
    let n: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(500_000);
    // `HOT_LOOP_TASKS=32`: that many tasks on 2 workers share the requests.
    let tasks: u64 = std::env::var("HOT_LOOP_TASKS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    // `FRESH_FIRST=N`: N fresh requests before the loop, as a server that
    // has served for a while.
    let fresh_first: u64 = std::env::var("FRESH_FIRST")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let runtime = if tasks > 1 {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let runtime = match runtime {
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
        // The no-key floor: what any layer costs in axum.
        "identity" => app().layer(floor::identity_layer()).with_state(()),
        // The no-key floor of a layer with state: one `Arc` cloned and
        // dropped per request.
        "identity_arc" => app().layer(floor::identity_arc_layer()).with_state(()),
        // The floor (`benches/support/floor.rs`), with a fresh or the
        // replayed key.
        "floor_fresh" | "floor_replay" => floor::floor_app("/orders", support::RESPONSE),
        #[cfg(feature = "axum")]
        _ if axum_bodies => app().layer(layer.axum_bodies()).with_state(()),
        _ => app().layer(layer).with_state(()),
    };
    runtime.block_on(async {
        call(&router, request("/orders", Some("replayed"), &body)).await;
        if fresh_first > 0 {
            run(&router, &body, "fresh", fresh_first, tasks).await;
        }
        // `HOT_LOOP_CHUNKS=K`: K loops of `n`, each timed, to see a drift or
        // a slow mode.
        let chunks: u64 = std::env::var("HOT_LOOP_CHUNKS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        for _ in 0..chunks {
            let per = run(&router, &body, &path, n, tasks).await;
            println!("{path}: {:.2} µs per request", per * 1e6);
        }
    });
}

/// Sends `n` requests of `path` from `tasks` tasks; seconds per request.
async fn run(router: &Router, body: &Bytes, path: &str, n: u64, tasks: u64) -> f64 {
    static RUN: AtomicU64 = AtomicU64::new(0);
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    let start = Instant::now();
    let per_task = n.div_ceil(tasks);
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let (router, body, path) = (router.clone(), body.clone(), path.to_owned());
            tokio::spawn(async move {
                for i in 0..per_task {
                    let key = key_of(&path, run, task * per_task + i);
                    call(&router, request("/orders", key.as_deref(), &body)).await;
                }
            })
        })
        .collect();
    for handle in handles {
        let _ = handle.await;
    }
    start.elapsed().as_secs_f64() / (per_task * tasks) as f64
}
