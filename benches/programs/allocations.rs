//! Heap allocations per request, by path: the bare router, and the layer's
//! no-key, fresh, replay, mismatch and in-flight paths, counted by dhat's
//! allocator over 10 000 requests each (after a warm-up of 1000).
//!
//! ```text
//! cargo bench --bench allocations
//! cargo bench --bench allocations --features axum                                # and with axum's bodies
//! ALLOCATIONS_PROFILE=1 ALLOCATIONS_PATH=fresh cargo bench --bench allocations   # one path's sites, in dhat-heap.json
//! ```
//!
//! The app is the one `benches/layer.rs` measures: an axum `Router` called
//! with `tower::ServiceExt::oneshot`, a 1 KiB JSON body, a handler that
//! reads it and answers 201 with ~100 bytes; the request is built inside
//! the count, as a client's would be, and the response read to its end.

#[path = "../support/app.rs"]
mod support;

use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Body;
use http::Request;
use support::{app, call, json_body, request};
use tower_idempotency::{IdempotencyLayer, MemoryStore};

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

const REQUESTS: u64 = 10_000;

static FRESH: AtomicU64 = AtomicU64::new(0);

/// Makes one request of a path.
type MakeRequest<'a> = &'a dyn Fn() -> Request<Body>;

/// Allocations (blocks, bytes) per request of `make` on `app`.
async fn per_request(app: &Router, make: impl Fn() -> Request<Body>) -> (f64, f64) {
    for _ in 0..1000 {
        call(app, make()).await;
    }
    let before = dhat::HeapStats::get();
    for _ in 0..REQUESTS {
        call(app, make()).await;
    }
    let after = dhat::HeapStats::get();
    (
        (after.total_blocks - before.total_blocks) as f64 / REQUESTS as f64,
        (after.total_bytes - before.total_bytes) as f64 / REQUESTS as f64,
    )
}

fn main() {
    // `ALLOCATIONS_PROFILE=1` also writes `dhat-heap.json`, with the call
    // stack of every allocation site, for `dh_view.html`.
    let profile = std::env::var_os("ALLOCATIONS_PROFILE").is_some();
    let _profiler = if profile {
        dhat::Profiler::builder().trim_backtraces(Some(40)).build()
    } else {
        dhat::Profiler::builder().testing().build()
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => panic!("runtime: {error}"),
    };
    runtime.block_on(async {
        let body = json_body(1024);
        let other = json_body(1000);
        let bare = app().with_state(());
        let layered = app()
            .layer(IdempotencyLayer::new(MemoryStore::new()))
            .with_state(());
        call(&layered, request("/orders", Some("replayed"), &body)).await;
        call(&layered, request("/orders", Some("mismatched"), &body)).await;
        let holder = layered.clone();
        let held = request("/hang", Some("in-flight"), &body);
        tokio::spawn(async move { call(&holder, held).await });
        tokio::task::yield_now().await;
        let fresh = || {
            let key = format!("fresh-{}", FRESH.fetch_add(1, Ordering::Relaxed));
            request("/orders", Some(&key), &body)
        };
        #[cfg(feature = "axum")]
        let axum_bodies = app()
            .layer(IdempotencyLayer::new(MemoryStore::new()).axum_bodies())
            .with_state(());
        let paths: [(&str, &Router, MakeRequest<'_>); 6] = [
            ("bare", &bare, &|| request("/orders", None, &body)),
            ("no key", &layered, &|| request("/orders", None, &body)),
            ("fresh", &layered, &fresh),
            ("replay", &layered, &|| request("/orders", Some("replayed"), &body)),
            ("mismatch", &layered, &|| request("/orders", Some("mismatched"), &other)),
            ("in flight", &layered, &|| request("/hang", Some("in-flight"), &body)),
        ];
        // `ALLOCATIONS_PATH=fresh` (say) counts that path alone, so the
        // profile's sites are that path's.
        let only = std::env::var("ALLOCATIONS_PATH").ok();
        // With `--features axum`: the no-key and fresh paths keeping axum's bodies.
        #[cfg(feature = "axum")]
        let no_key = || request("/orders", None, &body);
        #[cfg(feature = "axum")]
        let paths = paths.into_iter().chain([
            ("no key, axum bodies", &axum_bodies, &no_key as MakeRequest<'_>),
            ("fresh, axum bodies", &axum_bodies, &fresh as MakeRequest<'_>),
        ]);
        let mut bare_blocks = 0.0;
        for (name, app, make) in paths {
            if only.as_deref().is_some_and(|only| only != name) {
                continue;
            }
            let (blocks, bytes) = per_request(app, make).await;
            if name == "bare" {
                bare_blocks = blocks;
            }
            println!(
                "{name:>10}: {blocks:.1} allocations per request ({:+.1} over bare), {bytes:.0} bytes",
                blocks - bare_blocks
            );
        }
    });
}
